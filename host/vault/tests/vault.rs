//! The vault against a real local HTTP server and real databases.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use airlock_store::{sqlx, testing};
use airlock_vault::{
    Connection, ConnectionKind, FetchLimits, MasterKey, OutboundRequest, Placement, Vault, VaultError,
};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use zeroize::Zeroizing;

const SECRET: &str = "pat_live_5f1d2c3b4a-very-secret";

/// A stand-in API that answers 200 only when it sees the credential, and redirects elsewhere on /bounce.
async fn serve_api() -> SocketAddr {
    serve_counted_api().await.0
}

/// [`serve_api`], with the number of requests that reached it: a refusal must leave it unchanged.
async fn serve_counted_api() -> (SocketAddr, Arc<AtomicUsize>) {
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    let app = Router::new()
        .route(
            "/contacts",
            get(|headers: HeaderMap| async move {
                match headers.get("authorization").and_then(|v| v.to_str().ok()) {
                    Some(v) if v == format!("Bearer {SECRET}") => (axum::http::StatusCode::OK, "{\"results\":[]}"),
                    _ => (axum::http::StatusCode::UNAUTHORIZED, "{\"message\":\"missing credential\"}"),
                }
            }),
        )
        .route(
            "/bounce",
            get(|| async { (axum::http::StatusCode::FOUND, [("location", "http://evil.example/steal")], "") }),
        )
        .route("/big", get(|| async { "x".repeat(10_000) }))
        // A debug endpoint that echoes what it was sent, as some APIs' errors do.
        .route(
            "/echo-auth",
            get(|headers: HeaderMap| async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                let encoded: String = url::form_urlencoded::byte_serialize(auth.as_bytes()).collect();
                ([("x-echo", auth.clone())], format!("{{\"you_sent\":\"{auth}\",\"encoded\":\"{encoded}\"}}"))
            }),
        )
        .route("/moved", get(|| async { (axum::http::StatusCode::FOUND, [("location", "/contacts")], "") }))
        .route(
            "/echo-away",
            get(|uri: axum::http::Uri| async move {
                let to = format!("http://elsewhere.example/x?{}", uri.query().unwrap_or(""));
                (axum::http::StatusCode::FOUND, [("location", to)], "")
            }),
        )
        .route(
            "/by-query",
            get(|q: axum::extract::Query<std::collections::HashMap<String, String>>, headers: HeaderMap| async move {
                let ok = q.get("token").map(String::as_str) == Some("k") && !headers.contains_key("authorization");
                if ok {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::UNAUTHORIZED
                }
            }),
        )
        .layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
            counter.fetch_add(1, Ordering::SeqCst);
            next.run(req)
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, reached)
}

fn key() -> MasterKey {
    MasterKey::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap()
}

fn get_req(addr: SocketAddr, path: &str) -> OutboundRequest {
    OutboundRequest { method: "GET".into(), url: format!("http://{addr}{path}"), headers: vec![], body: None }
}

