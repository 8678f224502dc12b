//! Checks answered by an external OpenFGA server, for deployments that have
//! outgrown the embedded engine. Each tenant maps to a store on that server.
//! Every failure (unreachable, timeout, non-2xx, unexpected body) is an error,
//! and callers deny on errors: the external path fails closed.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::RebacError;

/// Where the external server is and which store serves which tenant.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// Base URL, e.g. `http://openfga:8080`.
    pub url: String,
    /// Pre-shared key sent as a bearer token, if the server wants one.
    pub token: Option<String>,
    /// Store for the `default` tenant. Other tenants need an entry in `stores`: agents of
    /// different tenants may share a name, so they must never share a store.
    pub default_store: Option<String>,
    /// tenant -> store id.
    pub stores: HashMap<String, String>,
    pub timeout: Duration,
}

/// A client of the external server.
pub struct RemoteFga {
    config: RemoteConfig,
    http: reqwest::Client,
}

impl RemoteFga {
    /// A client for `config`.
    pub fn new(config: RemoteConfig) -> Result<RemoteFga, RebacError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| RebacError::Remote(format!("cannot build the HTTP client: {e}")))?;
        Ok(RemoteFga { config, http })
    }

    fn store(&self, tenant: &str) -> Result<&str, RebacError> {
        self.config
            .stores
            .get(tenant)
            .or(self.config.default_store.as_ref().filter(|_| tenant == "default"))
            .map(String::as_str)
            .ok_or_else(|| RebacError::Remote(format!("no external OpenFGA store is configured for tenant `{tenant}`")))
    }

    async fn post(&self, tenant: &str, path: &str, body: Value) -> Result<Value, RebacError> {
        let url = format!("{}/stores/{}/{path}", self.config.url.trim_end_matches('/'), self.store(tenant)?);
        let mut req = self.http.post(&url).json(&body);
        if let Some(t) = &self.config.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| RebacError::Remote(format!("external OpenFGA unreachable: {}", e.without_url())))?;
        let status = resp.status();
        let value: Value =
            resp.json().await.map_err(|e| RebacError::Remote(format!("external OpenFGA sent no JSON: {e}")))?;
        if !status.is_success() {
            let message = value.get("message").and_then(Value::as_str).unwrap_or("no message");
            return Err(RebacError::Remote(format!("external OpenFGA answered {status}: {message}")));
        }
        Ok(value)
    }

    /// `POST /stores/{store}/check`.
    pub async fn check(&self, tenant: &str, user: &str, relation: &str, object: &str) -> Result<bool, RebacError> {
        let v = self
            .post(tenant, "check", json!({ "tuple_key": { "user": user, "relation": relation, "object": object } }))
            .await?;
        v.get("allowed")
            .and_then(Value::as_bool)
            .ok_or_else(|| RebacError::Remote(format!("check answer without `allowed`: {v}")))
    }

    /// `POST /stores/{store}/list-objects`.
    pub async fn list_objects(
        &self,
        tenant: &str,
        user: &str,
        relation: &str,
        object_type: &str,
    ) -> Result<Vec<String>, RebacError> {
        let v = self
            .post(tenant, "list-objects", json!({ "user": user, "relation": relation, "type": object_type }))
            .await?;
        let mut objects: Vec<String> = v
            .get("objects")
            .and_then(Value::as_array)
            .ok_or_else(|| RebacError::Remote(format!("list-objects answer without `objects`: {v}")))?
            .iter()
            .filter_map(|o| o.as_str().map(str::to_string))
            .collect();
        objects.sort();
        Ok(objects)
    }
}
