-- OAuth2 connections: where to get access tokens (not secret; the tokens are in sealed_secret).
ALTER TABLE connections ADD COLUMN oauth TEXT;
-- Whether a connection may reach loopback or private addresses through a host name.
ALTER TABLE connections ADD COLUMN allow_private BIGINT NOT NULL DEFAULT 0;
