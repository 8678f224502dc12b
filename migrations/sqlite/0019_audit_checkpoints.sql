-- Signed audit checkpoints: the host signs each chain's head (Ed25519), so a trail can be
-- verified offline against the public key, and a rewrite of the database (hashes recomputed,
-- rows removed) is caught. Keep the sqlite and postgres flavours in step.

-- The signing key: the public half in plain; the private half (PKCS#8) sealed by the master
-- key (through the vault, the kid as associated data), never stored in plain. At most one key
-- is active (as identity_keys): hosts starting together on one database create one.
CREATE TABLE audit_checkpoint_keys (
    kid            TEXT   PRIMARY KEY,
    public_key     TEXT   NOT NULL,
    sealed_private BLOB   NOT NULL,
    created_at     BIGINT NOT NULL,
    active         BIGINT CHECK (active = 1)
);
CREATE UNIQUE INDEX audit_checkpoint_keys_one_active ON audit_checkpoint_keys (active);

-- A checkpoint: event `seq` of `tenant`'s chain had `hash` when key `kid` signed it at
-- `ts`; `signature` (hex) is over the domain `airlock-audit-checkpoint-v1` and those fields,
-- each length-prefixed. Like the trail, it outlives its tenant.
CREATE TABLE audit_checkpoints (
    tenant    TEXT   NOT NULL,
    seq       BIGINT NOT NULL,
    hash      TEXT   NOT NULL,
    ts        BIGINT NOT NULL,
    kid       TEXT   NOT NULL,
    signature TEXT   NOT NULL,
    PRIMARY KEY (tenant, seq)
);
