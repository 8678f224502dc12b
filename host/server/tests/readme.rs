//! The README's walkthrough ("A first gated call") runs in the test suite, line by line, with
//! the real `airlock` binary against a real host: a README that drifts from the CLI fails.
//!
//! Each command of the block runs as written, with three substitutions a reader makes too:
//! the values the README elides (`alk_...`, `inv_...`, `atk_...`, `apr_...`) are the ones
//! printed by the commands before, and the billing host is a local stand-in of the billing API.
//! A command followed by a `# error: ...` line must fail with that message; every other
//! command must succeed. Where the README has a person act in a browser (`# carol opens her
//! link, registers a passkey ...`), the test does what the page does, over the same API, with
//! a software passkey, and checks the text the README says she reads.

mod support;

use std::process::{Child, Command, Stdio};

use serde_json::Value;
use support::TestHost;

/// The first ```sh block after `heading`, with `\` continuations joined.
fn block_after(readme: &str, heading: &str) -> Vec<String> {
    let start = readme.find(heading).expect("the walkthrough heading");
    let rest = &readme[start..];
    let open = rest.find("```sh\n").expect("a sh block") + 6;
    let close = rest[open..].find("```").expect("the block ends") + open;
    let mut lines = Vec::new();
    let mut pending = String::new();
    for line in rest[open..close].lines() {
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            continue;
        }
        pending.push_str(line);
        lines.push(std::mem::take(&mut pending));
    }
    lines
}

/// A command without its trailing comment (`  # ...` outside quotes).
fn without_comment(line: &str) -> &str {
    let mut quote = None;
    let bytes = line.as_bytes();
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if i > 0 && bytes[i - 1] == b' ' => return line[..i].trim_end(),
            _ => {}
        }
    }
    line.trim_end()
}

