-- A grant is spent only by the call that asked for it.
ALTER TABLE approvals ADD COLUMN call_id TEXT;
