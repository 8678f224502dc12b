//! Marketplace install, uninstall and upgrade through a real host over HTTP: provisioning,
//! refusals naming the failed check, all-or-nothing, idempotence, revocation at once, upgrade
//! consent, and two tenants that cannot reach each other.

mod support;

use std::path::{Path, PathBuf};

use airlock::marketplace::{InstallOptions, InstallStep, PackageSource};
use airlock_marketplace::{build, generate_key, pack, SigningKey};
use airlock_store::sqlx;
use reqwest::Method;
use serde_json::{json, Value};
use support::{recorder, TestHost};

/// A third-party package: the sandbox probe's component as `prober`, with a vault slot and an
/// approval policy on `prober.fetch`.
fn prober_manifest(version: &str, extra_tuples: &[Value], hosts: &[&str], with_policy: bool) -> Value {
    let mut tuples = vec![
        json!({ "user": "agent:$AGENT", "relation": "can_use", "object": "tool:prober.echo" }),
        json!({ "user": "agent:$AGENT", "relation": "can_use", "object": "tool:prober.fetch" }),
        json!({ "user": "agent:$AGENT", "relation": "can_use", "object": "connection:$AGENT/api" }),
    ];
    tuples.extend(extra_tuples.iter().cloned());
    let policies = if with_policy {
        json!([{ "tool": "prober.fetch", "action": "*", "role": "cfo", "ttl_seconds": 600 }])
    } else {
        json!([])
    };
    json!({
        "name": "prober",
        "version": version,
        "publisher": "acme",
        "description": "Echoes and fetches, for the marketplace tests.",
        "tools": [{ "component": "prober", "file": "components/prober.wasm" }],
        "tuples": tuples,
        "connections": [{ "name": "api", "kind": "bearer", "allowed_hosts": hosts, "description": "A bearer token of the test API." }],
        "approval_policies": policies,
        "limits": { "deadline_ms": 5000 }
    })
}

/// Builds and signs a package from `manifest` (source form) with `key`; returns its directory.
fn build_package(work: &Path, name: &str, manifest: &Value, key: &SigningKey) -> PathBuf {
    build_package_of(work, name, manifest, key, airlock::bundled::SANDBOX_PROBE)
}

/// [`build_package`] with `prober.wasm` being `component`.
fn build_package_of(work: &Path, name: &str, manifest: &Value, key: &SigningKey, component: &[u8]) -> PathBuf {
    let source = work.join(format!("{name}-src"));
    std::fs::create_dir_all(source.join("components")).unwrap();
    std::fs::write(source.join("manifest.json"), serde_json::to_vec_pretty(manifest).unwrap()).unwrap();
    std::fs::write(source.join("components/prober.wasm"), component).unwrap();
    build(&source, &work.join(name), key, &[]).unwrap()
}

fn tar_of(dir: &Path) -> Vec<u8> {
    let out = dir.with_extension("tar");
    pack(dir, &out).unwrap();
    std::fs::read(out).unwrap()
}

async fn upload(t: &TestHost, path: &str, tar: Vec<u8>) -> (u16, Value) {
    upload_as(t, &t.admin, path, tar).await
}

