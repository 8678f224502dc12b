-- The authority ledger (SQLite flavour; keep in step with ../postgres).
-- A grant is one authorization, bound to tenant, agent, tool, action, argument digest and
-- optionally a run and a call. Its state only moves forward (issued -> claimed -> consumed,
-- or denied / expired / cancelled); every move and every refused claim is a row in
-- ledger_events, written in the same transaction. Nothing here is ever deleted.
CREATE TABLE grants (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    agent       TEXT    NOT NULL,
    tool        TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    args_digest TEXT    NOT NULL,
    run_id      TEXT,
    call_id     TEXT,
    approver    TEXT    NOT NULL,
    role        TEXT,
    state       TEXT    NOT NULL,
    issued_at   BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    claimed_at  BIGINT,
    consumed_at BIGINT,
    outcome     TEXT
);
CREATE INDEX grants_by_state ON grants (state, expires_at);
CREATE INDEX grants_by_agent ON grants (tenant, agent, state);

CREATE TABLE ledger_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant     TEXT    NOT NULL,
    grant_id   TEXT    NOT NULL,
    event      TEXT    NOT NULL,
    from_state TEXT,
    to_state   TEXT,
    at         BIGINT  NOT NULL,
    actor      TEXT    NOT NULL,
    reason     TEXT
);
CREATE INDEX ledger_events_by_grant ON ledger_events (tenant, grant_id, seq);

-- Who must approve which tool action; `entry` policies gate a whole run of an agent.
CREATE TABLE approval_policies (
    tenant     TEXT    NOT NULL,
    tool       TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    ttl_ms     BIGINT  NOT NULL,
    entry      BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (tenant, tool, action)
);

-- A run of an agent that needed entry approval before its first step.
CREATE TABLE runs (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    agent       TEXT    NOT NULL,
    summary     TEXT    NOT NULL,
    approval_id TEXT,
    created_at  BIGINT  NOT NULL,
    finished_at BIGINT,
    outcome     TEXT
);

-- An approval may be the entry approval of a run.
ALTER TABLE approvals ADD COLUMN run_id TEXT;

-- Approvals decided before the ledger existed and not yet spent become issued grants, so they
-- stay usable; their lifetime counts from the decision, as for new ones.
INSERT INTO grants (id, tenant, agent, tool, action, args_digest, run_id, call_id, approver, role, state,
                    issued_at, expires_at)
SELECT id, tenant, agent, tool, action, args_digest, NULL, call_id, COALESCE(approver, ''), role, 'issued',
       COALESCE(decided_at, created_at), COALESCE(decided_at, created_at) + (expires_at - created_at)
FROM approvals WHERE status = 'approved';
INSERT INTO ledger_events (tenant, grant_id, event, from_state, to_state, at, actor, reason)
SELECT tenant, id, 'issue', NULL, 'issued', issued_at, approver, 'carried over from approvals'
FROM grants;
