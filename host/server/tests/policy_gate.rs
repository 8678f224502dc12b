//! Host-enforced approval policies and grants presented by callers, over real HTTP: the gate
//! asks the policy's role and holds the call; a grant is spent once, for exactly its action and
//! arguments, even under 100 concurrent presenters and across two hosts on one PostgreSQL
//! database; a held call survives a restart of the host and runs once when resumed.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{recorder, spawn_call, wait_for_pending_of, Recorded, TestHost};

const BILLING: &str = "sk_billing_5d1c9b";
const DIRECTORY: &str = "sk_directory_77aa01";

/// The offboarding component, its two stand-in APIs, an agent allowed everything, three roles.
async fn setup(t: &TestHost, agent: &str) -> (String, Recorded, Recorded) {
    if t.host.runtime.component("offboarding").is_none() {
        t.host.add_component("offboarding", airlock::bundled::OFFBOARDING, "test").await.unwrap();
    }
    let (billing, billed) = recorder(BILLING).await;
    let (directory, directed) = recorder(DIRECTORY).await;
    t.connection("billing-api", billing, BILLING).await;
    t.connection("directory-api", directory, DIRECTORY).await;
    let token = t.agent(agent).await;
    let me = format!("agent:{agent}");
    let mut tuples: Vec<(String, String, String)> =
        ["revoke-access", "export-billing-data", "cancel-subscriptions", "issue-refund", "delete-customer-data"]
            .iter()
            .map(|t| (me.clone(), "can_use".to_string(), format!("tool:offboarding.{t}")))
            .collect();
    for c in ["billing-api", "directory-api"] {
        tuples.push((me.clone(), "can_use".into(), format!("connection:{c}")));
    }
    tuples.push((me.clone(), "offboard".into(), "customer:c-7".into()));
    tuples.push(("user:carol".into(), "cfo".into(), "tenant:default".into()));
    tuples.push(("user:dana".into(), "dpo".into(), "tenant:default".into()));
    let refs: Vec<(&str, &str, &str)> = tuples.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    t.grant(&refs).await;
    (token, billed, directed)
}

/// Asks ahead (agent token) for approval of `tool` with `input`; returns the approval.
async fn ask_ahead(t: &TestHost, token: &str, tool: &str, input: Value) -> Value {
    let (status, body) =
        t.request(reqwest::Method::POST, "/v1/approvals", token, Some(json!({ "tool": tool, "input": input }))).await;
    assert_eq!(status, 201, "{body}");
    body
}

