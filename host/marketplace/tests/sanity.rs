//! Policy sanity of manifests, without signing: each rule names its place in the manifest.
// Helpers outside `#[test]` fns unwrap too: a failed fixture is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use airlock_marketplace::{HostCaps, Manifest, PackageError, Stage};
use common::CATALOG_MANIFEST;
use serde_json::{json, Value};

fn catalog() -> Value {
    serde_json::from_str(CATALOG_MANIFEST).unwrap()
}

/// The violations of `m` as a package (with a digest filled in), as `at: reason` strings.
fn violations(mut m: Value) -> Vec<String> {
    m["tools"][0]["file"] = json!("components/offboarding.wasm");
    m["tools"][0]["sha256"] = json!("0".repeat(64));
    let manifest = Manifest::parse(&serde_json::to_vec(&m).unwrap()).unwrap();
    match manifest.validate(Stage::Package, &HostCaps::default()) {
        Ok(()) => vec![],
        Err(PackageError::InvalidManifest(v)) => v.iter().map(ToString::to_string).collect(),
        Err(other) => panic!("{other}"),
    }
}

/// The first violation, when one edit breaks more than one rule.
fn first(edit: impl FnOnce(&mut Value)) -> String {
    let mut m = catalog();
    edit(&mut m);
    violations(m).into_iter().next().unwrap()
}

fn one(edit: impl FnOnce(&mut Value)) -> String {
    let mut m = catalog();
    edit(&mut m);
    let v = violations(m);
    assert_eq!(v.len(), 1, "{v:?}");
    v.into_iter().next().unwrap()
}

#[test]
fn the_catalog_manifest_is_valid_as_source_and_as_package() {
    let m = Manifest::parse(CATALOG_MANIFEST.as_bytes()).unwrap();
    m.validate(Stage::Source, &HostCaps::default()).unwrap();
    assert_eq!(violations(catalog()), Vec::<String>::new());
    // As a package it must pin its component.
    let err = m.validate(Stage::Package, &HostCaps::default()).unwrap_err();
    assert_eq!(err.to_string(), "invalid manifest: tools[0].sha256: missing: a package pins every component");
}

#[test]
fn the_catalog_manifest_uses_only_fields_the_schema_declares() {
    let schema: Value = serde_json::from_str(include_str!("../../../marketplace/schema/manifest.schema.json")).unwrap();
    assert_eq!(schema["additionalProperties"], json!(false));
    let props = schema["properties"].as_object().unwrap();
    let mut declared: Vec<_> = props.keys().cloned().collect();
    declared.sort();
    // The schema and the Rust struct agree on the top-level fields.
    let mut fields = vec![
        "approval_policies",
        "connections",
        "description",
        "entry_approval",
        "limits",
        "model",
        "name",
        "publisher",
        "tools",
        "tuples",
        "version",
    ];
    fields.sort();
    assert_eq!(declared, fields);
    for key in catalog().as_object().unwrap().keys() {
        assert!(props.contains_key(key), "{key}");
    }
}

#[test]
fn tuples_only_about_the_agents_own_things() {
    assert_eq!(
        one(|m| m["tuples"][0]["user"] = json!("user:*")),
        "tuples[0].user: `user:*` is not `agent:$AGENT`: a package grants permissions only to its own agent"
    );
    assert_eq!(
        one(|m| m["tuples"][0]["relation"] = json!("owner")),
        "tuples[0].object: `tool:offboarding.revoke-access`: the only relation a package may write on its own tools \
         is `can_use`"
    );
    assert_eq!(
        one(|m| m["tuples"][5]["object"] = json!("connection:other-agent/directory-api")),
        "tuples[5].object: `connection:other-agent/directory-api` is not `connection:$AGENT/NAME`: only the agent's \
         own connections"
    );
    assert_eq!(
        one(|m| m["tuples"][5]["object"] = json!("connection:$AGENT/payroll")),
        "tuples[5].object: `connection:$AGENT/payroll`: connection `payroll` is not declared in `connections`"
    );
    assert_eq!(
        one(|m| m["tuples"][0] = json!({"user": "agent:$AGENT", "relation": "cfo", "object": "tenant:$TENANT"})),
        "tuples[0].object: `tenant:$TENANT`: type `tenant` is not this package's (only `tool:COMPONENT.TOOL`, \
         `connection:$AGENT/NAME` or types the model fragment defines)"
    );
    assert_eq!(
        first(|m| m["tuples"][0]["object"] = json!("tool:offboarding.$USER")),
        "tuples[0].object: unknown placeholder `$USER` in `tool:offboarding.$USER` (only `$AGENT`, `$TENANT`)"
    );
    assert_eq!(one(|m| m["tuples"][1] = m["tuples"][0].clone()), "tuples[1]: duplicate tuple");
    assert_eq!(one(|m| m["tuples"][0]["object"] = json!("tool")), "tuples[0].object: `tool` is not `type:id`");
}

