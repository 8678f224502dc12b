-- Browser sessions of people, and device-login requests of the CLI. Keep the sqlite and
-- postgres flavours in step.

-- A signed-in person (a passkey sign-in, or an invitation's passkey registration). The
-- cookie's secret is stored hashed; `csrf` must come back in `X-CSRF-Token` on every
-- state-changing request the browser makes. Idle and absolute expiry are enforced on use.
CREATE TABLE sessions (
    id_hash      TEXT    NOT NULL PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    member       TEXT    NOT NULL,
    csrf         TEXT    NOT NULL,
    via          TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    last_seen_at BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL
);
CREATE INDEX sessions_member ON sessions (tenant, member);

-- OAuth 2.0 device authorization (RFC 8628) for `airlock login`: the CLI holds the device
-- code (stored hashed), the person confirms the user code in their signed-in browser.
CREATE TABLE device_logins (
    device_hash  TEXT    NOT NULL PRIMARY KEY,
    user_code    TEXT    NOT NULL UNIQUE,
    tenant       TEXT,
    member       TEXT,
    status       TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    last_poll_at BIGINT
);
