//! Agents reach their tools over the Model Context Protocol (the official Rust SDK, `rmcp`).
//!
//! One handler serves both doors: Streamable HTTP at `/mcp` ([`http`]) and stdio
//! (`airlock mcp`, [`stdio`]). It adds nothing to the gate, it only translates:
//! - `tools/list` is [`Airlock::visible_tools`]: what the authorization engine lets this agent
//!   use right now, so a revoked tool vanishes from the next listing;
//! - `tools/call` is [`Airlock::call_tool_as`]: authz, approvals, vault and audit as for any
//!   call. While the call waits for a human, progress notifications say so (and which
//!   approval, with its link); a client that takes URL elicitations on protocol 2026-07-28 is
//!   sent the approval's link, or the console's Connect for a connection not connected yet,
//!   and calls again to resume ([`elicitation`]); a refusal comes back as a tool error
//!   (`isError: true`) whose structured content names the failed check and what to do next,
//!   never as a protocol error, so the agent's model can read it.

pub mod elicitation;
pub mod http;
pub mod plain_call;
pub mod stdio;

use std::sync::Arc;
use std::time::Duration;

use airlock_runtime::{CallError, CallOutcome};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, JsonObject, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{json, Value};
use tracing::Instrument;

use crate::agents::Agent;
use crate::gate::{error_kind, new_call_id, GateError};
use crate::Airlock;

/// When a call still running first reports progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// How often a waiting call reports progress after that: often enough to keep a client's
/// request timeout alive (the SDKs' defaults are a minute or more, reset by progress: two
/// reports a minute), rarely enough that 5,000 calls waiting for people cost little (writing
/// the reports is most of what 10,000 waiting calls cost the host, see README "Benchmarks").
const PROGRESS_KEEPALIVE: Duration = Duration::from_secs(30);
/// Reports between two lookups of the approvals a call waits for (the rest repeat the message):
/// a lookup a minute. What a call waits for rarely changes while it waits, and each lookup
/// reads the database (5,000 waiting calls looking up every 30 s cost 2-3% of a core).
const LOOKUP_EVERY_REPORTS: u32 = 2;

/// The MCP face of a host, for one agent (stdio) or for whoever each request authenticated as (HTTP).
#[derive(Clone)]
pub struct AirlockMcp {
    host: Arc<Airlock>,
    /// Over stdio there is no request to carry an identity: the process serves one agent.
    fixed_agent: Option<Agent>,
}

impl AirlockMcp {
    /// A handler whose callers authenticate per request (HTTP).
    pub fn new(host: Arc<Airlock>) -> AirlockMcp {
        AirlockMcp { host, fixed_agent: None }
    }

    /// A handler that serves `agent` only (stdio).
    pub fn for_agent(host: Arc<Airlock>, agent: Agent) -> AirlockMcp {
        AirlockMcp { host, fixed_agent: Some(agent) }
    }

    /// The agent behind this request: the one the HTTP middleware authenticated, or the
    /// fixed one, which must still be live (a revoke ends a stdio agent's access at once).
    async fn agent(&self, ctx: &RequestContext<RoleServer>) -> Result<Agent, McpError> {
        let from_http = ctx.extensions.get::<axum::http::request::Parts>().and_then(|p| p.extensions.get::<Agent>());
        if let Some(agent) = from_http {
            return Ok(agent.clone());
        }
        let Some(agent) = &self.fixed_agent else {
            return Err(McpError::invalid_request(
                "not authenticated: send `Authorization: Bearer <agent token>`",
                None,
            ));
        };
        match self.host.agents.exists(&agent.tenant, &agent.name).await {
            Ok(true) => Ok(agent.clone()),
            Ok(false) => Err(McpError::invalid_request(
                format!("agent `{}` has been revoked: ask a tenant admin", agent.name),
                None,
            )),
            Err(e) => Err(McpError::internal_error(format!("agent store unavailable: {e}"), None)),
        }
    }