#[tokio::test]
async fn fetch_injects_the_secret_and_the_database_never_holds_it_in_clear() {
    let (addr, reached) = serve_counted_api().await;
    for t in testing::all().await {
        let vault = Vault::open(t.db.clone(), key(), FetchLimits { max_response_bytes: 4096, ..Default::default() })
            .await
            .unwrap();
        let conn = Connection { base_url: Some(format!("http://{addr}/")), ..loopback("hubspot", addr) };
        vault.put("acme", &conn, Zeroizing::new(SECRET.to_string())).await.unwrap();

        let resp = vault.fetch("acme", "hubspot", get_req(addr, "/contacts"), false).await.unwrap();
        assert_eq!(resp.status, 200, "{:?}", t.backend);
        // Relative URLs resolve against the connection's base url.
        let relative = OutboundRequest { url: "/contacts".into(), ..get_req(addr, "") };
        assert_eq!(vault.fetch("acme", "hubspot", relative, false).await.unwrap().status, 200);

        // Other tenants have no such connection.
        assert!(matches!(
            vault.fetch("globex", "hubspot", get_req(addr, "/contacts"), false).await,
            Err(VaultError::NotFound(_))
        ));

        // Egress: another port of the same host is another host.
        let other =
            OutboundRequest { url: format!("http://127.0.0.1:{}/contacts", addr.port() + 1), ..get_req(addr, "") };
        let err = vault.fetch("acme", "hubspot", other, false).await.unwrap_err();
        assert!(matches!(err, VaultError::EgressRefused(_)), "{err}");

        // A redirect to another host is returned, not followed: the credential never goes there.
        let resp = vault.fetch("acme", "hubspot", get_req(addr, "/bounce"), false).await.unwrap();
        assert_eq!(resp.status, 302);
        // A redirect within the allowed hosts is followed, with the credential.
        let resp = vault.fetch("acme", "hubspot", get_req(addr, "/moved"), false).await.unwrap();
        assert_eq!(resp.status, 200, "followed to /contacts, which demands the credential");

        // The tool may not set the credential's header itself.
        let mut spoof = get_req(addr, "/contacts");
        spoof.headers.push(("Authorization".into(), "Bearer mine".into()));
        let before = reached.load(Ordering::SeqCst);
        assert!(matches!(vault.fetch("acme", "hubspot", spoof, false).await, Err(VaultError::InvalidRequest(_))));
        assert_eq!(reached.load(Ordering::SeqCst), before, "the spoofed request never left the host");

        assert!(matches!(
            vault.fetch("acme", "hubspot", get_req(addr, "/big"), false).await,
            Err(VaultError::ResponseTooLarge(4096))
        ));

        // Metadata only, and no plaintext anywhere in the table.
        assert_eq!(
            vault.list("acme").await.unwrap(),
            vec![Connection { placement: Some(conn.placement()), ..conn.clone() }]
        );
        let rows: Vec<(Vec<u8>,)> =
            sqlx::query_as("SELECT sealed_secret FROM connections").fetch_all(t.db.pool()).await.unwrap();
        assert!(rows.iter().all(|(b,)| !b.windows(SECRET.len()).any(|w| w == SECRET.as_bytes())));

        // A sealed secret moved to another row does not open (bound to tenant and name).
        sqlx::query("INSERT INTO connections (tenant, name, kind, placement, base_url, allowed_hosts, requires_grant, sealed_secret, created_at, updated_at) SELECT 'globex', name, kind, placement, base_url, allowed_hosts, requires_grant, sealed_secret, created_at, updated_at FROM connections WHERE tenant = 'acme'")
            .execute(t.db.pool())
            .await
            .unwrap();
        assert!(matches!(
            vault.fetch("globex", "hubspot", get_req(addr, "/contacts"), false).await,
            Err(VaultError::Unseal(_))
        ));

        assert!(vault.delete("acme", "hubspot").await.unwrap());
        assert!(matches!(
            vault.fetch("acme", "hubspot", get_req(addr, "/contacts"), false).await,
            Err(VaultError::NotFound(_))
        ));
    }
}

