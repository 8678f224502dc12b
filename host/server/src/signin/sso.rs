//! Single sign-on with a tenant's OpenID Connect provider: the authorization code flow with
//! PKCE (S256), state and nonce.
//!
//! `airlock tenant sso set --issuer URL --client-id ID` stores the provider (the client secret
//! sealed with the master key; the endpoints from its discovery document, whose issuer must be
//! the one given). A sign-in sends the browser to the provider with a fresh state, nonce and
//! PKCE challenge (kept by [`super::flow`], single use, ten minutes); the callback exchanges the code with
//! the verifier and has the ID token checked by [`airlock_identity::Identity::verify_id_token`]
//! against the provider's JWKS, issuer, audience (the client id), expiry and nonce. The
//! person is `user:` + the configured claim (`sub`, or a verified `email`).

use std::sync::Arc;

use airlock_identity::{ExternalIssuer, Identity};
use airlock_store::{now_millis, sqlx, Db};
use airlock_vault::MasterKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use super::flow::{self, Binding, Purpose};

/// What an admin configures.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SsoConfig {
    pub issuer: String,
    pub client_id: String,
    /// `sub` (default) or `email` (then only a verified email counts).
    #[serde(default = "default_claim")]
    pub subject_claim: String,
}

fn default_claim() -> String {
    "sub".into()
}

