-- Authorization models (OpenFGA DSL), one active per tenant: the newest.
CREATE TABLE authorization_models (
    tenant     TEXT   NOT NULL,
    id         TEXT   NOT NULL,
    dsl        TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX authorization_models_newest ON authorization_models (tenant, created_at);