#[tokio::test]
async fn query_placement_and_grant_requirement() {
    let (addr, reached) = serve_counted_api().await;
    let t = testing::sqlite().await;
    let vault = Vault::open(t.db.clone(), key(), FetchLimits::default()).await.unwrap();
    let conn = Connection {
        kind: ConnectionKind::ApiKey,
        placement: Some(Placement::Query { name: "token".into() }),
        base_url: None,
        requires_grant: true,
        ..loopback("pager", addr)
    };
    vault.put("acme", &conn, Zeroizing::new("k".into())).await.unwrap();
    let err = vault.fetch("acme", "pager", get_req(addr, "/contacts"), false).await.unwrap_err();
    assert!(matches!(err, VaultError::GrantRequired(_)), "{err}");
    assert_eq!(reached.load(Ordering::SeqCst), 0, "refused without a grant: nothing left the host");
    // With a grant the request goes out, the secret in the query and nowhere else.
    assert_eq!(vault.fetch("acme", "pager", get_req(addr, "/by-query"), true).await.unwrap().status, 200);
    let mut spoof = get_req(addr, "/by-query?token=mine");
    spoof.headers.clear();
    assert!(matches!(vault.fetch("acme", "pager", spoof, true).await, Err(VaultError::InvalidRequest(_))));
    assert_eq!(reached.load(Ordering::SeqCst), 1, "only the granted request reached the API");
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_at_open() {
    let t = testing::sqlite().await;
    Vault::open(t.db.clone(), key(), FetchLimits::default()).await.unwrap();
    let other = MasterKey::from_base64("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=").unwrap();
    let err = Vault::open(t.db.clone(), other, FetchLimits::default()).await.err().unwrap();
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(MasterKey::from_base64("c2hvcnQ=").is_err());

    let dir = tempfile::tempdir().unwrap();
    std::env::remove_var("AIRLOCK_MASTER_KEY");
    MasterKey::load_or_create(dir.path()).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("master.key")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    MasterKey::load_or_create(dir.path()).unwrap();
}

#[tokio::test]
async fn a_bare_host_entry_admits_only_https() {
    let t = testing::sqlite().await;
    let vault = Vault::open(t.db.clone(), key(), FetchLimits::default()).await.unwrap();
    let conn = Connection {
        name: "hubspot".into(),
        kind: ConnectionKind::Bearer,
        placement: None,
        base_url: None,
        allowed_hosts: vec!["api.hubapi.example".into()],
        requires_grant: false,
        oauth: None,
        allow_private_network: true, // the stand-in listens on loopback
        expose_token: false,
        state: None,
    };
    vault.put("acme", &conn, Zeroizing::new(SECRET.to_string())).await.unwrap();
    let plain = OutboundRequest {
        method: "GET".into(),
        url: "http://api.hubapi.example/crm".into(),
        headers: vec![],
        body: None,
    };
    assert!(
        matches!(vault.fetch("acme", "hubspot", plain, false).await, Err(VaultError::EgressRefused(_))),
        "no secret in clear"
    );
    let host = OutboundRequest {
        method: "GET".into(),
        url: "https://api.hubapi.example/crm".into(),
        headers: vec![("Host".into(), "evil.example".into())],
        body: None,
    };
    assert!(matches!(vault.fetch("acme", "hubspot", host, false).await, Err(VaultError::InvalidRequest(_))));
}

#[tokio::test]
async fn tenant_and_master_keys_rotate_without_stopping() {
    let addr = serve_api().await;
    for t in testing::all().await {
        let vault = Vault::open(t.db.clone(), key(), FetchLimits::default()).await.unwrap();
        let conn = loopback("hubspot", addr);
        vault.put("acme", &conn, Zeroizing::new(SECRET.to_string())).await.unwrap();
        vault.put("globex", &conn, Zeroizing::new(SECRET.to_string())).await.unwrap();
        let sealed = |tenant: &'static str| {
            let db = t.db.clone();
            async move {
                let (b,): (Vec<u8>,) = sqlx::query_as("SELECT sealed_secret FROM connections WHERE tenant = $1")
                    .bind(tenant)
                    .fetch_one(db.pool())
                    .await
                    .unwrap();
                b
            }
        };
        let before = sealed("acme").await;
        assert_eq!(vault.rotate_tenant_key("acme").await.unwrap(), 2, "{:?}", t.backend);
        assert_ne!(sealed("acme").await, before, "re-sealed under the new data key");
        assert_eq!(vault.fetch("acme", "hubspot", get_req(addr, "/contacts"), false).await.unwrap().status, 200);

        let new_master = MasterKey::from_base64("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=").unwrap();
        let untouched = sealed("globex").await;
        assert_eq!(vault.rotate_master_key(new_master).await.unwrap(), 3, "three data keys re-sealed");
        assert_eq!(sealed("globex").await, untouched, "secrets are not touched by a master rotation");
        for tenant in ["acme", "globex"] {
            assert_eq!(vault.fetch(tenant, "hubspot", get_req(addr, "/contacts"), false).await.unwrap().status, 200);
        }
        // A restart needs the new key; the old one is refused with a clear message.
        let err = Vault::open(t.db.clone(), key(), FetchLimits::default()).await.err().unwrap();
        assert!(err.to_string().contains("does not match"), "{err}");
        let reopened = Vault::open(
            t.db.clone(),
            MasterKey::from_base64("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=").unwrap(),
            FetchLimits::default(),
        )
        .await
        .unwrap();
        assert_eq!(reopened.fetch("globex", "hubspot", get_req(addr, "/contacts"), false).await.unwrap().status, 200);
    }
}

