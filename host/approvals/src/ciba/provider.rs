//! The provider side: backchannel authentication requests, the token endpoint's CIBA grant,
//! pings, and discovery metadata.

use std::sync::Arc;
use std::time::Duration;

use airlock_store::{now_millis, sqlx, Db};
use serde::{Deserialize, Serialize};

use super::minter::random_token;
use super::notify::{self, DeviceNotice};
use super::registry::hash;
use super::{
    Approver, CibaError, ClientReg, DeliveryMode, MintRequest, OpaqueMinter, Sealer, TokenMinter, TokenResponse,
    GRANT_TYPE,
};
use crate::{Approval, ApprovalError, Approvals, NewApproval, Status};

/// Path of the backchannel authentication endpoint below the issuer URL (what discovery announces).
pub const BACKCHANNEL_PATH: &str = "/ciba/backchannel";
/// Path of the token endpoint below the issuer URL.
pub const TOKEN_PATH: &str = "/oauth/token";

/// The `tool` and `action` a CIBA request's approval is recorded under.
const TOOL: &str = "ciba";
const ACTION: &str = "authenticate";
/// How much `slow_down` adds to a client's interval (CIBA Core 11 via RFC 8628 3.5).
const SLOW_DOWN_STEP: u64 = 5;
const NOTIFICATION_TOKEN_MAX: usize = 1024;

/// Tunables of the provider.
#[derive(Debug, Clone)]
pub struct CibaConfig {
    /// Seconds a client waits between polls (`interval`).
    pub interval: u64,
    /// Seconds a request lives when the client sends no `requested_expiry`.
    pub default_expiry: u64,
    /// Largest `requested_expiry` accepted.
    pub max_expiry: u64,
    /// Longest binding message, in characters (it must fit an approver's screen).
    pub max_binding_message: usize,
    /// How long a ping or device webhook may take.
    pub notify_timeout: Duration,
}

impl Default for CibaConfig {
    fn default() -> Self {
        CibaConfig {
            interval: 5,
            default_expiry: 600,
            max_expiry: 86_400,
            max_binding_message: 256,
            notify_timeout: Duration::from_secs(10),
        }
    }
}

/// A backchannel authentication request's parameters (CIBA Core 7.1), as strings so the
/// handler can deserialize the form without judging it: the provider does.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthRequest {
    pub scope: Option<String>,
    pub login_hint: Option<String>,
    pub login_hint_token: Option<String>,
    pub id_token_hint: Option<String>,
    pub binding_message: Option<String>,
    pub requested_expiry: Option<String>,
    /// Not supported (discovery says so); ignored.
    pub user_code: Option<String>,
    /// Required of ping-mode clients: the bearer token the ping carries.
    pub client_notification_token: Option<String>,
}

/// The successful backchannel authentication response (CIBA Core 7.3).
#[derive(Debug, Clone, Serialize)]
pub struct AuthResponse {
    pub auth_req_id: String,
    pub expires_in: u64,
    pub interval: u64,
    /// The approval this request waits on (for the server's audit, not sent to the client).
    #[serde(skip)]
    pub approval_id: String,
}

/// Airlock as an OpenID Provider with CIBA, over the database and the approvals engine.
pub struct CibaProvider {
    pub(super) db: Db,
    approvals: Arc<Approvals>,
    sealer: Arc<dyn Sealer>,
    minter: Arc<dyn TokenMinter>,
    config: CibaConfig,
    http: reqwest::Client,
}

type RequestRow = (String, String, String, String, String, i64, Option<i64>, i64);
const REQUEST_COLUMNS: &str =
    "tenant, client_id, approval_id, approver, scope, interval_secs, last_poll_at, expires_at";

struct Request {
    client_id: String,
    approval_id: String,
    approver: String,
    scope: String,
    interval: u64,
    last_poll_at: Option<i64>,
    expires_at: i64,
}

