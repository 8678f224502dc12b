//! The client side: Airlock asks an external OpenID Provider (Auth0, or any CIBA OP) to have
//! a human approve, and waits for the answer by polling or on a ping.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::minter::random_token;
use super::{DeliveryMode, TokenResponse, GRANT_TYPE};

/// CIBA Core 7.3: without `interval` a client MUST wait 5 seconds between polls.
const DEFAULT_INTERVAL: u64 = 5;
/// RFC 8628 3.5, which CIBA Core 11 follows: `slow_down` adds 5 seconds for good.
const SLOW_DOWN_STEP: u64 = 5;
/// In ping mode the client waits for the ping; it still polls this rarely in case a ping is lost.
const PING_FALLBACK: Duration = Duration::from_secs(30);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
const DISCOVERY_SUFFIX: &str = "/.well-known/openid-configuration";

/// Where an OP's CIBA endpoints are, when not discovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpEndpoints {
    pub backchannel_authentication_endpoint: String,
    pub token_endpoint: String,
}

/// An external OP Airlock is a registered CIBA client of.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExternalOp {
    /// `https://op/.well-known/openid-configuration`; or give `endpoints`.
    #[serde(default)]
    pub discovery_url: Option<String>,
    /// Explicit endpoints, used when there is no discovery URL.
    #[serde(default)]
    pub endpoints: Option<OpEndpoints>,
    pub client_id: String,
    pub client_secret: String,
    /// How this client was registered at the OP (poll or ping).
    pub delivery_mode: DeliveryMode,
    /// Space-separated, must contain `openid`.
    pub scope: String,
}

/// Failures of the CIBA client.
#[derive(Debug, thiserror::Error)]
pub enum CibaClientError {
    #[error("invalid external OP configuration: {0}")]
    Config(String),
    #[error("discovery at `{url}` failed: {reason}")]
    Discovery { url: String, reason: String },
    #[error("request to `{url}` failed: {reason}")]
    Transport { url: String, reason: String },
    /// The OP answered with an OAuth error the flow cannot continue after.
    #[error("the provider refused with `{code}` (HTTP {status}): {description}")]
    Op { status: u16, code: String, description: String },
    #[error("the provider's answer is not a valid CIBA response: {0}")]
    Protocol(String),
    #[error("no request `{0}` is waiting here")]
    UnknownRequest(String),
    #[error("the ping for `{0}` carries the wrong bearer token")]
    BadNotificationToken(String),
}