#[tokio::test]
async fn an_internal_address_by_name_or_literal_is_refused_unless_allowed() {
    let addr = serve_api().await;
    let t = testing::sqlite().await;
    let vault = Vault::open(t.db.clone(), key(), FetchLimits::default()).await.unwrap();
    let mut conn = Connection {
        name: "internal".into(),
        kind: ConnectionKind::Bearer,
        placement: None,
        base_url: Some(format!("http://localhost:{}", addr.port())),
        allowed_hosts: vec![format!("localhost:{}", addr.port())],
        requires_grant: false,
        oauth: None,
        allow_private_network: false,
        expose_token: false,
        state: None,
    };
    vault.put("acme", &conn, Zeroizing::new(SECRET.to_string())).await.unwrap();
    let req = OutboundRequest { method: "GET".into(), url: "/contacts".into(), headers: vec![], body: None };
    let err = vault.fetch("acme", "internal", req.clone(), false).await.unwrap_err();
    assert!(matches!(err, VaultError::EgressRefused(_)) && err.to_string().contains("internal address"), "{err}");
    // An address written as such is judged the same: loopback, mapped loopback, cloud metadata.
    for (host, url) in [
        (addr.to_string(), format!("http://{addr}/contacts")),
        (format!("[::ffff:7f00:1]:{}", addr.port()), format!("http://[::ffff:127.0.0.1]:{}/contacts", addr.port())),
        ("169.254.169.254:80".to_string(), "http://169.254.169.254/latest/meta-data/".to_string()),
    ] {
        let literal =
            Connection { name: "literal".into(), allowed_hosts: vec![host.clone()], base_url: None, ..conn.clone() };
        vault.put("acme", &literal, Zeroizing::new(SECRET.to_string())).await.unwrap();
        let req = OutboundRequest { method: "GET".into(), url: url.clone(), headers: vec![], body: None };
        let err = vault.fetch("acme", "literal", req, false).await.unwrap_err();
        assert!(
            matches!(err, VaultError::EgressRefused(_)) && err.to_string().contains("internal address"),
            "{url}: {err}"
        );
    }
    conn.allow_private_network = true;
    vault.put("acme", &conn, Zeroizing::new(SECRET.to_string())).await.unwrap();
    assert_eq!(vault.fetch("acme", "internal", req, false).await.unwrap().status, 200);
    let literal =
        Connection { name: "literal".into(), allowed_hosts: vec![addr.to_string()], base_url: None, ..conn.clone() };
    vault.put("acme", &literal, Zeroizing::new(SECRET.to_string())).await.unwrap();
    let req =
        OutboundRequest { method: "GET".into(), url: format!("http://{addr}/contacts"), headers: vec![], body: None };
    assert_eq!(vault.fetch("acme", "literal", req, false).await.unwrap().status, 200, "allowed when the admin says so");
}

#[tokio::test]
async fn a_query_credential_echoed_in_a_redirect_never_reaches_the_tool() {
    let addr = serve_api().await;
    let t = testing::sqlite().await;
    let vault = Vault::open(t.db.clone(), key(), FetchLimits::default()).await.unwrap();
    let conn = Connection {
        kind: ConnectionKind::ApiKey,
        placement: Some(Placement::Query { name: "api_key".into() }),
        ..loopback("keyed", addr)
    };
    vault.put("acme", &conn, Zeroizing::new("qk_live_0123456789abcdef".into())).await.unwrap();
    let req = OutboundRequest { method: "GET".into(), url: "/echo-away".into(), headers: vec![], body: None };
    let resp = vault.fetch("acme", "keyed", req, false).await.unwrap();
    assert_eq!(resp.status, 302, "not followed: another host");
    let location = resp.headers.iter().find(|(k, _)| k == "location").map(|(_, v)| v.clone()).unwrap();
    assert!(!location.contains("qk_live_0123456789abcdef") && location.contains("[redacted]"), "{location}");
}

/// What the GitHub and codeload stand-ins saw: (path, authorization header).
type SeenRequests = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

