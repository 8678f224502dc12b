//! Clients nobody here wrote, from npm, against a real host (scripts in tests/peers/node):
//! the official TypeScript MCP SDK as an agent over Streamable HTTP, and the official OpenFGA
//! JavaScript SDK plus the `fga` CLI against the OpenFGA API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::TestHost;

/// Runs `node tests/peers/node/SCRIPT ARGS...`; its stdout, once it exited 0 and printed `done`.
async fn run_peer(dir: &str, script: &str, args: &[&str], done: &str) -> String {
    let path = format!("{}/tests/peers/node/{script}", env!("CARGO_MANIFEST_DIR"));
    let run = tokio::process::Command::new("node").arg(&path).args(args).env("AIRLOCK_NODE_PEERS", dir).output();
    let out =
        tokio::time::timeout(std::time::Duration::from_secs(60), run).await.expect("the peer ran past 60 s").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(done), "{stdout}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_typescript_mcp_sdk_lists_calls_and_is_refused() {
    let Some(dir) = support::peer("AIRLOCK_NODE_PEERS", "the npm peers (scripts/node-peers.sh)") else { return };
    let t = TestHost::start().await;
    let token = t.agent("ts-agent").await;
    t.grant(&[
        ("agent:ts-agent", "can_use", "tool:hello.greet"),
        ("agent:ts-agent", "can_use", "tool:billing.lookup-customer"),
    ])
    .await;
    run_peer(&dir, "mcp_peer.mjs", &[&t.url, &token], "mcp-ts: all steps passed").await;
    // The host saw it as any agent: the call and the refusal are in the audit trail.
    t.host.flush().await;
    let events = t.audit().await;
    let call = |tool: &str, outcome: &str| {
        events.iter().any(|e| e["kind"] == "tool.call" && e["tool"] == tool && e["outcome"] == outcome)
    };
    assert!(call("hello.greet", "allowed") && call("billing.refund", "denied"), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openfga_js_sdk_and_the_fga_cli_work_against_the_openfga_api() {
    let Some(dir) = support::peer("AIRLOCK_NODE_PEERS", "the npm peers (scripts/node-peers.sh)") else { return };
    let Some(fga) = support::peer("AIRLOCK_FGA", "the fga CLI") else { return };
    let t = TestHost::start().await;
    run_peer(&dir, "openfga_peer.mjs", &[&t.url, &t.operator, &fga], "openfga-js: all steps passed").await;
}
