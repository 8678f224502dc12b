//! Clients registered by themselves (RFC 7591 dynamic client registration).
//!
//! Registration needs no token (a client cannot have one before it is registered), so what it
//! accepts is narrow: redirect URIs that are `https`, `http` on a loopback address (a native
//! app's local listener, RFC 8252 7.3, whose port may change between runs), or a private-use
//! scheme (RFC 8252 7.1), never one a browser would run (`javascript:`, `data:`...), and no
//! fragment; the authorization code grant only; at most [`HOURLY_CAP`] registrations an
//! hour; a client never used within [`UNUSED_TTL_MS`] of registering is purged. A client
//! asking `token_endpoint_auth_method: none` is public and proves itself by PKCE alone;
//! otherwise (RFC 7591's default is `client_secret_basic`) it gets a secret, shown once.

use airlock_store::{now_millis, sqlx, Db};
use serde_json::{json, Value};

use crate::tenancy::{digest, secret};

/// Registrations accepted per hour, host-wide.
pub const HOURLY_CAP: i64 = 1000;
/// How long a registered client may wait for its first authorization before it is purged.
pub const UNUSED_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// The most redirect URIs a client may register.
const MAX_REDIRECT_URIS: usize = 10;

/// How a client authenticates at the token endpoint.
pub const AUTH_METHODS: [&str; 3] = ["none", "client_secret_basic", "client_secret_post"];

/// A registered client.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub auth_method: String,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    secret_hash: Option<String>,
}

/// Why a registration was refused; each maps to RFC 7591's error codes.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("{0}")]
    Metadata(String),
    #[error("{0}")]
    RedirectUri(String),
    #[error("too many clients registered in the last hour: try again later")]
    Busy,
    #[error("client store unavailable: {0}")]
    Store(#[from] sqlx::Error),
}

impl RegisterError {
    /// RFC 7591 section 3.2.2's `error`.
    pub fn code(&self) -> &'static str {
        match self {
            RegisterError::Metadata(_) => "invalid_client_metadata",
            RegisterError::RedirectUri(_) => "invalid_redirect_uri",
            RegisterError::Busy => "temporarily_unavailable",
            RegisterError::Store(_) => "server_error",
        }
    }
}