async fn upload_as(t: &TestHost, token: &str, path: &str, tar: Vec<u8>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", t.url))
        .bearer_auth(token)
        .header("content-type", "application/x-tar")
        .body(tar)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn trust(t: &TestHost, publisher: &str, key: &SigningKey) {
    let (status, body) = t
        .request(
            Method::POST,
            "/v1/marketplace/publishers",
            &t.operator,
            Some(json!({ "publisher": publisher, "public_key": key.public_key_base64() })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Every row of every table but the audit trail's (and the API tokens', whose last use the
/// requests themselves record), as text: "the database as it was".
async fn snapshot(t: &TestHost) -> Vec<String> {
    let pool = t.host.db.pool();
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'audit%' AND name NOT LIKE '_sqlx%' \
         AND name <> 'api_tokens' ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut out = Vec::new();
    for (table,) in tables {
        let cols: Vec<(String,)> =
            sqlx::query_as(&format!("SELECT name FROM pragma_table_info('{table}')")).fetch_all(pool).await.unwrap();
        let expr = cols.iter().map(|(c,)| format!("quote(\"{c}\")")).collect::<Vec<_>>().join(" || '|' || ");
        let rows: Vec<(String,)> =
            sqlx::query_as(&format!("SELECT {expr} FROM \"{table}\" ORDER BY 1")).fetch_all(pool).await.unwrap();
        out.extend(rows.into_iter().map(|(r,)| format!("{table}: {r}")));
    }
    out
}

async fn install_catalog(t: &TestHost, name: &str, tenant: &str) -> (u16, Value) {
    t.admin_post(&format!("/v1/marketplace/install?tenant={tenant}"), json!({ "catalog": name })).await
}

#[tokio::test]
async fn catalog_install_provisions_identity_tuples_slots_and_policies() {
    let t = TestHost::start_with(support::catalog_limits()).await;
    let (status, catalog) = t.admin_get("/v1/marketplace/catalog").await;
    assert_eq!(status, 200, "{catalog}");
    assert!(catalog["catalog"].as_array().unwrap().iter().any(|e| e["name"] == "offboarding"), "{catalog}");

    let (status, report) = install_catalog(&t, "offboarding", "default").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["agent"], "offboarding");
    assert_eq!(report["already_installed"], false);
    let secret = report["client_secret"].as_str().unwrap().to_string();
    // Only the hash is stored.
    let stored: Vec<(String,)> = sqlx::query_as("SELECT token_hash FROM agents WHERE name = 'offboarding'")
        .fetch_all(t.host.db.pool())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].0, secret);
    assert!(
        !snapshot(&t).await.iter().any(|row| row.contains(&secret)),
        "the secret itself is nowhere in the database"
    );

    // The identity works as OAuth2 client credentials and as a bearer token.
    let form = [("grant_type", "client_credentials"), ("client_id", "offboarding"), ("client_secret", secret.as_str())];
    let resp = reqwest::Client::new().post(format!("{}/oauth/token", t.url)).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let jwt = resp.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let (status, tools) = t.request(Method::GET, "/v1/tools", &jwt, None).await;
    assert_eq!(status, 200, "{tools}");
    let ids: Vec<&str> = tools["tools"].as_array().unwrap().iter().filter_map(|x| x["name"].as_str()).collect();
    for tool in ["offboarding.revoke-access", "offboarding.issue-refund", "offboarding.delete-customer-data"] {
        assert!(ids.contains(&tool), "{tool} in {ids:?}");
    }

    // Tuples exactly as declared, slots declared and empty, policies registered.
    let tuples = t.host.rebac.read("default", None).await.unwrap();
    let mine: Vec<_> = tuples.iter().filter(|x| x.subject == "agent:offboarding").collect();
    assert_eq!(mine.len(), 7, "{mine:?}");
    let (_, installed) = t.admin_get("/v1/marketplace/installed").await;
    let slots = installed["installed"][0]["connection_slots"].as_array().unwrap().clone();
    let names: Vec<&str> = slots.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["offboarding/billing-api", "offboarding/directory-api"]);
    assert!(slots.iter().all(|s| s["filled"] == false));
    let policies = t.host.policies.list("default").await.unwrap();
    let keyed: Vec<(String, String, String)> =
        policies.iter().map(|p| (p.tool.clone(), p.action.clone(), p.role.clone())).collect();
    assert!(keyed.contains(&("offboarding".into(), "issue-refund".into(), "cfo".into())), "{keyed:?}");
    assert!(keyed.contains(&("offboarding".into(), "delete-customer-data".into(), "dpo".into())), "{keyed:?}");
    assert!(keyed.contains(&("agent:offboarding".into(), "run".into(), "ops_manager".into())), "{keyed:?}");
    // Filling a slot takes the secret; kind, hosts and base URL come from the package.
    let fill = json!({ "agent": "offboarding", "secret": "dir-token" });
    let (status, body) = t.request(Method::PUT, "/v1/connections/directory-api", &t.admin, Some(fill)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connection"]["kind"], "bearer", "{body}");
    assert_eq!(body["connection"]["allowed_hosts"], json!(["directory.example.com"]), "{body}");
    assert_eq!(body["connection"]["base_url"], "https://directory.example.com", "{body}");
    let (_, installed) = t.admin_get("/v1/marketplace/installed").await;
    let filled: Vec<bool> = installed["installed"][0]["connection_slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["filled"].as_bool().unwrap())
        .collect();
    assert_eq!(filled, [false, true], "{installed}");
    // A connection that is no slot still needs its hosts.
    let (status, body) =
        t.request(Method::PUT, "/v1/connections/adhoc", &t.admin, Some(json!({ "secret": "x" }))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("allowed_hosts"), "{body}");
    // The entry policy is live: a step outside a run is refused for that reason (an empty slot
    // or a missing tuple would also give 403, with another code) before anything runs.
    let (status, body) = t.call(&secret, "offboarding.revoke-access", json!({ "customer_id": "c1" })).await;
    assert_eq!(
        (status, body["code"].as_str(), body["ledger_reason"].as_str()),
        (403, Some("run_refused"), Some("run_required")),
        "{body}"
    );

    // Installing again is harmless: same digest, nothing changes, no new secret.
    let before = snapshot(&t).await;
    let (status, again) = install_catalog(&t, "offboarding", "default").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["already_installed"], true);
    assert!(again.get("client_secret").is_none(), "{again}");
    assert_eq!(snapshot(&t).await, before);
    let (status, _) = t.request(Method::GET, "/v1/tools", &secret, None).await;
    assert_eq!(status, 200, "the first secret still works");

    // An admin's revoke (the kill switch) is not undone by installing again.
    let (status, _) = t.request(Method::DELETE, "/v1/agents/offboarding", &t.admin, None).await;
    assert_eq!(status, 200);
    let (status, body) = install_catalog(&t, "offboarding", "default").await;
    assert_eq!((status, body["code"].as_str()), (409, Some("agent_revoked")), "{body}");
    let (status, _) = t.request(Method::DELETE, "/v1/marketplace/installed/offboarding", &t.admin, None).await;
    assert_eq!(status, 200, "an installation whose agent was revoked uninstalls cleanly");
    let (status, body) = install_catalog(&t, "offboarding", "default").await;
    assert_eq!(status, 200, "{body}");

    // An unknown catalog name says where to look.
    let (status, body) = install_catalog(&t, "no-such-agent", "default").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["message"].as_str().unwrap().contains("airlock catalog"), "{body}");
}

