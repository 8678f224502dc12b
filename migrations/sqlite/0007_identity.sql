-- Agent identity: the host's JWT signing keys (Ed25519, private half sealed by the master key
-- with the kid as associated data). At most one key is active: `active` is 1 for it and NULL
-- for retired keys, and the unique index admits one 1 (NULLs never collide), so hosts starting
-- together on one database cannot create two active keys.
CREATE TABLE identity_keys (
    kid            TEXT   PRIMARY KEY,
    alg            TEXT   NOT NULL,
    sealed_private BLOB   NOT NULL,
    public_jwk     TEXT   NOT NULL,
    created_at     BIGINT NOT NULL,
    retired_at     BIGINT,
    active         BIGINT CHECK (active = 1)
);
CREATE UNIQUE INDEX identity_keys_one_active ON identity_keys (active);

-- External issuers (Auth0 M2M, any OIDC provider) a tenant accepts tokens from. One (issuer,
-- audience) belongs to one tenant, so a token routes to exactly one tenant.
CREATE TABLE identity_external_issuers (
    tenant        TEXT   NOT NULL,
    issuer        TEXT   NOT NULL,
    audience      TEXT   NOT NULL,
    jwks_url      TEXT   NOT NULL,
    subject_claim TEXT   NOT NULL DEFAULT 'sub',
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant, issuer)
);
CREATE UNIQUE INDEX identity_external_issuers_route ON identity_external_issuers (issuer, audience);

-- Which agent an external subject (say an M2M client id) stands for; unmapped subjects are refused.
CREATE TABLE identity_external_subjects (
    tenant           TEXT   NOT NULL,
    issuer           TEXT   NOT NULL,
    external_subject TEXT   NOT NULL,
    agent            TEXT   NOT NULL,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant, issuer, external_subject)
);
