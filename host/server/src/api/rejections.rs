//! The framework's own refusals in the API's shape.
//!
//! axum, hyper and rmcp answer some requests before a handler runs: an unknown route (404,
//! empty), a wrong method (405), a body over the size limit (413, "Failed to buffer the
//! request body"), a wrong content type (415). A client that parses every error as
//! `{"code", "message"}` would choke on those; [`in_api_shape`] rewrites any error response that
//! is not JSON into that shape, keeping its status and headers (`Allow`, `WWW-Authenticate`).
//! [`cap_body`] holds a request to its route's body cap. Both run in [`super::front_door`].

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// At most this much of a plain-text error body is kept as the message.
const KEEP: usize = 4096;

/// `resp` as the client gets it: an error that is not JSON already becomes `{"code", "message"}`
/// (for `method` on `path`, the request it answers), keeping its status and headers.
pub(super) async fn in_api_shape(method: &Method, path: &str, resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(resp.headers().get(header::CONTENT_TYPE)) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, KEEP).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let (code, message) = describe(status, method, path, &text);
    let mut out = ApiError::new(status, code, message).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// `req` under its matched route's own cap ([`super::body_limit`]), before the route's door
/// authenticates anyone. A declared length over it is refused at once (the `Err`), before a
/// byte of the body is read (a limit that trips while reading leaves a client that is still
/// sending with a broken pipe instead of the 413); a body streamed without a length is read
/// through a limit, so the handler's extractor stops at the cap with a 413.
pub(super) fn cap_body(caps: &super::BodyCaps, route: Option<&MatchedPath>, req: Request) -> Result<Request, Response> {
    let cap = route
        .and_then(|path| caps.get(path.as_str())?.iter().find(|(m, _)| m == req.method()).map(|(_, cap)| *cap))
        .unwrap_or(super::PUBLIC_BODY_LIMIT);
    // The route's name is only written out for a refusal: nothing is formatted per request.
    let name = || format!("`{} {}`", req.method(), route.map_or(req.uri().path(), |p| p.as_str()));
    if let Some(refused) = over_declared(cap, name, &req) {
        return Err(refused);
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::Body::new(http_body_util::Limited::new(body, cap));
    Ok(Request::from_parts(parts, body))
}

/// The 413 for a request whose `content-length` is over `limit` (what `whose` accepts).
fn over_declared(limit: usize, whose: impl FnOnce() -> String, req: &Request) -> Option<Response> {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())?;
    if declared <= limit as u64 {
        return None;
    }
    let said = format!("declared {declared} bytes, {} accepts at most {limit}", whose());
    let (code, message) = describe(StatusCode::PAYLOAD_TOO_LARGE, req.method(), req.uri().path(), &said);
    let mut out = ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, code, message).into_response();
    out.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(out)
}

fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type.and_then(|v| v.to_str().ok()).is_some_and(|v| {
        let v = v.to_ascii_lowercase();
        v.starts_with("application/json") || v.contains("+json")
    })
}

/// A stable code and a message that says what to do next, for a refusal the framework made.
fn describe(status: StatusCode, method: &Method, path: &str, text: &str) -> (&'static str, String) {
    let said = if text.is_empty() { String::new() } else { format!(" ({})", lower_first(text)) };
    match status {
        StatusCode::NOT_FOUND => ("not_found", format!("no route `{method} {path}`{said}: see the route table in `host/server/src/api/mod.rs`")),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            format!("`{path}` does not take `{method}`: the `allow` header lists the methods it takes"),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            format!("the request body is larger than the host accepts{said}: send a smaller body"),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            format!("the request's content type is not accepted{said}: send `content-type: application/json`"),
        ),
        StatusCode::NOT_ACCEPTABLE => (
            "not_acceptable",
            format!("the `accept` header does not allow the answer{said}: accept `application/json` (and `text/event-stream` for MCP)"),
        ),
        s if s.is_server_error() => ("unavailable", format!("the host could not answer{said}: see its log")),
        _ => ("invalid_request", if text.is_empty() { format!("refused with status {}", status.as_u16()) } else { lower_first(text) }),
    }
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
