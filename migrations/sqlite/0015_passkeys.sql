-- Passkeys, the ceremonies that make and use them, and the proofs of approvals decided with
-- one. Keep the sqlite and postgres flavours in step.

-- A member's registered passkeys (webauthn-rs `Passkey`, JSON: credential id, public key,
-- counter). `registered_via` says how the member proved who they were to register it (the
-- invitation and who created it), so a proof can name it.
CREATE TABLE passkeys (
    cred_id        TEXT    NOT NULL PRIMARY KEY,
    tenant         TEXT    NOT NULL,
    member         TEXT    NOT NULL,
    passkey        TEXT    NOT NULL,
    registered_via TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    last_used_at   BIGINT
);
CREATE INDEX passkeys_member ON passkeys (tenant, member);

-- A WebAuthn ceremony in progress (registration or step-up): the library's state, and for a
-- step-up the approval and the action digest its challenge commits to. Single use.
CREATE TABLE webauthn_ceremonies (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    member      TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    approval_id TEXT,
    binding     TEXT,
    via         TEXT,
    expires_at  BIGINT  NOT NULL
);

-- The proof of an approval decided with step-up: the action, the nonce, the passkey as it was
-- registered and the assertion, enough to verify offline without this database.
CREATE TABLE approval_proofs (
    tenant      TEXT    NOT NULL,
    approval_id TEXT    NOT NULL,
    proof       TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant, approval_id)
);