    /// What call `call_id` of `tool`, still running, waits for: which approval, if any. Looked
    /// up by the call (one indexed read), never by listing the tenant's pending approvals:
    /// thousands of calls may wait at once, each asking now and then.
    async fn waiting_for(&self, agent: &Agent, tool: &str, call_id: &str, base: Option<&str>) -> String {
        let pending = self.host.approvals.pending_for_call(&agent.tenant, call_id).await.unwrap_or_default();
        let mine: Vec<_> = pending.iter().filter(|a| a.agent == agent.subject()).collect();
        match mine.as_slice() {
            [] => format!("`{tool}` is still running"),
            [one] => format!(
                "waiting for a human to approve `{}` ({}){}: approval `{}`{}",
                one.action,
                one.summary,
                one.role.as_deref().map(|r| format!(" by a `{r}`")).unwrap_or_default(),
                one.id,
                base.map(|b| format!(" ({})", elicitation::approval_url(b, &one.id))).unwrap_or_default()
            ),
            many => format!("waiting for {} approvals of `{tool}`", many.len()),
        }
    }

    /// The base URL the client reached this host at (for the links it is sent).
    fn base(&self, ctx: &RequestContext<RoleServer>) -> Option<String> {
        let parts = ctx.extensions.get::<axum::http::request::Parts>()?;
        crate::api::ciba::public_base(&self.host, &parts.headers).ok()
    }

    /// Tells the client, while its call waits, that it is still alive and why.
    async fn report_progress(&self, ctx: &RequestContext<RoleServer>, tick: u32, message: &str) {
        let Some(token) = ctx.meta.get_progress_token() else { return };
        let param = ProgressNotificationParam::new(token, f64::from(tick)).with_message(message.to_string());
        let _ = ctx.peer.notify_progress(param).await;
    }
}

impl ServerHandler for AirlockMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("airlock", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Tools run sandboxed; some need a human's approval and wait for it (progress notifications \
                 say which). A refused call returns isError with `code` and `next_step` in structuredContent.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let agent = self.agent(&ctx).await?;
        let tools = self
            .host
            .visible_tools(&agent)
            .await
            .into_iter()
            .map(|t| {
                let tool = Tool::new(t.id, t.description, Arc::new(schema_object(t.input_schema)))
                    .annotate(annotations(&t.effects));
                match t.output_schema {
                    // Declared by the component: clients check the structured result against it.
                    Some(schema) => tool.with_raw_output_schema(Arc::new(schema_object(schema))),
                    None => tool,
                }
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let agent = self.agent(&ctx).await?;
        let tool = request.name.to_string();
        // rmcp runs the handler apart from the HTTP request: keep the call in the request's trace.
        let request_span = ctx
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<crate::telemetry::traces::RequestSpan>())
            .map_or_else(tracing::Span::none, |s| s.0.clone());
        let resumed = match request.request_state.as_deref().map(elicitation::resumed) {
            None => None,
            Some(Ok(r)) => Some(r),
            Some(Err(why)) => return Err(McpError::invalid_params(why, None)),
        };
        let report = match resumed {
            Some(elicitation::Resumed::Held(call_id)) => {
                // The client showed the approval's link and calls again: re-attach and wait.
                let call = self.host.resume_call(&agent, call_id).instrument(request_span);
                self.with_progress(&ctx, &agent, &tool, call_id, call).await
            }
            _ => {
                let input = Value::Object(request.arguments.unwrap_or_default()).to_string();
                let call_id = new_call_id();
                let call = self.host.call_tool_as(&agent, &tool, &input, call_id.clone()).instrument(request_span);
                tokio::pin!(call);
                // Most calls end within their first poll: the timeout polls the call first and only
                // arms its timer if the call is still pending.
                let report = match tokio::time::timeout(PROGRESS_EVERY, &mut call).await {
                    Ok(report) => report,
                    Err(_) => 'waiting: {
                        // Held for a person's approval and the client shows links: send it the
                        // approval's, and let go of the call (it stays held; the retry re-attaches).
                        if let (true, Some(base)) = (elicitation::supported(&ctx.meta), self.base(&ctx)) {
                            // The call is polled meanwhile: it may hold a database connection
                            // that the lookup would otherwise wait for.
                            let lookup = self.host.held_approval(&agent, &call_id);
                            tokio::pin!(lookup);
                            let held = tokio::select! {
                                biased;
                                report = &mut call => break 'waiting report,
                                held = &mut lookup => held,
                            };
                            if let Some(approval) = held {
                                return Ok(elicitation::held_for_approval(&base, &call_id, &approval).into());
                            }
                        }
                        self.with_progress(&ctx, &agent, &tool, &call_id, call).await
                    }
                };
                report
            }
        };
        // A connection nobody connected yet: send the person to Connect, then run it again (once).
        if let (None, Ok(crate::gate::CallReport { outcome: CallOutcome { result: Err(e), .. }, .. })) =
            (&resumed, &report)
        {
            if let Some((connection, why)) = elicitation::unconnected(&e.to_string()) {
                if let (true, Some(base)) = (elicitation::supported(&ctx.meta), self.base(&ctx)) {
                    return Ok(elicitation::needs_connection(&base, &connection, &why).into());
                }
            }
        }
        Ok(answer(&agent, &tool, report).into())
    }
}

