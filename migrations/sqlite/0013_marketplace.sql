-- Marketplace installations (sqlite flavour; keep in step with ../postgres).
-- Install writes every row of an agent in one transaction with its agent, tuples, policies and
-- connection slots, so a failure half-way leaves nothing; uninstall deletes them the same way.

-- One row per installed agent: which signed package it came from (digest of the signed payload).
CREATE TABLE installations (
    tenant       TEXT    NOT NULL,
    agent        TEXT    NOT NULL,
    package      TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    publisher    TEXT    NOT NULL,
    key_id       TEXT    NOT NULL,
    digest       TEXT    NOT NULL,
    manifest     TEXT    NOT NULL,
    installed_at BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    PRIMARY KEY (tenant, agent)
);

-- Components installed with a package belong to the tenant that installed them: another
-- tenant's agents cannot reach them, and two tenants may run different versions.
CREATE TABLE installed_components (
    tenant    TEXT    NOT NULL,
    component TEXT    NOT NULL,
    agent     TEXT    NOT NULL,
    sha256    TEXT    NOT NULL,
    wasm      BLOB    NOT NULL,
    limits    TEXT    NOT NULL,
    PRIMARY KEY (tenant, component)
);

-- Credential slots a package declared, in its agent's namespace (AGENT/NAME): what the tenant
-- admin is asked to fill. The credential itself, once filled, is a row of connections.
CREATE TABLE connection_slots (
    tenant        TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    agent         TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    allowed_hosts TEXT    NOT NULL,
    oauth         TEXT,
    description   TEXT    NOT NULL,
    PRIMARY KEY (tenant, name)
);

-- Publisher keys an admin trusts at run time, besides those shipped in marketplace/publishers.
CREATE TABLE trusted_publishers (
    publisher  TEXT    NOT NULL,
    key_id     TEXT    NOT NULL,
    public_key TEXT    NOT NULL,
    added_at   BIGINT  NOT NULL,
    PRIMARY KEY (publisher, key_id)
);

-- Model types a package brought into a tenant. Another package (or the same one installed
-- again) may share them; a type the tenant defined or used itself may not be claimed. Kept
-- after uninstall, like the type in the model.
CREATE TABLE package_types (
    tenant    TEXT    NOT NULL,
    type_name TEXT    NOT NULL,
    PRIMARY KEY (tenant, type_name)
);
