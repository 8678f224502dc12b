//! Tools say what they do to the world (`airlock:tool/effects`): agents see it (the tool list,
//! MCP tool annotations), and a tenant can require a person's approval for every irreversible
//! tool that has no policy of its own. A component built before `effects` existed (the
//! sandbox probe) still runs, each of its tools counted as irreversible and open-world.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use support::{recorder, spawn_call, wait_for_pending_of, TestHost};

const BILLING: &str = "sk_billing_effects_31";
const DIRECTORY: &str = "sk_directory_effects_32";

/// The tool named `name` in a list of `{ name, ... }` objects.
fn named<'a>(tools: &'a [Value], key: &str, name: &str) -> &'a Value {
    tools.iter().find(|t| t[key] == name).unwrap_or_else(|| panic!("no tool `{name}` in {tools:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_list_and_mcp_annotations_say_what_each_tool_does() {
    let t = TestHost::start().await;
    let token = t.agent("looker").await;
    let tools = ["billing.lookup-customer", "billing.refund", "hello.greet", "probe.echo"];
    let tuples: Vec<(String, &str, String)> =
        tools.iter().map(|tool| ("agent:looker".to_string(), "can_use", format!("tool:{tool}"))).collect();
    let refs: Vec<(&str, &str, &str)> = tuples.iter().map(|(u, r, o)| (u.as_str(), *r, o.as_str())).collect();
    t.grant(&refs).await;

    let (status, body) = t.request(reqwest::Method::GET, "/v1/tools", &token, None).await;
    assert_eq!(status, 200, "{body}");
    let listed = body["tools"].as_array().unwrap();
    let effects = |name: &str| named(listed, "name", name)["effects"].clone();
    assert_eq!(
        effects("billing.lookup-customer"),
        json!({ "effect": "read-only", "idempotent": true, "open_world": true, "declared": true })
    );
    assert_eq!(
        effects("billing.refund"),
        json!({ "effect": "irreversible", "idempotent": false, "open_world": true, "declared": true })
    );
    assert_eq!(
        effects("hello.greet"),
        json!({ "effect": "read-only", "idempotent": true, "open_world": false, "declared": true })
    );
    // Built for `tool-without-effects`: the riskiest kind, and said to be undeclared.
    assert_eq!(
        effects("probe.echo"),
        json!({ "effect": "irreversible", "idempotent": false, "open_world": true, "declared": false })
    );
    // What a tool returns, where its component declares it (`outputs`).
    let greeting = json!({ "type": "object", "properties": { "greeting": { "type": "string" } },
                           "required": ["greeting"], "additionalProperties": false });
    assert_eq!(named(listed, "name", "hello.greet")["output_schema"], greeting);
    assert_eq!(named(listed, "name", "billing.refund")["output_schema"], Value::Null);

    // MCP clients get the same as tool annotations.
    let list = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {} });
    let resp = reqwest::Client::new()
        .post(format!("{}/mcp", t.url))
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .json(&list)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    let listed = body["result"]["tools"].as_array().unwrap();
    let hints = |name: &str| {
        let a = &named(listed, "name", name)["annotations"];
        (
            a["readOnlyHint"].clone(),
            a["destructiveHint"].clone(),
            a["idempotentHint"].clone(),
            a["openWorldHint"].clone(),
        )
    };
    assert_eq!(hints("billing.lookup-customer"), (json!(true), json!(false), json!(true), json!(true)));
    assert_eq!(hints("billing.refund"), (json!(false), json!(true), json!(false), json!(true)));
    assert_eq!(hints("hello.greet"), (json!(true), json!(false), json!(true), json!(false)));
    assert_eq!(hints("probe.echo"), (json!(false), json!(true), json!(false), json!(true)));
    assert_eq!(named(listed, "name", "hello.greet")["outputSchema"], greeting, "MCP's structured output schema");
    assert!(named(listed, "name", "probe.echo").get("outputSchema").is_none());
}