impl AirlockMcp {
    /// Awaits a call still running after [`PROGRESS_EVERY`], telling the client (if it sent a
    /// progress token) it is alive and why. Thousands of calls may wait at once: each reports
    /// every [`PROGRESS_KEEPALIVE`], and looks up what it waits for only now and then.
    ///
    /// The call is polled all the while, the report included: a call paused while its report
    /// waited for a database connection held the connection it had (mid-transaction), and
    /// with a few such calls every connection of the pool waited on another (the soak's
    /// 5,000 MCP waiters stalled the host until the pool's timeouts failed them).
    async fn with_progress<F>(
        &self,
        ctx: &RequestContext<RoleServer>,
        agent: &Agent,
        tool: &str,
        call_id: &str,
        call: F,
    ) -> F::Output
    where
        F: std::future::Future,
    {
        if ctx.meta.get_progress_token().is_none() {
            return call.await; // no report would be sent: no lookups for one either
        }
        tokio::pin!(call);
        let mut ticks = tokio::time::interval(PROGRESS_KEEPALIVE);
        let mut tick = 0u32;
        let mut message = String::new();
        // The report being sent, if one is: it yields the message it said.
        let mut reporting: Option<std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send + '_>>> = None;
        loop {
            tokio::select! {
                biased;
                report = &mut call => return report,
                said = async { reporting.as_mut().expect("guarded by the branch's condition").await },
                    if reporting.is_some() => {
                    message = said;
                    reporting = None;
                }
                _ = ticks.tick(), if reporting.is_none() => {
                    let lookup = tick % LOOKUP_EVERY_REPORTS == 0;
                    tick += 1;
                    let said = std::mem::take(&mut message);
                    reporting = Some(Box::pin(async move {
                        let said = if lookup {
                            self.waiting_for(agent, tool, call_id, self.base(ctx).as_deref()).await
                        } else {
                            said
                        };
                        self.report_progress(ctx, tick, &said).await;
                        said
                    }));
                }
            }
        }
    }
}

/// A component's JSON Schema as the object MCP wants (an empty object schema if it is not one).
fn schema_object(schema: Value) -> JsonObject {
    match schema {
        Value::Object(map) => map,
        _ => json!({ "type": "object" }).as_object().cloned().unwrap_or_default(),
    }
}

