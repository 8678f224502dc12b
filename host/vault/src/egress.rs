//! Outbound requests: egress checks, credential placement, size limits.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{Connection, FetchLimits, Placement, VaultError};

/// A request as a tool describes it: no credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboundRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

/// The external service's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboundResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The URL, parsed, if its scheme is http(s) and its host:port is on the connection's list.
pub(crate) fn check_url(conn: &Connection, raw: &str) -> Result<Url, VaultError> {
    let parsed = match (&conn.base_url, Url::parse(raw)) {
        (_, Ok(absolute)) => Ok(absolute),
        (Some(base), Err(url::ParseError::RelativeUrlWithoutBase)) => Url::parse(base).and_then(|b| b.join(raw)),
        (_, Err(e)) => Err(e),
    };
    let url = parsed.map_err(|e| VaultError::InvalidRequest(format!("url `{raw}`: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(VaultError::InvalidRequest(format!("url `{raw}`: only http and https are allowed")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(VaultError::InvalidRequest(format!("url `{raw}` carries credentials of its own")));
    }
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let port = url.port_or_known_default().unwrap_or(0);
    let default_port = url.port().is_none();
    let allowed = conn.allowed_hosts.iter().any(|entry| {
        let entry = entry.to_ascii_lowercase();
        match entry.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !h.ends_with(':') && p.chars().all(|c| c.is_ascii_digit()) => {
                h.trim_matches(['[', ']']) == host.trim_matches(['[', ']']) && p.parse() == Ok(port)
            }
            // A bare host admits only https on its default port: a credential never goes out in
            // clear unless an entry names the port explicitly (as local test servers do).
            _ => {
                entry.trim_matches(['[', ']']) == host.trim_matches(['[', ']'])
                    && default_port
                    && url.scheme() == "https"
            }
        }
    });
    if !allowed {
        return Err(VaultError::EgressRefused(format!(
            "`{host}:{port}` is not among the hosts connection `{}` may be sent to ({})",
            conn.name,
            conn.allowed_hosts.join(", ")
        )));
    }
    Ok(url)
}

pub(crate) async fn send(
    http: &reqwest::Client,
    limits: &FetchLimits,
    conn: &Connection,
    mut url: Url,
    req: OutboundRequest,
    secret: &str,
) -> Result<crate::OutboundResponse, VaultError> {
    let method = match req.method.to_ascii_uppercase().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD") => {
            reqwest::Method::from_bytes(m.as_bytes()).map_err(|e| VaultError::InvalidRequest(e.to_string()))?
        }
        other => return Err(VaultError::InvalidRequest(format!("method `{other}` is not allowed"))),
    };
    if req.body.as_ref().map(Vec::len).unwrap_or(0) > limits.max_request_bytes {
        return Err(VaultError::InvalidRequest(format!("body larger than {} bytes", limits.max_request_bytes)));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &req.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| VaultError::InvalidRequest(format!("header name `{name}` is not valid")))?;
        if name == reqwest::header::HOST {
            return Err(VaultError::InvalidRequest("the `host` header is set by the vault from the URL".into()));
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| VaultError::InvalidRequest(format!("value of header `{name}` is not valid")))?;
        headers.append(name, value);
    }
    let mut method = method;
    let mut body = req.body;
    // Redirects are followed by hand, and only to hosts the connection allows: every hop is
    // checked like the first; the credential is attached afresh on hops to the first request's
    // host and port only (a redirect to another allowed host, such as GitHub's API sending a
    // download to `codeload`, goes there without it); a redirect outside the list goes back to
    // the tool unfollowed.
    let credential_origin = (url.scheme().to_string(), url.host_str().map(str::to_string), url.port_or_known_default());
    for _hop in 0..=MAX_REDIRECTS {
        refuse_private_names(conn, &url).await?;
        let mut hop_url = url.clone();
        let mut hop_headers = headers.clone();
        let same_origin = (url.scheme().to_string(), url.host_str().map(str::to_string), url.port_or_known_default())
            == credential_origin;
        if same_origin {
            place_credential(conn, secret, &mut hop_url, &mut hop_headers)?;
        } else {
            refuse_reserved(conn, &hop_url, &hop_headers)?;
        }
        let mut builder = http.request(method.clone(), hop_url).headers(hop_headers);
        if let Some(b) = &body {
            builder = builder.body(b.clone());
        }
        // reqwest's error text can include the URL, which may hold a query credential: keep it out.
        let resp = builder.send().await.map_err(|e| unreachable(&url, e))?;
        let next = if resp.status().is_redirection() {
            resp.headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .map(|target| without_credential(conn, target))
                // Never from https down to http, whatever the allow-list says.
                .filter(|target| !(url.scheme() == "https" && target.scheme() == "http"))
                .filter(|target| check_url(conn, target.as_str()).is_ok())
        } else {
            None
        };
        match next {
            Some(target) => {
                if resp.status() == reqwest::StatusCode::SEE_OTHER
                    || (method == reqwest::Method::POST
                        && matches!(resp.status(), reqwest::StatusCode::MOVED_PERMANENTLY | reqwest::StatusCode::FOUND))
                {
                    method = reqwest::Method::GET;
                    body = None;
                }
                url = target;
            }
            None => return read_response(resp, limits, secret).await,
        }
    }
    Err(VaultError::Transport(format!("more than {MAX_REDIRECTS} redirects")))
}

