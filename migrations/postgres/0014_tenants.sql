-- Tenants as objects, and the people who run them (postgres flavour; keep in step with ../sqlite).
-- A tenant exists only once created: every entry point refuses one that is not a row here.
-- Deleting a tenant deletes every row that names it (this one included) but its audit trail;
-- the audit head left behind keeps the name from being reused.
CREATE TABLE tenants (
    name       TEXT    NOT NULL PRIMARY KEY,
    created_at BIGINT  NOT NULL
);

-- Tenants that existed before they were objects: every name a row already carries.
INSERT INTO tenants (name, created_at) VALUES ('default', 0) ON CONFLICT DO NOTHING;
INSERT INTO tenants (name, created_at) SELECT DISTINCT tenant, 0 FROM agents WHERE true ON CONFLICT DO NOTHING;
INSERT INTO tenants (name, created_at) SELECT DISTINCT tenant, 0 FROM tuples WHERE true ON CONFLICT DO NOTHING;
INSERT INTO tenants (name, created_at) SELECT DISTINCT tenant, 0 FROM connections WHERE true ON CONFLICT DO NOTHING;
INSERT INTO tenants (name, created_at) SELECT DISTINCT tenant, 0 FROM installations WHERE true ON CONFLICT DO NOTHING;
INSERT INTO tenants (name, created_at) SELECT id, created_at FROM stores WHERE deleted_at IS NULL ON CONFLICT DO NOTHING;

-- API tokens of people and machines: a tenant member's (`tenant` set) or the operator's
-- (`tenant` NULL). Only the sha256 is kept. A token either carries a member's relations
-- (`member` = `user:NAME`, checked live in the tenant's authorization engine) or a fixed
-- `role` (`member` = `token:NAME`).
CREATE TABLE api_tokens (
    id           TEXT    NOT NULL PRIMARY KEY,
    tenant       TEXT,
    name         TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE,
    member       TEXT    NOT NULL,
    role         TEXT,
    created_by   TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);
CREATE INDEX api_tokens_by_tenant ON api_tokens (tenant, name);

-- One-time invitations: whoever redeems the code before it expires becomes `member` with
-- `relation` on `tenant:TENANT`, and gets a token carrying that member's relations.
CREATE TABLE invitations (
    code_hash  TEXT    NOT NULL PRIMARY KEY,
    tenant     TEXT    NOT NULL,
    member     TEXT    NOT NULL,
    relation   TEXT    NOT NULL,
    created_by TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    used_at    BIGINT
);
CREATE INDEX invitations_by_tenant ON invitations (tenant);
