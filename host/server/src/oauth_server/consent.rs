//! The pages of the authorization endpoint, rendered by the host (no script): "sign in
//! first", the consent form, and an error that cannot be sent back to the client (an unknown
//! client or a redirect URI it never registered: sending the browser there would hand an
//! attacker the response). Every value shown is HTML-escaped; the pages forbid framing
//! (clickjacking) and load nothing from elsewhere.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// The parameters of an authorization request, carried through the consent form unchanged
/// and checked again when it is posted.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
pub struct AuthorizeRequest {
    #[serde(default)]
    pub response_type: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub redirect_uri: String,
    pub state: Option<String>,
    #[serde(default)]
    pub code_challenge: String,
    pub code_challenge_method: Option<String>,
    pub resource: Option<String>,
    pub scope: Option<String>,
}

/// An agent the person may pick for the client.
pub struct AgentChoice {
    pub name: String,
    /// What the person is told about it (`installed from the marketplace`, ...).
    pub note: String,
}

/// What the consent page shows.
pub struct ConsentPage<'a> {
    pub request: &'a AuthorizeRequest,
    pub client_name: &'a str,
    pub member: &'a str,
    pub tenant: &'a str,
    pub csrf: &'a str,
    pub resource: &'a str,
    pub scope: &'a str,
    pub agents: &'a [AgentChoice],
    /// The name a new agent for this client would get.
    pub new_agent: &'a str,
}

/// HTML-escapes `text`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><title>{title} - Airlock</title><style>\
         body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#1b1f24}}\
         h1{{font-size:1.4rem}}fieldset{{border:1px solid #ccd;border-radius:6px;margin:1rem 0}}\
         label{{display:block;margin:.3rem 0}}button{{font:inherit;padding:.4rem 1rem;margin-right:.5rem}}\
         .muted{{color:#555}}code{{background:#f3f3f6;padding:0 .2rem}}</style></head><body><main>{body}</main></body></html>",
        title = escape(title)
    );
    let mut resp = (status, Html(html)).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// Sends the browser on to `next` (a path of this host) from a page of this host: after a
/// sign-in that came back from another site, a redirect would still count as that site's
/// navigation and the new session's `SameSite=Strict` cookie would not go with it.
pub fn continue_to(next: &str, set_cookie: &str) -> Response {
    let next = escape(next);
    let mut resp = page(
        StatusCode::OK,
        "Signed in",
        &format!(
            "<meta http-equiv=\"refresh\" content=\"0;url={next}\"><p>Signed in. <a href=\"{next}\">Continue</a></p>"
        ),
    );
    if let Ok(v) = HeaderValue::from_str(set_cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// An error shown to the person (never redirected to the client).
pub fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Cannot authorize",
        &format!(
            "<h1>This application cannot be authorized</h1><p role=\"alert\">{}</p>\
             <p class=\"muted\">Nothing was granted. Go back to the application and connect again.</p>",
            escape(message)
        ),
    )
}

/// Asks the person to sign in, then come back to `authorize_url` (a path on this host).
pub fn sign_in_page(client_name: &str, authorize_url: &str) -> Response {
    let next = url::form_urlencoded::byte_serialize(authorize_url.as_bytes()).collect::<String>();
    page(
        StatusCode::OK,
        "Sign in",
        &format!(
            "<h1>Sign in to connect {client}</h1>\
             <p><b>{client}</b> asks to call tools through Airlock for you. Sign in first; you will then \
             choose what it may act as.</p>\
             <p><a href=\"/signin?next={next}\">Sign in with a passkey</a></p>\
             <p class=\"muted\">Already signed in here? <a href=\"{next_attr}\">Continue</a> (a link from \
             another site does not carry your session).</p>\
             <form method=\"get\" action=\"/signin/sso\"><input type=\"hidden\" name=\"next\" value=\"{next_attr}\">\
             <label>Tenant <input name=\"tenant\" value=\"default\" required></label>\
             <button type=\"submit\">Sign in with your company's provider</button></form>",
            client = escape(client_name),
            next_attr = escape(authorize_url),
        ),
    )
}

/// The consent form: which agent the client acts as, allow or deny.
pub fn consent_page(p: &ConsentPage<'_>) -> Response {
    let r = p.request;
    let hidden =
        |name: &str, value: &str| format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", escape(value));
    let mut fields = String::new();
    for (name, value) in [
        ("response_type", r.response_type.as_str()),
        ("client_id", r.client_id.as_str()),
        ("redirect_uri", r.redirect_uri.as_str()),
        ("state", r.state.as_deref().unwrap_or("")),
        ("code_challenge", r.code_challenge.as_str()),
        ("code_challenge_method", r.code_challenge_method.as_deref().unwrap_or("")),
        ("resource", p.resource),
        ("scope", p.scope),
        ("csrf", p.csrf),
    ] {
        fields.push_str(&hidden(name, value));
    }
    let mut choices = format!(
        "<label><input type=\"radio\" name=\"agent\" value=\"new\" checked> a new agent for it, \
         <code>agent:{}</code>, with no rights until an admin grants some</label>",
        escape(p.new_agent)
    );
    for a in p.agents {
        choices.push_str(&format!(
            "<label><input type=\"radio\" name=\"agent\" value=\"{name}\"> <code>agent:{name}</code> \
             <span class=\"muted\">{note}</span></label>",
            name = escape(&a.name),
            note = escape(&a.note)
        ));
    }
    let to = url::Url::parse(&r.redirect_uri).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
    page(
        StatusCode::OK,
        "Authorize",
        &format!(
            "<h1>Let {client} act for you?</h1>\
             <p>Signed in as <b>{member}</b> of tenant <b>{tenant}</b>.</p>\
             <p><b>{client}</b> (answers go to <code>{to}</code>) asks to call tools at <code>{resource}</code> \
             (scope <code>{scope}</code>). Every call it makes needs both you and the agent below to be allowed, \
             and is audited as you &rarr; the agent &rarr; the tool.</p>\
             <form method=\"post\" action=\"/oauth/authorize\">{fields}\
             <fieldset><legend>It acts as</legend>{choices}</fieldset>\
             <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
             <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
            client = escape(p.client_name),
            member = escape(p.member),
            tenant = escape(p.tenant),
            to = escape(&to),
            resource = escape(p.resource),
            scope = escape(p.scope),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_client_named_itself_cannot_become_markup() {
        assert_eq!(escape("<script>\"x\"&'y'</script>"), "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;");
    }
}
