//! `airlock:tool/vault`: the host makes the request and holds the credential.

use airlock_vault::{OutboundRequest, VaultError};
use serde_json::json;
use tracing::Instrument;

use crate::bindings::airlock::tool::types::Error;
use crate::bindings::airlock::tool::vault::{self, HttpRequest, HttpResponse, ShortLivedToken};
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
        let mut detail = json!({ "connection": connection, "method": req.method, "url": strip_query(&req.url),
                                 "grant": grant });
        let (services, ctx) = (self.services.clone(), self.ctx.clone());
        let absolute = url::Url::parse(&req.url).ok().and_then(|u| u.host_str().map(str::to_string));
        let mut resolved = None;
        let mut unreachable = None;
        let outcome =
            fetch_as(&services, &ctx, &agent, &connection, &mut resolved, &mut unreachable, req, grant.as_deref())
                .await;
        // The API's host heads the chain's last hop: the URL's own, or the connection's base URL's.
        let external = resolved.as_ref().and_then(|(_, host)| host.clone()).or(absolute).map(|h| format!("api:{h}"));
        let used = resolved.map(|(name, _)| name).unwrap_or_else(|| connection.clone());
        let via = format!("connection:{used}");
        detail["connection"] = used.clone().into();
        self.upstream = match (&outcome, unreachable) {
            (Err(_), Some((host, reason, timed_out))) => Some(crate::UpstreamFailure {
                connection: used,
                host,
                reason,
                timed_out,
                status: None,
                tool_message: None,
            }),
            (Ok(resp), Some((host, _, _))) if resp.status >= 500 => Some(crate::UpstreamFailure {
                connection: used,
                host,
                reason: format!("answered {}", resp.status),
                timed_out: false,
                status: Some(resp.status),
                tool_message: None,
            }),
            _ => None,
        };
        let (label, answer) = match outcome {
            Ok(resp) => {
                detail["status"] = resp.status.into();
                ("allowed", Ok(resp))
            }
            Err(e) => {
                detail["error"] = format!("{e:?}").into();
                let label = match (&e, &self.upstream) {
                    (Error::Denied(_), _) => "denied",
                    (_, Some(_)) => "failed",
                    _ => "error",
                };
                (label, Err(e))
            }
        };
        let mut hops = vec![via.as_str()];
        hops.extend(external.as_deref());
        self.services.audit.record(self.event("vault.fetch", label, detail, &hops));
        Ok(answer)
    }

    async fn token(&mut self, connection: String) -> wasmtime::Result<Result<ShortLivedToken, Error>> {
        let agent = match super::agent(self) {
            Ok(a) => a.to_string(),
            Err(e) => return Ok(Err(e)),
        };
        let tenant = self.ctx.tenant.clone();
        let services = self.services.clone();
        let chain = self.ctx.on_behalf_of.clone();
        let mut detail = json!({ "connection": connection });
        let mut via = None;
        let outcome = async {
            let conn = resolve_usable(&services, &tenant, &agent, &chain, &connection).await?;
            detail["connection"] = conn.name.clone().into();
            via = Some(format!("connection:{}", conn.name));
            let (token, expires_at) = services.vault.token(&tenant, &conn.name).await.map_err(vault_error)?;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64);
            let expires_in = ((expires_at - now.unwrap_or(i64::MAX)).max(0) / 1000) as u64;
            Ok::<_, Error>(ShortLivedToken { token: token.to_string(), expires_in })
        }
        .await;
        let label = match &outcome {
            Ok(t) => {
                // The token itself never goes to the audit; that it left the host does.
                detail["exposed"] = true.into();
                detail["expires_in"] = t.expires_in.into();
                "allowed"
            }
            Err(Error::Denied(m)) => {
                detail["error"] = m.clone().into();
                "denied"
            }
            Err(e) => {
                detail["error"] = format!("{e:?}").into();
                "error"
            }
        };
        let hops: Vec<&str> = via.as_deref().into_iter().collect();
        self.services.audit.record(self.event("vault.token", label, detail, &hops));
        Ok(outcome)
    }
}

