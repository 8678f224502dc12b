//! The console: the pages people use in a browser, served by the host itself from this
//! binary (nothing to build with Node, nothing fetched from elsewhere).
//!
//! One HTML shell and a handful of small ES modules (one per page, `assets/`), compiled in.
//! Every piece of data comes from the same JSON API the CLI uses, with the session cookie
//! and its CSRF token, so the pages hold no authority of their own and every rule (tenant,
//! role, relation) is the API's. The scripts build the DOM with `textContent` only (no HTML
//! strings), so nothing a tool, agent or package wrote can become markup.
//!
//! Served under a strict Content-Security-Policy (no inline script or style, no framing: an
//! approve button cannot be clickjacked). Assets live under `/console/assets/VERSION/`, where
//! VERSION is a hash of their bytes computed at compile time: they are cached for a year and
//! a new build can never be served stale scripts; the shell itself is never cached.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use crate::api::ApiError;

const SHELL: &str = include_str!("page.html");

/// The compiled-in assets: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    ("style.css", "text/css; charset=utf-8", include_str!("assets/style.css")),
    ("icon.svg", "image/svg+xml", include_str!("assets/icon.svg")),
    ("app.js", JS, include_str!("assets/app.js")),
    ("core.js", JS, include_str!("assets/core.js")),
    ("signin.js", JS, include_str!("assets/signin.js")),
    ("overview.js", JS, include_str!("assets/overview.js")),
    ("approvals.js", JS, include_str!("assets/approvals.js")),
    ("agents.js", JS, include_str!("assets/agents.js")),
    ("permissions.js", JS, include_str!("assets/permissions.js")),
    ("audit.js", JS, include_str!("assets/audit.js")),
    ("marketplace.js", JS, include_str!("assets/marketplace.js")),
    ("connections.js", JS, include_str!("assets/connections.js")),
    ("applications.js", JS, include_str!("assets/applications.js")),
];
const JS: &str = "text/javascript; charset=utf-8";

/// The pages under `/console/` (the shell shows the one the path names).
pub const PAGES: &[&str] = &[
    "overview",
    "approvals",
    "agents",
    "permissions",
    "audit",
    "marketplace",
    "connections",
    "applications",
    "device",
];

/// FNV-1a over every asset, at compile time: the assets' version.
const fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

const fn assets_hash() -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < ASSETS.len() {
        hash = fnv1a(hash, ASSETS[i].0.as_bytes());
        hash = fnv1a(hash, ASSETS[i].2.as_bytes());
        i += 1;
    }
    hash
}

/// The assets' version, as it appears in their URLs.
pub static VERSION: LazyLock<String> = LazyLock::new(|| format!("{:016x}", assets_hash()));

/// The shell with its asset URLs filled in.
static PAGE: LazyLock<String> = LazyLock::new(|| SHELL.replace("{{assets}}", &format!("/console/assets/{}", *VERSION)));

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn respond(content_type: &'static str, cache: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}

fn shell() -> Response {
    respond("text/html; charset=utf-8", "no-store", PAGE.as_str())
}

/// `GET /console`, `/signin`, `/signin/register` (the invitation code rides in the URL's
/// fragment, which the browser never sends to a server or a referrer).
pub async fn page() -> Response {
    shell()
}

/// `GET /console/{page}`: one of [`PAGES`].
pub async fn named_page(Path(name): Path<String>) -> Response {
    if PAGES.contains(&name.as_str()) {
        return shell();
    }
    ApiError::not_found(format!("no console page `{name}`: the pages are {}", PAGES.join(", "))).into_response()
}

/// `GET /console/assets/{version}/{name}`. Another build's version is refused (404), not
/// served with this build's bytes under a year-long cache.
pub async fn asset(Path((version, name)): Path<(String, String)>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) if version == *VERSION => {
            respond(content_type, "public, max-age=31536000, immutable", body)
        }
        _ => {
            (StatusCode::NOT_FOUND, ApiError::not_found(format!("no console asset `{version}/{name}`"))).into_response()
        }
    }
}

/// `GET /`: the console.
pub async fn home() -> Redirect {
    Redirect::to("/console")
}
