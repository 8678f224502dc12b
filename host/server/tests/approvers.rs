//! Approvers prove who they are: every approval needs a fresh passkey assertion over the
//! exact action (a software authenticator stands in for the person's passkey), the decision
//! keeps a proof anyone can verify offline, and the approver reads the host's text.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::TestHost;

/// Agent `asker` may use `hello.greet`, whose calls need a `cfo`; carol is the cfo.
async fn setup(t: &TestHost) -> String {
    let token = t.agent("asker").await;
    t.grant(&[("agent:asker", "can_use", "tool:hello.greet"), ("user:carol", "cfo", "tenant:default")]).await;
    t.policy("hello.greet", "cfo", 600).await;
    token
}

/// The agent asks ahead for approval of `hello.greet` with `input`; returns the approval.
async fn ask(t: &TestHost, agent: &str, input: Value, note: &str) -> Value {
    let body = json!({ "tool": "hello.greet", "input": input, "note": note });
    let (status, approval) = t.request(Method::POST, "/v1/approvals", agent, Some(body)).await;
    assert_eq!(status, 201, "{approval}");
    approval
}

/// Starts carol's step-up on `id`; returns the options and her signed assertion.
async fn carol_signs(t: &TestHost, carol: &str, id: &str) -> (Value, Value) {
    let (status, started) = t.request(Method::POST, &format!("/v1/approvals/{id}/step-up"), carol, None).await;
    assert_eq!(status, 200, "{started}");
    let assertion = t.sign(&started, "default", "user:carol");
    (started, assertion)
}

async fn approve_with(t: &TestHost, token: &str, id: &str, ceremony: &Value, credential: &Value) -> (u16, Value) {
    let body = json!({ "approve": true, "step_up": { "ceremony": ceremony, "credential": credential } });
    t.request(Method::POST, &format!("/v1/approvals/{id}/decision"), token, Some(body)).await
}

async fn status_of(t: &TestHost, id: &str) -> Value {
    let (_, a) = t.admin_get(&format!("/v1/approvals/{id}")).await;
    a["status"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_needs_the_approvers_passkey_over_that_exact_action() {
    let t = TestHost::start().await;
    let agent = setup(&t).await;
    t.passkey("user:carol").await;
    let carol = t.member_token("user:carol").await;
    let a = ask(&t, &agent, json!({ "name": "ada" }), "").await;
    let b = ask(&t, &agent, json!({ "name": "bob" }), "").await;
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());

    // Without step-up: refused, and the request still waits.
    let decision = format!("/v1/approvals/{a_id}/decision");
    let (status, body) = t.request(Method::POST, &decision, &carol, Some(json!({ "approve": true }))).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("step_up_required")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("step-up"), "the refusal says what to do: {body}");

    // An assertion made for A is refused for B.
    let (started, signed) = carol_signs(&t, &carol, a_id).await;
    let (status, body) = approve_with(&t, &carol, b_id, &started["ceremony"], &signed).await;
    assert_eq!(status, 403, "{body}");
    // ...and the ceremony was spent by that try: not even A takes it now (single use).
    let (status, body) = approve_with(&t, &carol, a_id, &started["ceremony"], &signed).await;
    assert!(status == 400 || status == 403, "{status} {body}");

    // An assertion for A, made before A's arguments changed in the database, is refused.
    let (started, signed) = carol_signs(&t, &carol, a_id).await;
    airlock_store::sqlx::query("UPDATE approvals SET details = $1 WHERE id = $2")
        .bind(r#"{"name":"mallory"}"#)
        .bind(a_id)
        .execute(t.host.db.pool())
        .await
        .unwrap();
    let (status, body) = approve_with(&t, &carol, a_id, &started["ceremony"], &signed).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("changed"), "{body}");

    // A step-up options' challenge signed by someone else's passkey is refused: dave is a cfo
    // too, but the assertion over carol's ceremony is not his to send, nor hers to make with his key.
    t.grant(&[("user:dave", "cfo", "tenant:default")]).await;
    t.passkey("user:dave").await;
    let (started, _) = carol_signs(&t, &carol, b_id).await;
    let daves = t.sign_instead(&started, "default", "user:dave").await;
    let (status, body) = approve_with(&t, &carol, b_id, &started["ceremony"], &daves).await;
    assert_eq!(status, 403, "{body}");

    // The operator cannot decide inside a tenant; a member without the role cannot either.
    let (status, body) = approve_with(&t, &t.operator, b_id, &started["ceremony"], &daves).await;
    assert!(status == 401 || status == 403, "{status} {body}");
    let nobody = t.member_token("user:nobody").await;
    let (status, body) = t.request(Method::POST, &format!("/v1/approvals/{b_id}/step-up"), &nobody, None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("is not `cfo`"), "{body}");
    assert_eq!(status_of(&t, b_id).await, "pending", "no refused try decided anything");

    // Carol, with her passkey, on B as it stands: approved, and the proof is kept.
    let (started, signed) = carol_signs(&t, &carol, b_id).await;
    let (status, body) = approve_with(&t, &carol, b_id, &started["ceremony"], &signed).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["status"].as_str(), body["approver"].as_str()), (Some("approved"), Some("user:carol")));
    // The same assertion replayed: the approval is decided, the ceremony spent.
    let (status, _) = approve_with(&t, &carol, b_id, &started["ceremony"], &signed).await;
    assert_eq!(status, 409);

    // The decision's audit event carries the digest the passkey signed.
    t.host.flush().await;
    let events = t.audit().await;
    let approved = events
        .iter()
        .find(|e| e["kind"] == "approval.decision" && e["outcome"] == "approved")
        .expect("the decision is audited");
    assert_eq!(approved["detail"]["signed_digest"], started["digest"], "{approved}");
    let refusals = events.iter().filter(|e| e["kind"] == "approval.decision" && e["outcome"] == "refused").count();
    assert!(refusals >= 4, "each refused try is audited: {refusals}");
    // Denying needs no step-up.
    let (status, body) =
        t.request(Method::POST, &decision, &carol, Some(json!({ "approve": false, "reason": "args changed" }))).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("denied")), "{body}");
}