#[test]
fn tuples_on_the_models_own_types() {
    let mut m = catalog();
    m["tuples"]
        .as_array_mut()
        .unwrap()
        .push(json!({"user": "agent:$AGENT", "relation": "offboard", "object": "customer:$TENANT-test"}));
    assert_eq!(violations(m.clone()), Vec::<String>::new());
    m["tuples"][7]["relation"] = json!("owner");
    assert_eq!(
        violations(m),
        ["tuples[7].object: `customer:$TENANT-test`: the model fragment does not define `owner` on `customer`"]
    );
    assert_eq!(
        one(|m| m["model"] = json!("type tool\n  relations\n    define can_use: [agent:*]\n")),
        "model: line 1: type `tool` belongs to the host; a package may not define it"
    );
}

#[test]
fn connections_hosts_and_oauth() {
    assert_eq!(
        one(|m| m["connections"][0]["allowed_hosts"] = json!(["https://directory.example.com"])),
        "connections[0].allowed_hosts[0]: `https://directory.example.com` is not `host` or `host:port` (no scheme, \
         path or user info)"
    );
    assert_eq!(
        one(|m| m["connections"][0]["allowed_hosts"] = json!([])),
        "connections[0].allowed_hosts: at least one host: the credential goes nowhere else"
    );
    assert_eq!(
        one(|m| m["connections"][0]["allowed_hosts"] = json!(["directory.example.com:0"])),
        "connections[0].allowed_hosts[0]: `directory.example.com:0`: `0` is not a port (1 ..= 65535)"
    );
    assert_eq!(
        one(|m| m["connections"][0]["kind"] = json!("oauth2_client_credentials")),
        "connections[0].oauth: required for the OAuth2 kinds"
    );
    assert_eq!(
        one(|m| {
            m["connections"][0]["kind"] = json!("oauth2_refresh");
            m["connections"][0]["oauth"] = json!({"token_url": "http://idp.example.com/token", "client_id": "x"});
        }),
        "connections[0].oauth.token_url: `http://idp.example.com/token`: scheme `http` is not https (http only on \
         loopback)"
    );
    let mut m = catalog();
    m["connections"][1]["name"] = json!("directory-api");
    let v = violations(m);
    assert!(v.contains(&"connections[1].name: `directory-api` is declared twice".to_string()), "{v:?}");
}

#[test]
fn approval_policies_and_limits() {
    assert_eq!(
        one(|m| m["approval_policies"][0]["tool"] = json!("billing.refund")),
        "approval_policies[0].tool: `billing.refund`: component `billing` is not in this package"
    );
    assert_eq!(
        one(|m| m["approval_policies"][0]["role"] = json!("chief financial officer")),
        "approval_policies[0].role: `chief financial officer` is not a role (a relation name on the tenant)"
    );
    assert_eq!(
        one(|m| m["approval_policies"][0]["ttl_seconds"] = json!(0)),
        "approval_policies[0].ttl_seconds: 0 is outside 1 ..= 604800 seconds"
    );
    assert_eq!(
        one(|m| m["entry_approval"]["ttl_seconds"] = json!(700000)),
        "entry_approval.ttl_seconds: 700000 is outside 1 ..= 604800 seconds"
    );
    assert_eq!(
        one(|m| m["approval_policies"][1] = m["approval_policies"][0].clone()),
        "approval_policies[1]: a second policy for `offboarding.issue-refund` `*`"
    );
    assert_eq!(
        one(|m| m["limits"]["memory_mib"] = json!(4096)),
        "limits.memory_mib: 4096 is outside the host's 1 ..= 64"
    );
    let mut m = catalog();
    m["limits"]["memory_mib"] = json!(4096);
    m["tools"][0]["sha256"] = json!("0".repeat(64));
    let manifest = Manifest::parse(&serde_json::to_vec(&m).unwrap()).unwrap();
    let roomy = HostCaps { memory_mib: 8192, ..HostCaps::default() };
    manifest.validate(Stage::Source, &roomy).unwrap();
}

#[test]
fn every_violation_is_reported_at_once() {
    let mut m = catalog();
    m["name"] = json!("-x");
    m["version"] = json!("1.0");
    m["tools"][0]["component"] = json!("Off.boarding");
    let v = violations(m);
    assert!(v[0].starts_with("name: `-x` is not an agent name"), "{v:?}");
    assert!(v[1].starts_with("version: `1.0` is not a semantic version"), "{v:?}");
    assert!(v.iter().any(|s| s.starts_with("tools[0].component: `Off.boarding` is not a component name")), "{v:?}");
}

#[test]
fn shape_errors_are_malformed_not_invalid() {
    let err = Manifest::parse(br#"{"name": "x"}"#).unwrap_err();
    assert_eq!(err.check(), "malformed-manifest");
    assert!(err.to_string().starts_with("malformed manifest: missing field `version`"), "{err}");
    let mut m = catalog();
    m["connections"][0]["kind"] = json!("password");
    let err = Manifest::parse(&serde_json::to_vec(&m).unwrap()).unwrap_err();
    assert!(err.to_string().starts_with("malformed manifest: unknown variant `password`"), "{err}");
}