/// The gate's answer as an MCP tool result.
fn answer(agent: &Agent, tool: &str, report: Result<crate::gate::CallReport, GateError>) -> CallToolResult {
    let refusal = |code: &str, message: String, next_step: String, call_id: Option<&str>| {
        CallToolResult::structured_error(json!({
            "code": code, "message": message, "next_step": next_step, "call_id": call_id,
        }))
    };
    let report = match report {
        Ok(report) => report,
        Err(e @ GateError::Forbidden { .. }) => {
            // The same words whether the tool exists or not: an agent learns nothing of tools
            // it may not use. The audit record tells the admin which it is.
            let next = format!(
                "ask a tenant admin: this call's audit record says whether `tool:{tool}` exists; if it does, \
                 `airlock tuple write {} can_use tool:{tool}` grants it",
                agent.subject()
            );
            return refusal("forbidden", e.to_string(), next, None);
        }
        Err(e @ GateError::BadToolId(_)) => {
            return refusal("not_found", e.to_string(), "call `tools/list` for the tools you may use".into(), None)
        }
        Err(e @ GateError::AuthzUnavailable(_)) => {
            return refusal("authz_unavailable", e.to_string(), "retry later; nothing was run".into(), None)
        }
        Err(e @ GateError::Quota(_)) => {
            return refusal("too_many_requests", e.to_string(), "nothing was run: wait a second and retry".into(), None)
        }
        Err(e @ GateError::Overloaded(_)) => {
            return refusal("overloaded", e.to_string(), "nothing was run: retry in a second".into(), None)
        }
        Err(e @ GateError::Unaudited { .. }) => {
            let next = "the call ran: do not retry it blindly; ask an operator to check the host's log".into();
            return refusal("unaudited", e.to_string(), next, None);
        }
        Err(GateError::Authority(e)) => {
            let next = "nothing was run: ask the approver named by the tool's policy, or start an approved run".into();
            return refusal(e.code(), e.to_string(), next, None);
        }
    };
    let call_id = report.call_id.as_str();
    match report.outcome.result {
        Ok(value @ Value::Object(_)) => CallToolResult::structured(value),
        Ok(other) => CallToolResult::success(vec![rmcp::model::ContentBlock::text(other.to_string())]),
        Err(e) => {
            let message = e.to_string();
            refusal(error_kind(&e), message.clone(), next_step(&e, &message), Some(call_id))
        }
    }
}

/// What the agent (or its user) can do about a failed call.
fn next_step(e: &CallError, message: &str) -> String {
    let lower = message.to_lowercase();
    match e {
        CallError::Refused(_) if lower.contains("no connection") => {
            "a tenant admin must add the connection: `airlock connection put NAME --host HOST` \
             (and grant `can_use` on `connection:NAME`)"
                .into()
        }
        CallError::Refused(_) if lower.contains("denied by") || lower.contains("approval denied") => {
            "the approver refused this action: do not retry it unchanged; tell the user why".into()
        }
        CallError::Refused(_) if lower.contains("expired") => {
            "nobody decided in time: call again to ask again, or ask the approver to watch for it".into()
        }
        CallError::Refused(_) if lower.contains("can_use") || lower.contains("not `") => {
            "a permission is missing: ask a tenant admin for the relation named above".into()
        }
        CallError::Refused(_) => "a host check refused the call; the message says which".into(),
        CallError::InvalidInput(_) => "fix the arguments to match the tool's input schema".into(),
        CallError::UnknownComponent(_) | CallError::UnknownTool { .. } => {
            "call `tools/list` for the tools you may use".into()
        }
        CallError::Failed(_) => "the external service failed; retry later".into(),
        CallError::Limit(_) => "the tool hit a sandbox limit; use smaller input".into(),
        CallError::Trap(_) => "the tool crashed; report it to its publisher".into(),
        CallError::Upstream(f) => crate::gate::upstream_next_step(f),
    }
}

/// A tool's declared effects as MCP tool annotations. An undeclared tool gets the hints of the
/// riskiest kind, which are also what MCP assumes when a hint is absent.
fn annotations(effects: &airlock_runtime::Effects) -> ToolAnnotations {
    use airlock_runtime::Effect;
    ToolAnnotations::new()
        .read_only(effects.effect == Effect::ReadOnly)
        .destructive(effects.effect == Effect::Irreversible)
        .idempotent(effects.idempotent || effects.effect == Effect::ReadOnly)
        .open_world(effects.open_world)
}