#[tokio::test]
async fn an_install_failing_half_way_leaves_the_database_as_it_was() {
    let t = TestHost::start_with(support::catalog_limits()).await;
    let before = snapshot(&t).await;
    for step in InstallStep::ALL {
        let err = t
            .host
            .install(
                "default",
                &PackageSource::Catalog("offboarding".into()),
                &InstallOptions { fail_after: Some(step), ..Default::default() },
                &|_| {},
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), "injected_fault", "{err}");
        assert_eq!(snapshot(&t).await, before, "after a failure following step `{}`", step.name());
        assert!(t.host.installed.of_tenant("default").is_empty());
        assert!(!t.host.agents.exists("default", "offboarding").await.unwrap());
    }
    // Nothing half-done blocks a real install afterwards.
    let (status, report) = install_catalog(&t, "offboarding", "default").await;
    assert_eq!(status, 200, "{report}");
    // Refused installs are audited, the trail verifies.
    t.host.flush().await;
    let audit = t.audit().await;
    let refused = audit.iter().filter(|e| e["kind"] == "marketplace.install" && e["outcome"] == "refused").count();
    assert_eq!(refused, InstallStep::ALL.len());
    let (status, verified) = t.admin_get("/v1/audit/verify").await;
    assert_eq!((status, &verified["broken_at"]), (200, &Value::Null), "{verified}");
    assert!(verified["events"].as_i64().unwrap() >= InstallStep::ALL.len() as i64, "{verified}");
}

#[tokio::test]
async fn forged_packages_are_refused_naming_the_failed_check_and_write_nothing() {
    let t = TestHost::start_with(support::catalog_limits()).await;
    let work = tempfile::tempdir().unwrap();
    let (key, _) = generate_key().unwrap();
    let (other, _) = generate_key().unwrap();
    let manifest = prober_manifest("1.0.0", &[], &["127.0.0.1"], false);
    let good = build_package(work.path(), "good", &manifest, &key);
    let before = snapshot(&t).await;

    // Unknown publisher: nobody trusts `acme` yet.
    let (status, body) = upload(&t, "/v1/marketplace/install", tar_of(&good)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("unknown-publisher")), "{body}");
    trust(&t, "acme", &key).await;
    let before_trusted = snapshot(&t).await;
    assert_ne!(before, before_trusted);

    // Signed by a key that is not acme's.
    let wrong = build_package(work.path(), "wrong", &manifest, &other);
    let (status, body) = upload(&t, "/v1/marketplace/install", tar_of(&wrong)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("unknown-publisher")), "{body}");

    // Unsigned.
    let unsigned = build_package(work.path(), "unsigned", &manifest, &key);
    std::fs::remove_file(unsigned.join("signature.json")).unwrap();
    let (status, body) = upload(&t, "/v1/marketplace/install", tar_of(&unsigned)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("unsigned")), "{body}");

    // Tampered manifest: one more permission after signing.
    let tampered = build_package(work.path(), "tampered-manifest", &manifest, &key);
    let mut m: Value = serde_json::from_slice(&std::fs::read(tampered.join("manifest.json")).unwrap()).unwrap();
    m["tuples"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "user": "agent:$AGENT", "relation": "can_use", "object": "tool:prober.spin" }));
    std::fs::write(tampered.join("manifest.json"), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let (status, body) = upload(&t, "/v1/marketplace/install", tar_of(&tampered)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("bad-signature")), "{body}");

    // Tampered component: other bytes under the signed digest.
    let swapped = build_package(work.path(), "tampered-component", &manifest, &key);
    std::fs::write(swapped.join("components/prober.wasm"), airlock::bundled::HELLO).unwrap();
    let (status, body) = upload(&t, "/v1/marketplace/install", tar_of(&swapped)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("tampered-component")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("prober"), "{body}");

    // Not a tar at all.
    let (status, body) = upload(&t, "/v1/marketplace/install", b"not a package".to_vec()).await;
    assert_eq!(status, 422, "{body}");

    assert_eq!(snapshot(&t).await, before_trusted, "no refused package wrote anything");
    t.host.flush().await;
    let refusals =
        t.audit().await.into_iter().filter(|e| e["kind"] == "marketplace.install" && e["outcome"] == "refused").count();
    assert_eq!(refusals, 6);

    // A package listing an internal address (cloud metadata, loopback) is refused, naming the
    // host, unless the admin allows private networks for that connection.
    let metadata_manifest = prober_manifest("1.0.0", &[], &["169.254.169.254:80"], false);
    let metadata = build_package(work.path(), "metadata", &metadata_manifest, &key);
    for (pkg, host) in [(&metadata, "`169.254.169.254:80`"), (&good, "`127.0.0.1`")] {
        let (status, body) = upload(&t, "/v1/marketplace/install", tar_of(pkg)).await;
        assert_eq!((status, body["code"].as_str()), (422, Some("internal_host")), "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(host) && message.contains("allow_private_network=api"), "{body}");
    }
    assert!(t.host.installations("default").await.unwrap().is_empty(), "nothing was installed");

    // The good one installs once allowed; distrusting the key refuses the next install of it elsewhere.
    let (status, body) = upload(&t, "/v1/marketplace/install?allow_private_network=api", tar_of(&good)).await;
    assert_eq!(status, 200, "{body}");
    let key_id = body["key_id"].as_str().unwrap().to_string();
    let (status, _) =
        t.request(Method::DELETE, &format!("/v1/marketplace/publishers/acme/{key_id}"), &t.operator, None).await;
    assert_eq!(status, 200);
    let other = t.tenant_admin("other").await;
    let (status, body) = upload_as(&t, &other, "/v1/marketplace/install", tar_of(&good)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("unknown-publisher")), "{body}");
}

