//! Connect: an `oauth2_refresh` connection gets its refresh token through the provider's
//! authorization code flow, so a tenant admin never pastes one.
//!
//! The admin stores the connection with `oauth.authorize_url` and only its client secret
//! (state `needs_connect`), then presses Connect (`POST /v1/connections/{name}/connect`):
//! [`start`] keeps a fresh state and PKCE verifier bound to the tenant, the connection and the
//! member ([`crate::signin::flow`], single use, ten minutes) and answers the provider's
//! authorization URL. The provider sends the browser back to `PUBLIC_URL/oauth/connect/callback`
//! with a code; the state says which connection it is for ([`take`]), and [`redeem`] has the
//! vault exchange the code (client secret, verifier, redirect URI) and keep the refresh token
//! beside the client secret (state `connected`). The host calls only URLs that pass
//! [`airlock_approvals::ciba::https_or_loopback`].

use airlock_store::sqlx;
use airlock_vault::{Connection, ConnectionKind, OAuthConfig, VaultError};

use crate::signin::flow::{self, Binding, Flow, Purpose};
use crate::Airlock;

/// Where the provider sends the browser back, for a host reached at `base`: the redirect URI
/// to register with the provider's client.
pub fn redirect_uri(base: &str) -> String {
    format!("{}/oauth/connect/callback", base.trim_end_matches('/'))
}

/// Failures, each saying what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The connection cannot be connected as it is set up.
    #[error("{0}")]
    Invalid(String),
    /// The callback's state is unknown, used or expired.
    #[error("{0}")]
    UnknownState(String),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("connect store unavailable: {0}")]
    Store(#[from] sqlx::Error),
}

/// The OAuth settings of `conn` if it can be connected: an `oauth2_refresh` connection with an
/// authorization URL, both of whose provider URLs are https (or http on loopback).
fn connectable(conn: &Connection) -> Result<(&OAuthConfig, &str), ConnectError> {
    let name = &conn.name;
    if conn.kind != ConnectionKind::Oauth2Refresh {
        return Err(ConnectError::Invalid(format!(
            "`{name}` is a `{}` connection: only `oauth2_refresh` connects through its provider",
            conn.kind.as_str()
        )));
    }
    let oauth = conn.oauth.as_ref().ok_or_else(|| ConnectError::Invalid(format!("`{name}` has no `oauth`")))?;
    let authorize = oauth.authorize_url.as_deref().ok_or_else(|| {
        ConnectError::Invalid(format!(
            "`{name}` has no `oauth.authorize_url`: set the provider's authorization endpoint to connect it"
        ))
    })?;
    for (what, url) in [("authorize_url", authorize), ("token_url", oauth.token_url.as_str())] {
        airlock_approvals::ciba::https_or_loopback(url)
            .map_err(|why| ConnectError::Invalid(format!("`{name}`'s {what} `{url}` {why}")))?;
    }
    Ok((oauth, authorize))
}

/// Starts connecting `name` (the stored name: `AGENT/NAME` in an agent's namespace) of
/// `tenant` for `member`, on a host reached at `base`: the URL to send the browser to.
pub async fn start(host: &Airlock, tenant: &str, name: &str, member: &str, base: &str) -> Result<String, ConnectError> {
    let conn = host.vault.get(tenant, name).await?;
    let (oauth, authorize) = connectable(&conn)?;
    let binding = Binding {
        tenant: tenant.to_string(),
        target: name.to_string(),
        member: member.to_string(),
        redirect_uri: redirect_uri(base),
    };
    let started = flow::start(&host.db, Purpose::Connect, &binding).await?;
    let url = flow::authorize_url(
        authorize,
        &oauth.client_id,
        &binding.redirect_uri,
        oauth.scope.as_deref(),
        &started,
        false,
    )
    .map_err(|e| ConnectError::Invalid(format!("`{name}`'s authorize_url: {e}")))?;
    Ok(url.to_string())
}

/// Takes back the flow the callback's `state` names: once, within ten minutes, and only one
/// this host started for Connect.
pub async fn take(host: &Airlock, state: &str) -> Result<Flow, ConnectError> {
    flow::take(&host.db, Purpose::Connect, state).await?.ok_or_else(|| {
        ConnectError::UnknownState(
            "this Connect is unknown, used or expired (the `state` does not match): nothing was stored; press Connect again"
                .into(),
        )
    })
}

/// Redeems the provider's `code` for the connection `flow` is bound to: the vault keeps the
/// refresh token it brings.
pub async fn redeem(host: &Airlock, flow: &Flow, code: &str) -> Result<(), ConnectError> {
    let b = &flow.binding;
    // Checked again: the connection may have changed since Connect was pressed.
    let conn = host.vault.get(&b.tenant, &b.target).await?;
    connectable(&conn)?;
    host.vault.redeem_code(&b.tenant, &b.target, code, &b.redirect_uri, &flow.verifier).await?;
    Ok(())
}