/// The last value printed so far that starts with `prefix` (`alk_`, `inv_`, `atk_`, `apr_`).
fn last_printed(seen: &str, prefix: &str) -> String {
    let at = seen.rfind(prefix).unwrap_or_else(|| panic!("nothing printed starts with `{prefix}`:\n{seen}"));
    seen[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

struct Walk {
    bin: String,
    env: Vec<(String, String)>,
    /// Everything the commands printed, to take elided values from.
    seen: String,
    background: Vec<(String, Child)>,
    cwd: std::path::PathBuf,
}

impl Walk {
    fn command(&self, line: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(format!("airlock() {{ \"{}\" \"$@\"; }}\n{line}", self.bin)).current_dir(&self.cwd);
        for key in ["AIRLOCK_ADMIN_TOKEN", "AIRLOCK_TOKEN", "AIRLOCK_AGENT_TOKEN", "AIRLOCK_TENANT"] {
            cmd.env_remove(key);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    fn set(&mut self, key: &str, value: String) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value));
    }
}

/// Runs the README block after `heading` against `t`, in `cwd`, with `replace` applied to each
/// command; returns the walk (its background commands still running).
async fn walk_block(t: &TestHost, heading: &str, cwd: &std::path::Path, replace: &[(String, String)]) -> Walk {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let lines = block_after(&readme, heading);
    assert!(lines.len() > 5, "{lines:?}");
    let mut walk = Walk {
        bin: env!("CARGO_BIN_EXE_airlock").to_string(),
        env: vec![("AIRLOCK_URL".into(), t.url.clone()), ("AIRLOCK_DATA_DIR".into(), t.dir.display().to_string())],
        seen: String::new(),
        background: Vec::new(),
        cwd: cwd.to_path_buf(),
    };
    let mut ran = 0;
    for (i, raw) in lines.iter().enumerate() {
        let line = without_comment(raw.trim());
        if line.starts_with("# carol opens her link, registers a passkey") {
            // The text she reads is the README's line after "reads the host's text of the request,".
            let shown = lines[i + 2].trim().trim_start_matches('#').trim();
            carol_approves_in_her_browser(t, &walk.seen, shown).await;
            continue;
        }
        if line.is_empty() || line.starts_with('#') || line.starts_with("airlock() {") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("export ") {
            let (key, value) = rest.split_once('=').unwrap();
            let value = match value.strip_suffix("...") {
                Some(prefix) => last_printed(&walk.seen, prefix),
                None => value.to_string(),
            };
            walk.set(key, value);
            continue;
        }
        if let Some(key) = line.strip_prefix("unset ") {
            walk.env.retain(|(k, _)| k != key.trim());
            continue;
        }
        let mut command = line.to_string();
        for prefix in ["inv_", "apr_", "atk_", "alk_"] {
            let elided = format!("{prefix}...");
            if command.contains(&elided) {
                command = command.replace(&elided, &last_printed(&walk.seen, prefix));
            }
        }
        for (from, to) in replace {
            command = command.replace(from.as_str(), to);
        }
        if let Some(background) = command.strip_suffix('&') {
            let child = walk.command(background).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
            walk.background.push((background.to_string(), child));
            // Let it reach the host (the approval it waits for is listed by a later command).
            let mut waited = 0;
            while t.host.approvals.list("default", Some(airlock_approvals::Status::Pending)).await.unwrap().is_empty() {
                assert!(waited < 200, "`{background}` asked for no approval");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                waited += 1;
            }
            continue;
        }
        let expect_error = lines.get(i + 1).and_then(|next| next.trim().strip_prefix("# error: "));
        let out = tokio::task::block_in_place(|| walk.command(&command).output()).unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        walk.seen.push_str(&stdout);
        walk.seen.push_str(&stderr);
        match expect_error {
            Some(message) => {
                assert!(!out.status.success(), "`{command}` should fail as the README shows");
                let shown: String = message.chars().take(40).collect();
                assert!(stderr.contains(&shown), "`{command}`: the README shows `{message}`, the CLI said {stderr}");
            }
            None => assert!(out.status.success(), "`{command}` failed:\n{stdout}\n{stderr}"),
        }
        ran += 1;
    }
    assert!(ran >= 5, "only {ran} commands ran");
    walk
}

/// What carol's pages do: register her passkey from the invitation link (`inv_...` printed by
/// `airlock user invite`), read the waiting request, approve it with a step-up signed by the
/// passkey, all with her session cookie and CSRF token.
async fn carol_approves_in_her_browser(t: &TestHost, seen: &str, shown: &str) {
    let code = last_printed(seen, "inv_");
    let carol = t.register_from(&code, "default", "user:carol").await;
    let (status, queue) = carol.send(reqwest::Method::GET, "/v1/approvals?status=pending", None, false).await;
    assert_eq!(status, 200, "{queue}");
    let request = &queue["approvals"][0];
    assert_eq!(request["summary"], shown, "the README shows what carol reads");
    let id = request["id"].as_str().unwrap();
    let (status, started) = carol.send(reqwest::Method::POST, &format!("/v1/approvals/{id}/step-up"), None, true).await;
    assert_eq!(status, 200, "{started}");
    let credential = t.sign(&started, "default", "user:carol");
    let body = serde_json::json!({ "approve": true, "step_up": { "ceremony": started["ceremony"], "credential": credential } });
    let (status, decided) =
        carol.send(reqwest::Method::POST, &format!("/v1/approvals/{id}/decision"), Some(body), true).await;
    assert_eq!((status, decided["approver"].as_str()), (200, Some("user:carol")), "{decided}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_runs_as_written() {
    let t = TestHost::start().await;
    let (api, seen_by_api) = support::billing_api("sk_test_123").await;
    // The billing API is a local stand-in of it.
    let replace = [
        // A stand-in on loopback is an internal address: the reader says so, as they would.
        ("--host billing.example.com".to_string(), format!("--host {api} --allow-private-network")),
        ("https://billing.example.com".to_string(), format!("http://{api}")),
        ("billing.example.com".to_string(), api.to_string()),
    ];
    let cwd = tempfile::tempdir().unwrap();
    let mut walk = walk_block(&t, "## A first gated call", cwd.path(), &replace).await;

    // The refund waited for carol and went through once she approved, as the README says.
    for (command, child) in walk.background.drain(..) {
        let out = tokio::task::block_in_place(|| child.wait_with_output()).unwrap();
        assert!(out.status.success(), "`{command}`: {}", String::from_utf8_lossy(&out.stderr));
        let body: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(body["result"]["approved_by"], "user:carol", "{body}");
    }
    assert_eq!(seen_by_api.paths(), ["/customers/42", "/refunds"]);

    // `airlock audit --verify` says "intact" and exits 0 above; an edited trail exits non-zero.
    t.host.flush().await;
    airlock_store::sqlx::query("UPDATE audit_events SET outcome = 'allowed' WHERE tenant = 'default' AND seq = 3")
        .execute(t.host.db.pool())
        .await
        .unwrap();
    let out = tokio::task::block_in_place(|| walk.command("airlock audit --verify").output()).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a broken chain must fail the command: {stderr}");
    assert!(stderr.contains("BROKEN at event 3"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_marketplace_block_runs_as_written() {
    let t = TestHost::start_with(support::catalog_limits()).await;
    // Run where a reader of the README stands: beside the repository's `marketplace/`.
    let cwd = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../marketplace"),
        cwd.path().join("marketplace"),
    )
    .unwrap();
    let walk = walk_block(&t, "## Install an agent from the marketplace", cwd.path(), &[]).await;
    assert!(walk.background.is_empty());
    assert!(cwd.path().join("acme.pub").is_file() && cwd.path().join("shouter-1.1.0/signature.json").is_file());
    // The example agent ends on 1.1.0 with its new slot; crm was uninstalled.
    let installed = serde_json::to_value(t.host.installations("default").await.unwrap()).unwrap();
    let agents: Vec<&Value> = installed.as_array().unwrap().iter().collect();
    assert_eq!(agents.len(), 1, "crm was uninstalled, shouter is left: {installed}");
    assert_eq!((agents[0]["agent"].as_str(), agents[0]["version"].as_str()), (Some("shouter"), Some("1.1.0")));
    assert!(agents[0].to_string().contains("example-api"), "the new slot: {installed}");
    assert!(walk.seen.contains("upgrade applied"), "{}", walk.seen);
}