fn refund() -> Value {
    json!({ "customer_id": "c-7", "amount": "10.00", "currency": "EUR" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_holds_the_call_until_its_role_approves_and_a_denial_runs_nothing() {
    let t = TestHost::start().await;
    let (token, billed, _) = setup(&t, "clerk").await;

    // The CLI puts the policy; the admin API lists it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["policy", "put", "offboarding.issue-refund", "--role", "cfo", "--ttl", "15m", "--server", &t.url])
        .env("AIRLOCK_TOKEN", &t.admin)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, list) = t.admin_get("/v1/policies").await;
    assert_eq!(
        list["policies"],
        json!([{ "tool": "offboarding.issue-refund", "role": "cfo", "ttl_seconds": 900,
        "entry": false, "updated_at": list["policies"][0]["updated_at"] }])
    );

    // A tool without a policy runs at once; one with a policy waits for a CFO.
    let (status, body) = t.call(&token, "offboarding.export-billing-data", json!({ "customer_id": "c-7" })).await;
    assert_eq!(status, 200, "{body}");
    let call = spawn_call(&t, &token, "offboarding.issue-refund", refund());
    let pending = wait_for_pending_of(&t, "offboarding.issue-refund").await;
    assert_eq!(pending["role"], "cfo");
    assert_eq!(pending["action"], "issue-refund");
    assert_eq!(pending["details"], r#"{"amount":"10.00","currency":"EUR","customer_id":"c-7"}"#);
    assert_eq!(
        pending["summary"],
        r#"issue-refund with offboarding.issue-refund by agent:clerk: amount "10.00", currency "EUR", customer_id "c-7""#,
        "the host writes what the approver reads, from the bound arguments"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!call.is_finished(), "the call waits for the human");
    assert_eq!(billed.lines(), vec!["GET /customers/c-7/export"], "nothing refunded before the approval");

    let id = pending["id"].as_str().unwrap();
    let (status, _) = t.decide(id, "user:dana", true).await;
    assert_eq!(status, 403, "the DPO is not the CFO");
    let (status, body) = t.decide(id, "user:carol", true).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), call).await.unwrap().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(billed.lines(), vec!["GET /customers/c-7/export", "POST /refunds"]);
    // The grant was bound to this call and spent by it.
    let grant = t.host.approvals.ledger().get("default", id).await.unwrap();
    assert_eq!(grant.state, airlock_approvals::GrantState::Consumed);
    assert_eq!(grant.call_id.as_deref(), body["call_id"].as_str());
    // SHA-256 of the canonical arguments (keys sorted, no spaces), computed outside Airlock:
    // `printf '%s' '{"amount":"10.00","currency":"EUR","customer_id":"c-7"}' | sha256sum`.
    assert_eq!(grant.args_digest, "d086b62532f40d00c38b00fb40c43e02eb5c3bbbe77c400a537aecd727c1123f");

    // Denied: refused before anything runs, and audited.
    let call = spawn_call(&t, &token, "offboarding.issue-refund", refund());
    let pending = wait_for_pending_of(&t, "offboarding.issue-refund").await;
    let carol = t.member_token("user:carol").await;
    let (status, _) = t
        .request(
            reqwest::Method::POST,
            &format!("/v1/approvals/{}/decision", pending["id"].as_str().unwrap()),
            &carol,
            Some(json!({ "approve": false, "reason": "already refunded" })),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), call).await.unwrap().unwrap();
    assert_eq!((status, body["code"].as_str()), (403, Some("approval_denied")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("already refunded"), "{body}");
    assert_eq!(billed.count(), 2, "the denied refund never reached the billing API");
    let events = t.audit().await;
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "tool.call" && e["outcome"] == "denied" && e["detail"]["code"] == "approval_denied"),
        "{events:?}"
    );

    // Deleting the policy lets the tool run without a human again.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["policy", "delete", "offboarding.issue-refund", "--server", &t.url])
        .env("AIRLOCK_TOKEN", &t.admin)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, body) = t.call(&token, "offboarding.issue-refund", refund()).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presented_grant_is_spent_once_and_only_for_its_own_action_and_arguments() {
    let t = TestHost::start().await;
    let (token, billed, directed) = setup(&t, "clerk").await;
    t.policy("offboarding.issue-refund", "cfo", 900).await;
    t.policy("offboarding.delete-customer-data", "dpo", 900).await;

    let asked = ask_ahead(&t, &token, "offboarding.issue-refund", refund()).await;
    assert_eq!(asked["role"], "cfo", "the policy's role, whatever the agent asks");
    assert_eq!(asked["call_id"], Value::Null);
    let id = asked["id"].as_str().unwrap().to_string();
    // The agent long-polls its approval; the CFO approves meanwhile.
    let waiter = {
        let (url, token, id) = (t.url.clone(), token.clone(), id.clone());
        tokio::spawn(async move {
            let resp = reqwest::Client::new()
                .get(format!("{url}/v1/approvals/{id}/wait?timeout_seconds=20"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(t.decide(&id, "user:carol", true).await.0, 200);
    let (status, waited) = tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap();
    assert_eq!((status, waited["status"].as_str()), (200, Some("approved")), "{waited}");

    // A refund approval presented for the deletion: refused by the ledger, nothing deleted.
    let grant = [("Airlock-Grant", id.as_str())];
    let (status, body) =
        t.call_with(&token, "offboarding.delete-customer-data", json!({ "customer_id": "c-7" }), &grant).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("grant_refused")), "{body}");
    assert_eq!(body["ledger_reason"], "wrong_binding:tool");
    assert!(body["message"].as_str().unwrap().contains("is bound to another tool"), "{body}");
    // The same refund with other arguments: refused too.
    let more = json!({ "customer_id": "c-7", "amount": "990.00", "currency": "EUR" });
    let (status, body) = t.call_with(&token, "offboarding.issue-refund", more, &grant).await;
    assert_eq!((status, body["ledger_reason"].as_str()), (403, Some("wrong_binding:args_digest")), "{body}");
    assert_eq!(directed.count() + billed.count(), 0, "nothing reached an API");

    // The right call spends it at once (no second human wait), a replay is refused.
    let (status, body) = t.call_with(&token, "offboarding.issue-refund", refund(), &grant).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = t.call_with(&token, "offboarding.issue-refund", refund(), &grant).await;
    assert_eq!((status, body["ledger_reason"].as_str()), (403, Some("replayed")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("was already used"), "{body}");
    assert_eq!(billed.lines(), vec!["POST /refunds"]);

    // Another agent cannot spend or even see it.
    let (other, _, _) = setup(&t, "intruder").await;
    let fresh = ask_ahead(&t, &token, "offboarding.issue-refund", refund()).await;
    let fresh_id = fresh["id"].as_str().unwrap();
    assert_eq!(t.decide(fresh_id, "user:carol", true).await.0, 200);
    let (status, body) =
        t.call_with(&other, "offboarding.issue-refund", refund(), &[("Airlock-Grant", fresh_id)]).await;
    assert_eq!((status, body["ledger_reason"].as_str()), (403, Some("wrong_binding:agent")), "{body}");
    let (status, _) = t.request(reqwest::Method::GET, &format!("/v1/approvals/{fresh_id}/wait"), &other, None).await;
    assert_eq!(status, 404);

    // Every refusal is in the ledger and in the audit trail.
    let history = t.host.approvals.ledger().history("default", &id).await.unwrap();
    let refused: Vec<_> =
        history.iter().filter(|e| e.event == "claim_refused").filter_map(|e| e.reason.clone()).collect();
    assert_eq!(refused, vec!["wrong_binding:tool", "wrong_binding:args_digest", "replayed"], "{history:?}");
    let events = t.audit().await;
    let denied = events
        .iter()
        .filter(|e| e["kind"] == "tool.call" && e["outcome"] == "denied" && e["detail"]["code"] == "grant_refused")
        .count();
    assert_eq!(denied, 4, "{events:?}");
}

/// 100 callers present one grant at once, through `hosts`: exactly one call runs.
async fn race(hosts: &[String], token: &str, grant: &str, billed: &Recorded) {
    let mut calls = Vec::new();
    for i in 0..100 {
        let (url, token, grant) = (hosts[i % hosts.len()].clone(), token.to_string(), grant.to_string());
        calls.push(tokio::spawn(async move {
            let resp = reqwest::Client::new()
                .post(format!("{url}/v1/tools/offboarding.export-billing-data/call"))
                .bearer_auth(token)
                .header("Airlock-Grant", grant)
                .json(&json!({ "customer_id": "c-7" }))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }));
    }
    let mut ok = 0;
    for c in calls {
        let (status, body) = c.await.unwrap();
        match status {
            200 => ok += 1,
            403 => assert_eq!(body["ledger_reason"], "replayed", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 1, "exactly one presenter wins");
    assert_eq!(billed.lines(), vec!["GET /customers/c-7/export"], "the API saw exactly one request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_presenters_of_one_grant_run_one_call_on_sqlite() {
    let t = TestHost::start().await;
    let (token, billed, _) = setup(&t, "clerk").await;
    t.policy("offboarding.export-billing-data", "cfo", 900).await;
    let asked = ask_ahead(&t, &token, "offboarding.export-billing-data", json!({ "customer_id": "c-7" })).await;
    let id = asked["id"].as_str().unwrap();
    assert_eq!(t.decide(id, "user:carol", true).await.0, 200);
    race(&[t.url.clone()], &token, id, &billed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_presenters_across_two_hosts_on_postgresql_run_one_call() {
    let Some(server) = airlock_store::testing::postgres_server_url() else { return };
    let name = format!("airlock_grant_{}", uuid::Uuid::new_v4().simple());
    let admin = airlock_store::Db::connect_without_migrations(&server).await.unwrap();
    airlock_store::sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin.pool()).await.unwrap();
    let url = airlock_store::testing::with_database(&server, &name);

    let tmp = tempfile::tempdir().unwrap();
    let one = TestHost::start_in(tmp.path().to_path_buf(), Some(url.clone()), support::test_limits()).await;
    let (token, billed, _) = setup(&one, "clerk").await;
    one.policy("offboarding.export-billing-data", "cfo", 900).await;
    let asked = ask_ahead(&one, &token, "offboarding.export-billing-data", json!({ "customer_id": "c-7" })).await;
    let id = asked["id"].as_str().unwrap();
    assert_eq!(one.decide(id, "user:carol", true).await.0, 200);

    // The second host is another OS process (`airlock serve`) sharing the database (and so
    // its master key); the presenters are spread over both.
    let tmp2 = tempfile::tempdir().unwrap();
    std::fs::copy(tmp.path().join("master.key"), tmp2.path().join("master.key")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut two = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--database-url", &url, "--data-dir"])
        .arg(tmp2.path())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let two_url = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..600 {
        if reqwest::get(format!("{two_url}/healthz")).await.map(|r| r.status().is_success()).unwrap_or(false) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the second host process answers");
    race(&[one.url.clone(), two_url], &token, id, &billed).await;
    two.kill().await.unwrap();
    let grant = one.host.approvals.ledger().get("default", id).await.unwrap();
    assert_eq!(grant.state, airlock_approvals::GrantState::Consumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_expires_overdue_grants_without_anyone_presenting_them() {
    let t = TestHost::start().await;
    let (token, _, _) = setup(&t, "clerk").await;
    let (status, asked) = t
        .request(
            reqwest::Method::POST,
            "/v1/approvals",
            &token,
            Some(json!({ "tool": "offboarding.revoke-access", "input": { "customer_id": "c-7" }, "ttl_seconds": 1 })),
        )
        .await;
    assert_eq!(status, 201, "{asked}");
    let id = asked["id"].as_str().unwrap();
    // No policy names a role for this tool: a tenant admin decides, and carol (a cfo) may not.
    assert_eq!(t.decide(id, "user:carol", true).await.0, 403);
    t.grant(&[("user:ada", "admin", "tenant:default")]).await;
    assert_eq!(t.decide(id, "user:ada", true).await.0, 200);
    let ledger = t.host.approvals.ledger();
    assert_eq!(ledger.get("default", id).await.unwrap().state, airlock_approvals::GrantState::Issued);
    let mut state = None;
    for _ in 0..80 {
        state = Some(ledger.get("default", id).await.unwrap().state);
        if state == Some(airlock_approvals::GrantState::Expired) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, Some(airlock_approvals::GrantState::Expired));
    let history = ledger.history("default", id).await.unwrap();
    assert_eq!(history.last().map(|e| (e.event.as_str(), e.by.as_str())), Some(("expire", "host")));
}

/// A call held by a policy when the host stops: the caller re-attaches to it on the next host,
/// and it runs once, with its original input, when approved.
#[test]
fn a_held_call_survives_a_restart_and_runs_once_when_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    // The stand-in APIs outlive both hosts.
    let outside = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (billing, billed) = outside.block_on(recorder(BILLING));
    let (directory, _) = outside.block_on(recorder(DIRECTORY));

    let first = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (token, call_id, approval_id) = first.block_on(async {
        let t = TestHost::start_in(dir.clone(), None, support::test_limits()).await;
        t.host.add_component("offboarding", airlock::bundled::OFFBOARDING, "test").await.unwrap();
        t.connection("billing-api", billing, BILLING).await;
        t.connection("directory-api", directory, DIRECTORY).await;
        let token = t.agent("clerk").await;
        t.grant(&[
            ("agent:clerk", "can_use", "tool:offboarding.issue-refund"),
            ("agent:clerk", "can_use", "connection:billing-api"),
            ("agent:clerk", "offboard", "customer:c-7"),
            ("user:carol", "cfo", "tenant:default"),
        ])
        .await;
        t.policy("offboarding.issue-refund", "cfo", 900).await;
        let _held = spawn_call(&t, &token, "offboarding.issue-refund", refund());
        let pending = wait_for_pending_of(&t, "offboarding.issue-refund").await;
        t.host.flush().await;
        (token, pending["call_id"].as_str().unwrap().to_string(), pending["id"].as_str().unwrap().to_string())
    });
    // The host stops with the call still waiting: its tasks and its HTTP connections end here.
    first.shutdown_timeout(Duration::from_secs(5));
    assert_eq!(billed.count(), 0);

    let second = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    second.block_on(async {
        let t = TestHost::start_in(dir.clone(), None, support::test_limits()).await;
        let pending = t.host.approvals.pending_for_resume(None).await.unwrap();
        assert_eq!(pending.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), vec![approval_id.as_str()]);
        // Re-attach first, then the CFO approves: the resumed call runs.
        let resumed = {
            let (url, token, call_id) = (t.url.clone(), token.clone(), call_id.clone());
            tokio::spawn(async move {
                let resp = reqwest::Client::new()
                    .post(format!("{url}/v1/calls/{call_id}/resume"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!resumed.is_finished(), "the resumed call waits for the decision");
        assert_eq!(t.decide(&approval_id, "user:carol", true).await.0, 200);
        let (status, body) = tokio::time::timeout(Duration::from_secs(10), resumed).await.unwrap().unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["call_id"], call_id.as_str());
        assert_eq!(body["result"]["response"]["path"], "/refunds");
        assert_eq!(billed.lines(), vec!["POST /refunds"]);
        let sent = billed.requests.lock().unwrap()[0].2.clone();
        let sent: Value = serde_json::from_str(&sent).unwrap();
        assert_eq!(sent, json!({ "customer_id": "c-7", "amount": "10.00", "currency": "EUR" }), "the original input");

        // Once done, there is nothing to resume, and the grant cannot run it again.
        let (status, _) = t.request(reqwest::Method::POST, &format!("/v1/calls/{call_id}/resume"), &token, None).await;
        assert_eq!(status, 404);
        assert_eq!(billed.count(), 1, "the stand-in saw exactly one request");
        let grant = t.host.approvals.ledger().get("default", &approval_id).await.unwrap();
        assert_eq!(grant.state, airlock_approvals::GrantState::Consumed);
    });
    second.shutdown_timeout(Duration::from_secs(5));
    drop(outside);
}
