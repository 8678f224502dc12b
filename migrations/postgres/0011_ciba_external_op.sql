-- OpenID CIBA: a tenant's external OpenID Provider, which Airlock asks (as a CIBA client) to
-- have a human approve the tenant's approval requests. The client secret is sealed with the
-- master key; login_hints maps an approval's role to the OP user asked (JSON object).
CREATE TABLE ciba_external_ops (
    tenant          TEXT    NOT NULL PRIMARY KEY,
    discovery_url   TEXT    NOT NULL,
    client_id       TEXT    NOT NULL,
    secret_sealed   BYTEA   NOT NULL,
    delivery_mode   TEXT    NOT NULL,
    scope           TEXT    NOT NULL,
    login_hints     TEXT    NOT NULL,
    requested_expiry BIGINT,
    updated_at      BIGINT  NOT NULL
);
