-- Single sign-on with a tenant's OpenID Connect provider. Keep the sqlite and postgres
-- flavours in step.

-- The provider of a tenant: its issuer, this host's client there (secret sealed with the
-- master key), the endpoints found by discovery, and the claim that names the person.
CREATE TABLE sso_providers (
    tenant                 TEXT    NOT NULL PRIMARY KEY,
    issuer                 TEXT    NOT NULL,
    client_id              TEXT    NOT NULL,
    secret_sealed          BYTEA   NOT NULL,
    authorization_endpoint TEXT    NOT NULL,
    token_endpoint         TEXT    NOT NULL,
    jwks_uri               TEXT    NOT NULL,
    subject_claim          TEXT    NOT NULL,
    updated_at             BIGINT  NOT NULL
);

-- A sign-in on its way through the provider: the state (stored hashed), the nonce the ID
-- token must carry, and the PKCE verifier. Single use, short lived.
CREATE TABLE sso_logins (
    state_hash  TEXT    NOT NULL PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    nonce       TEXT    NOT NULL,
    verifier    TEXT    NOT NULL,
    redirect_uri TEXT   NOT NULL,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);