/// Refuses a host that is, or whose name resolves to, an internal address (loopback,
/// private, link-local, metadata, ...: [`is_internal`]), unless the connection allows private
/// networks. An address written as a literal is judged like a resolved one: listing
/// `169.254.169.254:80` (or `[::ffff:127.0.0.1]`) in a connection does not reach it.
async fn refuse_private_names(conn: &Connection, url: &Url) -> Result<(), VaultError> {
    if conn.allow_private_network {
        return Ok(());
    }
    let literal = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(std::net::IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(std::net::IpAddr::V6(v6)),
        _ => None,
    };
    if let Some(ip) = literal.filter(|ip| is_internal(*ip)) {
        return Err(VaultError::EgressRefused(format!(
            "`{}` is the internal address {ip}; set `allow_private_network` on connection `{}` if that is meant",
            url.host_str().unwrap_or_default(),
            conn.name
        )));
    }
    let Some(url::Host::Domain(name)) = url.host() else { return Ok(()) };
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs = tokio::net::lookup_host((name, port)).await.map_err(|_| VaultError::Unreachable {
        host: name.to_string(),
        reason: "the name does not resolve".into(),
        timed_out: false,
    })?;
    for addr in addrs {
        let ip = addr.ip();
        let internal = is_internal(ip);
        if internal {
            return Err(VaultError::EgressRefused(format!(
                "`{name}` resolves to the internal address {ip}; set `allow_private_network` on connection `{}` if that is meant",
                conn.name
            )));
        }
    }
    Ok(())
}

/// Loopback, private, link-local, "this network" (0.0.0.0/8), carrier-grade NAT, broadcast,
/// unique-local, and the IPv6 forms that carry an IPv4 address inside (mapped, the deprecated
/// IPv4-compatible `::a.b.c.d`, 6to4 `2002::/16`, NAT64 `64:ff9b::/96`): each reaches the
/// IPv4 address it carries, so it is judged as that address.
pub fn is_internal(ip: std::net::IpAddr) -> bool {
    let internal_v4 = |v4: std::net::Ipv4Addr| {
        v4.is_loopback()
            || v4.is_private()
            || v4.is_link_local()
            || v4.is_broadcast()
            || v4.octets()[0] == 0
            || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xC0) == 64)
    };
    match ip {
        std::net::IpAddr::V4(v4) => internal_v4(v4),
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            let carried = |hi: u16, lo: u16| {
                internal_v4(std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8))
            };
            v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (IPv4-compatible).
                || v6.to_ipv4().map(internal_v4).unwrap_or(false)
                // 6to4: 2002:AABB:CCDD::/48 reaches a.b.c.d.
                || (s[0] == 0x2002 && carried(s[1], s[2]))
                // NAT64 (64:ff9b::/96) reaches IPv4 addresses too.
                || (s[0] == 0x64 && s[1] == 0xff9b)
        }
    }
}

