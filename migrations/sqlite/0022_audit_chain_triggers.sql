-- SQLite: the database itself keeps each tenant's chain whole. An appended event must follow
-- its tenant's head (the next seq, linked to the head's hash; a tenant's first event starts
-- from genesis), and appending it advances the head. An append from a stale head (another
-- writer on the file, an edited head, a bug in the writer) fails as a whole instead of forking
-- the chain, and the audit writer's usual group commit is a single INSERT statement.
-- PostgreSQL keeps its locking head upsert (its migration 0022 is empty, to stay in step).
CREATE TRIGGER audit_events_follow_head BEFORE INSERT ON audit_events
WHEN NOT EXISTS (
        SELECT 1 FROM audit_heads
        WHERE tenant = NEW.tenant AND seq = NEW.seq - 1 AND hash = NEW.prev_hash
    )
    AND NOT (
        NEW.seq = 1
        AND NEW.prev_hash = '0000000000000000000000000000000000000000000000000000000000000000'
        AND NOT EXISTS (SELECT 1 FROM audit_heads WHERE tenant = NEW.tenant)
    )
BEGIN
    SELECT RAISE(ABORT, 'audit chain head moved: the event does not follow its tenant''s head');
END;

CREATE TRIGGER audit_events_advance_head AFTER INSERT ON audit_events
BEGIN
    INSERT INTO audit_heads (tenant, seq, hash) VALUES (NEW.tenant, NEW.seq, NEW.hash)
    ON CONFLICT (tenant) DO UPDATE SET seq = excluded.seq, hash = excluded.hash;
END;
