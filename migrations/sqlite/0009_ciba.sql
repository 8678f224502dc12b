-- OpenID CIBA: Airlock as the OpenID Provider of its own approvers.

-- Who can be asked: an approver by name, optionally known to an external issuer (iss + sub,
-- Auth0's login_hint format) and reachable on a device webhook.
CREATE TABLE ciba_approvers (
    tenant         TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    iss            TEXT,
    sub            TEXT,
    device_webhook TEXT,
    created_at     BIGINT  NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE UNIQUE INDEX ciba_approvers_by_subject ON ciba_approvers (tenant, iss, sub);

-- Registered CIBA clients; only a hash of each secret is kept.
CREATE TABLE ciba_clients (
    tenant                TEXT    NOT NULL,
    client_id             TEXT    NOT NULL,
    secret_hash           TEXT    NOT NULL,
    delivery_mode         TEXT    NOT NULL,
    notification_endpoint TEXT,
    enabled               BIGINT  NOT NULL DEFAULT 1,
    created_at            BIGINT  NOT NULL,
    PRIMARY KEY (tenant, client_id)
);

-- One backchannel authentication request: the approval it waits on, keyed by a hash of the
-- auth_req_id (never the id itself). Ping-mode rows keep the id and the client's
-- notification token sealed with the master key, to send the ping later.
CREATE TABLE ciba_requests (
    id_hash       TEXT    NOT NULL PRIMARY KEY,
    tenant        TEXT    NOT NULL,
    client_id     TEXT    NOT NULL,
    approval_id   TEXT    NOT NULL,
    approver      TEXT    NOT NULL,
    scope         TEXT    NOT NULL,
    delivery_mode TEXT    NOT NULL,
    ping_sealed   BLOB,
    interval_secs BIGINT  NOT NULL,
    last_poll_at  BIGINT,
    expires_at    BIGINT  NOT NULL,
    notified_at   BIGINT,
    created_at    BIGINT  NOT NULL
);
CREATE UNIQUE INDEX ciba_requests_by_approval ON ciba_requests (tenant, approval_id);
CREATE INDEX ciba_requests_by_expiry ON ciba_requests (expires_at);
