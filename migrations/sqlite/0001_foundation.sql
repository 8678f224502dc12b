-- Airlock foundation schema (SQLite flavour; keep in step with ../postgres).
-- Times are unix milliseconds. Every row that belongs to a tenant says so.

CREATE TABLE tuples (
    tenant     TEXT    NOT NULL,
    object     TEXT    NOT NULL,
    relation   TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (tenant, object, relation, subject)
);

CREATE TABLE agents (
    tenant     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    token_hash TEXT    NOT NULL UNIQUE,
    created_at BIGINT  NOT NULL,
    revoked_at BIGINT,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE components (
    name       TEXT    NOT NULL PRIMARY KEY,
    sha256     TEXT    NOT NULL,
    wasm       BLOB    NOT NULL,
    added_at   BIGINT  NOT NULL
);

CREATE TABLE approvals (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    agent       TEXT    NOT NULL,
    tool        TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    summary     TEXT    NOT NULL,
    role        TEXT,
    details     TEXT    NOT NULL,
    args_digest TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    approver    TEXT,
    reason      TEXT,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    decided_at  BIGINT,
    consumed_at BIGINT
);
CREATE INDEX approvals_by_status ON approvals (tenant, status);

CREATE TABLE vault_meta (
    id         INTEGER NOT NULL PRIMARY KEY,
    key_check  BLOB    NOT NULL
);

CREATE TABLE connections (
    tenant         TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    placement      TEXT    NOT NULL,
    base_url       TEXT,
    allowed_hosts  TEXT    NOT NULL,
    requires_grant BIGINT  NOT NULL,
    sealed_secret  BLOB    NOT NULL,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE audit_heads (
    tenant TEXT   NOT NULL PRIMARY KEY,
    seq    BIGINT NOT NULL,
    hash   TEXT   NOT NULL
);

CREATE TABLE audit_events (
    tenant    TEXT   NOT NULL,
    seq       BIGINT NOT NULL,
    ts        BIGINT NOT NULL,
    kind      TEXT   NOT NULL,
    outcome   TEXT   NOT NULL,
    agent     TEXT   NOT NULL,
    tool      TEXT   NOT NULL,
    detail    TEXT   NOT NULL,
    prev_hash TEXT   NOT NULL,
    hash      TEXT   NOT NULL,
    PRIMARY KEY (tenant, seq)
);