fn request_from_row(r: RequestRow) -> Request {
    Request {
        client_id: r.1,
        approval_id: r.2,
        approver: r.3,
        scope: r.4,
        interval: r.5.max(0) as u64,
        last_poll_at: r.6,
        expires_at: r.7,
    }
}

/// What a ping needs later, sealed at rest.
#[derive(Serialize, Deserialize)]
struct PingSecret {
    auth_req_id: String,
    token: String,
}

fn ping_aad(id_hash: &str) -> Vec<u8> {
    format!("airlock ciba ping {id_hash}").into_bytes()
}

fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// `login_hint`: an approver's name, or Auth0's `{"format":"iss_sub","iss":...,"sub":...}`.
enum LoginHint {
    Name(String),
    IssSub { iss: String, sub: String },
}

fn parse_login_hint(hint: &str) -> Result<LoginHint, CibaError> {
    if !hint.trim_start().starts_with('{') {
        return Ok(LoginHint::Name(hint.to_string()));
    }
    #[derive(Deserialize)]
    struct Structured {
        format: String,
        iss: Option<String>,
        sub: Option<String>,
    }
    let bad = || CibaError::InvalidRequest(format!("`login_hint` `{hint}` is neither a name nor an iss_sub object"));
    let s: Structured = serde_json::from_str(hint).map_err(|_| bad())?;
    match (s.format.as_str(), s.iss, s.sub) {
        ("iss_sub", Some(iss), Some(sub)) => Ok(LoginHint::IssSub { iss, sub }),
        _ => Err(bad()),
    }
}

impl CibaProvider {
    /// A provider with opaque tokens and default tunables. `sealer` keeps ping secrets at rest
    /// (the vault's `MasterKey` implements it).
    pub fn new(db: Db, approvals: Arc<Approvals>, sealer: Arc<dyn Sealer>) -> Result<CibaProvider, CibaError> {
        let config = CibaConfig::default();
        let http = Self::http_client(&config)?;
        Ok(CibaProvider { db, approvals, sealer, minter: Arc::new(OpaqueMinter::default()), config, http })
    }

    /// Issues tokens with `minter` (the identity crate's JWTs) instead of opaque ones.
    pub fn with_minter(mut self, minter: Arc<dyn TokenMinter>) -> CibaProvider {
        self.minter = minter;
        self
    }

    /// Replaces the tunables.
    pub fn with_config(mut self, config: CibaConfig) -> Result<CibaProvider, CibaError> {
        self.http = Self::http_client(&config)?;
        self.config = config;
        Ok(self)
    }