/// A stand-in for GitHub's REST API (its real request shapes: `Authorization: Bearer`,
/// `Accept: application/vnd.github+json`, a required `User-Agent`, a 301 for a renamed
/// repository, a 302 from `/tarball` to a signed `codeload` URL) and for `codeload` itself.
async fn serve_github() -> (SocketAddr, SocketAddr, SeenRequests) {
    use axum::extract::{Path, State};
    let seen: SeenRequests = Default::default();
    let codeload = Router::new()
        .route(
            "/{owner}/{repo}/legacy.tar.gz/refs/heads/{branch}",
            get(|State(seen): State<SeenRequests>, uri: axum::http::Uri, headers: HeaderMap| async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
                seen.lock().unwrap().push((uri.to_string(), auth));
                if uri.query() == Some("token=signed-download") {
                    (axum::http::StatusCode::OK, "tarball-bytes")
                } else {
                    (axum::http::StatusCode::NOT_FOUND, "")
                }
            }),
        )
        .with_state(seen.clone());
    let codeload_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let codeload_addr = codeload_listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(codeload_listener, codeload).await.unwrap() });

    let authorized = |headers: &HeaderMap| {
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {SECRET}"))
            && headers.get("accept").and_then(|v| v.to_str().ok()) == Some("application/vnd.github+json")
            && headers.contains_key("user-agent")
    };
    let api = Router::new()
        .route(
            "/repos/{owner}/{repo}/pulls/{number}",
            get(
                move |Path((owner, repo, number)): Path<(String, String, u64)>,
                      State(seen): State<SeenRequests>,
                      headers: HeaderMap| async move {
                    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
                    seen.lock().unwrap().push((format!("/repos/{owner}/{repo}/pulls/{number}"), auth));
                    if !authorized(&headers) {
                        return (axum::http::StatusCode::UNAUTHORIZED, [("location", String::new())], String::new());
                    }
                    if repo == "old-name" {
                        // GitHub answers a renamed repository with a permanent redirect on the same host.
                        let to = format!("/repos/{owner}/new-name/pulls/{number}");
                        return (axum::http::StatusCode::MOVED_PERMANENTLY, [("location", to)], String::new());
                    }
                    let body = serde_json::json!({ "number": number, "state": "open", "title": "Fix the flux capacitor",
                                               "base": { "repo": { "full_name": format!("{owner}/{repo}") } } });
                    (axum::http::StatusCode::OK, [("location", String::new())], body.to_string())
                },
            ),
        )
        .route(
            "/repos/{owner}/{repo}/tarball/{branch}",
            get(move |Path((owner, repo, branch)): Path<(String, String, String)>, headers: HeaderMap| async move {
                if !authorized(&headers) {
                    return (axum::http::StatusCode::UNAUTHORIZED, [("location", String::new())]);
                }
                let to = format!(
                    "http://{codeload_addr}/{owner}/{repo}/legacy.tar.gz/refs/heads/{branch}?token=signed-download"
                );
                (axum::http::StatusCode::FOUND, [("location", to)])
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, api).await.unwrap() });
    (addr, codeload_addr, seen)
}

#[tokio::test]
async fn github_stand_in_same_host_redirects_keep_the_credential_other_hosts_never_get_it() {
    let (api, codeload, seen) = serve_github().await;
    for t in testing::all().await {
        seen.lock().unwrap().clear();
        let vault = Vault::open(t.db.clone(), key(), FetchLimits::default()).await.unwrap();
        let conn = Connection { allowed_hosts: vec![api.to_string(), codeload.to_string()], ..loopback("github", api) };
        vault.put("acme", &conn, Zeroizing::new(SECRET.to_string())).await.unwrap();
        let github = |path: &str| OutboundRequest {
            method: "GET".into(),
            url: path.into(),
            headers: vec![
                ("accept".into(), "application/vnd.github+json".into()),
                ("user-agent".into(), "airlock-code-review".into()),
                ("x-github-api-version".into(), "2022-11-28".into()),
            ],
            body: None,
        };

        let resp = vault.fetch("acme", "github", github("/repos/acme/widgets/pulls/42"), false).await.unwrap();
        assert_eq!(resp.status, 200, "{:?}: {}", t.backend, String::from_utf8_lossy(&resp.body));
        let pr: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!((pr["number"].as_u64(), pr["state"].as_str()), (Some(42), Some("open")));

        // A renamed repository: the 301 on the same host is followed, with the credential.
        let resp = vault.fetch("acme", "github", github("/repos/acme/old-name/pulls/7"), false).await.unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&resp.body).unwrap()["base"]["repo"]["full_name"],
            "acme/new-name"
        );

        // The tarball: the API redirects to codeload, another (allowed) host: followed, without the credential.
        let resp = vault.fetch("acme", "github", github("/repos/acme/widgets/tarball/main"), false).await.unwrap();
        assert_eq!((resp.status, resp.body.as_slice()), (200, b"tarball-bytes".as_slice()));
        let seen = seen.lock().unwrap().clone();
        let download = seen.iter().find(|(p, _)| p.contains("legacy.tar.gz")).expect("codeload was reached");
        assert_eq!(download.1, None, "the GitHub token never goes to codeload");
        let api_calls: Vec<_> = seen.iter().filter(|(p, _)| p.starts_with("/repos/")).collect();
        assert_eq!(api_calls.len(), 3, "{api_calls:?}");
        assert!(api_calls.iter().all(|(_, auth)| auth.as_deref() == Some(&format!("Bearer {SECRET}"))));
    }
}

