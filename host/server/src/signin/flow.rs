//! The authorization code flows this host starts at a provider and finishes at its callback:
//! single sign-on ([`super::sso`]) and an OAuth2 connection's Connect ([`crate::connect`]).
//!
//! One place makes what such a flow needs: a fresh `state` (random, single use, ten minutes,
//! stored hashed), a nonce, and the PKCE (S256) verifier whose challenge goes to the
//! provider; it keeps them bound to what the flow is for (its purpose, tenant, target and the
//! member who started it) and hands them back once, to the callback that names the state.

use airlock_store::{now_millis, sqlx, Db};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::tenancy::{digest, secret};

/// How long a flow may stay at the provider.
pub const FLOW_TTL_MS: i64 = 10 * 60 * 1000;

/// What a flow is for: a state started for one never finishes the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A person signing in ([`super::sso`]).
    SignIn,
    /// An admin connecting an `oauth2_refresh` connection ([`crate::connect`]).
    Connect,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::SignIn => "sso",
            Purpose::Connect => "connect",
        }
    }
}

/// What a flow is bound to, kept server side until its callback.
#[derive(Debug, Clone)]
pub struct Binding {
    pub tenant: String,
    /// The connection being connected (`AGENT/NAME` in an agent's namespace); empty for a sign-in.
    pub target: String,
    /// The member who started it; empty for a sign-in.
    pub member: String,
    /// Where the provider sends the browser back (the token request must name it again).
    pub redirect_uri: String,
}

/// A flow just started: what goes into the provider's authorization URL.
pub struct Started {
    pub state: String,
    pub nonce: String,
    /// `BASE64URL(SHA256(verifier))`.
    pub challenge: String,
}

/// A flow taken back by its callback.
pub struct Flow {
    pub binding: Binding,
    pub nonce: String,
    pub verifier: String,
}

/// Starts a flow for `purpose` bound to `binding` (and clears expired ones).
pub async fn start(db: &Db, purpose: Purpose, binding: &Binding) -> Result<Started, sqlx::Error> {
    let (state, nonce, verifier) = (secret(""), secret(""), secret(""));
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let now = now_millis();
    sqlx::query("DELETE FROM authorization_flows WHERE expires_at < $1").bind(now).execute(db.pool()).await?;
    sqlx::query(
        "INSERT INTO authorization_flows (state_hash, purpose, tenant, target, member, nonce, verifier, redirect_uri, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(digest(&state))
    .bind(purpose.as_str())
    .bind(&binding.tenant)
    .bind(&binding.target)
    .bind(&binding.member)
    .bind(&nonce)
    .bind(&verifier)
    .bind(&binding.redirect_uri)
    .bind(now)
    .bind(now + FLOW_TTL_MS)
    .execute(db.pool())
    .await?;
    Ok(Started { state, nonce, challenge })
}

/// Takes back the flow of `state` for `purpose`: once, and only before it expires; `None` for
/// a state this host never issued, already used, expired, or issued for the other purpose.
pub async fn take(db: &Db, purpose: Purpose, state: &str) -> Result<Option<Flow>, sqlx::Error> {
    let row: Option<(String, String, String, String, String, String)> = sqlx::query_as(
        "DELETE FROM authorization_flows WHERE state_hash = $1 AND purpose = $2 AND expires_at > $3 \
         RETURNING tenant, target, member, nonce, verifier, redirect_uri",
    )
    .bind(digest(state))
    .bind(purpose.as_str())
    .bind(now_millis())
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|(tenant, target, member, nonce, verifier, redirect_uri)| Flow {
        binding: Binding { tenant, target, member, redirect_uri },
        nonce,
        verifier,
    }))
}

/// The provider's authorization URL for a started flow: the code flow with PKCE (S256), the
/// nonce when `with_nonce` (OpenID sign-in), and `prompt=consent` when the scope asks for
/// `offline_access` (providers issue the refresh token it stands for only after consent).
pub fn authorize_url(
    endpoint: &str,
    client_id: &str,
    redirect_uri: &str,
    scope: Option<&str>,
    started: &Started,
    with_nonce: bool,
) -> Result<url::Url, url::ParseError> {
    let mut url = url::Url::parse(endpoint)?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri);
        if let Some(scope) = scope.filter(|s| !s.trim().is_empty()) {
            q.append_pair("scope", scope);
            if scope.split_whitespace().any(|s| s == "offline_access") {
                q.append_pair("prompt", "consent");
            }
        }
        q.append_pair("state", &started.state);
        if with_nonce {
            q.append_pair("nonce", &started.nonce);
        }
        q.append_pair("code_challenge", &started.challenge).append_pair("code_challenge_method", "S256");
    }
    Ok(url)
}
