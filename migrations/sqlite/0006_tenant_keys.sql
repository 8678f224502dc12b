-- Envelope encryption: each tenant's data keys, sealed by the master key. Secrets are sealed
-- by a data key; rotating the master key re-seals only these rows.
CREATE TABLE tenant_keys (
    tenant     TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    sealed_key BLOB     NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, version)
);
