//! `airlock:tool/vault`: the host makes the request and holds the credential.

use airlock_vault::{OutboundRequest, VaultError};
use serde_json::json;

use crate::bindings::airlock::tool::types::Error;
use crate::bindings::airlock::tool::vault::{self, HttpRequest, HttpResponse};
use crate::state::{CallContext, CallState, Services};

impl vault::Host for CallState {
    async fn fetch(
        &mut self,
        connection: String,
        req: HttpRequest,
        grant: Option<String>,
    ) -> wasmtime::Result<Result<HttpResponse, Error>> {
        let agent = match super::agent(self) {
            Ok(a) => a.to_string(),
            Err(e) => return Ok(Err(e)),
        };
        let tenant = self.ctx.tenant.clone();
        let external = external_host(&req.url);
        let mut detail = json!({ "connection": connection, "method": req.method, "url": strip_query(&req.url),
                                 "grant": grant });
        let (services, ctx) = (self.services.clone(), self.ctx.clone());
        let outcome = fetch_as(&services, &ctx, &tenant, &agent, &connection, req, grant.as_deref()).await;
        let (label, answer) = match outcome {
            Ok(resp) => {
                detail["status"] = resp.status.into();
                ("allowed", Ok(resp))
            }
            Err(e) => {
                detail["error"] = format!("{e:?}").into();
                (if matches!(e, Error::Denied(_)) { "denied" } else { "error" }, Err(e))
            }
        };
        self.services.audit.record(self.ctx.event("vault.fetch", label, detail, external.as_deref()));
        Ok(answer)
    }
}

/// The checks and the request, on `Send` data only (the store's WASI state is not `Sync`).
async fn fetch_as(
    services: &Services,
    ctx: &CallContext,
    tenant: &str,
    agent: &str,
    connection: &str,
    req: HttpRequest,
    grant: Option<&str>,
) -> Result<HttpResponse, Error> {
    let object = format!("connection:{connection}");
    match services.rebac.check_now(tenant, agent, "can_use", &object).await {
        Ok(true) => {}
        Ok(false) => return Err(Error::Denied(format!("`{agent}` is not `can_use` on `{object}`"))),
        Err(e) => return Err(Error::Denied(format!("authorization failed closed: {e}"))),
    }
    // The connection must exist before a grant is spent on it.
    services.vault.get(tenant, connection).await.map_err(|e| match e {
        VaultError::NotFound(_) => Error::NotFound(e.to_string()),
        other => Error::Unavailable(other.to_string()),
    })?;
    let granted = match grant {
        None => false,
        Some(id) => {
            services
                .approvals
                .consume(tenant, id, agent, &ctx.tool, &ctx.call_id)
                .await
                .map_err(|e| Error::Denied(e.to_string()))?;
            true
        }
    };
    let outbound = OutboundRequest { method: req.method, url: req.url, headers: req.headers, body: req.body };
    let resp = services.vault.fetch(tenant, connection, outbound, granted).await.map_err(|e| match e {
        VaultError::NotFound(_) => Error::NotFound(e.to_string()),
        VaultError::EgressRefused(_) | VaultError::GrantRequired(_) => Error::Denied(e.to_string()),
        VaultError::InvalidRequest(_) => Error::Invalid(e.to_string()),
        other => Error::Unavailable(other.to_string()),
    })?;
    Ok(HttpResponse { status: resp.status, headers: resp.headers, body: resp.body })
}

/// `api:host` for the delegation chain, when the URL is absolute.
fn external_host(url: &str) -> Option<String> {
    url::Url::parse(url).ok().and_then(|u| u.host_str().map(|h| format!("api:{h}")))
}

/// The URL without its query string, which could carry data worth keeping out of the audit.
fn strip_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}
