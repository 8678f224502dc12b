//! Tenants and the people who run them: every route behind its door (walked from the router's
//! own table), members' roles, API tokens revoked at once (also across hosts sharing
//! PostgreSQL), tenant names checked before anything is written, and tenant deletion.

mod support;

use std::collections::HashMap;

use airlock::api::{route_table, Scope};
use airlock_store::sqlx;
use reqwest::Method;
use serde_json::{json, Value};
use support::TestHost;

/// A path of the table with its `{params}` filled from `values` (else `x`).
fn fill(path: &str, values: &HashMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').unwrap() + open;
        let name = &rest[open + 1..close];
        out.push_str(values.get(name).map(String::as_str).unwrap_or("x"));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Objects of the `default` tenant ("B" here), by path parameter.
async fn objects_of_default(t: &TestHost) -> HashMap<&'static str, String> {
    let agent = t.agent("victim").await;
    t.grant(&[("agent:victim", "can_use", "tool:hello.greet"), ("user:carol", "cfo", "tenant:default")]).await;
    let (api, _) = support::billing_api("s3cret").await;
    t.connection("secret-api", api, "s3cret").await;
    t.policy("hello.greet", "cfo", 600).await;
    let (status, approval) =
        t.request(Method::POST, "/v1/approvals", &agent, Some(json!({ "tool": "hello.greet", "input": {} }))).await;
    assert_eq!(status, 201, "{approval}");
    let (status, body) = t.admin_post("/v1/tokens", json!({ "name": "b-bot", "role": "admin" })).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = t.admin_post("/v1/ciba/clients", json!({ "client_id": "b-client" })).await;
    assert_eq!(status, 201, "{body}");
    HashMap::from([
        ("name", "victim".to_string()),
        ("id", approval["id"].as_str().unwrap().to_string()),
        ("tool", "hello.greet".to_string()),
        ("agent", "victim".to_string()),
        ("client_id", "b-client".to_string()),
        ("store", "default".to_string()),
        ("tenant", "default".to_string()),
        ("call_id", "call_x".to_string()),
        ("model", "x".to_string()),
        ("publisher", "x".to_string()),
        ("key_id", "x".to_string()),
    ])
}