#[tokio::test]
async fn uninstall_revokes_everything_at_once_even_a_waiting_call() {
    let t = TestHost::start_with(support::catalog_limits()).await;
    let (api, seen) = recorder("prober-secret").await;
    let work = tempfile::tempdir().unwrap();
    let (key, _) = generate_key().unwrap();
    trust(&t, "acme", &key).await;
    let host = api.to_string();
    let pkg = build_package(work.path(), "prober", &prober_manifest("1.0.0", &[], &[&host], true), &key);
    let (status, report) = upload(&t, "/v1/marketplace/install?allow_private_network=api", tar_of(&pkg)).await;
    assert_eq!(status, 200, "{report}");
    let secret = report["client_secret"].as_str().unwrap().to_string();
    assert_eq!(report["connection_slots"][0]["name"], "prober/api");

    // Before the slot is filled the tool says who must fill it.
    let (status, body) = t.call(&secret, "prober.echo", json!({ "x": 1 })).await;
    assert_eq!(status, 200, "{body}");
    let url = format!("http://{api}/ping");
    // Fill the slot (the admin points it at the local stand-in), as the report says.
    let fill = json!({ "kind": "bearer", "agent": "prober", "base_url": format!("http://{api}"),
                       "allowed_hosts": [host], "secret": "prober-secret", "allow_private_network": true });
    let (status, body) = t.request(Method::PUT, "/v1/connections/api", &t.admin, Some(fill)).await;
    assert_eq!(status, 200, "{body}");
    // Filling it with another kind than declared is refused.
    let wrong = json!({ "kind": "api_key", "agent": "prober", "allowed_hosts": [api.to_string()], "secret": "x",
                        "placement": { "in": "header", "name": "X-Key" } });
    let (status, body) = t.request(Method::PUT, "/v1/connections/api", &t.admin, Some(wrong)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("declared as `bearer`"), "{body}");
    // Sending its credential to a host the package did not declare takes the admin's explicit say-so.
    let elsewhere = json!({ "kind": "bearer", "agent": "prober", "allowed_hosts": ["collector.example.net"],
                            "secret": "prober-secret" });
    let (status, body) = t.request(Method::PUT, "/v1/connections/api", &t.admin, Some(elsewhere)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("allow_undeclared_hosts"), "{body}");

    // A jwt obtained before the uninstall.
    let form = [("grant_type", "client_credentials"), ("client_id", "prober"), ("client_secret", secret.as_str())];
    let resp = reqwest::Client::new().post(format!("{}/oauth/token", t.url)).form(&form).send().await.unwrap();
    let jwt = resp.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();

    // A fetch waits for the CFO (the package's policy) ...
    let waiting = {
        let (url_, secret_, base) = (url.clone(), secret.clone(), t.url.clone());
        tokio::spawn(async move {
            let resp = reqwest::Client::new()
                .post(format!("{base}/v1/tools/prober.fetch/call"))
                .bearer_auth(secret_)
                .json(&json!({ "connection": "api", "url": url_ }))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        })
    };
    let pending = support::wait_for_pending_of(&t, "prober.fetch").await;
    assert_eq!(pending["role"], "cfo", "{pending}");

    // ... and the uninstall lands while it waits.
    let (status, removed) = t.request(Method::DELETE, "/v1/marketplace/installed/prober", &t.admin, None).await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["credentials_destroyed"], 1, "{removed}");
    assert_eq!(removed["requests_denied"], 1, "{removed}");
    assert!(removed["tuples_deleted"].as_u64().unwrap() >= 3, "{removed}");
    let (status, body) = tokio::time::timeout(std::time::Duration::from_secs(10), waiting).await.unwrap().unwrap();
    assert_eq!(status, 403, "the waiting call is refused: {body}");
    assert_eq!(seen.count(), 0, "the stand-in API never saw the request");

    // Every door is shut: opaque token, JWT, client credentials, tool list.
    for token in [&secret, &jwt] {
        let (status, body) = t.call(token, "prober.echo", json!({})).await;
        assert_eq!(status, 401, "{body}");
    }
    let resp = reqwest::Client::new().post(format!("{}/oauth/token", t.url)).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    // Nothing of it is left: tuples, credentials, slots, policies, components, record.
    let tuples = t.host.rebac.read("default", None).await.unwrap();
    assert!(!tuples.iter().any(|x| x.subject == "agent:prober" || x.object.contains("prober")), "{tuples:?}");
    assert!(t.host.vault.list("default").await.unwrap().iter().all(|c| !c.name.starts_with("prober/")));
    assert!(t.host.vault.slots("default").await.unwrap().is_empty());
    assert!(t.host.policies.list("default").await.unwrap().iter().all(|p| p.tool != "prober"));
    assert!(t.host.installed.of_tenant("default").is_empty());
    let (_, installed) = t.admin_get("/v1/marketplace/installed").await;
    assert_eq!(installed["installed"], json!([]));
    // The audit is kept, install to uninstall, and verifies.
    t.host.flush().await;
    let kinds: Vec<String> =
        t.audit().await.iter().map(|e| e["kind"].as_str().unwrap_or_default().to_string()).collect();
    assert!(kinds.contains(&"marketplace.install".to_string()) && kinds.contains(&"marketplace.uninstall".to_string()));
    let (status, verified) = t.admin_get("/v1/audit/verify").await;
    assert_eq!((status, &verified["broken_at"]), (200, &Value::Null), "{verified}");
    assert!(verified["events"].as_i64().unwrap() >= 2, "{verified}");
    // Uninstalling twice says there is nothing to do.
    let (status, body) = t.request(Method::DELETE, "/v1/marketplace/installed/prober", &t.admin, None).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn an_upgrade_that_widens_needs_consent_and_one_that_narrows_does_not() {
    let t = TestHost::start_with(support::catalog_limits()).await;
    let work = tempfile::tempdir().unwrap();
    let (key, _) = generate_key().unwrap();
    trust(&t, "acme", &key).await;
    let v1 = build_package(work.path(), "v1", &prober_manifest("1.0.0", &[], &["api.example.com"], true), &key);
    let (status, report) = upload(&t, "/v1/marketplace/install", tar_of(&v1)).await;
    assert_eq!(status, 200, "{report}");
    let secret = report["client_secret"].as_str().unwrap().to_string();

    // Installing a different version is not an upgrade by accident.
    let spin = json!({ "user": "agent:$AGENT", "relation": "can_use", "object": "tool:prober.spin" });
    let v2 = build_package(
        work.path(),
        "v2",
        &prober_manifest("1.1.0", &[spin], &["api.example.com", "uploads.example.com"], false),
        &key,
    );
    let (status, body) = upload(&t, "/v1/marketplace/install", tar_of(&v2)).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("upgrade_needed")), "{body}");

    // Without consent: refused with what would change.
    let before = snapshot(&t).await;
    let (status, body) = upload(&t, "/v1/marketplace/upgrade", tar_of(&v2)).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("consent_required")), "{body}");
    let diff = &body["diff"];
    assert_eq!(diff["tuples_added"], json!(["tool:prober.spin#can_use@agent:prober"]), "{diff}");
    assert_eq!(diff["hosts_added"], json!(["prober/api: uploads.example.com"]), "{diff}");
    assert_eq!(diff["policies_removed"].as_array().unwrap().len(), 1, "{diff}");
    assert_eq!(diff["widening"].as_array().unwrap().len(), 3, "{diff}");
    assert_eq!(snapshot(&t).await, before, "nothing applied without consent");
    let (status, body) = t.call(&secret, "prober.spin", json!({})).await;
    assert_eq!(status, 403, "{body}");

    // With consent: applied; the agent keeps its identity.
    let (status, body) = upload(&t, "/v1/marketplace/upgrade?consent=true", tar_of(&v2)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"], true);
    assert!(t.host.rebac.check("default", "agent:prober", "can_use", "tool:prober.spin").unwrap());
    assert!(t.host.policies.for_action("default", "prober", "fetch").await.unwrap().is_none());
    let slot = t.host.vault.slot("default", "prober/api").await.unwrap().unwrap();
    assert_eq!(slot.allowed_hosts, ["api.example.com", "uploads.example.com"]);
    let (status, body) = t.call(&secret, "prober.echo", json!({ "still": "me" })).await;
    assert_eq!(status, 200, "{body}");

    // Back to v1's permissions: only narrowing, applied without asking.
    let v3 = build_package(work.path(), "v3", &prober_manifest("1.2.0", &[], &["api.example.com"], true), &key);
    let (status, body) = upload(&t, "/v1/marketplace/upgrade", tar_of(&v3)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["diff"]["widening"].as_array().unwrap().is_empty(), "{body}");
    assert!(!t.host.rebac.check("default", "agent:prober", "can_use", "tool:prober.spin").unwrap());
    assert_eq!(t.host.policies.for_action("default", "prober", "fetch").await.unwrap().unwrap().role, "cfo");
    t.host.flush().await;
    let upgrades: Vec<String> = t
        .audit()
        .await
        .iter()
        .filter(|e| e["kind"] == "marketplace.upgrade")
        .map(|e| e["outcome"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(upgrades, ["consent_required", "ok", "ok"]);
}

#[tokio::test]
async fn an_upgrade_whose_tools_do_more_to_the_world_needs_consent() {
    let t = TestHost::start_with(support::catalog_limits()).await;
    let work = tempfile::tempdir().unwrap();
    let (key, _) = generate_key().unwrap();
    trust(&t, "acme", &key).await;
    let manifest = |version: &str| prober_manifest(version, &[], &["api.example.com"], false);
    // 1.0.0 declares its tools read-only; 1.1.0 is the same code without the declaration, so
    // each tool counts as irreversible and reaching outside systems.
    let declared = airlock::bundled::SANDBOX_PROBE_DECLARED;
    let v1 = build_package_of(work.path(), "v1", &manifest("1.0.0"), &key, declared);
    let (status, report) = upload(&t, "/v1/marketplace/install", tar_of(&v1)).await;
    assert_eq!(status, 200, "{report}");
    let v2 = build_package_of(work.path(), "v2", &manifest("1.1.0"), &key, airlock::bundled::SANDBOX_PROBE);

    // A dry run already says so (it reads the new code), and applies nothing.
    let (status, body) = upload(&t, "/v1/marketplace/upgrade?dry_run=true", tar_of(&v2)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"], false);
    let widening: Vec<&str> =
        body["diff"]["widening"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert!(widening.contains(&"tool prober.echo is now irreversible (was read-only)"), "{widening:?}");
    assert!(widening.contains(&"tool prober.echo now reaches outside systems"), "{widening:?}");
    assert!(!widening.iter().any(|w| w.contains("prober.fetch now reaches")), "fetch reached out before: {widening:?}");
    let changed = body["diff"]["effects_changed"].as_array().unwrap();
    assert!(
        changed.contains(&json!(
        "prober.echo: read-only, stays inside Airlock -> undeclared (counted as irreversible, reaches outside systems)"
    )),
        "{changed:?}"
    );

    // Without consent: refused; the installed tools still declare read-only.
    let (status, body) = upload(&t, "/v1/marketplace/upgrade", tar_of(&v2)).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("consent_required")), "{body}");
    let effect = |t: &TestHost| t.host.installed.get("default", "prober").unwrap().tools[0].effects.effect;
    assert_eq!(effect(&t), airlock_runtime::Effect::ReadOnly);
    let (status, body) = upload(&t, "/v1/marketplace/upgrade?consent=true", tar_of(&v2)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(effect(&t), airlock_runtime::Effect::Irreversible);

    // Declaring again narrows: applied without asking.
    let v3 = build_package_of(work.path(), "v3", &manifest("1.2.0"), &key, declared);
    let (status, body) = upload(&t, "/v1/marketplace/upgrade", tar_of(&v3)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["diff"]["widening"].as_array().unwrap().is_empty(), "{body}");
    assert_eq!(effect(&t), airlock_runtime::Effect::ReadOnly);
}

#[tokio::test]
async fn two_tenants_with_the_same_agent_cannot_reach_each_other() {
    let t = TestHost::start_with(support::catalog_limits()).await;
    let (api_a, seen_a) = recorder("secret-of-a").await;
    let work = tempfile::tempdir().unwrap();
    let (key, _) = generate_key().unwrap();
    trust(&t, "acme", &key).await;
    let pkg = build_package(work.path(), "prober", &prober_manifest("1.0.0", &[], &[&api_a.to_string()], false), &key);
    let (acme, globex) = (t.tenant_admin("acme-corp").await, t.tenant_admin("globex").await);
    let (status, a) =
        upload_as(&t, &acme, "/v1/marketplace/install?tenant=acme-corp&allow_private_network=api", tar_of(&pkg)).await;
    assert_eq!(status, 200, "{a}");
    let (status, b) = upload_as(&t, &globex, "/v1/marketplace/install?allow_private_network=api", tar_of(&pkg)).await;
    assert_eq!(status, 200, "{b}");
    let (token_a, token_b) = (a["client_secret"].as_str().unwrap(), b["client_secret"].as_str().unwrap());
    assert_ne!(token_a, token_b);

    // Tenant A fills its slot; B's agent, same name and same tool, cannot use A's credential.
    let fill = json!({ "kind": "bearer", "agent": "prober", "base_url": format!("http://{api_a}"),
                       "allowed_hosts": [api_a.to_string()], "secret": "secret-of-a", "allow_undeclared_hosts": true,
                       "allow_private_network": true });
    // Globex's admin cannot fill acme-corp's slot: 404, as if it did not exist.
    let (status, _) = t.request(Method::PUT, "/v1/connections/api?tenant=acme-corp", &globex, Some(fill.clone())).await;
    assert_eq!(status, 404);
    let (status, body) = t.request(Method::PUT, "/v1/connections/api?tenant=acme-corp", &acme, Some(fill)).await;
    assert_eq!(status, 200, "{body}");
    let input = json!({ "connection": "api", "url": format!("http://{api_a}/contacts") });
    let (status, body) = t.call(token_a, "prober.fetch", input.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = t.call(token_b, "prober.fetch", input).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("tool_refused")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("not filled yet"), "{body}");
    assert_eq!(seen_a.count(), 1, "only A's call reached A's API");

    // Neither sees the other's installation, tuples, credentials or audit.
    let (_, installed_b) = t.request(Method::GET, "/v1/marketplace/installed", &globex, None).await;
    assert_eq!(installed_b["installed"][0]["connection_slots"][0]["filled"], false, "{installed_b}");
    assert!(t.host.vault.list("globex").await.unwrap().is_empty());
    t.host.flush().await;
    let (_, audit_b) = t.request(Method::GET, "/v1/audit", &globex, None).await;
    let text = audit_b.to_string();
    assert!(!text.contains("secret-of-a") && !text.contains("acme-corp"), "{text}");
    for event in audit_b["events"].as_array().unwrap() {
        assert_eq!(event["tenant"], "globex", "{event}");
        assert!(
            !(event["kind"] == "vault.fetch" && event["outcome"] == "allowed"),
            "B never fetched with A's credential: {event}"
        );
    }

    // Uninstalling in A leaves B's agent working.
    let (status, _) = t.request(Method::DELETE, "/v1/marketplace/installed/prober", &acme, None).await;
    assert_eq!(status, 200);
    let (status, body) = t.call(token_a, "prober.echo", json!({})).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = t.call(token_b, "prober.echo", json!({ "b": true })).await;
    assert_eq!(status, 200, "{body}");
    assert!(t.host.installed.get("acme-corp", "prober").is_none());
    assert!(t.host.installed.get("globex", "prober").is_some());

    // An admin writes in its own tenant only: naming another (query or body) is 404.
    let write = json!({ "writes": [{ "user": "agent:prober", "relation": "can_use", "object": "tool:prober.spin" }] });
    let (status, body) = t.request(Method::POST, "/v1/tuples?tenant=globex", &globex, Some(write.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert!(t.host.rebac.check("globex", "agent:prober", "can_use", "tool:prober.spin").unwrap());
    assert!(!t.host.rebac.check("default", "agent:prober", "can_use", "tool:prober.spin").unwrap());
    let mut other = write;
    other["tenant"] = json!("acme-corp");
    let (status, body) = t.request(Method::POST, "/v1/tuples", &globex, Some(other.clone())).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = t.request(Method::POST, "/v1/tuples?tenant=acme-corp", &t.admin, Some(other)).await;
    assert_eq!(status, 404, "{body}");
    assert!(!t.host.rebac.check("acme-corp", "agent:prober", "can_use", "tool:prober.spin").unwrap());
}

#[tokio::test]
async fn install_streams_progress_and_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let secret = {
        let t = TestHost::start_in(dir.clone(), None, support::catalog_limits()).await;
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/marketplace/install", t.url))
            .bearer_auth(&t.admin)
            .header("accept", "application/x-ndjson")
            .json(&json!({ "catalog": "offboarding" }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
        let text = resp.text().await.unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let steps: Vec<&str> = lines.iter().filter_map(|l| l["progress"]["step"].as_str()).collect();
        assert_eq!(steps, ["verified", "compiling", "compiled", "provisioning"], "{text}");
        assert_eq!(lines[2]["progress"]["done"], 1);
        let last = lines.last().unwrap();
        last["result"]["client_secret"].as_str().unwrap().to_string()
    };
    // A new host over the same directory knows the agent and its component.
    let t = TestHost::start_in(dir, None, support::catalog_limits()).await;
    assert!(t.host.installed.get("default", "offboarding").is_some());
    let (status, tools) = t.request(Method::GET, "/v1/tools", &secret, None).await;
    assert_eq!(status, 200, "{tools}");
    assert!(tools.to_string().contains("offboarding.issue-refund"), "{tools}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_sharing_postgresql_see_each_others_installs_and_uninstalls() {
    let Some(server) = airlock_store::testing::postgres_server_url() else { return };
    let name = format!("airlock_mkt_{}", uuid::Uuid::new_v4().simple());
    let admin = airlock_store::Db::connect_without_migrations(&server).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin.pool()).await.unwrap();
    let url = airlock_store::testing::with_database(&server, &name);
    let (tmp_a, tmp_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = TestHost::start_in(tmp_a.path().to_path_buf(), Some(url.clone()), support::catalog_limits()).await;
    std::fs::copy(tmp_a.path().join("master.key"), tmp_b.path().join("master.key")).unwrap();
    let b = TestHost::start_in(tmp_b.path().to_path_buf(), Some(url), support::catalog_limits()).await;

    // Installed through A, the agent works through B (which loads the component on first use).
    let (status, report) = install_catalog(&a, "crm", "default").await;
    assert_eq!(status, 200, "{report}");
    let secret = report["client_secret"].as_str().unwrap().to_string();
    let (status, tools) = b.request(Method::GET, "/v1/tools", &secret, None).await;
    assert_eq!(status, 200, "{tools}");
    assert!(tools.to_string().contains("crm.find-contact"), "{tools}");
    let (status, body) = b.call(&secret, "crm.find-contact", json!({ "email": "ada@example.com" })).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("tool_refused")), "the slot is empty, the tool ran: {body}");
    assert!(body["message"].as_str().unwrap().contains("not filled yet"), "{body}");

    // Uninstalled through B, it is refused through A at once.
    let (status, removed) = b.request(Method::DELETE, "/v1/marketplace/installed/crm", &b.admin, None).await;
    assert_eq!(status, 200, "{removed}");
    let (status, body) = a.call(&secret, "crm.find-contact", json!({ "email": "ada@example.com" })).await;
    assert_eq!(status, 401, "{body}");
    let (status, tools) = a.request(Method::GET, "/v1/tools", &secret, None).await;
    assert_eq!(status, 401, "{tools}");
    assert!(a.host.installed.get("default", "crm").is_some(), "A has not looked yet");
    a.host
        .visible_tools(&airlock::agents::Agent { tenant: "default".into(), name: "x".into(), on_behalf_of: vec![] })
        .await;
    assert!(a.host.installed.get("default", "crm").is_none(), "A dropped it on its next look");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_installs_with_progress_and_uninstalls() {
    let t = TestHost::start_with(support::catalog_limits()).await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(args)
            .args(["--server", &t.url])
            .env("AIRLOCK_TOKEN", &t.admin)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, stdout, stderr) = tokio::task::block_in_place(|| run(&["install", "incident"]));
    assert!(ok, "{stderr}");
    assert!(stderr.contains("1/1 compiled  incident") && stderr.contains("verified incident 0.1.0"), "{stderr}");
    assert!(stderr.contains("next: fill `incident/pagerduty` (api_key, for api.pagerduty.com)"), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert!(report["client_secret"].as_str().unwrap().starts_with("alk_"), "{report}");

    let (ok, _, stderr) = tokio::task::block_in_place(|| run(&["install", "incident"]));
    assert!(ok && stderr.contains("already installed"), "{stderr}");
    let (ok, _, stderr) = tokio::task::block_in_place(|| run(&["install", "./no/such/dir"]));
    assert!(!ok && stderr.contains("neither a catalog agent nor an existing package"), "{stderr}");
    let (ok, stdout, stderr) = tokio::task::block_in_place(|| run(&["uninstall", "incident"]));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"agent\": \"incident\""), "{stdout}");
}

#[tokio::test]
async fn a_package_gets_what_it_declares_and_nothing_it_did_not() {
    let t = TestHost::start_with(support::catalog_limits()).await;
    let work = tempfile::tempdir().unwrap();
    let (key, _) = generate_key().unwrap();
    let (rival, _) = generate_key().unwrap();
    trust(&t, "acme", &key).await;
    trust(&t, "rival", &rival).await;

    // An earlier, hand-made agent of the same name left a grant behind when it was revoked.
    let _old = t.agent("prober").await;
    t.grant(&[("agent:prober", "can_use", "tool:hello.greet")]).await;
    let pkg = build_package(work.path(), "prober", &prober_manifest("1.0.0", &[], &["api.example.com"], false), &key);
    let (status, body) = upload(&t, "/v1/marketplace/install", tar_of(&pkg)).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("agent_exists")), "{body}");
    let (status, _) = t.request(Method::DELETE, "/v1/agents/prober", &t.admin, None).await;
    assert_eq!(status, 200);
    let (status, report) = upload(&t, "/v1/marketplace/install", tar_of(&pkg)).await;
    assert_eq!(status, 200, "{report}");
    let secret = report["client_secret"].as_str().unwrap();
    let (status, body) = t.call(secret, "hello.greet", json!({ "name": "x" })).await;
    assert_eq!(status, 403, "the old grant did not pass to the installed agent: {body}");

    // A package may not claim a type the tenant already uses.
    t.grant(&[("user:alice", "viewer", "document:payroll")]).await;
    let mut claims = prober_manifest(
        "1.0.0",
        &[json!({ "user": "agent:$AGENT", "relation": "viewer", "object": "document:payroll" })],
        &["api.example.com"],
        false,
    );
    claims["name"] = json!("snoop");
    claims["model"] = json!("type document\n  relations\n    define viewer: [user, agent]\n");
    claims["tools"][0]["component"] = json!("snoop");
    claims["tools"][0]["file"] = json!("components/snoop.wasm");
    for (i, obj) in ["tool:snoop.echo", "tool:snoop.fetch", "connection:$AGENT/api"].iter().enumerate() {
        claims["tuples"][i]["object"] = json!(obj);
    }
    let src = work.path().join("snoop-src");
    std::fs::create_dir_all(src.join("components")).unwrap();
    std::fs::write(src.join("manifest.json"), serde_json::to_vec_pretty(&claims).unwrap()).unwrap();
    std::fs::write(src.join("components/snoop.wasm"), airlock::bundled::SANDBOX_PROBE).unwrap();
    let snoop = build(&src, &work.path().join("snoop"), &key, &[]).unwrap();
    let (status, body) = upload(&t, "/v1/marketplace/install", tar_of(&snoop)).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("model_conflict")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("type `document` already belongs to the tenant"), "{body}");
    assert!(!t.host.rebac.check("default", "agent:snoop", "viewer", "document:payroll").unwrap());

    // An upgrade never changes publisher.
    let mut theirs = prober_manifest("2.0.0", &[], &["api.example.com"], false);
    theirs["publisher"] = json!("rival");
    let other = build_package(work.path(), "rival", &theirs, &rival);
    let (status, body) = upload(&t, "/v1/marketplace/upgrade?consent=true", tar_of(&other)).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("never changes publisher"), "{body}");

    // A downgrade is a widening: it needs consent.
    let older = build_package(work.path(), "older", &prober_manifest("0.9.0", &[], &["api.example.com"], false), &key);
    let (status, body) = upload(&t, "/v1/marketplace/upgrade", tar_of(&older)).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("consent_required")), "{body}");
    assert!(body["diff"]["widening"][0].as_str().unwrap().contains("not newer"), "{body}");
}

