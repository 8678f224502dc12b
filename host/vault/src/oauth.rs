//! OAuth2 access tokens for connections: refreshed by the host before they
//! expire, with rotated refresh tokens kept, and a clear "reconnect needed"
//! when the provider refuses the stored grant (kept as the connection's state,
//! `needs_reconnect`). An `oauth2_refresh` connection may also start with only
//! its client secret (`needs_connect`): Connect's authorization code, redeemed
//! by [`Vault::redeem_code`], brings its refresh token (`connected`).
//!
//! The token state (refresh token, client secret, current access token and
//! its expiry) is one sealed JSON value in the connection's row. A refresh
//! replaces it with a conditional UPDATE on the old sealed bytes, so two
//! refreshes never both win; in one process a per-connection lock keeps them
//! from racing at all (with rotating refresh tokens the loser's token would
//! already be spent).

use std::collections::HashMap;
use std::sync::Arc;

use airlock_store::{now_millis, sqlx};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::{Connection, ConnectionKind, ConnectionState, Vault, VaultError};

/// The sealed state of an OAuth2 connection.
#[derive(Serialize, Deserialize, Default)]
pub(crate) struct TokenState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl Drop for TokenState {
    fn drop(&mut self) {
        for s in [&mut self.refresh_token, &mut self.client_secret, &mut self.access_token].into_iter().flatten() {
            s.zeroize();
        }
    }
}

/// Checks what an admin supplies as the secret of OAuth2 connection `conn`; for
/// `oauth2_refresh`, the state it puts the connection in: connected with a refresh token, or
/// waiting for Connect (only where `oauth.authorize_url` says where to connect).
pub(crate) fn validate_initial(conn: &Connection, secret: &str) -> Result<Option<ConnectionState>, VaultError> {
    let state: TokenState = serde_json::from_str(secret).map_err(|_| {
        VaultError::InvalidConnection(
            "the secret of an OAuth2 connection is JSON: {\"refresh_token\": ..., \"client_secret\": ...}".into(),
        )
    })?;
    let connectable = conn.oauth.as_ref().is_some_and(|o| o.authorize_url.is_some());
    match conn.kind {
        ConnectionKind::Oauth2Refresh if state.refresh_token.is_some() => Ok(Some(ConnectionState::Connected)),
        ConnectionKind::Oauth2Refresh if connectable => Ok(Some(ConnectionState::NeedsConnect)),
        ConnectionKind::Oauth2Refresh => Err(VaultError::InvalidConnection(
            "an oauth2_refresh secret needs `refresh_token`, or set `oauth.authorize_url` and store only \
             `{\"client_secret\": ...}`: an admin then presses Connect"
                .into(),
        )),
        ConnectionKind::Oauth2ClientCredentials if state.client_secret.is_none() => {
            Err(VaultError::InvalidConnection("an oauth2_client_credentials secret needs `client_secret`".into()))
        }
        _ => Ok(None),
    }
}

