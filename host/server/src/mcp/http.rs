//! `/mcp`: MCP over Streamable HTTP, stateless, with plain JSON responses.
//!
//! Stateless because every request carries its own bearer token: no session can be picked
//! up by another agent's token, and nothing is kept per client between calls. JSON responses
//! because they cost the least per call; a call that sends progress while it waits for a
//! human switches to an SSE response on its own. The plain `tools/call` (a name and arguments,
//! nothing else) skips rmcp's per-request service ([`super::plain_call`]). A request without a
//! valid agent token is refused with 401 (audited) before the MCP layer sees it; one whose
//! `Host` or browser `Origin` is not this host's (DNS rebinding) is refused with 403.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

use super::plain_call::PlainCalls;
use super::AirlockMcp;
use crate::Airlock;

/// The `/mcp` routes over `host`. `allowed_hosts` are the `Host` header values accepted
/// (DNS-rebinding protection); empty accepts any. A browser's `Origin` must be the host's own
/// or one of [`Airlock::mcp_allowed_origins`]; a request without one passes.
pub fn routes<S: Clone + Send + Sync + 'static>(host: Arc<Airlock>, allowed_hosts: &[String]) -> Router<S> {
    let mut config = StreamableHttpServerConfig::default().with_legacy_session_mode(false).with_json_response(true);
    config = if allowed_hosts.is_empty() {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(allowed_hosts.iter().cloned())
    };
    let own = host.people.passkeys.origin().to_string();
    let origins = std::iter::once(own).chain(host.mcp_allowed_origins.iter().cloned());
    config = config.with_allowed_origins(origins).enforce_origin_validation();
    let handler = AirlockMcp::new(host.clone());
    let rmcp: StreamableHttpService<AirlockMcp, LocalSessionManager> =
        StreamableHttpService::new(move || Ok(handler.clone()), Arc::new(LocalSessionManager::default()), config);
    let service = PlainCalls::new(host.clone(), rmcp, allowed_hosts);
    // `route_layer`: only `/mcp` needs an agent token; an unknown path is the router's 404.
    Router::new().route_service("/mcp", service).route_layer(middleware::from_fn_with_state(host, authenticate))
}

/// Puts the authenticated [`crate::agents::Agent`] in the request's extensions, or answers 401.
/// A token minted for this MCP resource (`aud` `BASE/mcp`, by the authorization code flow of
/// [`crate::oauth_server`]) is accepted here and nowhere else; the host's own agent tokens
/// too.
async fn authenticate(State(host): State<Arc<Airlock>>, mut req: Request, next: Next) -> Response {
    // Only a JWT has an audience: an opaque agent token costs no URL building.
    let jwt = crate::api::auth::bearer(req.headers()).is_some_and(crate::api::auth::looks_like_jwt);
    let resource = jwt
        .then(|| crate::api::ciba::public_base(&host, req.headers()).ok())
        .flatten()
        .map(|base| crate::oauth_server::mcp_resource(&base));
    let issuer = host.identity.issuer();
    let audiences: Vec<&str> = std::iter::once(issuer).chain(resource.as_deref()).collect();
    match crate::api::auth::agent_for(&host, req.headers(), "mcp", &audiences).await {
        Ok(agent) => {
            req.extensions_mut().insert(agent);
            next.run(req).await
        }
        Err(e) => {
            let base = crate::api::ciba::public_base(&host, req.headers()).ok();
            refuse(req.headers().contains_key(axum::http::header::AUTHORIZATION), base.as_deref(), e)
        }
    }
}

/// The refusal (a 401) an MCP client can explain and act on: the challenge points at the
/// protected resource metadata (RFC 9728), from which a client finds where to get a token;
/// RFC 6750's `error` and `error_description` (clients that read only headers); and a
/// JSON-RPC error in the body beside the API's own `code` and `message` (the official SDKs
/// surface a JSON-RPC error body, not a bare status).
fn refuse(token_sent: bool, base: Option<&str>, e: crate::api::ApiError) -> Response {
    let mut challenge = "Bearer realm=\"airlock\"".to_string();
    if let Some(base) = base {
        challenge.push_str(&format!(
            ", resource_metadata=\"{base}/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\""
        ));
    }
    // RFC 6750 3.1: a request without credentials gets no error code.
    if token_sent && e.status == axum::http::StatusCode::UNAUTHORIZED {
        challenge.push_str(&format!(", error=\"invalid_token\", error_description=\"{}\"", quotable(&e.message)));
    }
    let message = format!("{}: {}", e.code, e.message);
    let body = serde_json::json!({
        "code": e.code,
        "message": e.message,
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": -32001, "message": message, "data": { "code": e.code } },
    });
    let mut resp = (e.status, axum::Json(body)).into_response();
    if let Ok(value) = axum::http::HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, value);
    }
    resp
}

/// `text` as the inside of an RFC 6750 quoted string: printable ASCII without quote or backslash.
fn quotable(text: &str) -> String {
    text.chars().map(|c| if c == '"' || c == '\\' || !(' '..='~').contains(&c) { '\'' } else { c }).collect()
}
