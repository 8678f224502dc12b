//! The customer-offboarding agent end to end through the API, as `marketplace/offboarding`
//! describes it: an operations manager approves the run's entry, three low-risk steps run on
//! their own, the refund waits for the CFO and the data deletion for the DPO; a refund approval
//! presented for the deletion is refused; every step is audited with the run id and the
//! delegation chain, and the audit chain verifies.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{recorder, wait_for_pending_of, TestHost};

const BILLING: &str = "sk_billing_offboard_31f";
const DIRECTORY: &str = "sk_directory_offboard_9c2";
const CUSTOMER: &str = "c-1001";

fn manifest() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../marketplace/offboarding/manifest.json"))
            .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn spawn_step(t: &TestHost, token: &str, run: &str, tool: &str, input: Value) -> tokio::task::JoinHandle<(u16, Value)> {
    let (url, token, run, tool) = (t.url.clone(), token.to_string(), run.to_string(), tool.to_string());
    tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(format!("{url}/v1/tools/{tool}/call"))
            .bearer_auth(token)
            .header("Airlock-Run", run)
            .json(&input)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offboarding_agent_runs_end_to_end_under_its_approvals() {
    let t = TestHost::start().await;
    let m = manifest();

    // Install from the catalog manifest (marketplace format, validated by the marketplace
    // crate): the component through the admin API, its connection slots in the agent's own
    // namespace pointing at the stand-ins, its approval policies, entry approval and tuples.
    let parsed = airlock_marketplace::Manifest::parse(serde_json::to_string(&m).unwrap().as_bytes()).unwrap();
    let component = m["tools"][0]["component"].as_str().unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/components/{component}", t.url))
        .bearer_auth(&t.operator)
        .header("content-type", "application/wasm")
        .body(airlock::bundled::OFFBOARDING.to_vec())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let loaded = t.host.runtime.component("offboarding").unwrap();
    let mut granted: Vec<String> = m["tuples"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["object"].as_str()?.strip_prefix("tool:offboarding.").map(str::to_string))
        .collect();
    let mut offered: Vec<String> = loaded.tools.iter().map(|t| t.name.clone()).collect();
    granted.sort();
    offered.sort();
    assert_eq!(granted, offered, "the manifest grants exactly the component's tools");

    let agent = parsed.name.clone();
    let provisioning = parsed.provisioning(&agent, "default");
    let (billing, billed) = recorder(BILLING).await;
    let (directory, directed) = recorder(DIRECTORY).await;
    let names: Vec<&str> = m["connections"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["directory-api", "billing-api"]);
    for (name, api, secret) in [("directory-api", directory, DIRECTORY), ("billing-api", billing, BILLING)] {
        let body = json!({ "kind": "bearer", "base_url": format!("http://{api}"), "allowed_hosts": [api.to_string()],
                           "secret": secret, "agent": agent, "allow_private_network": true });
        let (status, body) =
            t.request(reqwest::Method::PUT, &format!("/v1/connections/{name}"), &t.admin, Some(body)).await;
        assert_eq!(status, 200, "{body}");
    }

    let token = t.agent(&agent).await;
    for p in m["approval_policies"].as_array().unwrap() {
        t.policy(p["tool"].as_str().unwrap(), p["role"].as_str().unwrap(), p["ttl_seconds"].as_u64().unwrap()).await;
    }
    let entry = &m["entry_approval"];
    t.policy(&format!("agent:{agent}"), entry["role"].as_str().unwrap(), entry["ttl_seconds"].as_u64().unwrap()).await;
    let mut tuples: Vec<(String, String, String)> =
        provisioning.tuples.iter().map(|t| (t.user.clone(), t.relation.clone(), t.object.clone())).collect();
    // Which customers the agent may offboard is the tenant admin's decision, not the package's.
    tuples.push((format!("agent:{agent}"), "offboard".into(), format!("customer:{CUSTOMER}")));
    let mut refs: Vec<(&str, &str, &str)> =
        tuples.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    // The humans and their roles (the manifest names the roles; the tenant names the people).
    refs.extend([
        ("user:olivia", "ops_manager", "tenant:default"),
        ("user:carol", "cfo", "tenant:default"),
        ("user:dana", "dpo", "tenant:default"),
    ]);
    t.grant(&refs).await;
    let customer = json!({ "customer_id": CUSTOMER });

    // Under an entry policy, no call runs outside a run (this would skip the entry approval).
    let (status, body) = t.call(&token, "offboarding.revoke-access", customer.clone()).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("run_refused")), "{body}");
    assert_eq!(body["ledger_reason"], "run_required");
    assert!(directed.lines().is_empty(), "nothing reached the directory");

    // Start a run: it awaits the operations manager.
    let (status, run) = t
        .request(reqwest::Method::POST, "/v1/runs", &token, Some(json!({ "summary": format!("offboard {CUSTOMER}") })))
        .await;
    assert_eq!(status, 201, "{run}");
    assert_eq!((run["state"].as_str(), run["role"].as_str()), (Some("awaiting_entry"), Some("ops_manager")));
    let run_id = run["id"].as_str().unwrap().to_string();
    let entry = run["approval_id"].as_str().unwrap().to_string();

    // No step runs before the entry is approved.
    let (status, body) = spawn_step(&t, &token, &run_id, "offboarding.revoke-access", customer.clone()).await.unwrap();
    assert_eq!((status, body["code"].as_str()), (403, Some("run_refused")), "{body}");
    assert_eq!(body["ledger_reason"], "awaiting_approval");
    // Only an operations manager may approve it.
    assert_eq!(t.decide(&entry, "user:carol", true).await.0, 403);
    let (status, body) = t.decide(&entry, "user:olivia", true).await;
    assert_eq!(status, 200, "{body}");
    let (_, now) = t.request(reqwest::Method::GET, &format!("/v1/runs/{run_id}"), &token, None).await;
    assert_eq!(now["state"], "approved");

    // The low-risk steps run on their own.
    for tool in ["offboarding.revoke-access", "offboarding.export-billing-data", "offboarding.cancel-subscriptions"] {
        let (status, body) = spawn_step(&t, &token, &run_id, tool, customer.clone()).await.unwrap();
        assert_eq!(status, 200, "{tool}: {body}");
    }
    let (_, pending) = t.admin_get("/v1/approvals?status=pending").await;
    assert_eq!(pending["approvals"], json!([]), "no human was asked for the low-risk steps");

    // The refund waits for the CFO (the operations manager is not enough).
    let refund = json!({ "customer_id": CUSTOMER, "amount": "49.90", "currency": "EUR" });
    let step = spawn_step(&t, &token, &run_id, "offboarding.issue-refund", refund.clone());
    let asked = wait_for_pending_of(&t, "offboarding.issue-refund").await;
    assert_eq!(asked["role"], "cfo");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!step.is_finished());
    assert_eq!(t.decide(asked["id"].as_str().unwrap(), "user:olivia", true).await.0, 403);
    assert_eq!(t.decide(asked["id"].as_str().unwrap(), "user:carol", true).await.0, 200);
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), step).await.unwrap().unwrap();
    assert_eq!(status, 200, "{body}");

    // A refund approval (asked ahead, approved by the CFO, unused) presented for the deletion: refused.
    let (status, ahead) = t
        .request(
            reqwest::Method::POST,
            "/v1/approvals",
            &token,
            Some(json!({ "tool": "offboarding.issue-refund", "input": refund })),
        )
        .await;
    assert_eq!(status, 201, "{ahead}");
    let ahead_id = ahead["id"].as_str().unwrap();
    assert_eq!(t.decide(ahead_id, "user:carol", true).await.0, 200);
    let (status, body) = t
        .call_with(
            &token,
            "offboarding.delete-customer-data",
            customer.clone(),
            &[("Airlock-Run", &run_id), ("Airlock-Grant", ahead_id)],
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("grant_refused")), "{body}");
    assert_eq!(body["ledger_reason"], "wrong_binding:tool");
    assert!(directed.lines().iter().all(|l| !l.starts_with("DELETE")), "nothing was deleted");

    // The deletion waits for the DPO.
    let step = spawn_step(&t, &token, &run_id, "offboarding.delete-customer-data", customer.clone());
    let asked = wait_for_pending_of(&t, "offboarding.delete-customer-data").await;
    assert_eq!(asked["role"], "dpo");
    assert_eq!(t.decide(asked["id"].as_str().unwrap(), "user:carol", true).await.0, 403);
    assert_eq!(t.decide(asked["id"].as_str().unwrap(), "user:dana", true).await.0, 200);
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), step).await.unwrap().unwrap();
    assert_eq!(status, 200, "{body}");

    // Finish; the run's authority is spent.
    let (status, done) = t
        .request(
            reqwest::Method::POST,
            &format!("/v1/runs/{run_id}/finish"),
            &token,
            Some(json!({ "outcome": "offboarded" })),
        )
        .await;
    assert_eq!((status, done["state"].as_str()), (200, Some("finished")), "{done}");
    let (status, body) = spawn_step(&t, &token, &run_id, "offboarding.revoke-access", customer.clone()).await.unwrap();
    assert_eq!((status, body["ledger_reason"].as_str()), (403, Some("replayed")), "{body}");

    // What the outside world saw: each step once, in order, with the vault's credential.
    let c = CUSTOMER;
    assert_eq!(directed.lines(), vec![format!("POST /users/{c}/revoke"), format!("DELETE /users/{c}/data")]);
    assert_eq!(
        billed.lines(),
        vec![
            format!("GET /customers/{c}/export"),
            format!("POST /customers/{c}/subscriptions/cancel"),
            "POST /refunds".to_string()
        ]
    );

    // Every step is in the audit log with the run id and the chain: approver -> agent -> tool.
    let events = t.audit().await;
    let me = format!("agent:{agent}");
    for tool in &offered {
        let id = format!("offboarding.{tool}");
        let ran: Vec<&Value> = events
            .iter()
            .filter(|e| e["kind"] == "tool.call" && e["outcome"] == "allowed" && e["tool"] == id.as_str())
            .collect();
        assert_eq!(ran.len(), 1, "{id}: {ran:?}");
        let detail = &ran[0]["detail"];
        assert_eq!(detail["run_id"], run_id.as_str(), "{id}: {detail}");
        assert_eq!(detail["result"], "ok");
        assert_eq!(detail["chain"], json!(["user:olivia", me, format!("tool:{id}")]), "{id}");
    }
    let granted: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "tool.call" && e["outcome"] == "allowed" && !e["detail"]["grant_id"].is_null())
        .collect();
    assert_eq!(granted.len(), 2, "the refund and the deletion each spent a grant");
    let denied: Vec<&Value> = events.iter().filter(|e| e["kind"] == "tool.call" && e["outcome"] == "denied").collect();
    assert_eq!(denied.len(), 4, "outside a run, before entry, the wrong grant, after finish: {denied:?}");
    assert_eq!(denied[0]["detail"]["ledger_reason"], "run_required");
    assert!(denied[1..].iter().all(|e| e["detail"]["run_id"] == run_id.as_str()), "{denied:?}");
    for kind in ["run.start", "run.finish"] {
        assert!(events.iter().any(|e| e["kind"] == kind && e["detail"]["run_id"] == run_id.as_str()), "{kind}");
    }
    let decisions = events.iter().filter(|e| e["kind"] == "approval.decision" && e["outcome"] == "approved").count();
    assert!(decisions >= 4, "entry, refund (+ ahead), deletion: {decisions}");
    let (_, verify) = t.admin_get("/v1/audit/verify").await;
    assert_eq!(verify["broken_at"], Value::Null, "{verify}");
    assert!(verify["events"].as_i64().unwrap() >= 20, "{verify}");
}
