//! The pages people use in a browser, served by the host itself: register a passkey from an
//! invitation, sign in with it, and decide the approvals waiting for them (approving asks the
//! passkey to sign the exact action). Static files compiled into the binary; every piece of
//! data comes from the JSON API with the session cookie, so the pages hold no authority of
//! their own. Served with a strict Content-Security-Policy (no inline script, no framing:
//! an approve button cannot be clickjacked).

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// `GET /console`, `/signin`, `/signin/register` (the invitation code rides in the URL's
/// fragment, which the browser never sends to a server or a referrer).
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

/// `GET /console/app.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /console/style.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /`: the console.
pub async fn home() -> Redirect {
    Redirect::to("/console")
}