/// The routes anyone may call: each authenticates what it must itself.
const PUBLIC: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("POST", "/oauth/token"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/.well-known/openid-configuration"),
    ("POST", "/ciba/backchannel"),
    ("POST", "/bc-authorize"),
    ("POST", "/ciba/callback/{tenant}"),
    ("POST", "/v1/invitations/accept"),
    // The invitation code (or the started ceremony) is the credential.
    ("POST", "/v1/passkeys/register"),
    ("POST", "/v1/passkeys/register/finish"),
    // A passkey sign-in: the assertion is the credential.
    ("POST", "/v1/signin/passkey"),
    ("POST", "/v1/signin/passkey/finish"),
    // The console's static pages (all data comes from the API, behind its doors).
    ("GET", "/"),
    ("GET", "/console"),
    ("GET", "/signin"),
    ("GET", "/signin/register"),
    ("GET", "/console/{page}"),
    ("GET", "/console/assets/{version}/{name}"),
    // `airlock login` (RFC 8628): the device code is the CLI's only secret.
    ("POST", "/oauth/device_authorization"),
    // Single sign-on: to the tenant's provider, and back (the state and code are the credential).
    ("GET", "/signin/sso"),
    ("GET", "/signin/sso/callback"),
    // Connect's return from an OAuth2 connection's provider (the single-use state is the credential).
    ("GET", "/oauth/connect/callback"),
    // Prometheus metrics: off unless `--metrics`, then behind `--metrics-token` when one is set.
    ("GET", "/metrics"),
    // The API's own description (OpenAPI 3.1).
    ("GET", "/v1/openapi.json"),
    // MCP clients find, register with and get consent from Airlock's authorization server:
    // metadata is public, a registration holds no authority, consent needs a signed-in session.
    ("GET", "/.well-known/oauth-protected-resource"),
    ("GET", "/.well-known/oauth-protected-resource/mcp"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("POST", "/oauth/register"),
    ("GET", "/oauth/authorize"),
    ("POST", "/oauth/authorize"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_behind_its_door_walked_from_the_router_itself() {
    let t = TestHost::start().await;
    let acme = t.tenant_admin("acme").await;
    let b = objects_of_default(&t).await;
    let table = route_table(t.host.clone());
    assert!(table.len() > 60, "the table is the router's: {}", table.len());

    let mut public: Vec<(String, String)> =
        table.iter().filter(|r| r.scope == Scope::Public).map(|r| (r.method.to_string(), r.path.to_string())).collect();
    public.sort();
    let mut expected: Vec<(String, String)> = PUBLIC.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    expected.sort();
    assert_eq!(public, expected, "a new public route must be added here on purpose");

    for route in &table {
        let path = fill(route.path, &b);
        let sep = if path.contains('?') { '&' } else { '?' };
        let body =
            (route.method != Method::GET && route.method != Method::DELETE).then(|| json!({ "tenant": "default" }));
        match route.scope {
            Scope::Tenant => {
                // A member of acme naming the default tenant's objects: 404, never 403.
                let named = format!("{path}{sep}tenant=default");
                let (status, reply) = t.request(route.method.clone(), &named, &acme, body.clone()).await;
                assert_eq!(status, 404, "{} {named}: {reply}", route.method);
                // The operator's token acts in no tenant.
                let (status, reply) = t.request(route.method.clone(), &path, &t.operator, body.clone()).await;
                assert_eq!(status, 403, "operator on {} {path}: {reply}", route.method);
                // No token, or an agent's: 401.
                let (status, _) = t.request(route.method.clone(), &path, "", body.clone()).await;
                assert_eq!(status, 401, "{} {path} without a token", route.method);
            }
            Scope::Operator => {
                let (status, reply) = t.request(route.method.clone(), &path, &t.admin, body.clone()).await;
                assert_eq!(status, 403, "tenant admin on {} {path}: {reply}", route.method);
                let (status, reply) = t.request(route.method.clone(), &path, &acme, body.clone()).await;
                assert_eq!(status, 403, "tenant admin on {} {path}: {reply}", route.method);
                let (status, _) = t.request(route.method.clone(), &path, "", body.clone()).await;
                assert_eq!(status, 401, "{} {path} without a token", route.method);
            }
            Scope::Agent => {
                if route.path == "/mcp" {
                    continue; // rmcp's transport; its door is tested in tests/mcp.rs
                }
                let (status, reply) = t.request(route.method.clone(), &path, &t.admin, body.clone()).await;
                assert_eq!(status, 401, "a member's token is no agent's on {} {path}: {reply}", route.method);
            }
            Scope::Public => {}
        }
    }

    // Naming the default tenant's objects by id, without `?tenant=`, finds nothing either.
    for (method, path) in [
        (Method::GET, format!("/v1/approvals/{}", b["id"])),
        (Method::POST, format!("/v1/approvals/{}/decision", b["id"])),
        (Method::DELETE, "/v1/agents/victim".to_string()),
        (Method::DELETE, "/v1/connections/secret-api".to_string()),
        (Method::DELETE, "/v1/tokens/b-bot".to_string()),
        (Method::DELETE, "/v1/ciba/clients/b-client".to_string()),
        (Method::GET, "/stores/default/authorization-models".to_string()),
        (Method::POST, "/stores/default/check".to_string()),
    ] {
        let body = (method == Method::POST).then(|| json!({ "approve": true }));
        let (status, reply) = t.request(method.clone(), &path, &acme, body).await;
        assert_eq!(status, 404, "{method} {path}: {reply}");
    }
    // All of it is still there.
    let (_, approval) = t.admin_get(&format!("/v1/approvals/{}", b["id"])).await;
    assert_eq!(approval["status"], "pending");
    assert!(t.host.agents.exists("default", "victim").await.unwrap());
    assert_eq!(t.host.vault.list("default").await.unwrap().len(), 1);
    t.host.flush().await;
    let audit = t.audit().await;
    assert!(!audit.iter().any(|e| e["agent"].as_str().is_some_and(|a| a.contains("acme"))), "acme left no trace here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_reads_and_an_approver_decides_and_neither_does_anything_else() {
    let t = TestHost::start().await;
    let b = objects_of_default(&t).await;
    t.grant(&[("user:ivy", "auditor", "tenant:default")]).await;
    let auditor = t.member_token("user:ivy").await;
    let carol = t.member_token("user:carol").await;
    let table = route_table(t.host.clone());

    // The auditor reads the audit and verifies it.
    let (status, body) = t.request(Method::GET, "/v1/audit", &auditor, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body["events"].as_array().unwrap().is_empty());
    let (status, body) = t.request(Method::GET, "/v1/audit/verify", &auditor, None).await;
    assert_eq!((status, &body["broken_at"]), (200, &Value::Null), "{body}");

    let approver_routes = [
        "/v1/approvals",
        "/v1/approvals/{id}",
        "/v1/approvals/events",
        "/v1/approvals/{id}/decision",
        "/v1/approvals/{id}/step-up",
        "/v1/approvals/{id}/proof",
        "/v1/approvals/{id}/verify",
        "/v1/me",
        "/v1/session",
        "/v1/signout",
        // Every member sees and revokes the MCP clients they let act for them (their own only).
        "/v1/oauth/grants",
        "/v1/oauth/grants/{id}",
    ];
    for route in table.iter().filter(|r| r.scope == Scope::Tenant) {
        let path = fill(route.path, &b);
        let body = (route.method != Method::GET && route.method != Method::DELETE).then(|| json!({ "approve": false }));
        // The auditor changes nothing (OpenFGA's queries are POSTs that change nothing).
        let query = ["/read", "/check", "/batch-check", "/list-objects", "/list-users", "/expand"]
            .iter()
            .any(|q| route.path.starts_with("/stores/") && route.path.ends_with(q))
            || route.path == "/v1/approvals/{id}/verify"
            || route.path == "/v1/signout"
            || route.path == "/v1/oauth/grants/{id}";
        if route.method != Method::GET && !query {
            let (status, reply) = t.request(route.method.clone(), &path, &auditor, body.clone()).await;
            assert_eq!(status, 403, "auditor on {} {path}: {reply}", route.method);
        }
        // The approver does nothing but approvals.
        if !approver_routes.contains(&route.path) {
            let (status, reply) = t.request(route.method.clone(), &path, &carol, body).await;
            assert_eq!(status, 403, "approver on {} {path}: {reply}", route.method);
        }
    }
    // Nothing was changed by those tries: the approval still waits, the agent lives.
    let (_, approval) = t.admin_get(&format!("/v1/approvals/{}", b["id"])).await;
    assert_eq!(approval["status"], "pending");
    assert!(t.host.agents.exists("default", "victim").await.unwrap());

    // The approver sees the request for its role and decides it, as itself.
    let (status, list) = t.request(Method::GET, "/v1/approvals?status=pending", &carol, None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["approvals"].as_array().unwrap().len(), 1, "{list}");
    // The auditor may not decide.
    let decision = format!("/v1/approvals/{}/decision", b["id"]);
    let (status, _) = t.request(Method::POST, &decision, &auditor, Some(json!({ "approve": true }))).await;
    assert_eq!(status, 403);
    let (status, body) = t.request(Method::POST, &decision, &carol, Some(json!({ "approve": true }))).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("step_up_required")), "{body}");
    let (status, body) = t.decide(&b["id"], "user:carol", true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["approver"], "user:carol");
    // Someone holding no approver role sees none of the queue.
    let nobody = t.member_token("user:nobody").await;
    let (status, list) = t.request(Method::GET, "/v1/approvals", &nobody, None).await;
    assert_eq!((status, list["approvals"].as_array().map(Vec::len)), (200, Some(0)), "{list}");
    let (status, me) = t.request(Method::GET, "/v1/me", &carol, None).await;
    assert_eq!((status, me["subject"].as_str(), &me["roles"]), (200, Some("user:carol"), &json!(["cfo"])));
}

/// What the database holds for tenants the requests named (none may be made up by a request).
async fn audit_rows_of(t: &TestHost, pattern: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE tenant LIKE $1 OR length(tenant) > 64")
        .bind(pattern)
        .fetch_one(t.host.db.pool())
        .await
        .unwrap();
    n
}

async fn malformed_tenants_write_nothing(t: &TestHost) {
    let http = reqwest::Client::new();
    let long = "t".repeat(10 * 1024);
    for tenant in [long.as_str(), "../etc", "nope", "a b"] {
        for path in ["/oauth/token", "/ciba/backchannel"] {
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", "x"),
                ("client_secret", "y"),
                ("tenant", tenant),
                ("scope", "openid"),
                ("login_hint", "carol"),
            ];
            let resp = http.post(format!("{}{path}", t.url)).form(&form).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 400, "{path} with tenant of {} bytes", tenant.len());
            let body: Value = resp.json().await.unwrap();
            let said = body["error_description"].as_str().unwrap();
            assert!(said.len() < 200, "the refusal does not echo the input: {said}");
        }
    }
    // Meanwhile the audit writer keeps committing every real tenant's events.
    let token = t.agent("steady").await;
    t.grant(&[("agent:steady", "can_use", "tool:hello.greet")]).await;
    assert_eq!(t.call(&token, "hello.greet", json!({ "name": "x" })).await.0, 200);
    t.host.flush().await;
    let events = t.audit().await;
    assert!(events.iter().any(|e| e["kind"] == "tool.call" && e["agent"] == "agent:steady"));
    assert_eq!(audit_rows_of(t, "nope").await + audit_rows_of(t, "../etc").await + audit_rows_of(t, "a b").await, 0);
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tenants WHERE name <> 'default'")
        .fetch_one(t.host.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 0, "no tenant was made up by a request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_endpoints_refuse_bad_tenants_before_writing_anything_on_sqlite() {
    let t = TestHost::start().await;
    malformed_tenants_write_nothing(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_endpoints_refuse_bad_tenants_before_writing_anything_on_postgresql() {
    let Some(url) = fresh_postgres("airlock_badtenant").await else { return };
    let tmp = tempfile::tempdir().unwrap();
    let t = TestHost::start_in(tmp.path().to_path_buf(), Some(url), support::test_limits()).await;
    malformed_tenants_write_nothing(&t).await;
}

/// A new, empty PostgreSQL database, when the test server is configured.
async fn fresh_postgres(prefix: &str) -> Option<String> {
    let server = airlock_store::testing::postgres_server_url()?;
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let admin = airlock_store::Db::connect_without_migrations(&server).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin.pool()).await.unwrap();
    Some(airlock_store::testing::with_database(&server, &name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_on_its_next_request_on_both_hosts_sharing_postgresql() {
    let Some(url) = fresh_postgres("airlock_tokens").await else { return };
    let (tmp_a, tmp_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = TestHost::start_in(tmp_a.path().to_path_buf(), Some(url.clone()), support::test_limits()).await;
    std::fs::copy(tmp_a.path().join("master.key"), tmp_b.path().join("master.key")).unwrap();
    let b = TestHost::start_in(tmp_b.path().to_path_buf(), Some(url), support::test_limits()).await;

    let (status, made) =
        a.admin_post("/v1/tokens", json!({ "name": "ci-bot", "role": "admin", "expires_in_seconds": 3600 })).await;
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_string();
    for host in [&a, &b] {
        let (status, me) = host.request(Method::GET, "/v1/me", &token, None).await;
        assert_eq!((status, me["subject"].as_str()), (200, Some("token:ci-bot")), "{me}");
    }
    let (_, listed) = a.admin_get("/v1/tokens").await;
    let row = listed["tokens"].as_array().unwrap().iter().find(|t| t["name"] == "ci-bot").unwrap().clone();
    assert!(row["last_used_at"].is_i64(), "last use shown: {row}");
    assert!(row.get("token_hash").is_none() && !listed.to_string().contains(&token), "never the secret");

    let (status, _) = a.request(Method::DELETE, "/v1/tokens/ci-bot", &a.admin, None).await;
    assert_eq!(status, 200);
    for host in [&b, &a] {
        let (status, body) = host.request(Method::GET, "/v1/me", &token, None).await;
        assert_eq!(status, 401, "revoked at once: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_and_invitations_are_single_use() {
    let t = TestHost::start().await;
    let (status, body) =
        t.admin_post("/v1/tokens", json!({ "name": "old", "role": "auditor", "expires_in_seconds": -5 })).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) =
        t.admin_post("/v1/tokens", json!({ "name": "both", "role": "admin", "as_member": "user:x" })).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = t.admin_post("/v1/tokens", json!({ "name": "Bad Name", "role": "admin" })).await;
    assert_eq!(status, 400, "{body}");

    let (status, made) = t.admin_post("/v1/invitations", json!({ "member": "user:dana", "role": "dpo" })).await;
    assert_eq!(status, 201, "{made}");
    let code = made["invitation"]["code"].as_str().unwrap();
    let accept = |code: String| {
        let t = &t;
        async move { t.request(Method::POST, "/v1/invitations/accept", "", Some(json!({ "code": code }))).await }
    };
    let (status, first) = accept(code.to_string()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!((first["member"].as_str(), first["role"].as_str()), (Some("user:dana"), Some("dpo")));
    assert!(t.host.rebac.check("default", "user:dana", "dpo", "tenant:default").unwrap());
    let (status, again) = accept(code.to_string()).await;
    assert_eq!(status, 404, "single use: {again}");
    let (status, _) = accept("inv_forged".into()).await;
    assert_eq!(status, 404);
    let dana = first["token"].as_str().unwrap();
    let (status, me) = t.request(Method::GET, "/v1/me", dana, None).await;
    assert_eq!((status, &me["roles"]), (200, &json!(["dpo"])), "{me}");
    // Removing the member's relation takes their rights at once (the token carries relations,
    // it does not copy them).
    let (status, _) = t
        .admin_post(
            "/v1/tuples",
            json!({ "deletes": [{ "user": "user:dana", "relation": "dpo", "object": "tenant:default" }] }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, me) = t.request(Method::GET, "/v1/me", dana, None).await;
    assert_eq!(me["roles"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tenant_leaves_nothing_of_it_but_its_sealed_audit() {
    let t = TestHost::start().await;
    let acme = t.tenant_admin("acme").await;
    let as_acme = |method: Method, path: &str, body: Option<Value>| {
        let (t, acme, path) = (&t, acme.clone(), path.to_string());
        async move { t.request(method, &path, &acme, body).await }
    };
    let (status, agent) = as_acme(Method::POST, "/v1/agents", Some(json!({ "name": "worker" }))).await;
    assert_eq!(status, 201, "{agent}");
    let agent_token = agent["token"].as_str().unwrap().to_string();
    let writes = json!({ "writes": [{ "user": "agent:worker", "relation": "can_use", "object": "tool:hello.greet" }] });
    assert_eq!(as_acme(Method::POST, "/v1/tuples", Some(writes)).await.0, 200);
    let (api, _) = support::billing_api("acme-secret").await;
    let conn = json!({ "kind": "bearer", "allowed_hosts": [api.to_string()], "secret": "acme-secret", "allow_private_network": true });
    assert_eq!(as_acme(Method::PUT, "/v1/connections/billing-api", Some(conn)).await.0, 200);
    let policy = json!({ "tool": "hello.greet", "role": "cfo" });
    assert_eq!(as_acme(Method::POST, "/v1/policies", Some(policy)).await.0, 200);
    assert_eq!(as_acme(Method::POST, "/v1/ciba/clients", Some(json!({ "client_id": "c" }))).await.0, 201);
    assert_eq!(as_acme(Method::POST, "/v1/tokens", Some(json!({ "name": "bot", "role": "admin" }))).await.0, 201);
    let (status, pending) = t
        .request(Method::POST, "/v1/approvals", &agent_token, Some(json!({ "tool": "hello.greet", "input": {} })))
        .await;
    assert_eq!(status, 201, "{pending}");
    let jwt = {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", "worker"),
            ("client_secret", &agent_token),
            ("tenant", "acme"),
        ];
        let resp = reqwest::Client::new().post(format!("{}/oauth/token", t.url)).form(&form).send().await.unwrap();
        let body: Value = resp.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    };
    assert_eq!(t.request(Method::GET, "/v1/tools", &jwt, None).await.0, 200);

    let (status, body) = t.request(Method::DELETE, "/v1/tenants/acme", &t.operator, None).await;
    assert_eq!(status, 200, "{body}");

    // No row of it is left in any table with a tenant column (found from the schema, so a
    // table added later cannot be missed), but its audit trail's.
    let pool = t.host.db.pool();
    let tables: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table'").fetch_all(pool).await.unwrap();
    let mut left = Vec::new();
    for (table,) in tables {
        let cols: Vec<(String,)> =
            sqlx::query_as(&format!("SELECT name FROM pragma_table_info('{table}')")).fetch_all(pool).await.unwrap();
        for column in ["tenant", "id", "name"].into_iter().filter(|c| cols.iter().any(|(n,)| n == c)) {
            let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM \"{table}\" WHERE \"{column}\" = 'acme'"))
                .fetch_one(pool)
                .await
                .unwrap();
            if n > 0 {
                left.push(format!("{table}.{column}: {n}"));
            }
        }
    }
    assert!(left.iter().all(|l| l.starts_with("audit_")), "only its audit is left: {left:?}");
    assert!(left.iter().any(|l| l.starts_with("audit_events")), "its audit is kept: {left:?}");

    // Its agents' tokens and its people's tokens are refused.
    for token in [&agent_token, &jwt] {
        assert_eq!(t.request(Method::GET, "/v1/tools", token, None).await.0, 401);
    }
    assert_eq!(t.request(Method::GET, "/v1/me", &acme, None).await.0, 401);
    // The trail is intact, sealed by the deletion, and the name cannot be taken again.
    t.host.flush().await;
    let v = t.host.audit.verify("acme").await.unwrap();
    assert_eq!(v.broken_at, None);
    let last = t.host.audit.list("acme", v.events - 1, 1).await.unwrap();
    assert_eq!(last[0].event.kind, "tenant.delete");
    let (status, body) = t.request(Method::POST, "/v1/tenants", &t.operator, Some(json!({ "name": "acme" }))).await;
    assert_eq!(status, 409, "{body}");
    // The host's own chain records it too; the operator reads it.
    let (status, host_audit) = t.request(Method::GET, "/v1/host/audit", &t.operator, None).await;
    assert_eq!(status, 200);
    assert!(host_audit.to_string().contains("tenant.delete"), "{host_audit}");
}

/// Runs the `airlock` CLI against `t` with `token` as `AIRLOCK_TOKEN` (or none); stdout, stderr.
fn cli(t: &TestHost, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.args(args).args(["--server", &t.url, "--data-dir"]).arg(&t.dir);
    cmd.env_remove("AIRLOCK_ADMIN_TOKEN").env_remove("AIRLOCK_TOKEN").env_remove("AIRLOCK_TENANT");
    if let Some(token) = token {
        cmd.env("AIRLOCK_TOKEN", token);
    }
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_a_tenant_its_admin_joins_and_tokens_come_and_go() {
    let t = TestHost::start().await;
    let run = |token: Option<&str>, args: &[&str]| tokio::task::block_in_place(|| cli(&t, token, args));

    let (ok, out, err) = run(None, &["tenant", "create", "globex", "--admin", "alice"]);
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let code = created["invitation"]["code"].as_str().unwrap().to_string();
    assert!(err.contains(&format!("airlock invitation accept {code}")), "{err}");
    // The default tenant's admin may not create tenants: that is the operator's.
    let (status, _) = t.request(Method::POST, "/v1/tenants", &t.admin, Some(json!({ "name": "initech" }))).await;
    assert_eq!(status, 403);

    let (ok, out, err) = run(None, &["invitation", "accept", &code]);
    assert!(ok, "{err}");
    let alice = serde_json::from_str::<Value>(&out).unwrap()["token"].as_str().unwrap().to_string();
    let (ok, out, _) = run(Some(&alice), &["whoami"]);
    assert!(ok);
    let me: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((me["tenant"].as_str(), me["subject"].as_str()), (Some("globex"), Some("user:alice")), "{me}");

    let (ok, out, err) = run(Some(&alice), &["token", "create", "ci-bot", "--role", "admin", "--expires", "1d"]);
    assert!(ok, "{err}");
    let bot = serde_json::from_str::<Value>(&out).unwrap()["token"].as_str().unwrap().to_string();
    let (ok, out, _) = run(Some(&bot), &["agent", "create", "worker"]);
    assert!(ok && out.contains("\"tenant\": \"globex\""), "{out}");
    let (ok, out, _) = run(Some(&alice), &["token", "list"]);
    assert!(ok && out.contains("ci-bot") && !out.contains(&bot), "{out}");
    // A globex token names the default tenant: 404, as if it did not exist.
    let (ok, _, err) = run(Some(&alice), &["tuple", "list", "--tenant", "default"]);
    assert!(!ok && err.contains("404"), "{err}");
    let (ok, _, err) = run(Some(&alice), &["token", "revoke", "ci-bot"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(Some(&bot), &["agent", "create", "second"]);
    assert!(!ok && err.contains("401"), "revoked at once: {err}");

    let (ok, out, _) = run(None, &["tenant", "list"]);
    assert!(ok && out.contains("globex") && out.contains("default"), "{out}");
    let (ok, _, err) = run(None, &["tenant", "delete", "globex"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(Some(&alice), &["whoami"]);
    assert!(!ok && err.contains("401"), "{err}");
}
