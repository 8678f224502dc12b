-- Whether a connection's short-lived access token may be handed out (vault.token, token exchange).
ALTER TABLE connections ADD COLUMN expose_token BIGINT NOT NULL DEFAULT 0;