/// An accepted backchannel authentication request.
#[derive(Debug, Clone)]
pub struct Started {
    pub auth_req_id: String,
    pub expires_in: u64,
    /// As the OP sent it; `None` means the 5 s default.
    pub interval: Option<u64>,
    /// When the OP accepted it, for the local deadline.
    pub started_at: Instant,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The human approved; the OP's tokens.
    Approved(TokenResponse),
    /// The human denied (`access_denied`).
    Denied,
    /// Nobody decided in time (`expired_token`).
    Expired,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct AuthAnswer {
    auth_req_id: String,
    expires_in: u64,
    #[serde(default)]
    interval: Option<u64>,
}

struct Waiter {
    notification_token: Option<String>,
    wake: Arc<Notify>,
}

/// A CIBA client of one external OP.
pub struct CibaClient {
    op: ExternalOp,
    endpoints: OpEndpoints,
    http: reqwest::Client,
    waiters: Mutex<HashMap<String, Waiter>>,
}

/// A reqwest error with its causes ("error sending request" alone says little), without the URL.
fn reason(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn transport(url: &str, e: reqwest::Error) -> CibaClientError {
    CibaClientError::Transport { url: url.to_string(), reason: reason(e) }
}

impl CibaClient {
    /// A client for `op`, reading its endpoints from discovery unless they are given.
    pub async fn discover(op: ExternalOp) -> Result<CibaClient, CibaClientError> {
        if !op.scope.split_whitespace().any(|s| s == "openid") {
            return Err(CibaClientError::Config(format!("scope `{}` must contain `openid`", op.scope)));
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| CibaClientError::Config(e.to_string()))?;
        let endpoints = match (&op.discovery_url, &op.endpoints) {
            (_, Some(endpoints)) => endpoints.clone(),
            (Some(url), None) => Self::fetch_metadata(&http, url, op.delivery_mode).await?,
            (None, None) => {
                return Err(CibaClientError::Config("give a `discovery_url` or explicit `endpoints`".into()));
            }
        };
        Ok(CibaClient { op, endpoints, http, waiters: Mutex::new(HashMap::new()) })
    }

    async fn fetch_metadata(
        http: &reqwest::Client,
        url: &str,
        mode: DeliveryMode,
    ) -> Result<OpEndpoints, CibaClientError> {
        let fail = |reason: String| CibaClientError::Discovery { url: url.to_string(), reason };
        let resp = http.get(url).send().await.map_err(|e| fail(reason(e)))?;
        if !resp.status().is_success() {
            return Err(fail(format!("answered {}", resp.status())));
        }
        let meta: serde_json::Value = resp.json().await.map_err(|e| fail(format!("not JSON: {}", reason(e))))?;
        let field = |name: &str| meta.get(name).and_then(|v| v.as_str()).map(str::to_string);
        // OpenID Discovery 4.3: the issuer is the discovery URL without the well-known suffix.
        if let (Some(issuer), Some(expected)) = (field("issuer"), url.strip_suffix(DISCOVERY_SUFFIX)) {
            if issuer.trim_end_matches('/') != expected.trim_end_matches('/') {
                return Err(fail(format!("issuer `{issuer}` does not match the discovery URL")));
            }
        }
        if let Some(modes) = meta.get("backchannel_token_delivery_modes_supported").and_then(|v| v.as_array()) {
            if !modes.iter().any(|m| m.as_str() == Some(mode.as_str())) {
                return Err(fail(format!("the provider does not offer `{}` delivery", mode.as_str())));
            }
        }
        let required = |name: &str| field(name).ok_or_else(|| fail(format!("no `{name}` (is CIBA enabled?)")));
        Ok(OpEndpoints {
            backchannel_authentication_endpoint: required("backchannel_authentication_endpoint")?,
            token_endpoint: required("token_endpoint")?,
        })
    }

    /// The endpoints in use.
    pub fn endpoints(&self) -> &OpEndpoints {
        &self.endpoints
    }

    /// `client_secret_basic` (RFC 6749 2.3.1: both parts form-encoded before base64).
    fn basic_auth(&self) -> String {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let pair = format!("{}:{}", enc(&self.op.client_id), enc(&self.op.client_secret));
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }

    async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<Result<String, OAuthErrorOf>, CibaClientError> {
        let resp = self
            .http
            .post(url)
            .header(reqwest::header::AUTHORIZATION, self.basic_auth())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(form)
            .send()
            .await
            .map_err(|e| transport(url, e))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| transport(url, e))?;
        if status.is_success() {
            return Ok(Ok(body));
        }
        match serde_json::from_str::<OAuthError>(&body) {
            Ok(e) => Ok(Err(OAuthErrorOf {
                status: status.as_u16(),
                code: e.error,
                description: e.error_description.unwrap_or_default(),
            })),
            Err(_) => Err(CibaClientError::Protocol(format!("HTTP {status} without an OAuth error body"))),
        }
    }

    /// Sends a backchannel authentication request for the user `login_hint` names (a name, or
    /// Auth0's `{"format":"iss_sub",...}` JSON), who will see `binding_message`.
    pub async fn start(
        &self,
        login_hint: &str,
        binding_message: Option<&str>,
        requested_expiry: Option<u64>,
    ) -> Result<Started, CibaClientError> {
        let expiry = requested_expiry.map(|n| n.to_string());
        let notification_token = match self.op.delivery_mode {
            DeliveryMode::Ping => Some(random_token()),
            DeliveryMode::Poll => None,
        };
        let mut form = vec![("scope", self.op.scope.as_str()), ("login_hint", login_hint)];
        if let Some(m) = binding_message {
            form.push(("binding_message", m));
        }
        if let Some(e) = &expiry {
            form.push(("requested_expiry", e));
        }
        if let Some(t) = &notification_token {
            form.push(("client_notification_token", t));
        }
        let url = &self.endpoints.backchannel_authentication_endpoint;
        let body = self.post_form(url, &form).await?.map_err(OAuthErrorOf::into_error)?;
        let answer: AuthAnswer =
            serde_json::from_str(&body).map_err(|e| CibaClientError::Protocol(format!("backchannel response: {e}")))?;
        if answer.auth_req_id.is_empty() {
            return Err(CibaClientError::Protocol("empty `auth_req_id`".into()));
        }
        self.waiters
            .lock()
            .insert(answer.auth_req_id.clone(), Waiter { notification_token, wake: Arc::new(Notify::new()) });
        Ok(Started {
            auth_req_id: answer.auth_req_id,
            expires_in: answer.expires_in,
            interval: answer.interval,
            started_at: Instant::now(),
        })
    }

    /// One token request: `Ok(Some(decision))` when the flow ended, `Ok(None)` while pending,
    /// after raising `interval` on `slow_down`. Once the request's lifetime is over, an OP may
    /// already have forgotten it (oidc-provider drops expired grants from its store) and answer
    /// `invalid_grant` instead of `expired_token`: past the deadline both mean `Expired`.
    async fn poll_once(
        &self,
        auth_req_id: &str,
        interval: &mut u64,
        past_deadline: bool,
    ) -> Result<Option<Decision>, CibaClientError> {
        let url = &self.endpoints.token_endpoint;
        let form = [("grant_type", GRANT_TYPE), ("auth_req_id", auth_req_id)];
        match self.post_form(url, &form).await? {
            Ok(body) => {
                let tokens: TokenResponse = serde_json::from_str(&body)
                    .map_err(|e| CibaClientError::Protocol(format!("token response: {e}")))?;
                Ok(Some(Decision::Approved(tokens)))
            }
            Err(e) => match e.code.as_str() {
                "authorization_pending" => Ok(None),
                "slow_down" => {
                    *interval += SLOW_DOWN_STEP;
                    Ok(None)
                }
                "access_denied" => Ok(Some(Decision::Denied)),
                "expired_token" => Ok(Some(Decision::Expired)),
                "invalid_grant" if past_deadline => Ok(Some(Decision::Expired)),
                _ => Err(e.into_error()),
            },
        }
    }

    /// Waits for the decision: polls every `interval` seconds (5 when the OP sent none), slower
    /// after each `slow_down`; in ping mode polls when pinged (and rarely otherwise). Gives up
    /// with `Expired` once the request's lifetime is over even if the OP never says so.
    pub async fn poll_until_decided(&self, started: &Started) -> Result<Decision, CibaClientError> {
        let wake = self.waiters.lock().get(&started.auth_req_id).map(|w| w.wake.clone());
        let result = self.wait_loop(started, wake).await;
        self.waiters.lock().remove(&started.auth_req_id);
        result
    }

    async fn wait_loop(&self, started: &Started, wake: Option<Arc<Notify>>) -> Result<Decision, CibaClientError> {
        let mut interval = started.interval.filter(|&i| i > 0).unwrap_or(DEFAULT_INTERVAL);
        let deadline = started.started_at + Duration::from_secs(started.expires_in);
        let ping_mode = self.op.delivery_mode == DeliveryMode::Ping;
        loop {
            let now = Instant::now();
            let nap = if ping_mode { PING_FALLBACK } else { Duration::from_secs(interval) };
            // Past the deadline, one last poll one interval later lets the OP say `expired_token`.
            let overdue = now >= deadline + Duration::from_secs(interval);
            if overdue {
                return Ok(Decision::Expired);
            }
            let until_deadline = (deadline + Duration::from_secs(interval)).saturating_duration_since(now);
            let nap = nap.min(until_deadline.max(Duration::from_secs(interval)));
            match &wake {
                Some(w) if ping_mode => {
                    tokio::select! {
                        _ = w.notified() => {}
                        _ = tokio::time::sleep(nap) => {}
                    }
                }
                _ => tokio::time::sleep(nap).await,
            }
            let past_deadline = Instant::now() >= deadline;
            if let Some(decision) = self.poll_once(&started.auth_req_id, &mut interval, past_deadline).await? {
                return Ok(decision);
            }
        }
    }

    /// The server's ping handler calls this with the ping's `auth_req_id` and bearer token: a
    /// right token wakes the waiter, which polls at once. A ping for a request another host waits
    /// on is `UnknownRequest` (that host polls on its fallback schedule).
    pub fn ping_received(&self, auth_req_id: &str, bearer: &str) -> Result<(), CibaClientError> {
        let waiters = self.waiters.lock();
        let waiter =
            waiters.get(auth_req_id).ok_or_else(|| CibaClientError::UnknownRequest(auth_req_id.to_string()))?;
        let expected = waiter.notification_token.as_deref().unwrap_or_default();
        let same = expected.len() == bearer.len()
            && !expected.is_empty()
            && expected.bytes().zip(bearer.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if !same {
            return Err(CibaClientError::BadNotificationToken(auth_req_id.to_string()));
        }
        // A stored permit: a ping that comes before the waiter sleeps is not lost.
        waiter.wake.notify_one();
        Ok(())
    }
}

/// An OAuth error answer of the OP.
struct OAuthErrorOf {
    status: u16,
    code: String,
    description: String,
}

impl OAuthErrorOf {
    fn into_error(self) -> CibaClientError {
        CibaClientError::Op { status: self.status, code: self.code, description: self.description }
    }
}