/// The connection `requested` names for `agent` (its own namespace first), once the agent
/// is `can_use` on it.
async fn resolve_usable(
    services: &Services,
    tenant: &str,
    agent: &str,
    on_behalf_of: &[String],
    requested: &str,
) -> Result<airlock_vault::Connection, Error> {
    // `agent` is the authz subject (`agent:NAME`); namespaces are named by the bare name.
    let namespace = agent.strip_prefix("agent:").unwrap_or(agent);
    let conn = services.vault.resolve(tenant, namespace, requested).await.map_err(vault_error)?;
    let object = format!("connection:{}", conn.name);
    // A delegated call may use only what everyone in its chain may use.
    for who in on_behalf_of.iter().map(String::as_str).chain(std::iter::once(agent)) {
        match services.rebac.check_now(tenant, who, "can_use", &object).await {
            Ok(true) => {}
            Ok(false) => return Err(Error::Denied(format!("`{who}` is not `can_use` on `{object}`"))),
            Err(e) => return Err(Error::Denied(format!("authorization failed closed: {e}"))),
        }
    }
    Ok(conn)
}

fn vault_error(e: VaultError) -> Error {
    match e {
        VaultError::NotFound(_) | VaultError::SlotEmpty { .. } => Error::NotFound(e.to_string()),
        VaultError::EgressRefused(_) | VaultError::GrantRequired(_) | VaultError::NotExposable(_) => {
            Error::Denied(e.to_string())
        }
        VaultError::InvalidRequest(_) => Error::Invalid(e.to_string()),
        other => Error::Unavailable(other.to_string()),
    }
}

/// The checks and the request, on `Send` data only (the store's WASI state is not `Sync`).
/// `unreachable` learns the host, reason and timeout flag of a request the API never answered
/// (or answered with a 5xx).
#[allow(clippy::too_many_arguments)]
async fn fetch_as(
    services: &Services,
    ctx: &CallContext,
    agent: &str,
    connection: &str,
    resolved: &mut Option<(String, Option<String>)>,
    unreachable: &mut Option<(String, String, bool)>,
    req: HttpRequest,
    grant: Option<&str>,
) -> Result<HttpResponse, Error> {
    let tenant = ctx.tenant.as_str();
    // The connection must exist, and be usable, before a grant is spent on it.
    let conn = resolve_usable(services, tenant, agent, &ctx.on_behalf_of, connection).await?;
    // The API's host: the URL's own, or the connection's base URL's.
    let api_host = url::Url::parse(&req.url)
        .or_else(|_| url::Url::parse(conn.base_url.as_deref().unwrap_or_default()).and_then(|b| b.join(&req.url)))
        .ok()
        .and_then(|u| u.host_str().map(str::to_string));
    *resolved = Some((conn.name.clone(), api_host.clone()));
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
    // Nothing leaves the host before the trail durably says it is leaving: a crash after the
    // API acted must not leave an action nobody can see.
    let release = json!({ "connection": conn.name, "method": req.method, "url": strip_query(&req.url),
                          "host": api_host, "grant": grant });
    let via = format!("connection:{}", conn.name);
    let external = api_host.as_ref().map(|h| format!("api:{h}"));
    let hops: Vec<&str> = std::iter::once(via.as_str()).chain(external.as_deref()).collect();
    services.audit.record_durable(ctx.event("vault.release", "sending", release, &hops)).await.map_err(|e| {
        Error::Unavailable(format!("the request was not sent: its audit record could not be committed: {e}"))
    })?;
    let span = tracing::trace_span!(target: "airlock::stage", "vault_request", connection = %conn.name,
                                    server.address = api_host.as_deref().unwrap_or_default());
    let mut headers = req.headers;
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("traceparent")) {
        headers.extend(span.in_scope(crate::trace_header).map(|parent| ("traceparent".to_string(), parent)));
    }
    let outbound = OutboundRequest { method: req.method, url: req.url, headers, body: req.body };
    let _idle = services.audit.idle(); // no commit waits for an external API
    let resp = services.vault.fetch(tenant, &conn.name, outbound, granted).instrument(span).await.map_err(|e| {
        if let VaultError::Unreachable { host, reason, timed_out } = &e {
            *unreachable = Some((host.clone(), reason.clone(), *timed_out));
        }
        vault_error(e)
    })?;
    if resp.status >= 500 {
        let host = api_host.unwrap_or_else(|| conn.name.clone());
        *unreachable = Some((host, format!("answered {}", resp.status), false));
    }
    Ok(HttpResponse { status: resp.status, headers: resp.headers, body: resp.body })
}

/// The URL without its query string, which could carry data worth keeping out of the audit.
fn strip_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}
