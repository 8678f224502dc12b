-- OAuth2 connections: where to get access tokens (not secret; the tokens are in sealed_secret).
ALTER TABLE connections ADD COLUMN oauth TEXT;