/// Registers the client `metadata` describes; returns RFC 7591's client information response.
pub async fn register(db: &Db, metadata: &Value) -> Result<Value, RegisterError> {
    let Some(fields) = metadata.as_object() else {
        return Err(RegisterError::Metadata("send the client's metadata as a JSON object".into()));
    };
    let redirect_uris = redirect_uris(fields.get("redirect_uris"))?;
    let client_name = match fields.get("client_name") {
        None | Some(Value::Null) => "MCP client".to_string(),
        Some(Value::String(n)) if !n.trim().is_empty() && n.chars().count() <= 100 => n.trim().to_string(),
        Some(_) => return Err(RegisterError::Metadata("`client_name` must be text of 1 to 100 characters".into())),
    };
    let auth_method = match fields.get("token_endpoint_auth_method") {
        None | Some(Value::Null) => "client_secret_basic",
        Some(Value::String(m)) if AUTH_METHODS.contains(&m.as_str()) => m.as_str(),
        Some(other) => {
            return Err(RegisterError::Metadata(format!(
                "`token_endpoint_auth_method` {} is not supported: use one of {}",
                shown(other),
                AUTH_METHODS.join(", ")
            )))
        }
    };
    let grant_types = listed(fields.get("grant_types"), &["authorization_code"], "grant_types")?;
    if let Some(g) = grant_types.iter().find(|g| !matches!(g.as_str(), "authorization_code" | "refresh_token")) {
        return Err(RegisterError::Metadata(format!(
            "grant type `{}` is not for clients registered here: use authorization_code (and refresh_token)",
            g.chars().take(80).collect::<String>()
        )));
    }
    let response_types = listed(fields.get("response_types"), &["code"], "response_types")?;
    if response_types != ["code"] {
        return Err(RegisterError::Metadata("`response_types` must be [\"code\"]".into()));
    }
    let scope = match fields.get("scope") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(super::granted_scope(Some(s)).map_err(RegisterError::Metadata)?),
        Some(_) => return Err(RegisterError::Metadata("`scope` must be a space-separated string".into())),
    };

    let now = now_millis();
    sqlx::query("DELETE FROM oauth_clients WHERE last_used_at IS NULL AND created_at < $1")
        .bind(now - UNUSED_TTL_MS)
        .execute(db.pool())
        .await?;
    let (recent,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM oauth_clients WHERE created_at > $1")
        .bind(now - 60 * 60 * 1000)
        .fetch_one(db.pool())
        .await?;
    if recent >= HOURLY_CAP {
        return Err(RegisterError::Busy);
    }
    let client_id = secret("mcp_").chars().take(36).collect::<String>();
    let client_secret = (auth_method != "none").then(|| secret("mcps_"));
    let mut info = json!({
        "client_id": client_id,
        "client_id_issued_at": now / 1000,
        "client_name": client_name,
        "redirect_uris": redirect_uris,
        "token_endpoint_auth_method": auth_method,
        "grant_types": grant_types,
        "response_types": response_types,
    });
    if let Some(scope) = &scope {
        info["scope"] = json!(scope);
    }
    for informative in ["client_uri", "logo_uri", "software_id", "software_version"] {
        if let Some(Value::String(v)) = fields.get(informative) {
            info[informative] = json!(v.chars().take(200).collect::<String>());
        }
    }
    sqlx::query(
        "INSERT INTO oauth_clients (client_id, secret_hash, auth_method, client_name, redirect_uris, metadata, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&client_id)
    .bind(client_secret.as_deref().map(digest))
    .bind(auth_method)
    .bind(&client_name)
    .bind(json!(redirect_uris).to_string())
    .bind(info.to_string())
    .bind(now)
    .execute(db.pool())
    .await?;
    if let Some(secret) = client_secret {
        info["client_secret"] = json!(secret);
        info["client_secret_expires_at"] = json!(0);
    }
    Ok(info)
}

/// The client registered as `client_id`.
pub async fn find(db: &Db, client_id: &str) -> Result<Option<Client>, sqlx::Error> {
    let row: Option<(String, Option<String>, String, String, String)> = sqlx::query_as(
        "SELECT client_id, secret_hash, auth_method, client_name, redirect_uris FROM oauth_clients WHERE client_id = $1",
    )
    .bind(client_id)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|(client_id, secret_hash, auth_method, client_name, uris)| Client {
        client_id,
        secret_hash,
        auth_method,
        client_name,
        redirect_uris: serde_json::from_str(&uris).unwrap_or_default(),
    }))
}

/// Marks a client used (it is then never purged as abandoned).
pub async fn touch(db: &Db, client_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE oauth_clients SET last_used_at = $2 WHERE client_id = $1")
        .bind(client_id)
        .bind(now_millis())
        .execute(db.pool())
        .await?;
    Ok(())
}

impl Client {
    /// Whether `asked` is one of this client's redirect URIs: the same string, or for a
    /// loopback `http` URI the same but for the port (RFC 8252 7.3).
    pub fn redirects_to(&self, asked: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == asked || same_loopback_but_port(r, asked))
    }

    /// Checks the client's proof at the token endpoint: nothing for a public client (PKCE
    /// proves it), else the secret sent the way it registered (`client_secret_basic` or
    /// `client_secret_post`). `Err` says what was wrong.
    pub fn authenticate(&self, basic_secret: Option<&str>, form_secret: Option<&str>) -> Result<(), String> {
        let Some(hash) = &self.secret_hash else {
            return Ok(());
        };
        let sent = match self.auth_method.as_str() {
            "client_secret_post" => form_secret.or(basic_secret),
            _ => basic_secret.or(form_secret),
        };
        match sent {
            Some(s) if ct_eq(&digest(s), hash) => Ok(()),
            Some(_) => Err("the client secret is wrong".into()),
            None => Err(format!("this client authenticates with `{}`: send its secret", self.auth_method)),
        }
    }
}

