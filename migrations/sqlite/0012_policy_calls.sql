-- Calls held by a host-enforced approval policy (sqlite flavour; keep in step with ../postgres).
-- One row per call the gate stopped to ask a human: which approval it waits on, so that after a
-- restart the caller can re-attach to it (POST /v1/calls/{call_id}/resume) and the call runs once
-- with its original input. The input itself is the approval's `details` (the canonical JSON of
-- the arguments, stored as is: it may hold personal data, like the approval shown to the approver).
CREATE TABLE policy_calls (
    tenant      TEXT    NOT NULL,
    call_id     TEXT    NOT NULL,
    approval_id TEXT    NOT NULL,
    agent       TEXT    NOT NULL,
    tool        TEXT    NOT NULL,
    run_id      TEXT,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant, call_id)
);