/// Runs `airlock approvals verify ID` against the host as carol; (success, stdout + stderr).
fn cli_verify(t: &TestHost, token: &str, id: &str, proof_file: Option<&std::path::Path>) -> (bool, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"));
    match proof_file {
        // Nothing to reach (port 9 answers nothing): the saved file is all it has.
        Some(f) => cmd.args(["approvals", "verify", id, "--server", "http://127.0.0.1:9", "--proof"]).arg(f),
        None => cmd.args(["approvals", "verify", id, "--server", &t.url]).env("AIRLOCK_TOKEN", token),
    };
    let out = cmd.output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_verifies_offline_and_any_changed_byte_breaks_it() {
    let t = TestHost::start().await;
    let agent = setup(&t).await;
    // The agent's note disagrees with its arguments: the approver reads the arguments.
    let a = ask(&t, &agent, json!({ "name": "9999 EUR to mallory" }), "just saying hello to 1 person").await;
    let id = a["id"].as_str().unwrap().to_string();
    assert_eq!(a["summary"], r#"greet with hello.greet by agent:asker: name "9999 EUR to mallory""#, "{a}");
    assert_eq!(a["note"], "just saying hello to 1 person", "the agent's words, kept apart");
    let (status, body) = t.decide(&id, "user:carol", true).await;
    assert_eq!(status, 200, "{body}");
    let carol = t.member_token("user:carol").await;

    // The API says valid; the CLI checks it itself, online and from a saved file, offline.
    let verify = format!("/v1/approvals/{id}/verify");
    let (status, verdict) = t.request(Method::POST, &verify, &carol, None).await;
    assert_eq!((status, &verdict["valid"]), (200, &json!(true)), "{verdict}");
    assert_eq!(verdict["passkey_of"], "user:carol");
    let (ok, said) = cli_verify(&t, &carol, &id, None);
    assert!(ok && said.contains("VALID: user:carol approved"), "{said}");
    let (_, saved) = t.request(Method::GET, &format!("/v1/approvals/{id}/proof"), &carol, None).await;
    let file = t.dir.join("proof.json");
    std::fs::write(&file, saved.to_string()).unwrap();
    let (ok, said) = cli_verify(&t, &carol, &id, Some(&file));
    assert!(ok, "a saved proof verifies with no host at all: {said}");

    // Any byte of the action changed in the database: not valid.
    let pool = t.host.db.pool();
    let tamper = |sql: &'static str, value: String| {
        let id = id.clone();
        async move {
            airlock_store::sqlx::query(sql).bind(value).bind(&id).execute(pool).await.unwrap();
        }
    };
    let details: (String,) = airlock_store::sqlx::query_as("SELECT details FROM approvals WHERE id = $1")
        .bind(&id)
        .fetch_one(pool)
        .await
        .unwrap();
    for (sql, changed) in [
        ("UPDATE approvals SET details = $1 WHERE id = $2", details.0.replace("9999", "9990")),
        ("UPDATE approvals SET agent = $1 WHERE id = $2", "agent:askes".to_string()),
        ("UPDATE approvals SET expires_at = expires_at + CAST($1 AS BIGINT) WHERE id = $2", "1".to_string()),
    ] {
        let before: (String, String, i64) =
            airlock_store::sqlx::query_as("SELECT details, agent, expires_at FROM approvals WHERE id = $1")
                .bind(&id)
                .fetch_one(pool)
                .await
                .unwrap();
        tamper(sql, changed).await;
        let (status, verdict) = t.request(Method::POST, &verify, &carol, None).await;
        assert_eq!((status, &verdict["valid"]), (200, &json!(false)), "after `{sql}`: {verdict}");
        let (ok, said) = cli_verify(&t, &carol, &id, None);
        assert!(!ok && said.contains("NOT VALID"), "after `{sql}`: {said}");
        airlock_store::sqlx::query("UPDATE approvals SET details = $1, agent = $2, expires_at = $3 WHERE id = $4")
            .bind(before.0)
            .bind(before.1)
            .bind(before.2)
            .bind(&id)
            .execute(pool)
            .await
            .unwrap();
        assert_eq!(t.request(Method::POST, &verify, &carol, None).await.1["valid"], true, "restored");
    }

    // Any byte of the signature (or the signed client data) changed: not valid.
    let (proof,): (String,) = airlock_store::sqlx::query_as("SELECT proof FROM approval_proofs WHERE approval_id = $1")
        .bind(&id)
        .fetch_one(pool)
        .await
        .unwrap();
    let parsed: Value = serde_json::from_str(&proof).unwrap();
    for pointer in ["/assertion/response/signature", "/assertion/response/clientDataJSON", "/nonce"] {
        let mut forged = parsed.clone();
        let field = forged.pointer_mut(pointer).unwrap_or_else(|| panic!("the proof has {pointer}: {parsed}"));
        let text = field.as_str().unwrap().to_string();
        // Flip one character (base64url or hex alike) in the middle.
        let mut chars: Vec<char> = text.chars().collect();
        let mid = chars.len() / 2;
        chars[mid] = if chars[mid] == '0' { '1' } else { '0' };
        *field = Value::String(chars.into_iter().collect());
        airlock_store::sqlx::query("UPDATE approval_proofs SET proof = $1 WHERE approval_id = $2")
            .bind(forged.to_string())
            .bind(&id)
            .execute(pool)
            .await
            .unwrap();
        let (status, verdict) = t.request(Method::POST, &verify, &carol, None).await;
        assert_eq!((status, &verdict["valid"]), (200, &json!(false)), "{pointer} changed: {verdict}");
        let (ok, said) = cli_verify(&t, &carol, &id, None);
        assert!(!ok && said.contains("NOT VALID"), "{pointer} changed: {said}");
    }
    // The text shown with a saved proof is checked too: it must be the host's text of the action.
    let mut edited = saved.clone();
    edited["approval"]["summary"] = json!("greet with hello.greet by agent:asker: name \"1 EUR\"");
    std::fs::write(&file, edited.to_string()).unwrap();
    let (ok, said) = cli_verify(&t, &carol, &id, Some(&file));
    assert!(!ok && said.contains("NOT VALID"), "{said}");
}
