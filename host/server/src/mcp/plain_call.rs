//! The plain `tools/call` over `/mcp`, answered without rmcp's per-request machinery.
//!
//! In stateless Streamable HTTP, rmcp builds a whole service for every POST: a transport, a
//! peer, a spawned service loop, a spawned handler task, channels and cancellation tokens
//! between them, and a parse of the message against every request type in turn. For the
//! request agents send most, a `tools/call` with a name and arguments and nothing else, that
//! was a fifth of a gated call's server CPU (`scripts/profile-call`, "MCP / JSON-RPC").
//!
//! Such a request is answered here, through the same gate ([`Airlock::call_tool_as`]) and
//! into the same result ([`super::answer`]), serialized by rmcp's own message types. rmcp
//! stays the authority on the protocol: this path takes only requests it is sure rmcp would
//! accept and answer with one JSON message, and hands every other one to rmcp untouched:
//! another method or a notification; `_meta` (a progress token, elicitation capabilities,
//! per-request protocol metadata); any field it does not know; a session id; an `Origin`
//! (rmcp checks it); a `Host` it cannot match to the allowed hosts by plain comparison; a
//! protocol version from the one that brings standard `Mcp-*` headers on, or one rmcp does
//! not know; an `Accept` or `Content-Type` other than the plain ones; a body of unknown length.
//!
//! Without a progress token a waiting call sends nothing before its result, so a call held
//! for a person's approval is answered here too, with JSON, once it is decided.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use rmcp::model::{JsonObject, ProtocolVersion, RequestId, ServerJsonRpcMessage, ServerResult};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::StreamableHttpService;
use serde::Deserialize;

use super::AirlockMcp;
use crate::agents::Agent;
use crate::gate::new_call_id;
use crate::Airlock;

/// rmcp's default limit on a request body ([`rmcp::transport::StreamableHttpServerConfig`]):
/// a longer one is left to rmcp, which refuses it.
const MAX_BODY: u64 = 4 * 1024 * 1024;

/// `/mcp`'s service: plain calls answered here, the rest by rmcp.
///
/// Cloned for every request (axum's router, then [`PlainCalls::call`]): it holds only `Arc`s.
/// rmcp's service clones its whole configuration (host and origin lists) with itself, so it is
/// cloned only for a request handed to it.
#[derive(Clone)]
pub struct PlainCalls {
    host: Arc<Airlock>,
    rmcp: Arc<StreamableHttpService<AirlockMcp, LocalSessionManager>>,
    /// The `Host` values rmcp accepts (empty: any), as `(host, port)`.
    allowed_hosts: Arc<Vec<(String, Option<u16>)>>,
}

impl PlainCalls {
    /// Serves `/mcp` with `rmcp` for everything but plain calls; `allowed_hosts` as given to rmcp.
    pub fn new(
        host: Arc<Airlock>,
        rmcp: StreamableHttpService<AirlockMcp, LocalSessionManager>,
        allowed_hosts: &[String],
    ) -> PlainCalls {
        let allowed = allowed_hosts.iter().filter_map(|h| allowed_host(h)).collect();
        PlainCalls { host, rmcp: Arc::new(rmcp), allowed_hosts: Arc::new(allowed) }
    }

