-- OpenFGA API: stores (each one a tenant), tuple conditions, and the change log.
CREATE TABLE stores (
    id         TEXT   NOT NULL PRIMARY KEY,
    name       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);

ALTER TABLE tuples ADD COLUMN condition_name TEXT;
ALTER TABLE tuples ADD COLUMN condition_context TEXT;

-- One revision counter per tenant, bumped (row-locked) by every write transaction:
-- hosts sharing the database compare it with the revision they have applied.
CREATE TABLE tuple_revisions (
    tenant TEXT   NOT NULL PRIMARY KEY,
    rev    BIGINT NOT NULL
);

CREATE TABLE tuple_changes (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant         TEXT   NOT NULL,
    rev            BIGINT NOT NULL,
    object         TEXT   NOT NULL,
    relation       TEXT   NOT NULL,
    subject        TEXT   NOT NULL,
    condition_name TEXT,
    operation      TEXT   NOT NULL,
    ts             BIGINT NOT NULL
);
CREATE INDEX tuple_changes_by_tenant ON tuple_changes (tenant, seq);
CREATE INDEX tuple_changes_by_rev ON tuple_changes (tenant, rev);