fn ct_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The redirect URIs of a registration, each checked.
fn redirect_uris(value: Option<&Value>) -> Result<Vec<String>, RegisterError> {
    let Some(Value::Array(items)) = value else {
        return Err(RegisterError::RedirectUri("`redirect_uris` is required: a list of 1 to 10 URIs".into()));
    };
    if items.is_empty() || items.len() > MAX_REDIRECT_URIS {
        return Err(RegisterError::RedirectUri("`redirect_uris` must list 1 to 10 URIs".into()));
    }
    items
        .iter()
        .map(|v| {
            let uri =
                v.as_str().ok_or_else(|| RegisterError::RedirectUri("each redirect URI must be a string".into()))?;
            check_redirect_uri(uri).map_err(RegisterError::RedirectUri)?;
            Ok(uri.to_string())
        })
        .collect()
}

/// Whether `uri` may receive authorization codes; `Err` says why not.
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let shown: String = uri.chars().take(120).collect();
    let url = url::Url::parse(uri).map_err(|e| format!("redirect URI `{shown}` is not an absolute URI: {e}"))?;
    if url.fragment().is_some() {
        return Err(format!("redirect URI `{shown}` has a fragment (RFC 6749 3.1.2 forbids it)"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(format!(
            "redirect URI `{shown}` is plain http off this machine: use https, or a loopback address (127.0.0.1, [::1], localhost)"
        )),
        "javascript" | "data" | "file" | "vbscript" | "about" | "blob" | "ws" | "wss" | "ftp" => {
            Err(format!("redirect URI `{shown}` has a scheme no authorization response may go to"))
        }
        _ => Ok(()),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn same_loopback_but_port(registered: &str, asked: &str) -> bool {
    let (Ok(mut r), Ok(mut a)) = (url::Url::parse(registered), url::Url::parse(asked)) else {
        return false;
    };
    if r.scheme() != "http" || !is_loopback(&r) || !is_loopback(&a) {
        return false;
    }
    let _ = r.set_port(None);
    let _ = a.set_port(None);
    r == a
}

/// A JSON value as a short quoted text for an error message.
fn shown(v: &Value) -> String {
    v.to_string().chars().take(80).collect()
}

/// A list of strings (`default` when absent).
fn listed(value: Option<&Value>, default: &[&str], field: &str) -> Result<Vec<String>, RegisterError> {
    match value {
        None | Some(Value::Null) => Ok(default.iter().map(|s| s.to_string()).collect()),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| RegisterError::Metadata(format!("`{field}` lists strings")))
            })
            .collect(),
        Some(_) => Err(RegisterError::Metadata(format!("`{field}` must be a non-empty list of strings"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_that_could_leak_a_code_are_refused() {
        for ok in [
            "https://claude.ai/api/mcp/auth_callback",
            "http://127.0.0.1:33418/cb",
            "http://localhost/cb",
            "http://[::1]:8080/",
            "cursor://anysphere.cursor-retrieval/oauth/callback",
            "com.example.app:/cb",
        ] {
            assert!(check_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://evil.example/cb",
            "javascript:alert(1)",
            "data:text/html,x",
            "https://a.example/cb#frag",
            "/relative",
            "file:///etc/passwd",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_loopback_redirect_matches_on_any_port_and_nothing_else_does() {
        let c = Client {
            client_id: "c".into(),
            auth_method: "none".into(),
            client_name: "n".into(),
            redirect_uris: vec!["http://127.0.0.1:3000/callback".into(), "https://app.example/cb".into()],
            secret_hash: None,
        };
        assert!(c.redirects_to("http://127.0.0.1:49152/callback"));
        assert!(c.redirects_to("https://app.example/cb"));
        assert!(!c.redirects_to("http://127.0.0.1:49152/other"));
        assert!(!c.redirects_to("https://app.example:444/cb"));
        assert!(!c.redirects_to("https://app.example/cb?x=1"));
        assert!(!c.redirects_to("http://localhost:3000/callback"), "a different loopback name is another URI");
    }

    #[test]
    fn a_confidential_client_must_send_its_secret_the_way_it_registered() {
        let c = Client {
            client_id: "c".into(),
            auth_method: "client_secret_basic".into(),
            client_name: "n".into(),
            redirect_uris: vec![],
            secret_hash: Some(digest("s3")),
        };
        assert!(c.authenticate(Some("s3"), None).is_ok());
        assert!(c.authenticate(Some("nope"), None).unwrap_err().contains("wrong"));
        assert!(c.authenticate(None, None).unwrap_err().contains("client_secret_basic"));
    }
}