/// The offboarding agent's tools, its two connections at stand-ins, carol the CFO and dana the
/// DPO; returns the agent's token and what the billing stand-in received.
async fn offboarder(t: &TestHost) -> (String, support::Recorded) {
    t.host.add_component("offboarding", airlock::bundled::OFFBOARDING, "test").await.unwrap();
    let (billing, billed) = recorder(BILLING).await;
    let (directory, _) = recorder(DIRECTORY).await;
    t.connection("billing-api", billing, BILLING).await;
    t.connection("directory-api", directory, DIRECTORY).await;
    let token = t.agent("offboarder").await;
    let mut tuples: Vec<(String, String, String)> =
        ["revoke-access", "export-billing-data", "cancel-subscriptions", "issue-refund", "delete-customer-data"]
            .iter()
            .map(|tool| ("agent:offboarder".into(), "can_use".into(), format!("tool:offboarding.{tool}")))
            .collect();
    tuples.push(("agent:offboarder".into(), "can_use".into(), "tool:probe.echo".into()));
    for c in ["billing-api", "directory-api"] {
        tuples.push(("agent:offboarder".into(), "can_use".into(), format!("connection:{c}")));
    }
    tuples.push(("agent:offboarder".into(), "offboard".into(), "customer:c-7".into()));
    tuples.push(("user:carol".into(), "cfo".into(), "tenant:default".into()));
    tuples.push(("user:dana".into(), "dpo".into(), "tenant:default".into()));
    let refs: Vec<(&str, &str, &str)> = tuples.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    t.grant(&refs).await;
    (token, billed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_policy_on_irreversible_tools_holds_each_one_without_its_own_policy() {
    let t = TestHost::start().await;
    let (token, billed) = offboarder(&t).await;
    let customer = json!({ "customer_id": "c-7" });
    let refund = json!({ "customer_id": "c-7", "amount": "10.00", "currency": "EUR" });

    // Only declared effects can key a policy, and such a policy covers every action.
    let (status, body) = t.admin_post("/v1/policies", json!({ "tool": "effect:dangerous", "role": "cfo" })).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("effect:irreversible"), "{body}");
    t.policy("effect:irreversible", "cfo", 600).await;
    let (_, listed) = t.admin_get("/v1/policies").await;
    assert!(listed.to_string().contains("\"effect:irreversible\""), "{listed}");

    // Read-only and reversible tools run at once.
    let (status, body) = t.call(&token, "offboarding.export-billing-data", customer.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = t.call(&token, "offboarding.revoke-access", customer.clone()).await;
    assert_eq!(status, 200, "{body}");

    // The refund (irreversible, no policy of its own) waits for the CFO, then runs once.
    let refunds_before = billed.lines().iter().filter(|l| l.contains("/refunds")).count();
    let call = spawn_call(&t, &token, "offboarding.issue-refund", refund.clone());
    let pending = wait_for_pending_of(&t, "offboarding.issue-refund").await;
    assert_eq!(pending["role"], "cfo", "{pending}");
    assert_eq!(billed.lines().iter().filter(|l| l.contains("/refunds")).count(), refunds_before, "nothing ran yet");
    let (status, body) = t.decide(pending["id"].as_str().unwrap(), "user:carol", true).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(billed.lines().iter().filter(|l| l.contains("/refunds")).count(), refunds_before + 1);

    // A tool's own policy comes first: deletion goes to the DPO, not the CFO.
    t.policy("offboarding.delete-customer-data", "dpo", 600).await;
    let call = spawn_call(&t, &token, "offboarding.delete-customer-data", customer.clone());
    let pending = wait_for_pending_of(&t, "offboarding.delete-customer-data").await;
    assert_eq!(pending["role"], "dpo", "{pending}");
    let (status, _) = t.decide(pending["id"].as_str().unwrap(), "user:dana", false).await;
    assert_eq!(status, 200);
    let (status, body) = call.await.unwrap();
    assert_eq!(status, 403, "a denial runs nothing: {body}");

    // A tool whose component declares nothing counts as irreversible: it waits too.
    let call = spawn_call(&t, &token, "probe.echo", json!({ "hi": 1 }));
    let pending = wait_for_pending_of(&t, "probe.echo").await;
    assert_eq!(pending["role"], "cfo", "{pending}");
    let (status, _) = t.decide(pending["id"].as_str().unwrap(), "user:carol", false).await;
    assert_eq!(status, 200);
    assert_eq!(call.await.unwrap().0, 403);

    // Without the tenant policy the refund needs no one.
    let (status, body) = t.request(reqwest::Method::DELETE, "/v1/policies/effect:irreversible", &t.admin, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = t.call(&token, "offboarding.issue-refund", refund).await;
    assert_eq!(status, 200, "{body}");
}