#[tokio::test]
async fn agent_namespaces_resolve_their_own_connection_first() {
    let addr = serve_api().await;
    let t = testing::sqlite().await;
    let vault = Vault::open(t.db.clone(), key(), FetchLimits::default()).await.unwrap();
    let conn = |name: &str| Connection { base_url: None, ..loopback(name, addr) };
    vault.put("acme", &conn("hubspot"), Zeroizing::new("tenant-wide".into())).await.unwrap();
    vault.put("acme", &conn("crm/hubspot"), Zeroizing::new(SECRET.into())).await.unwrap();

    assert_eq!(vault.resolve("acme", "crm", "hubspot").await.unwrap().name, "crm/hubspot");
    assert_eq!(vault.resolve("acme", "crm", "hubspot").await.unwrap().owner(), Some("crm"));
    assert_eq!(vault.resolve("acme", "mailer", "hubspot").await.unwrap().name, "hubspot", "others get the tenant's");
    let err = vault.resolve("acme", "mailer", "crm/hubspot").await.unwrap_err();
    assert!(matches!(err, VaultError::InvalidRequest(_)), "a tool cannot name another agent's namespace: {err}");
    // The agent's own credential is the one sent.
    let resp = vault.fetch("acme", "crm/hubspot", get_req(addr, "/contacts"), false).await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(vault.fetch("acme", "hubspot", get_req(addr, "/contacts"), false).await.unwrap().status, 401);

    for bad in ["CRM/hubspot", "/hubspot", "crm/", "a/b/c"] {
        let err = vault.put("acme", &conn(bad), Zeroizing::new("x".into())).await.unwrap_err();
        assert!(matches!(err, VaultError::InvalidConnection(_)), "{bad}: {err}");
    }
    // Static keys are never handed out, whatever the setting says.
    let exposed = Connection { expose_token: true, ..conn("static") };
    assert!(matches!(
        vault.put("acme", &exposed, Zeroizing::new("x".into())).await,
        Err(VaultError::InvalidConnection(_))
    ));
    vault.put("acme", &conn("crm/other"), Zeroizing::new("x".into())).await.unwrap();
    assert_eq!(vault.delete_namespace("acme", "crm").await.unwrap(), 2);
    assert_eq!(vault.list("acme").await.unwrap().iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["hubspot"]);
}

#[tokio::test]
async fn a_secret_the_api_echoes_in_its_body_or_headers_never_reaches_the_tool() {
    let addr = serve_api().await;
    let t = testing::sqlite().await;
    let vault = Vault::open(t.db.clone(), key(), FetchLimits::default()).await.unwrap();
    let conn = loopback("echoing", addr);
    vault.put("acme", &conn, Zeroizing::new(SECRET.into())).await.unwrap();
    let req = OutboundRequest { method: "GET".into(), url: "/echo-auth".into(), headers: vec![], body: None };
    let resp = vault.fetch("acme", "echoing", req, false).await.unwrap();
    assert_eq!(resp.status, 200);
    let body = String::from_utf8(resp.body).unwrap();
    assert!(!body.contains(SECRET), "{body}");
    let encoded: String = url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
    assert!(!body.contains(&encoded), "{body}");
    assert_eq!(body.matches("[redacted]").count(), 2, "raw and URL-encoded: {body}");
    let echoed = resp.headers.iter().find(|(k, _)| k == "x-echo").map(|(_, v)| v.clone()).unwrap();
    assert_eq!(echoed, "Bearer [redacted]");
}