/// A stored provider, endpoints included.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(rename = "SsoProvider")]
pub struct Provider {
    #[serde(flatten)]
    pub config: SsoConfig,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

/// Failures, each saying what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotConfigured(String),
    #[error("{0}")]
    Refused(String),
    #[error("the identity provider: {0}")]
    Provider(String),
    #[error("sso store unavailable: {0}")]
    Store(#[from] sqlx::Error),
}

/// The tenants' providers and sign-ins in flight.
pub struct Sso {
    db: Db,
    sealer: Arc<MasterKey>,
    http: reqwest::Client,
}

/// Where the provider sends the browser back, for a host reached at `base`.
pub fn redirect_uri(base: &str) -> String {
    format!("{}/signin/sso/callback", base.trim_end_matches('/'))
}

/// A person the provider vouched for.
pub struct SignedIn {
    pub tenant: String,
    pub member: String,
    pub issuer: String,
    /// Where the browser goes once signed in: the path [`Sso::start`] was given (an MCP
    /// client's authorization request), else the console.
    pub next: String,
}

/// Whether `next` may follow a sign-in: only this host's authorization endpoint, so the
/// parameter cannot send a person anywhere else.
pub fn valid_next(next: &str) -> bool {
    next.starts_with("/oauth/authorize?") && next.len() <= 4096 && !next.contains(['\r', '\n', '\\'])
}

fn aad(tenant: &str) -> Vec<u8> {
    format!("airlock sso client secret {tenant}").into_bytes()
}

/// https, or http on loopback (a development provider).
fn check_url(what: &str, raw: &str) -> Result<url::Url, SsoError> {
    airlock_approvals::ciba::https_or_loopback(raw).map_err(|why| SsoError::Invalid(format!("{what} `{raw}` {why}")))
}

impl Sso {
    /// The sign-ins of a host.
    pub fn new(db: Db, sealer: Arc<MasterKey>) -> Result<Sso, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| format!("sso http client: {e}"))?;
        Ok(Sso { db, sealer, http })
    }

    /// Sets a tenant's provider: discovery must answer, for this very issuer.
    pub async fn put(&self, tenant: &str, config: &SsoConfig, secret: Zeroizing<String>) -> Result<Provider, SsoError> {
        check_url("issuer", &config.issuer)?;
        if config.client_id.trim().is_empty() || secret.is_empty() {
            return Err(SsoError::Invalid("`client_id` and the client secret are required".into()));
        }
        if config.subject_claim != "sub" && config.subject_claim != "email" {
            return Err(SsoError::Invalid(format!(
                "`subject_claim` is `sub` or `email`, not `{}`",
                config.subject_claim
            )));
        }
        let url = format!("{}/.well-known/openid-configuration", config.issuer.trim_end_matches('/'));
        let meta: Value = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| SsoError::Provider(format!("discovery at {url}: {e}")))?
            .json()
            .await
            .map_err(|e| SsoError::Provider(format!("discovery at {url} is not JSON: {e}")))?;
        let field = |name: &str| {
            meta.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| SsoError::Provider(format!("discovery at {url} has no `{name}`")))
        };
        if field("issuer")? != config.issuer {
            return Err(SsoError::Provider(format!(
                "discovery says the issuer is `{}`, not `{}`",
                field("issuer")?,
                config.issuer
            )));
        }
        let provider = Provider {
            config: config.clone(),
            authorization_endpoint: field("authorization_endpoint")?,
            token_endpoint: field("token_endpoint")?,
            jwks_uri: field("jwks_uri")?,
        };
        for (what, u) in [
            ("authorization_endpoint", &provider.authorization_endpoint),
            ("token_endpoint", &provider.token_endpoint),
            ("jwks_uri", &provider.jwks_uri),
        ] {
            check_url(what, u)?;
        }
        sqlx::query(
            "INSERT INTO sso_providers (tenant, issuer, client_id, secret_sealed, authorization_endpoint, token_endpoint, \
             jwks_uri, subject_claim, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (tenant) DO UPDATE SET issuer = excluded.issuer, client_id = excluded.client_id, \
             secret_sealed = excluded.secret_sealed, authorization_endpoint = excluded.authorization_endpoint, \
             token_endpoint = excluded.token_endpoint, jwks_uri = excluded.jwks_uri, \
             subject_claim = excluded.subject_claim, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(&config.issuer)
        .bind(&config.client_id)
        .bind(self.sealer.seal(&aad(tenant), secret.as_bytes()))
        .bind(&provider.authorization_endpoint)
        .bind(&provider.token_endpoint)
        .bind(&provider.jwks_uri)
        .bind(&config.subject_claim)
        .bind(now_millis())
        .execute(self.db.pool())
        .await?;
        Ok(provider)
    }

    /// A tenant's provider and its sealed secret.
    async fn load(&self, tenant: &str) -> Result<Option<(Provider, Vec<u8>)>, SsoError> {
        type Row = (String, String, Vec<u8>, String, String, String, String);
        let row: Option<Row> = sqlx::query_as(
            "SELECT issuer, client_id, secret_sealed, authorization_endpoint, token_endpoint, jwks_uri, subject_claim \
             FROM sso_providers WHERE tenant = $1",
        )
        .bind(tenant)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.map(|(issuer, client_id, sealed, authorization_endpoint, token_endpoint, jwks_uri, subject_claim)| {
            let config = SsoConfig { issuer, client_id, subject_claim };
            (Provider { config, authorization_endpoint, token_endpoint, jwks_uri }, sealed)
        }))
    }

    /// A tenant's provider, without its secret.
    pub async fn get(&self, tenant: &str) -> Result<Option<Provider>, SsoError> {
        Ok(self.load(tenant).await?.map(|(p, _)| p))
    }

    /// Removes a tenant's provider.
    pub async fn delete(&self, tenant: &str) -> Result<bool, SsoError> {
        let n = sqlx::query("DELETE FROM sso_providers WHERE tenant = $1").bind(tenant).execute(self.db.pool()).await?;
        Ok(n.rows_affected() > 0)
    }

    /// Starts a sign-in at `tenant`'s provider for a browser that reached this host at
    /// `base`: the URL to send the browser to.
    pub async fn start(&self, tenant: &str, base: &str, next: Option<&str>) -> Result<String, SsoError> {
        let redirect = redirect_uri(base);
        let (provider, _) = self.load(tenant).await?.ok_or_else(|| {
            SsoError::NotConfigured(format!(
                "tenant `{tenant}` has no single sign-on provider: an admin sets one (`airlock tenant sso set`)"
            ))
        })?;
        let next = match next.filter(|n| !n.is_empty()) {
            Some(n) if valid_next(n) => n.to_string(),
            Some(_) => return Err(SsoError::Invalid("`next` may only be this host's `/oauth/authorize?...`".into())),
            None => String::new(),
        };
        let binding = Binding {
            tenant: tenant.to_string(),
            // A sign-in's target is where to go after it.
            target: next,
            member: String::new(),
            redirect_uri: redirect,
        };
        let started = flow::start(&self.db, Purpose::SignIn, &binding).await?;
        let url = flow::authorize_url(
            &provider.authorization_endpoint,
            &provider.config.client_id,
            &binding.redirect_uri,
            Some("openid email profile"),
            &started,
            true,
        )
        .map_err(|e| SsoError::Provider(format!("authorization endpoint: {e}")))?;
        Ok(url.to_string())
    }

    /// Finishes a sign-in: the state must be one this host started (once), the code is
    /// exchanged with the PKCE verifier, and the ID token must verify.
    pub async fn finish(&self, identity: &Identity, state: &str, code: &str) -> Result<SignedIn, SsoError> {
        let flow = flow::take(&self.db, Purpose::SignIn, state).await?.ok_or_else(|| {
            SsoError::Refused(
                "this sign-in is unknown, used or expired (the `state` does not match): sign in again".into(),
            )
        })?;
        let (tenant, nonce, verifier, redirect, next) =
            (flow.binding.tenant, flow.nonce, flow.verifier, flow.binding.redirect_uri, flow.binding.target);
        let (provider, sealed) =
            self.load(&tenant).await?.ok_or_else(|| SsoError::NotConfigured("the provider was removed".into()))?;
        let secret = Zeroizing::new(
            String::from_utf8(self.sealer.open(&aad(&tenant), &sealed).map_err(|()| {
                SsoError::NotConfigured(
                    "the client secret does not open (master key replaced? set the provider again)".into(),
                )
            })?)
            .map_err(|_| SsoError::NotConfigured("the client secret is not text".into()))?,
        );
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", verifier.as_str()),
        ];
        let resp = self
            .http
            .post(&provider.token_endpoint)
            .basic_auth(&provider.config.client_id, Some(secret.as_str()))
            .form(&form)
            .send()
            .await
            .map_err(|e| SsoError::Provider(format!("token endpoint: {e}")))?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| SsoError::Provider(format!("token response: {e}")))?;
        if !status.is_success() {
            return Err(SsoError::Refused(format!(
                "the provider refused the code: {} {}",
                body["error"].as_str().unwrap_or("?"),
                body["error_description"].as_str().unwrap_or("")
            )));
        }
        let id_token = body["id_token"]
            .as_str()
            .ok_or_else(|| SsoError::Provider("no `id_token` in the token response".into()))?;
        let mut expected =
            ExternalIssuer::new(&tenant, &provider.config.issuer, &provider.config.client_id, &provider.jwks_uri);
        expected.subject_claim = provider.config.subject_claim.clone();
        let verified = identity
            .verify_id_token(id_token, &expected, &nonce, None)
            .await
            .map_err(|e| SsoError::Refused(format!("the ID token is refused: {e}")))?;
        if provider.config.subject_claim == "email" && !verified.email_verified {
            return Err(SsoError::Refused("the provider has not verified this email".into()));
        }
        crate::tenancy::validate_member(&format!("user:{}", verified.subject))
            .map_err(|e| SsoError::Refused(format!("the provider's subject cannot name a member: {e}")))?;
        let next = if valid_next(&next) { next } else { "/console".to_string() };
        Ok(SignedIn { tenant, member: format!("user:{}", verified.subject), issuer: provider.config.issuer, next })
    }
}