/// The resolver of the vault's client for connections without `allow_private_network`: the
/// addresses it hands to the connector are the ones it checked, so a DNS answer that changes
/// between the egress check and the connect (DNS rebinding) cannot reach the internal network.
pub(crate) struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| is_internal(a.ip())) {
                let message = format!("`{host}` resolves to the internal address {}", bad.ip());
                return Err(Box::new(std::io::Error::new(std::io::ErrorKind::PermissionDenied, message))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Redirects followed within a connection's allowed hosts.
const MAX_REDIRECTS: usize = 5;

/// Refuses a request that sets the credential's header or query parameter itself, on a hop
/// that carries no credential (the tool must not smuggle its own either).
fn refuse_reserved(conn: &Connection, url: &Url, headers: &HeaderMap) -> Result<(), VaultError> {
    let mut probe_url = url.clone();
    let mut probe_headers = headers.clone();
    place_credential(conn, "", &mut probe_url, &mut probe_headers)
}

/// Puts the credential where the connection says, refusing a request that already has it.
fn place_credential(conn: &Connection, secret: &str, url: &mut Url, headers: &mut HeaderMap) -> Result<(), VaultError> {
    match conn.placement() {
        Placement::Header { name, prefix } => {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| VaultError::InvalidConnection(format!("header name `{name}` is not valid")))?;
            if headers.contains_key(&name) {
                return Err(VaultError::InvalidRequest(format!("header `{name}` is reserved for the credential")));
            }
            let mut value = HeaderValue::from_str(&format!("{prefix}{secret}"))
                .map_err(|_| VaultError::InvalidConnection("the secret is not a valid header value".into()))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Placement::Query { name } => {
            if url.query_pairs().any(|(k, _)| k == name.as_str()) {
                return Err(VaultError::InvalidRequest(format!(
                    "query parameter `{name}` is reserved for the credential"
                )));
            }
            url.query_pairs_mut().append_pair(&name, secret);
        }
    }
    Ok(())
}

/// The URL with the connection's query credential removed (a server may echo it in `Location`).
fn without_credential(conn: &Connection, mut target: Url) -> Url {
    if let Placement::Query { name } = conn.placement() {
        let kept: Vec<(String, String)> = target
            .query_pairs()
            .filter(|(k, _)| k != name.as_str())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        target.set_query(None);
        if !kept.is_empty() {
            target.query_pairs_mut().extend_pairs(kept);
        }
    }
    target
}

async fn read_response(
    mut resp: reqwest::Response,
    limits: &FetchLimits,
    secret: &str,
) -> Result<crate::OutboundResponse, VaultError> {
    let status = resp.status().as_u16();
    // A server may echo the credential (a query key in `Location`, a token in an error body
    // or a debug echo): the tool never sees it, raw or URL-encoded, in headers or body.
    let forms = secret_forms(secret);
    let headers = resp
        .headers()
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), redact_text(v, &forms))))
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| VaultError::Transport(describe(e)))? {
        if body.len() + chunk.len() > limits.max_response_bytes {
            return Err(VaultError::ResponseTooLarge(limits.max_response_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(crate::OutboundResponse { status, headers, body: redact_bytes(body, &forms) })
}

/// What `[redacted]` stands in for.
const REDACTED: &[u8] = b"[redacted]";

/// The ways a secret shows up in a response: as is, and URL-encoded (when that differs).
/// An empty secret has none (replacing "" would insert the marker everywhere).
fn secret_forms(secret: &str) -> Vec<Vec<u8>> {
    if secret.is_empty() {
        return Vec::new();
    }
    let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let mut forms = vec![secret.as_bytes().to_vec()];
    if encoded != secret {
        forms.push(encoded.into_bytes());
    }
    forms
}

fn redact_text(text: &str, forms: &[Vec<u8>]) -> String {
    String::from_utf8(redact_bytes(text.as_bytes().to_vec(), forms)).unwrap_or_else(|_| "[redacted]".into())
}

/// `bytes` with every occurrence of each form replaced by `[redacted]`.
fn redact_bytes(mut bytes: Vec<u8>, forms: &[Vec<u8>]) -> Vec<u8> {
    for form in forms {
        if bytes.len() < form.len() || !bytes.windows(form.len()).any(|w| w == form.as_slice()) {
            continue;
        }
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i..].starts_with(form) {
                out.extend_from_slice(REDACTED);
                i += form.len();
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        bytes = out;
    }
    bytes
}

fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        e.to_string()
    }
}

/// A request to `url` that got no answer, as the error the tool and the audit see: which host,
/// and why (resolution, connection, TLS, timeout), never the URL itself (it may hold a credential).
fn unreachable(url: &Url, e: reqwest::Error) -> VaultError {
    let host = url.host_str().unwrap_or("the API").to_string();
    let timed_out = e.is_timeout();
    let reason = if timed_out {
        "it did not answer in time".to_string()
    } else if e.is_connect() {
        // The source chain says which: DNS, refused connection, TLS handshake.
        let mut chain = Vec::new();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            chain.push(s.to_string());
            source = s.source();
        }
        let chain = chain.join(": ");
        let lower = chain.to_lowercase();
        if lower.contains("internal address") {
            // The public resolver refused the answer: an egress rule, not a network failure.
            return VaultError::EgressRefused(format!("`{host}`: {chain}"));
        }
        if lower.contains("dns") || lower.contains("resolve") || lower.contains("lookup") {
            "the name does not resolve".to_string()
        } else if lower.contains("tls") || lower.contains("certificate") || lower.contains("handshake") {
            format!("the TLS handshake failed ({chain})")
        } else if lower.contains("refused") {
            "the connection was refused".to_string()
        } else {
            format!("could not connect ({chain})")
        }
    } else {
        describe(e)
    };
    VaultError::Unreachable { host, reason, timed_out }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn a_secret_in_a_body_is_redacted_raw_and_url_encoded_and_nothing_else_changes() {
        let forms = super::secret_forms("sk live/42+x");
        let body = br#"{"echo":"sk live/42+x","q":"sk+live%2F42%2Bx","other":"sk live"}"#.to_vec();
        let out = String::from_utf8(super::redact_bytes(body, &forms)).unwrap();
        assert_eq!(out, r#"{"echo":"[redacted]","q":"[redacted]","other":"sk live"}"#);
        assert_eq!(super::redact_bytes(b"abc".to_vec(), &super::secret_forms("")), b"abc".to_vec());
        assert_eq!(super::redact_text("Bearer tok", &super::secret_forms("tok")), "Bearer [redacted]");
    }
    use std::str::FromStr;

    use reqwest::dns::Resolve;

    use super::*;

    #[tokio::test]
    async fn the_public_resolver_never_hands_out_an_internal_address() {
        let refused = PublicOnlyResolver.resolve(reqwest::dns::Name::from_str("localhost").unwrap()).await;
        let err = refused.err().expect("localhost is internal").to_string();
        assert!(err.contains("internal address"), "{err}");
        for ip in [
            "10.1.2.3",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            // "This network", reached as the host itself on most systems.
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            // IPv4-compatible and 6to4 forms of internal IPv4 addresses.
            "::169.254.169.254",
            "::10.0.0.1",
            "2002:a9fe:a9fe::1",
            "2002:7f00:1::",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1", "2002:5db8:d822::1", "::ffff:93.184.216.34"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }
}