/// Two hosts on one PostgreSQL: host B answers a vault call from memory (no database read),
/// and every change made through host A (a replaced secret, a deleted connection, a rotated
/// data key) is what B's very next call uses, with no pause between them: the change feed
/// (`airlock_store::Changes`) told B before A's write returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_answering_connections_from_memory_uses_what_another_host_changed_at_once() {
    let Some(t) = testing::postgres().await else { return };
    let addr = serve_api().await;
    let (name,): (String,) = sqlx::query_as("SELECT current_database()::text").fetch_one(t.db.pool()).await.unwrap();
    let db_b = airlock_store::Db::connect(&testing::with_database(&testing::postgres_server_url().unwrap(), &name))
        .await
        .unwrap();
    let host_a = Vault::open(t.db.clone(), key(), FetchLimits::default()).await.unwrap();
    let host_b = Vault::open(db_b.clone(), key(), FetchLimits::default()).await.unwrap();
    for db in [&t.db, &db_b] {
        let mut live = false;
        for _ in 0..250 {
            live = db.changes().fresh();
            if live {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(live, "the change feed never became live");
    }
    // Each host knows the other once it heard one of its heartbeats.
    tokio::time::sleep(3 * airlock_store::changes::HEARTBEAT).await;

    let conn = loopback("hubspot", addr);
    host_a.put("acme", &conn, Zeroizing::new(SECRET.to_string())).await.unwrap();
    assert_eq!(status(&host_b, addr).await.unwrap(), 200);
    // From memory: the row gone behind the feed's back (no host wrote it) is not seen.
    sqlx::query("DELETE FROM connections WHERE name = 'hubspot'").execute(t.db.pool()).await.unwrap();
    assert_eq!(status(&host_b, addr).await.unwrap(), 200, "host B read the database: it does not answer from memory");

    for round in 0..3 {
        // Replaced through A with a wrong secret: B's next call sends the new one (refused).
        host_a.put("acme", &conn, Zeroizing::new("pat_revoked".to_string())).await.unwrap();
        assert_eq!(status(&host_b, addr).await.unwrap(), 401, "round {round}: B used the replaced secret");
        host_a.put("acme", &conn, Zeroizing::new(SECRET.to_string())).await.unwrap();
        assert_eq!(status(&host_b, addr).await.unwrap(), 200, "round {round}");
        // Deleted through A: gone for B at once.
        assert!(host_a.delete("acme", "hubspot").await.unwrap());
        let gone = status(&host_b, addr).await;
        assert!(
            matches!(gone, Err(VaultError::NotFound(_))),
            "round {round}: B still used a deleted connection: {gone:?}"
        );
        host_a.put("acme", &conn, Zeroizing::new(SECRET.to_string())).await.unwrap();
        assert_eq!(status(&host_b, addr).await.unwrap(), 200, "round {round}");
    }
    // A data key rotated through A: B opens the re-sealed secret.
    host_a.rotate_tenant_key("acme").await.unwrap();
    assert_eq!(status(&host_b, addr).await.unwrap(), 200);
}

/// What the stand-in API answered to a call as acme's `hubspot` through `vault`.
async fn status(vault: &Vault, addr: SocketAddr) -> Result<u16, VaultError> {
    vault.fetch("acme", "hubspot", get_req(addr, "/contacts"), false).await.map(|r| r.status)
}

/// A Bearer connection named `name` to a stand-in API on loopback at `addr`.
fn loopback(name: &str, addr: SocketAddr) -> Connection {
    Connection {
        name: name.into(),
        kind: ConnectionKind::Bearer,
        placement: None,
        base_url: Some(format!("http://{addr}")),
        allowed_hosts: vec![addr.to_string()],
        requires_grant: false,
        oauth: None,
        allow_private_network: true, // the stand-in listens on loopback
        expose_token: false,
        state: None,
    }
}