    async fn serve(self, req: Request) -> Response {
        let length = match self.plain_headers(req.method(), req.headers()) {
            Some(length) => length,
            None => return self.to_rmcp(req).await,
        };
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, length as usize).await {
            Ok(bytes) => bytes,
            // The client broke off its own request: nobody reads this answer.
            Err(e) => {
                return (StatusCode::BAD_REQUEST, format!("Bad Request: reading the body failed: {e}")).into_response()
            }
        };
        let agent = parts.extensions.get::<Agent>().cloned();
        let (Some(agent), Ok(call)) = (agent, serde_json::from_slice::<PlainCall>(&bytes)) else {
            return self.to_rmcp(Request::from_parts(parts, Body::from(bytes))).await;
        };
        if call.jsonrpc != "2.0" || call.method != "tools/call" {
            return self.to_rmcp(Request::from_parts(parts, Body::from(bytes))).await;
        }
        let tool = call.params.name;
        let input = serde_json::Value::Object(call.params.arguments.unwrap_or_default()).to_string();
        let report = self.host.call_tool_as(&agent, &tool, &input, new_call_id()).await;
        let result = super::answer(&agent, &tool, report);
        let mut result = ServerResult::CallToolResult(result);
        // What rmcp's handler does for a peer before 2026-07-28, the only ones this path serves.
        result.strip_result_type_for_legacy_peer();
        result.strip_non_object_output_for_legacy_peer();
        let message = ServerJsonRpcMessage::response(result, call.id);
        match serde_json::to_vec(&message) {
            Ok(body) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response(),
            Err(e) => {
                (StatusCode::INTERNAL_SERVER_ERROR, format!("serializing the answer failed: {e}")).into_response()
            }
        }
    }

    /// The body's length when the request's method and headers are those of a plain call
    /// rmcp would take; `None` hands the request to rmcp.
    fn plain_headers(&self, method: &Method, headers: &HeaderMap) -> Option<u64> {
        if method != Method::POST || headers.contains_key(header::ORIGIN) || headers.contains_key("mcp-session-id") {
            return None;
        }
        if let Some(version) = headers.get("mcp-protocol-version") {
            let version = version.to_str().ok()?;
            let known = ProtocolVersion::KNOWN_VERSIONS.iter().any(|v| v.as_str() == version);
            // From this version on rmcp checks the standard `Mcp-*` headers against the body.
            if !known || version >= ProtocolVersion::STANDARD_HEADERS.as_str() {
                return None;
            }
        }
        let host = host_of(headers.get(header::HOST)?.to_str().ok()?)?;
        if !self.allowed_hosts.is_empty() {
            let allowed =
                self.allowed_hosts.iter().any(|(name, port)| *name == host.0 && (port.is_none() || *port == host.1));
            if !allowed {
                return None;
            }
        }
        let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        if !content_type.split(';').next().is_some_and(|e| e.trim().eq_ignore_ascii_case("application/json")) {
            return None;
        }
        // Both media types, and no parameters (a `q=0` would refuse one: rmcp weighs those).
        let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
        let types: Vec<&str> = accept.split(',').map(str::trim).collect();
        let has = |t: &str| types.iter().any(|a| a.eq_ignore_ascii_case(t));
        if accept.contains(';') || !has("application/json") || !has("text/event-stream") {
            return None;
        }
        let length: u64 = headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()?;
        (length <= MAX_BODY).then_some(length)
    }

    async fn to_rmcp(&self, req: Request) -> Response {
        use tower::Service as _;
        match StreamableHttpService::clone(&self.rmcp).call(req).await {
            Ok(resp) => resp.map(Body::new),
            Err(never) => match never {},
        }
    }
}

impl tower::Service<Request> for PlainCalls {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(())) // rmcp's service is always ready too
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.serve(req).await) })
    }
}

/// A JSON-RPC `tools/call` request with nothing but a name and arguments.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainCall {
    jsonrpc: String,
    id: RequestId,
    method: String,
    params: PlainParams,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainParams {
    name: String,
    #[serde(default)]
    arguments: Option<JsonObject>,
}

/// A `Host` value as rmcp reads it: an URI authority's host, brackets trimmed, lower case, and
/// its port. `None` when it is no authority (rmcp refuses it).
fn host_of(value: &str) -> Option<(String, Option<u16>)> {
    let authority = axum::http::uri::Authority::try_from(value).ok()?;
    Some((normalize_host(authority.host()), authority.port_u16()))
}

/// An allowed-hosts entry as rmcp reads it: an authority, else the whole entry as a host.
fn allowed_host(entry: &str) -> Option<(String, Option<u16>)> {
    let entry = entry.trim();
    if entry.is_empty() {
        return None;
    }
    host_of(entry).or_else(|| Some((normalize_host(entry), None)))
}

fn normalize_host(host: &str) -> String {
    host.trim_matches('[').trim_matches(']').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::{allowed_host, host_of};

    #[test]
    fn hosts_are_read_the_way_rmcp_reads_them() {
        assert_eq!(host_of("LocalHost:8080"), Some(("localhost".into(), Some(8080))));
        assert_eq!(host_of("[::1]:9"), Some(("::1".into(), Some(9))));
        assert_eq!(host_of("exa mple"), None);
        assert_eq!(host_of(""), None);
        assert_eq!(allowed_host("::1"), Some(("::1".into(), None)));
        assert_eq!(allowed_host(" localhost "), Some(("localhost".into(), None)));
        assert_eq!(allowed_host("127.0.0.1:7"), Some(("127.0.0.1".into(), Some(7))));
        assert_eq!(allowed_host(""), None);
    }
}