#[tokio::test]
async fn a_tenant_with_a_model_gets_the_fragment_merged_and_can_install_again() {
    let t = TestHost::start_with(support::catalog_limits()).await;
    let model = "model\n  schema 1.1\n\ntype user\n\ntype agent\n\ntype tool\n  relations\n    define can_use: [agent, user]\n\ntype connection\n  relations\n    define can_use: [agent]\n\ntype tenant\n  relations\n    define cfo: [user]\n    define dpo: [user]\n    define ops_manager: [user]\n";
    let resp = reqwest::Client::new()
        .put(format!("{}/v1/authorization-model", t.url))
        .bearer_auth(&t.admin)
        .body(model)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    for round in 0..2 {
        let (status, report) = install_catalog(&t, "offboarding", "default").await;
        assert_eq!(status, 200, "round {round}: {report}");
        let dsl = t.host.rebac.model("default").unwrap().model.to_string();
        assert_eq!(dsl.matches("type customer").count(), 1, "{dsl}");
        assert!(dsl.contains("define offboard: [agent]") && dsl.contains("define ops_manager: [user]"), "{dsl}");
        // The merged model holds the package's tuples, and the admin's grant on its type.
        t.grant(&[("agent:offboarding", "offboard", "customer:42")]).await;
        assert!(t.host.rebac.check("default", "agent:offboarding", "offboard", "customer:42").unwrap());
        let (status, body) = t.request(Method::DELETE, "/v1/marketplace/installed/offboarding", &t.admin, None).await;
        assert_eq!(status, 200, "{body}");
        assert!(!t.host.rebac.check("default", "agent:offboarding", "offboard", "customer:42").unwrap());
    }
}