    fn http_client(config: &CibaConfig) -> Result<reqwest::Client, CibaError> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.notify_timeout)
            .build()
            .map_err(|e| CibaError::Notify { url: String::new(), reason: e.to_string() })
    }

    /// The approvals engine the requests wait on.
    pub fn approvals(&self) -> &Arc<Approvals> {
        &self.approvals
    }

    /// Discovery metadata (OpenID Discovery plus CIBA Core 4) for an issuer at `base_url`
    /// (which may carry a tenant path); the server serves it at `/.well-known/openid-configuration`.
    pub fn discovery(base_url: &str) -> serde_json::Value {
        let issuer = base_url.trim_end_matches('/');
        serde_json::json!({
            "issuer": issuer,
            "backchannel_authentication_endpoint": format!("{issuer}{BACKCHANNEL_PATH}"),
            "token_endpoint": format!("{issuer}{TOKEN_PATH}"),
            "backchannel_token_delivery_modes_supported": ["poll", "ping"],
            "backchannel_user_code_parameter_supported": false,
            "grant_types_supported": [GRANT_TYPE],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid"],
            "subject_types_supported": ["public"],
            "response_types_supported": [],
        })
    }

    /// Refuses any grant type other than CIBA's, for the token endpoint handler.
    pub fn check_grant_type(grant_type: &str) -> Result<(), CibaError> {
        if grant_type == GRANT_TYPE {
            Ok(())
        } else {
            Err(CibaError::UnsupportedGrantType(grant_type.to_string()))
        }
    }

    /// Handles a backchannel authentication request of an authenticated `client`: validates it,
    /// finds the approver, records a pending approval only that approver may decide, tells the
    /// approver's device, and returns the `auth_req_id` (stored only as a hash).
    pub async fn backchannel_authorize(
        &self,
        tenant: &str,
        client: &ClientReg,
        req: AuthRequest,
    ) -> Result<AuthResponse, CibaError> {
        if !client.enabled {
            return Err(CibaError::UnauthorizedClient(client.client_id.clone()));
        }
        let scope = present(&req.scope).ok_or_else(|| CibaError::InvalidRequest("`scope` is required".into()))?;
        if !scope.split_whitespace().any(|s| s == "openid") {
            return Err(CibaError::InvalidScope(format!("`{scope}` does not contain `openid`")));
        }
        let expiry = self.expiry(req.requested_expiry.as_deref())?;
        let binding_message = self.binding_message(req.binding_message.as_deref())?;
        let notification_token = match client.delivery_mode {
            DeliveryMode::Ping => Some(notification_token(req.client_notification_token.as_deref())?),
            DeliveryMode::Poll => None,
        };
        let approver = self.resolve_hint(tenant, &req).await?;

        let note = match binding_message {
            Some(m) => m.to_string(),
            None => format!("`{}` asks you to approve a sign-in ({scope})", client.client_id),
        };
        let details = serde_json::json!({
            "client_id": client.client_id, "scope": scope, "binding_message": binding_message, "approver": approver.name,
        });
        let approval = self
            .approvals
            .create(
                tenant,
                NewApproval {
                    agent: agent_of(&client.client_id),
                    tool: TOOL.into(),
                    call_id: None,
                    action: ACTION.into(),
                    note,
                    role: Some(approver.name.clone()),
                    details: details.to_string(),
                    ttl: Some(Duration::from_secs(expiry)),
                },
            )
            .await?;

        let auth_req_id = random_token();
        let id_hash = hash(&auth_req_id);
        let ping_sealed = match notification_token {
            Some(token) => {
                let secret = serde_json::to_vec(&PingSecret { auth_req_id: auth_req_id.clone(), token })
                    .map_err(|e| CibaError::Mint(e.to_string()))?;
                Some(self.sealer.seal(&ping_aad(&id_hash), &secret))
            }
            None => None,
        };
        sqlx::query(
            "INSERT INTO ciba_requests (id_hash, tenant, client_id, approval_id, approver, scope, delivery_mode, ping_sealed, \
             interval_secs, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&id_hash)
        .bind(tenant)
        .bind(&client.client_id)
        .bind(&approval.id)
        .bind(&approver.name)
        .bind(scope)
        .bind(client.delivery_mode.as_str())
        .bind(ping_sealed)
        .bind(self.config.interval as i64)
        .bind(approval.expires_at)
        .bind(now_millis())
        .execute(self.db.pool())
        .await?;

        if let Some(url) = approver.device_webhook.clone() {
            self.tell_device(url, &approver, client, scope, binding_message, &approval);
        }
        Ok(AuthResponse { auth_req_id, expires_in: expiry, interval: self.config.interval, approval_id: approval.id })
    }

    fn expiry(&self, requested: Option<&str>) -> Result<u64, CibaError> {
        let Some(raw) = requested.filter(|s| !s.is_empty()) else {
            return Ok(self.config.default_expiry.min(self.config.max_expiry));
        };
        match raw.trim().parse::<u64>() {
            Ok(n) if (1..=self.config.max_expiry).contains(&n) => Ok(n),
            _ => Err(CibaError::InvalidRequest(format!(
                "`requested_expiry` `{raw}` must be a whole number of seconds from 1 to {}",
                self.config.max_expiry
            ))),
        }
    }

    fn binding_message<'a>(&self, message: Option<&'a str>) -> Result<Option<&'a str>, CibaError> {
        let Some(m) = message else { return Ok(None) };
        if m.trim().is_empty() {
            return Err(CibaError::InvalidBindingMessage("`binding_message` is empty".into()));
        }
        if m.chars().count() > self.config.max_binding_message {
            return Err(CibaError::InvalidBindingMessage(format!(
                "`binding_message` is longer than {} characters",
                self.config.max_binding_message
            )));
        }
        if m.chars().any(char::is_control) {
            return Err(CibaError::InvalidBindingMessage("`binding_message` contains control characters".into()));
        }
        Ok(Some(m))
    }

    /// Exactly one hint, resolved to a registered approver.
    async fn resolve_hint(&self, tenant: &str, req: &AuthRequest) -> Result<Approver, CibaError> {
        let hints = [present(&req.login_hint), present(&req.login_hint_token), present(&req.id_token_hint)];
        if hints.iter().flatten().count() != 1 {
            return Err(CibaError::InvalidRequest(
                "exactly one of `login_hint`, `login_hint_token` and `id_token_hint` is required".into(),
            ));
        }
        if let Some(hint) = present(&req.login_hint) {
            let found = match parse_login_hint(hint)? {
                LoginHint::Name(name) => match self.approver(tenant, &name).await {
                    Ok(a) => Some(a),
                    Err(CibaError::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                },
                LoginHint::IssSub { iss, sub } => self.approver_by_subject(tenant, &iss, &sub).await?,
            };
            return found.ok_or_else(|| CibaError::UnknownUserId(format!("no approver `{hint}`")));
        }
        if let Some(token) = present(&req.id_token_hint) {
            let name = self
                .minter
                .approver_of_id_token(tenant, token)
                .await
                .ok_or_else(|| CibaError::UnknownUserId("the `id_token_hint` names no approver".into()))?;
            return match self.approver(tenant, &name).await {
                Err(CibaError::NotFound { .. }) => Err(CibaError::UnknownUserId(format!("no approver `{name}`"))),
                other => other,
            };
        }
        Err(CibaError::InvalidRequest("`login_hint_token` is not supported: use `login_hint`".into()))
    }

    fn tell_device(
        &self,
        url: String,
        approver: &Approver,
        client: &ClientReg,
        scope: &str,
        binding_message: Option<&str>,
        approval: &Approval,
    ) {
        let notice = DeviceNotice {
            approval_id: approval.id.clone(),
            approver: approver.name.clone(),
            client_id: client.client_id.clone(),
            scope: scope.to_string(),
            binding_message: binding_message.map(str::to_string),
            tool: TOOL,
            action: ACTION,
            expires_at: approval.expires_at,
        };
        let http = self.http.clone();
        // The client's answer does not wait on the approver's device.
        tokio::spawn(async move {
            if let Err(e) = notify::device(&http, &url, &notice).await {
                tracing::warn!(error = %e, "approver device webhook failed");
            }
        });
    }

    async fn request(&self, tenant: &str, auth_req_id: &str) -> Result<Option<(String, Request)>, CibaError> {
        let id_hash = hash(auth_req_id);
        let row: Option<RequestRow> =
            sqlx::query_as(&format!("SELECT {REQUEST_COLUMNS} FROM ciba_requests WHERE tenant = $1 AND id_hash = $2"))
                .bind(tenant)
                .bind(&id_hash)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(|r| (id_hash, request_from_row(r))))
    }

    /// The token endpoint's CIBA grant for an authenticated `client`: the tokens once the
    /// approver approved, else the error the client must act on (`authorization_pending`,
    /// `slow_down`, `expired_token`, `access_denied`, `invalid_grant`). Tokens are issued once.
    pub async fn poll(&self, tenant: &str, client: &ClientReg, auth_req_id: &str) -> Result<TokenResponse, CibaError> {
        let Some((id_hash, req)) = self.request(tenant, auth_req_id).await? else {
            return Err(CibaError::InvalidGrant);
        };
        if req.client_id != client.client_id {
            return Err(CibaError::InvalidGrant);
        }
        if !client.enabled {
            return Err(CibaError::UnauthorizedClient(client.client_id.clone()));
        }
        let approval = match self.approvals.get(tenant, &req.approval_id).await {
            Ok(a) => a,
            Err(ApprovalError::NotFound(_)) => return Err(CibaError::InvalidGrant),
            Err(e) => return Err(e.into()),
        };
        let now = now_millis();
        match approval.status {
            Status::Denied => Err(CibaError::AccessDenied),
            Status::Consumed => Err(CibaError::InvalidGrant),
            Status::Expired => Err(CibaError::ExpiredToken),
            _ if now >= req.expires_at => Err(CibaError::ExpiredToken),
            Status::Pending => self.pace(&id_hash, &req, now).await,
            Status::Approved => self.redeem(tenant, client, &req).await,
        }
    }

    /// `slow_down` (and a longer interval) for a poll that comes too soon, else `authorization_pending`.
    async fn pace(&self, id_hash: &str, req: &Request, now: i64) -> Result<TokenResponse, CibaError> {
        let too_soon = req.last_poll_at.is_some_and(|last| now - last < (req.interval as i64) * 1000);
        let interval = if too_soon { req.interval + SLOW_DOWN_STEP } else { req.interval };
        sqlx::query("UPDATE ciba_requests SET last_poll_at = $1, interval_secs = $2 WHERE id_hash = $3")
            .bind(now)
            .bind(interval as i64)
            .bind(id_hash)
            .execute(self.db.pool())
            .await?;
        if too_soon {
            Err(CibaError::SlowDown { interval })
        } else {
            Err(CibaError::AuthorizationPending)
        }
    }

    /// Spends the approval (exactly once, atomically) and mints the tokens.
    async fn redeem(&self, tenant: &str, client: &ClientReg, req: &Request) -> Result<TokenResponse, CibaError> {
        match self.approvals.consume(tenant, &req.approval_id, &agent_of(&client.client_id), TOOL, "").await {
            Ok(_) => {}
            Err(ApprovalError::GrantUnusable(_)) => return Err(CibaError::InvalidGrant),
            Err(e) => return Err(e.into()),
        }
        let minted = self
            .minter
            .mint(MintRequest {
                tenant,
                approver: &req.approver,
                client_id: &client.client_id,
                approval_id: &req.approval_id,
                scope: &req.scope,
            })
            .await
            .map_err(|reason| {
                tracing::error!(%reason, approval = %req.approval_id, "minting CIBA tokens failed");
                CibaError::Mint(reason)
            })?;
        Ok(TokenResponse {
            access_token: minted.access_token,
            token_type: "Bearer".into(),
            expires_in: Some(minted.expires_in),
            id_token: Some(minted.id_token),
            refresh_token: None,
            scope: Some(req.scope.clone()),
        })
    }

    /// The approver a CIBA approval is reserved for, or `None` if `approval_id` is no CIBA request.
    /// The server's generic decide path must check it: the approval's role is this name.
    pub async fn approver_for(&self, tenant: &str, approval_id: &str) -> Result<Option<String>, CibaError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT approver FROM ciba_requests WHERE tenant = $1 AND approval_id = $2")
                .bind(tenant)
                .bind(approval_id)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(|r| r.0))
    }

    /// Records `approver`'s decision on a CIBA request (refused unless they are the approver it
    /// names), then pings the client in ping mode. A failed ping is logged, not returned: the
    /// decision stands and the client can still poll.
    pub async fn decide(
        &self,
        tenant: &str,
        approval_id: &str,
        approver: &str,
        approve: bool,
        reason: Option<&str>,
    ) -> Result<Approval, CibaError> {
        match self.approver_for(tenant, approval_id).await? {
            None => return Err(CibaError::NotFound { kind: "CIBA request", name: approval_id.to_string() }),
            Some(named) if named != approver => return Err(CibaError::NotTheApprover(approver.to_string())),
            Some(_) => {}
        }
        let decided = self.approvals.decide(tenant, approval_id, approver, approve, reason).await?;
        if let Err(e) = self.notify_decided(tenant, approval_id).await {
            tracing::warn!(error = %e, approval = %approval_id, "CIBA ping failed; the client can still poll");
        }
        Ok(decided)
    }

    /// Pings a ping-mode client whose request was decided (approved or denied): the server calls
    /// it after any decision. `Ok(true)` when a ping was sent now; `Ok(false)` when none is due
    /// (poll mode, still pending, not a CIBA approval, or already sent). A failed ping can be retried.
    pub async fn notify_decided(&self, tenant: &str, approval_id: &str) -> Result<bool, CibaError> {
        let row: Option<(String, String, String, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT id_hash, client_id, delivery_mode, ping_sealed FROM ciba_requests \
             WHERE tenant = $1 AND approval_id = $2 AND notified_at IS NULL",
        )
        .bind(tenant)
        .bind(approval_id)
        .fetch_optional(self.db.pool())
        .await?;
        let Some((id_hash, client_id, mode, Some(sealed))) = row else { return Ok(false) };
        if DeliveryMode::parse(&mode) != Some(DeliveryMode::Ping) {
            return Ok(false);
        }
        let status = self.approvals.get(tenant, approval_id).await?.status;
        if !matches!(status, Status::Approved | Status::Denied) {
            return Ok(false);
        }
        let endpoint = match self.client(tenant, &client_id).await {
            Ok(ClientReg { notification_endpoint: Some(url), .. }) => url,
            Ok(_) | Err(CibaError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let secret: PingSecret = self
            .sealer
            .open(&ping_aad(&id_hash), &sealed)
            .and_then(|plain| serde_json::from_slice(&plain).ok())
            .ok_or_else(|| CibaError::Notify {
                url: endpoint.clone(),
                reason: "the sealed ping secret does not open (was the master key replaced?)".into(),
            })?;
        // Claim the ping, so that two hosts do not both send it.
        let claimed =
            sqlx::query("UPDATE ciba_requests SET notified_at = $1 WHERE id_hash = $2 AND notified_at IS NULL")
                .bind(now_millis())
                .bind(&id_hash)
                .execute(self.db.pool())
                .await?
                .rows_affected();
        if claimed == 0 {
            return Ok(false);
        }
        if let Err(e) = notify::ping(&self.http, &endpoint, &secret.token, &secret.auth_req_id).await {
            sqlx::query("UPDATE ciba_requests SET notified_at = NULL WHERE id_hash = $1")
                .bind(&id_hash)
                .execute(self.db.pool())
                .await?;
            return Err(e);
        }
        Ok(true)
    }

    /// Forgets requests that expired more than `grace` ago (their ids then read as `invalid_grant`).
    pub async fn purge_expired(&self, grace: Duration) -> Result<u64, CibaError> {
        let before = now_millis() - grace.as_millis() as i64;
        let n = sqlx::query("DELETE FROM ciba_requests WHERE expires_at < $1")
            .bind(before)
            .execute(self.db.pool())
            .await?
            .rows_affected();
        Ok(n)
    }
}

/// The `agent` a client's approvals are recorded under.
fn agent_of(client_id: &str) -> String {
    format!("ciba-client:{client_id}")
}

/// The ping's bearer token: required, bounded, and safe in an HTTP header.
fn notification_token(token: Option<&str>) -> Result<String, CibaError> {
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| CibaError::InvalidRequest("a ping-mode client must send `client_notification_token`".into()))?;
    if token.len() > NOTIFICATION_TOKEN_MAX || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CibaError::InvalidRequest(format!(
            "`client_notification_token` must be 1 to {NOTIFICATION_TOKEN_MAX} visible ASCII characters"
        )));
    }
    Ok(token.to_string())
}
