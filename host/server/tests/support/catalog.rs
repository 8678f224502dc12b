//! Installing an agent of the catalog (`marketplace/NAME/manifest.json`) on a test host.
//!
//! [`install_catalog_agent`] is the only place the catalog tests provision an agent; it will
//! become one call to the host's install endpoint. Until then it writes what the manifest says
//! through the admin API: the component, the agent, the tuples (placeholders filled) and the
//! approval policies. Connection slots are left empty: filling them is the tenant admin's step
//! (`PUT /v1/connections/{name}` with `agent`), which the tests do themselves.

#![allow(dead_code)]

use serde_json::{json, Value};

use super::TestHost;

/// The tenant the test host's admin API acts on by default.
pub const TENANT: &str = "default";

/// The catalog manifest `marketplace/NAME/manifest.json`, as JSON.
pub fn catalog_manifest(name: &str) -> Value {
    let path = format!("{}/../../marketplace/{name}/manifest.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The built wasm of a catalog component, from the host's bundled plugin build.
pub fn catalog_component(component: &str) -> &'static [u8] {
    match component {
        "code-review" => airlock::bundled::CODE_REVIEW,
        "contentbot" => airlock::bundled::CONTENTBOT,
        "crm" => airlock::bundled::CRM,
        "incident" => airlock::bundled::INCIDENT,
        "offboarding" => airlock::bundled::OFFBOARDING,
        other => panic!("no bundled component `{other}`: add it to airlock::bundled and here"),
    }
}

/// Installs catalog agent `name` (agent name = package name) on `t` with the host's one-call
/// install (`POST /v1/marketplace/install {"catalog": NAME}`) and returns the agent's client
/// secret, which is also its bearer token.
pub async fn install_catalog_agent(t: &TestHost, name: &str) -> String {
    let (status, report) = t.admin_post("/v1/marketplace/install", json!({ "catalog": name })).await;
    assert_eq!(status, 200, "installing `{name}`: {report}");
    assert_eq!(report["agent"], name);
    report["client_secret"].as_str().unwrap_or_else(|| panic!("no client secret in {report}")).to_string()
}

impl TestHost {
    /// Fills connection slot `name` of `agent` (stored as `AGENT/NAME`) pointing at a stand-in,
    /// as the tenant admin does after installing; `placement` as the API takes it, if any.
    pub async fn fill_slot(
        &self,
        agent: &str,
        name: &str,
        kind: &str,
        api: std::net::SocketAddr,
        secret: &str,
        placement: Option<Value>,
    ) {
        let mut body = json!({ "kind": kind, "base_url": format!("http://{api}"), "allowed_hosts": [api.to_string()], "allow_private_network": true,
                               "secret": secret, "agent": agent, "allow_undeclared_hosts": true });
        if let Some(p) = placement {
            body["placement"] = p;
        }
        let (status, body) =
            self.request(reqwest::Method::PUT, &format!("/v1/connections/{name}"), &self.admin, Some(body)).await;
        assert_eq!(status, 200, "filling `{agent}/{name}`: {body}");
    }
}
