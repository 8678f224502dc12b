//! The vault as tools use it through the host: agent namespaces, `vault.token`, and the
//! delegation chain in the audit.

mod support;

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use support::{billing_api, TestHost};

const AGENT_SECRET: &str = "sk_live_crm_only_51c0ffee";
const TENANT_SECRET: &str = "sk_live_shared_7d15ea5e";

async fn probe_agent(t: &TestHost, name: &str, tools: &[&str]) -> String {
    let token = t.agent(name).await;
    for tool in tools {
        t.grant(&[(&format!("agent:{name}"), "can_use", &format!("tool:probe.{tool}"))]).await;
    }
    token
}

async fn put_connection(t: &TestHost, name: &str, body: Value) -> (u16, Value) {
    t.request(reqwest::Method::PUT, &format!("/v1/connections/{name}"), &t.admin, Some(body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_uses_its_own_namespace_first_and_never_another_agents() {
    let t = TestHost::start().await;
    let crm = probe_agent(&t, "crm", &["fetch"]).await;
    let mailer = probe_agent(&t, "mailer", &["fetch"]).await;
    let (own_api, own_seen) = billing_api(AGENT_SECRET).await;
    let (shared_api, shared_seen) = billing_api(TENANT_SECRET).await;
    let conn = |api: std::net::SocketAddr, secret: &str, agent: Option<&str>| json!({ "kind": "bearer", "allowed_hosts": [api.to_string()], "secret": secret, "agent": agent, "allow_private_network": true });
    assert_eq!(put_connection(&t, "billing-api", conn(own_api, AGENT_SECRET, Some("crm"))).await.0, 200);
    assert_eq!(put_connection(&t, "billing-api", conn(shared_api, TENANT_SECRET, None)).await.0, 200);
    t.grant(&[
        ("agent:crm", "can_use", "connection:crm/billing-api"),
        ("agent:mailer", "can_use", "connection:billing-api"),
    ])
    .await;

    // Same unqualified name, two different credentials and hosts.
    let fetch = |api: std::net::SocketAddr, connection: &str| json!({ "connection": connection, "url": format!("http://{api}/customers/7") });
    let (status, body) = t.call(&crm, "probe.fetch", fetch(own_api, "billing-api")).await;
    assert_eq!((status, &body["result"]["status"]), (200, &json!(200)), "{body}");
    let (status, body) = t.call(&mailer, "probe.fetch", fetch(shared_api, "billing-api")).await;
    assert_eq!((status, &body["result"]["status"]), (200, &json!(200)), "{body}");
    assert_eq!(own_seen.paths().len(), 1);
    assert_eq!(shared_seen.paths().len(), 1);

    // The crm agent's namespace resolves first: its connection does not reach the shared host.
    let (status, body) = t.call(&crm, "probe.fetch", fetch(shared_api, "billing-api")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("egress refused"), "{body}");
    assert_eq!(shared_seen.paths().len(), 1, "the refused request never reached the shared host");
    // Nobody names another agent's namespace, even holding a tuple on it.
    t.grant(&[("agent:mailer", "can_use", "connection:crm/billing-api")]).await;
    let (status, body) = t.call(&mailer, "probe.fetch", fetch(own_api, "crm/billing-api")).await;
    assert_eq!(status, 403, "the probe turns the vault's `invalid` into a refusal: {body}");
    assert!(
        body["message"].as_str().unwrap().contains("Invalid(")
            && body["message"].as_str().unwrap().contains("without a namespace"),
        "{body}"
    );
    assert_eq!(own_seen.paths().len(), 1, "nothing more reached the crm agent's API");

    // The audit names the resolved connection and the external host in the chain, never a secret.
    let events = t.audit().await;
    let used: Vec<&Value> = events.iter().filter(|e| e["kind"] == "vault.fetch" && e["outcome"] == "allowed").collect();
    assert_eq!(used.len(), 2);
    assert_eq!(
        used[0]["detail"]["chain"],
        json!(["agent:crm", "tool:probe.fetch", "connection:crm/billing-api", format!("api:127.0.0.1")])
    );
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains(AGENT_SECRET) && !text.contains(TENANT_SECRET));

    // Listing shows metadata only; deleting the agent's connection leaves the tenant's.
    let (_, listed) = t.admin_get("/v1/connections").await;
    let names: Vec<&str> =
        listed["connections"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["billing-api", "crm/billing-api"]);
    assert!(!listed.to_string().contains(AGENT_SECRET));
    let (status, _) = t.request(reqwest::Method::DELETE, "/v1/connections/billing-api?agent=crm", &t.admin, None).await;
    assert_eq!(status, 200);
    let (status, body) = t.call(&crm, "probe.fetch", fetch(shared_api, "billing-api")).await;
    assert_eq!((status, &body["result"]["status"]), (403, &Value::Null), "no tuple on the tenant's: {body}");
    assert_eq!(shared_seen.paths().len(), 1, "nor did this one");
}

/// A token endpoint answering refresh grants with a fresh access token each time; how many
/// token requests reached it.
async fn oauth_provider() -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU32>) {
    let issued = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let count = issued.clone();
    let app = Router::new().route(
        "/oauth/token",
        post(move |axum::extract::Form(form): axum::extract::Form<std::collections::HashMap<String, String>>| {
            let issued = issued.clone();
            async move {
                if form.get("refresh_token").map(String::as_str) != Some("rt_github_app") {
                    return (axum::http::StatusCode::BAD_REQUEST, Json(json!({ "error": "invalid_grant" })));
                }
                let n = issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                (
                    axum::http::StatusCode::OK,
                    Json(json!({ "access_token": format!("ghu_short_{n}"), "expires_in": 900 })),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_token_hands_out_only_what_the_policy_exposes_and_audits_it() {
    let t = TestHost::start().await;
    let agent = probe_agent(&t, "reviewer", &["token"]).await;
    let (provider, refreshed) = oauth_provider().await;
    let refreshes = || refreshed.load(std::sync::atomic::Ordering::SeqCst);
    let oauth = |expose: bool| {
        json!({ "kind": "oauth2_refresh", "allowed_hosts": ["api.github.com"], "expose_token": expose,
                "oauth": { "token_url": format!("http://{provider}/oauth/token"), "client_id": "Iv1.airlock" },
                "secret": json!({ "refresh_token": "rt_github_app", "client_secret": "app-secret" }).to_string() })
    };
    assert_eq!(put_connection(&t, "github", oauth(false)).await.0, 200);
    t.grant(&[("agent:reviewer", "can_use", "connection:github")]).await;

    let (status, body) = t.call(&agent, "probe.token", json!({ "connection": "github" })).await;
    assert_eq!(status, 403, "not exposed: {body}");
    assert!(body["message"].as_str().unwrap().contains("expose_token"), "says what would allow it: {body}");
    assert_eq!(refreshes(), 0, "refused before the token endpoint was asked");

    assert_eq!(put_connection(&t, "github", oauth(true)).await.0, 200);
    let (status, body) = t.call(&agent, "probe.token", json!({ "connection": "github" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["token"], "ghu_short_1");
    let expires_in = body["result"]["expires_in"].as_u64().unwrap();
    assert!((880..=900).contains(&expires_in), "{expires_in}");

    // Without `can_use` on the connection, exposure or not, nothing comes out.
    let (status, _) = t
        .request(
            reqwest::Method::POST,
            "/v1/tuples",
            &t.admin,
            Some(json!({ "deletes": [{ "user": "agent:reviewer", "relation": "can_use", "object": "connection:github" }] })),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = t.call(&agent, "probe.token", json!({ "connection": "github" })).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(refreshes(), 1, "the refused call asked the token endpoint nothing");

    let events = t.audit().await;
    let tokens: Vec<&Value> = events.iter().filter(|e| e["kind"] == "vault.token").collect();
    assert_eq!(
        tokens.iter().map(|e| e["outcome"].as_str().unwrap()).collect::<Vec<_>>(),
        ["denied", "allowed", "denied"]
    );
    assert_eq!(tokens[1]["detail"]["exposed"], true);
    assert_eq!(tokens[1]["detail"]["chain"], json!(["agent:reviewer", "tool:probe.token", "connection:github"]));
    assert!(!serde_json::to_string(&events).unwrap().contains("ghu_short_1"), "the token itself is never audited");
}
