-- "Connect" for OAuth2 connections, and one store for every authorization code flow this
-- host starts at a provider. Keep the sqlite and postgres flavours in step.

-- A flow on its way through a provider: single sign-on (`purpose` `sso`) or an OAuth2
-- connection's Connect (`connect`, bound to the connection in `target` and the member who
-- started it). The state is stored hashed; the PKCE verifier and (for sign-in) the nonce the
-- ID token must carry. Single use, short lived. It replaces `sso_logins` (sign-ins in flight
-- when a host upgrades are started again).
CREATE TABLE authorization_flows (
    state_hash   TEXT    NOT NULL PRIMARY KEY,
    purpose      TEXT    NOT NULL,
    tenant       TEXT    NOT NULL,
    target       TEXT    NOT NULL,
    member       TEXT    NOT NULL,
    nonce        TEXT    NOT NULL,
    verifier     TEXT    NOT NULL,
    redirect_uri TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL
);
DROP TABLE sso_logins;

-- An oauth2_refresh connection's state: `needs_connect` (a client secret, no refresh token
-- yet), `connected`, or `needs_reconnect` (the provider refused the stored grant). NULL for
-- the other kinds.
ALTER TABLE connections ADD COLUMN oauth_state TEXT;
UPDATE connections SET oauth_state = 'connected' WHERE kind = 'oauth2_refresh';