/// How the host asks a token endpoint for an access token.
enum Grant<'a> {
    /// `refresh_token` (oauth2_refresh) or `client_credentials`, by the connection's kind.
    Renew,
    /// Connect: an authorization code, with the PKCE verifier and the redirect URI it was
    /// issued for.
    Code { code: &'a str, redirect_uri: &'a str, verifier: &'a str },
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// Per-connection locks so that one process refreshes a connection once at a time.
#[derive(Default)]
pub(crate) struct RefreshLocks(parking_lot::Mutex<HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>>);

impl Vault {
    /// A valid access token for an OAuth2 connection, refreshing it first when needed.
    pub(crate) async fn access_token(&self, tenant: &str, name: &str) -> Result<Zeroizing<String>, VaultError> {
        Ok(self.access_token_until(tenant, name).await?.0)
    }

    /// [`Vault::access_token`] with the unix millisecond time it stops being valid.
    pub(crate) async fn access_token_until(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<(Zeroizing<String>, i64), VaultError> {
        let lock = self.refresh_locks.0.lock().entry((tenant.to_string(), name.to_string())).or_default().clone();
        let _held = lock.lock().await;
        // Read under the lock: a refresh by the previous holder is seen.
        let (conn, sealed) = self.load_fresh(tenant, name).await?;
        let state = self.open_state(tenant, name, &sealed).await?;
        let margin = self.limits.refresh_margin.as_millis() as i64;
        if let (Some(token), Some(expires_at)) = (&state.access_token, state.expires_at) {
            if expires_at - margin > now_millis() {
                return Ok((Zeroizing::new(token.clone()), expires_at));
            }
        }
        if conn.kind == ConnectionKind::Oauth2Refresh && state.refresh_token.is_none() {
            return Err(VaultError::NotConnected(conn.name));
        }
        let fresh = match self.request_token(&conn, &state, Grant::Renew).await {
            Err(e @ VaultError::ReconnectNeeded { .. }) if conn.kind == ConnectionKind::Oauth2Refresh => {
                // Kept, so the admin sees it before a tool trips over it.
                self.set_state(tenant, name, &sealed, ConnectionState::NeedsReconnect).await?;
                return Err(e);
            }
            other => other?,
        };
        let token = Zeroizing::new(fresh.access_token.clone());
        let expires_at = now_millis().saturating_add(fresh.expires_in.unwrap_or(3600).clamp(0, 365 * 86_400) * 1000);
        let next = TokenState {
            // A provider that rotates sends a new refresh token; otherwise the old one stays valid.
            refresh_token: fresh.refresh_token.clone().or_else(|| state.refresh_token.clone()),
            client_secret: state.client_secret.clone(),
            access_token: Some(fresh.access_token.clone()),
            expires_at: Some(expires_at),
        };
        let plain = Zeroizing::new(serde_json::to_vec(&next).map_err(|e| VaultError::Transport(e.to_string()))?);
        let resealed = self.seal_secret(tenant, name, &plain).await?;
        let mut tx = self.write_tx(tenant).await?;
        let stored = sqlx::query(
            "UPDATE connections SET sealed_secret = $1, updated_at = $2, oauth_state = $6 \
             WHERE tenant = $3 AND name = $4 AND sealed_secret = $5",
        )
        .bind(resealed)
        .bind(now_millis())
        .bind(tenant)
        .bind(name)
        .bind(&sealed)
        .bind((conn.kind == ConnectionKind::Oauth2Refresh).then(|| ConnectionState::Connected.as_str().to_string()))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        self.written(tenant, Some(name)).await;
        if stored == 0 {
            let (_, current) = self.load_fresh(tenant, name).await?;
            let theirs = self.open_state(tenant, name, &current).await?;
            if theirs.refresh_token == state.refresh_token && theirs.access_token == state.access_token {
                // Only re-sealed meanwhile (a key rotation): the new tokens must not be lost.
                let resealed = self.seal_secret(tenant, name, &plain).await?;
                let mut tx = self.write_tx(tenant).await?;
                sqlx::query("UPDATE connections SET sealed_secret = $1, updated_at = $2 WHERE tenant = $3 AND name = $4 AND sealed_secret = $5")
                    .bind(resealed)
                    .bind(now_millis())
                    .bind(tenant)
                    .bind(name)
                    .bind(&current)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                self.written(tenant, Some(name)).await;
            } else if let Some(t) = &theirs.access_token {
                // Another host refreshed meanwhile: theirs wins.
                return Ok((Zeroizing::new(t.clone()), theirs.expires_at.unwrap_or(expires_at)));
            }
        }
        Ok((token, expires_at))
    }

    async fn open_state(&self, tenant: &str, name: &str, sealed: &[u8]) -> Result<TokenState, VaultError> {
        let plain = self.open_secret(tenant, name, sealed).await?;
        serde_json::from_slice(&plain).map_err(|_| VaultError::Unseal(name.to_string()))
    }

    /// Records where connection `name` stands, unless its secret changed since `sealed` was read.
    async fn set_state(
        &self,
        tenant: &str,
        name: &str,
        sealed: &[u8],
        state: ConnectionState,
    ) -> Result<(), VaultError> {
        let mut tx = self.write_tx(tenant).await?;
        sqlx::query("UPDATE connections SET oauth_state = $1 WHERE tenant = $2 AND name = $3 AND sealed_secret = $4")
            .bind(state.as_str())
            .bind(tenant)
            .bind(name)
            .bind(sealed)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.written(tenant, Some(name)).await;
        Ok(())
    }

    /// Connect's last step: redeems the authorization `code` the provider sent back for
    /// `oauth2_refresh` connection `name` (with the PKCE `verifier` and the `redirect_uri` it
    /// was issued for), and keeps the refresh token it brings beside the client secret. The
    /// caller has checked the state that says which connection this code is for.
    pub async fn redeem_code(
        &self,
        tenant: &str,
        name: &str,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<(), VaultError> {
        let lock = self.refresh_locks.0.lock().entry((tenant.to_string(), name.to_string())).or_default().clone();
        let _held = lock.lock().await;
        let (conn, sealed) = self.load_fresh(tenant, name).await?;
        if conn.kind != ConnectionKind::Oauth2Refresh {
            return Err(VaultError::InvalidConnection(format!("`{name}` is not an oauth2_refresh connection")));
        }
        let state = self.open_state(tenant, name, &sealed).await?;
        let fresh = match self.request_token(&conn, &state, Grant::Code { code, redirect_uri, verifier }).await {
            Err(VaultError::ReconnectNeeded { reason, .. }) => {
                return Err(VaultError::InvalidRequest(format!(
                    "the provider refused the authorization code for `{name}` ({reason}): connect again"
                )))
            }
            other => other?,
        };
        let Some(refresh_token) = fresh.refresh_token.clone() else {
            return Err(VaultError::InvalidConnection(format!(
                "the provider sent no refresh token for `{name}`: ask for offline access in its `scope` (e.g. \
                 `offline_access`) and let the client use the refresh_token grant"
            )));
        };
        let expires_in = fresh.expires_in.unwrap_or(3600).clamp(0, 365 * 86_400);
        let next = TokenState {
            refresh_token: Some(refresh_token),
            client_secret: state.client_secret.clone(),
            access_token: Some(fresh.access_token.clone()),
            expires_at: Some(now_millis().saturating_add(expires_in * 1000)),
        };
        let plain = Zeroizing::new(serde_json::to_vec(&next).map_err(|e| VaultError::Transport(e.to_string()))?);
        let resealed = self.seal_secret(tenant, name, &plain).await?;
        let mut tx = self.write_tx(tenant).await?;
        let stored = sqlx::query(
            "UPDATE connections SET sealed_secret = $1, updated_at = $2, oauth_state = $3 \
             WHERE tenant = $4 AND name = $5 AND sealed_secret = $6",
        )
        .bind(resealed)
        .bind(now_millis())
        .bind(ConnectionState::Connected.as_str())
        .bind(tenant)
        .bind(name)
        .bind(&sealed)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        self.written(tenant, Some(name)).await;
        if stored == 0 {
            return Err(VaultError::InvalidRequest(format!(
                "`{name}` changed while connecting (its secret was replaced or its key rotated): connect again"
            )));
        }
        Ok(())
    }

    async fn request_token(
        &self,
        conn: &Connection,
        state: &TokenState,
        grant: Grant<'_>,
    ) -> Result<TokenResponse, VaultError> {
        let oauth = conn
            .oauth
            .as_ref()
            .ok_or_else(|| VaultError::InvalidConnection(format!("`{}` has no oauth settings", conn.name)))?;
        let mut form: Vec<(&str, &str)> = vec![("client_id", oauth.client_id.as_str())];
        // A code carries the scope the person granted at the provider; a renewal asks for it.
        let scope = if matches!(grant, Grant::Renew) { oauth.scope.as_deref() } else { None };
        match (grant, conn.kind) {
            (Grant::Code { code, redirect_uri, verifier }, _) => {
                form.push(("grant_type", "authorization_code"));
                form.push(("code", code));
                form.push(("redirect_uri", redirect_uri));
                form.push(("code_verifier", verifier));
            }
            (Grant::Renew, ConnectionKind::Oauth2Refresh) => {
                form.push(("grant_type", "refresh_token"));
                form.push(("refresh_token", state.refresh_token.as_deref().unwrap_or_default()));
            }
            (Grant::Renew, _) => form.push(("grant_type", "client_credentials")),
        }
        if let Some(secret) = &state.client_secret {
            form.push(("client_secret", secret));
        }
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let http = if conn.allow_private_network { &self.http_private } else { &self.http };
        let resp = http
            .post(&oauth.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| VaultError::Transport(format!("token endpoint: {}", e.without_url())))?;
        let status = resp.status();
        if status == reqwest::StatusCode::BAD_REQUEST || status == reqwest::StatusCode::UNAUTHORIZED {
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let code = body.get("error").and_then(|e| e.as_str()).unwrap_or("refused");
            return Err(VaultError::ReconnectNeeded { connection: conn.name.clone(), reason: code.to_string() });
        }
        if !status.is_success() {
            return Err(VaultError::Transport(format!("token endpoint answered {status}")));
        }
        resp.json().await.map_err(|_| VaultError::Transport("token endpoint sent no token".into()))
    }
}
