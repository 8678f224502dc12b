-- Airlock as the authorization server of its MCP endpoint (the MCP authorization spec):
-- clients registered dynamically (RFC 7591), authorization codes (PKCE, RFC 7636) and the
-- grants a person consented to, each with its rotating refresh token. Every secret is
-- stored as its sha256. Keep the sqlite and postgres flavours in step.

-- A registered client. Public clients (`auth_method` `none`) prove nothing but PKCE; a
-- confidential one has a secret. `metadata` is what it registered, echoed back. A client
-- never used within a day of registering is purged (registration needs no token).
CREATE TABLE oauth_clients (
    client_id     TEXT   NOT NULL PRIMARY KEY,
    secret_hash   TEXT,
    auth_method   TEXT   NOT NULL,
    client_name   TEXT   NOT NULL,
    redirect_uris TEXT   NOT NULL,
    metadata      TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);
CREATE INDEX oauth_clients_created ON oauth_clients (created_at);

-- An authorization code: single use, a minute long, bound to the client, its redirect URI,
-- the PKCE challenge, the resource (RFC 8707), and what the person consented to: the tenant,
-- the member, the agent the client acts as. `used_at` set on redemption: a second redemption
-- revokes the grant the first one made (RFC 6749 4.1.2).
CREATE TABLE oauth_codes (
    code_hash    TEXT   NOT NULL PRIMARY KEY,
    client_id    TEXT   NOT NULL,
    tenant       TEXT   NOT NULL,
    member       TEXT   NOT NULL,
    agent        TEXT   NOT NULL,
    redirect_uri TEXT   NOT NULL,
    challenge    TEXT   NOT NULL,
    resource     TEXT   NOT NULL,
    scope        TEXT   NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT,
    grant_id     TEXT
);

-- What a person consented to: this client acts as this agent for them on this resource.
-- The refresh token rotates on each use; presenting the one before (`previous_hash`) again
-- is a stolen token being replayed, and revokes the grant.
CREATE TABLE oauth_grants (
    id            TEXT   NOT NULL PRIMARY KEY,
    client_id     TEXT   NOT NULL,
    tenant        TEXT   NOT NULL,
    member        TEXT   NOT NULL,
    agent         TEXT   NOT NULL,
    resource      TEXT   NOT NULL,
    scope         TEXT   NOT NULL,
    refresh_hash  TEXT   NOT NULL UNIQUE,
    previous_hash TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX oauth_grants_tenant ON oauth_grants (tenant, member);
CREATE INDEX oauth_grants_previous ON oauth_grants (previous_hash);
