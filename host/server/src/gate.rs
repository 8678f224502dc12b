//! The gate: the path every tool call takes, whatever door it came through.
//!
//! 1. the agent is already authenticated (HTTP bearer token, or in-process);
//! 2. `authz`: `agent:NAME can_use tool:COMPONENT.TOOL`? No tuple, no call;
//! 3. the host's own authority checks ([`crate::policy_gate`]): the run the call is a step
//!    of, a grant the caller presents, or the tool's approval policy (waiting for a human);
//! 4. the runtime runs the component in a fresh sandbox, where every import
//!    re-checks its own authority;
//! 5. the outcome, allowed or denied, lands in the audit trail.

use std::sync::Arc;

use airlock_runtime::{CallContext, CallError, CallOutcome};
use airlock_store::sqlx;
use serde::Serialize;
use serde_json::{json, Value};
use tracing::Instrument;

use crate::agents::Agent;
use crate::policy_gate::{AuthorityError, CallOptions};
use crate::Airlock;

/// Why the gate refused before running anything.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("tool id `{0}` must be `component.tool`")]
    BadToolId(String),
    #[error("`{agent}` may not use `{tool}`: no `can_use` relation grants it")]
    Forbidden { agent: String, tool: String },
    #[error("authorization failed closed: {0}")]
    AuthzUnavailable(String),
    /// A quota of the agent's or its tenant's is used up for now ([`crate::quotas`]).
    #[error(transparent)]
    Quota(#[from] crate::quotas::QuotaExceeded),
    /// The host cannot take more work now (its audit trail is behind): nothing ran.
    #[error("the host is overloaded: {0}; nothing ran, try again shortly")]
    Overloaded(String),
    /// The call ran, but its audit record could not be made durable, so it is not reported ok.
    #[error("call `{call_id}` ran, but its audit record could not be committed: {reason}; see the host's log before retrying")]
    Unaudited { call_id: String, reason: String },
    /// A run, grant or approval policy refused (see [`crate::policy_gate`]).
    #[error(transparent)]
    Authority(#[from] AuthorityError),
}

impl GateError {
    /// A short stable name of the refusal, for metrics and spans.
    pub fn kind(&self) -> &'static str {
        match self {
            GateError::BadToolId(_) => "bad_tool_id",
            GateError::Forbidden { .. } => "forbidden",
            GateError::AuthzUnavailable(_) => "authz_unavailable",
            GateError::Quota(_) | GateError::Authority(AuthorityError::TooManyPending(_)) => "quota",
            GateError::Overloaded(_) => "overloaded",
            GateError::Unaudited { .. } => "unaudited",
            GateError::Authority(AuthorityError::Run { .. }) => "run_refused",
            GateError::Authority(AuthorityError::Grant { .. }) => "grant_refused",
            GateError::Authority(AuthorityError::NotApproved { .. }) => "not_approved",
            GateError::Authority(AuthorityError::UnknownCall(_)) => "unknown_call",
            GateError::Authority(AuthorityError::BadInput) => "invalid_input",
            GateError::Authority(AuthorityError::Unavailable(_)) => "approvals_unavailable",
        }
    }
}

/// What a call that passed the gate produced.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    pub call_id: String,
    #[serde(flatten)]
    pub outcome: CallOutcome,
}

impl Airlock {
    /// Whether `agent` may use `tool` (`component.tool`) right now. A delegated agent may do
    /// only what everyone in its chain may do: the user it acts for (and any agent between)
    /// must be `can_use` on the tool too, so delegation never widens a user's reach.
    pub async fn may_use(&self, agent: &Agent, tool: &str) -> Result<bool, GateError> {
        let object = format!("tool:{tool}");
        for subject in agent.on_behalf_of.iter().cloned().chain(std::iter::once(agent.subject())) {
            let allowed = self
                .rebac
                .check_now(&agent.tenant, &subject, "can_use", &object)
                .await
                .map_err(|e| GateError::AuthzUnavailable(e.to_string()))?;
            if !allowed {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The tools `agent` may use right now (`component.tool` ids), for `tools/list`-like
    /// answers. A check that fails counts as "no": the list fails closed.
    pub async fn visible_tools(&self, agent: &Agent) -> Vec<VisibleTool> {
        let mut tools = Vec::new();
        let mut components = match self.sync_installed(&agent.tenant).await {
            Ok(()) => self.installed.of_tenant(&agent.tenant),
            Err(e) => {
                // Fails closed for installed tools only: the host's own still list.
                tracing::error!("installed components of `{}` not synced: {e}", agent.tenant);
                Vec::new()
            }
        };
        let host_wide: Vec<_> =
            self.runtime.components().into_iter().filter(|c| !components.iter().any(|i| i.name == c.name)).collect();
        components.extend(host_wide);
        for component in components {
            for tool in &component.tools {
                let id = format!("{}.{}", component.name, tool.name);
                if self.may_use(agent, &id).await.unwrap_or(false) {
                    tools.push(VisibleTool {
                        id,
                        description: tool.description.clone(),
                        input_schema: tool.input_schema.clone(),
                        effects: tool.effects,
                        output_schema: tool.output_schema.clone(),
                    });
                }
            }
        }
        tools
    }

    /// Runs `tool` as `agent` with JSON `input`, through the whole gate.
    pub async fn call_tool(&self, agent: &Agent, tool: &str, input: &str) -> Result<CallReport, GateError> {
        self.call_tool_as(agent, tool, input, next_call_id()).await
    }

    /// [`Airlock::call_tool`] under a call id the caller chose (from [`new_call_id`]), so it
    /// can follow the call (e.g. report its pending approvals) while it runs.
    pub async fn call_tool_as(
        &self,
        agent: &Agent,
        tool: &str,
        input: &str,
        call_id: String,
    ) -> Result<CallReport, GateError> {
        self.call_tool_with(agent, tool, input, call_id, &CallOptions::default()).await
    }

    /// [`Airlock::call_tool_as`] with what the caller brings besides the input: a grant to
    /// spend, the run the call is a step of. The call is one `call` stage span (its stages
    /// inside it) and, when metrics are on, one count by outcome ([`crate::telemetry`]).
    pub async fn call_tool_with(
        &self,
        agent: &Agent,
        tool: &str,
        input: &str,
        call_id: String,
        opts: &CallOptions,
    ) -> Result<CallReport, GateError> {
        let span = crate::stage!("call", tenant = %agent.tenant, agent = %agent.subject(), tool = %tool,
                                 call_id = %call_id, outcome = tracing::field::Empty);
        let result = self.gated_call(agent, tool, input, call_id, opts).instrument(span.clone()).await;
        let outcome = match &result {
            Ok(report) => report.outcome.result.as_ref().err().map_or("ok", error_kind),
            Err(e) => e.kind(),
        };
        span.record("outcome", outcome);
        if let Some(metrics) = crate::telemetry::metrics::get() {
            // Only a tool that exists gets its own label: made-up names cannot grow the registry.
            let exists = tool.split_once('.').is_some_and(|(component, name)| {
                self.component_for(&agent.tenant, component).is_some_and(|c| c.tools.iter().any(|t| t.name == name))
            });
            metrics.call(&agent.tenant, if exists { tool } else { "-" }, outcome);
        }
        result
    }

    /// The gate itself (see the module docs), inside the call's span.
    async fn gated_call(
        &self,
        agent: &Agent,
        tool: &str,
        input: &str,
        call_id: String,
        opts: &CallOptions,
    ) -> Result<CallReport, GateError> {
        let ctx = CallContext {
            tenant: agent.tenant.clone(),
            agent: agent.subject(),
            on_behalf_of: agent.on_behalf_of.clone(),
            approved_by: None,
            action_approved_by: None,
            component: String::new(),
            tool: tool.to_string(),
            call_id: call_id.clone(),
        };
        if self.audit.overloaded() {
            let err = GateError::Overloaded(format!("{} audit events wait to be committed", self.audit.backlog()));
            return Err(err);
        }
        // From here the call counts as acting: its durable record shares a commit with the
        // other calls in flight (group commit, see airlock_audit's "Gathering a group").
        let _acting = self.audit.acting();
        if let Err(e) = self.quotas.admit_rate(&agent.tenant, &ctx.agent) {
            self.audit.record(ctx.event("tool.call", "denied", json!({ "reason": e.to_string(), "quota": true }), &[]));
            return Err(e.into());
        }
        let Some((component, name)) = tool.split_once('.') else {
            let err = GateError::BadToolId(tool.to_string());
            self.audit.record(ctx.event("tool.call", "denied", json!({ "reason": err.to_string() }), &[]));
            return Err(err);
        };
        match self.may_use(agent, tool).instrument(crate::stage!("authz")).await {
            Ok(true) => {}
            Ok(false) => {
                let who = match agent.on_behalf_of.as_slice() {
                    [] => agent.subject(),
                    chain => format!("{} (for {})", agent.subject(), chain.join(" -> ")),
                };
                let err = GateError::Forbidden { agent: who, tool: tool.to_string() };
                // The agent learns nothing about what exists; the audit (read by admins) says
                // when there is nothing to grant, so nobody writes a tuple to no avail.
                let mut detail = json!({ "reason": err.to_string() });
                if let Some(missing) = self.missing_tool(&ctx.tenant, component, name).await {
                    detail["reason"] = format!("{err}; and {missing}, so granting `can_use` would not help").into();
                    detail["tool_exists"] = false.into();
                }
                self.audit.record(ctx.event("tool.call", "denied", detail, &[]));
                return Err(err);
            }
            Err(err) => {
                self.audit.record(ctx.event("tool.call", "denied", json!({ "reason": err.to_string() }), &[]));
                return Err(err);
            }
        }
        // Before admission: the approval policy a tool falls under may follow from its declared
        // effect, read from the component this tenant has installed now.
        if let Err(e) = self.sync_installed(&ctx.tenant).await {
            let err = GateError::AuthzUnavailable(format!("installed components unavailable: {e}"));
            self.audit.record(ctx.event("tool.call", "denied", json!({ "reason": err.to_string() }), &[]));
            return Err(err);
        }
        let admission = match self.admit(agent, tool, input, &ctx, opts).await {
            Ok(a) => a,
            Err(err) => {
                self.audit_refusal(&ctx, &err, opts);
                return Err(err.into());
            }
        };
        // Who approved the run this step belongs to goes into the audit chain, not into authz.
        let (approved_by, action_approved_by) = (admission.on_behalf_of.clone(), admission.approver.clone());
        let ctx = Arc::new(CallContext { component: component.to_string(), approved_by, action_approved_by, ..ctx });
        let slot = match self.sandbox_slot(&ctx, admission.grant.is_some()).await {
            Ok(slot) => slot,
            Err(e) => {
                self.settle(&ctx.tenant, &call_id, &admission, Some("quota")).await;
                self.audit.record(ctx.event(
                    "tool.call",
                    "denied",
                    json!({ "reason": e.to_string(), "quota": true }),
                    &[],
                ));
                return Err(e.into());
            }
        };
        let sandbox = crate::stage!("sandbox", component = %component);
        let outcome = match self.component_for(&ctx.tenant, component) {
            Some(loaded) => self.runtime.call_loaded(ctx.clone(), &loaded, name, input).instrument(sandbox).await,
            None => self.runtime.call(ctx.clone(), component, name, input).instrument(sandbox).await,
        };
        drop(slot);
        self.settle(&ctx.tenant, &call_id, &admission, outcome.result.as_ref().err().map(error_kind)).await;
        let (label, mut detail) = match &outcome.result {
            Ok(_) => ("allowed", json!({ "result": "ok", "fuel": outcome.fuel_used })),
            Err(e) => {
                // Allowed, then failed at the external API: the record says it failed, and why.
                let label = if matches!(e, CallError::Upstream(_)) { "failed" } else { "allowed" };
                let mut detail = json!({ "result": error_kind(e), "error": e.to_string(), "fuel": outcome.fuel_used });
                if let CallError::Upstream(f) = e {
                    detail["upstream"] = json!({ "connection": f.connection, "host": f.host, "reason": f.reason,
                                                 "status": f.status, "tool_message": f.tool_message });
                }
                (label, detail)
            }
        };
        if let (Some(map), Value::Object(extra)) = (detail.as_object_mut(), admission.audit_fields()) {
            map.extend(extra);
        }
        // The caller hears of the call only once its record is durable (group commit).
        let durable = self.audit.record_durable(ctx.event("tool.call", label, detail, &[]));
        if let Err(e) = durable.instrument(crate::stage!("audit_durable")).await {
            tracing::error!("call `{call_id}` ran but its audit record is not committed: {e}");
            return Err(GateError::Unaudited { call_id, reason: e.to_string() });
        }
        Ok(CallReport { call_id, outcome })
    }

    /// Re-attaches to call `call_id` of `agent`, held by a policy approval (e.g. before a
    /// restart): waits for the decision, then runs the call once with its original input.
    /// The approval `agent`'s call `call_id` is held for by an approval policy, if it is held
    /// (an MCP client is then sent the approval's link, see `crate::mcp::elicitation`).
    pub async fn held_approval(&self, agent: &Agent, call_id: &str) -> Option<airlock_approvals::Approval> {
        let held: Option<(String, String)> =
            sqlx::query_as("SELECT approval_id, agent FROM policy_calls WHERE tenant = $1 AND call_id = $2")
                .bind(&agent.tenant)
                .bind(call_id)
                .fetch_optional(self.db.pool())
                .await
                .ok()
                .flatten();
        let (approval_id, _) = held.filter(|h| h.1 == agent.subject())?;
        self.approvals.get(&agent.tenant, &approval_id).await.ok()
    }

    pub async fn resume_call(&self, agent: &Agent, call_id: &str) -> Result<CallReport, GateError> {
        let held: Option<(String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT approval_id, agent, tool, run_id FROM policy_calls WHERE tenant = $1 AND call_id = $2",
        )
        .bind(&agent.tenant)
        .bind(call_id)
        .fetch_optional(self.db.pool())
        .await
        .map_err(|e| GateError::Authority(crate::policy_gate::unavailable(e)))?;
        // Another agent's call is as unknown as a call that never was.
        let Some((approval_id, _, tool, run)) = held.filter(|h| h.1 == agent.subject()) else {
            return Err(GateError::Authority(AuthorityError::UnknownCall(call_id.to_string())));
        };
        let approval = self
            .approvals
            .get(&agent.tenant, &approval_id)
            .await
            .map_err(|e| GateError::Authority(crate::policy_gate::unavailable(e)))?;
        let opts = CallOptions { grant: None, run, resume_approval: Some(approval_id) };
        self.call_tool_with(agent, &tool, &approval.details, call_id.to_string(), &opts).await
    }
}

impl Airlock {
    /// A sandbox slot within the tenant's and agent's share ([`crate::quotas`]). A call that
    /// has spent a human's approval waits a while for one rather than waste the approval;
    /// any other is refused at once.
    async fn sandbox_slot(
        &self,
        ctx: &CallContext,
        approved: bool,
    ) -> Result<crate::quotas::Slot<'_>, crate::quotas::QuotaExceeded> {
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match self.quotas.enter(&ctx.tenant, &ctx.agent) {
                Err(e) if approved && std::time::Instant::now() < give_up => {
                    tracing::debug!("call `{}` waits for a sandbox slot: {e}", ctx.call_id);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    /// The component `name` means in `tenant`: one the tenant installed from the marketplace,
    /// else one of the host's (`None`: the runtime answers "no component").
    pub fn component_for(&self, tenant: &str, name: &str) -> Option<Arc<airlock_runtime::LoadedComponent>> {
        self.installed.get(tenant, name).or_else(|| self.runtime.component(name))
    }

    /// Why `component.tool` names nothing this tenant can run (`None`: it exists), for admins:
    /// audit records and the tuple API's warnings, never an agent's answer.
    pub(crate) async fn missing_tool(&self, tenant: &str, component: &str, tool: &str) -> Option<String> {
        if let Err(e) = self.sync_installed(tenant).await {
            tracing::warn!("installed components of `{tenant}` not synced: {e}");
        }
        match self.component_for(tenant, component) {
            None => Some(format!(
                "no component `{component}` is installed in this tenant or on the host (`airlock catalog` lists what can be installed)"
            )),
            Some(loaded) if !loaded.tools.iter().any(|t| t.name == tool) => {
                let tools: Vec<&str> = loaded.tools.iter().map(|t| t.name.as_str()).collect();
                Some(format!("component `{component}` has no tool `{tool}` (it has: {})", tools.join(", ")))
            }
            Some(_) => None,
        }
    }

    /// On a shared database, learns of installs, upgrades and uninstalls made by other hosts.
    pub(crate) async fn sync_installed(&self, tenant: &str) -> Result<(), String> {
        if !self.shares_database {
            return Ok(());
        }
        self.installed.catch_up(&self.db, &self.runtime, tenant).await
    }
}

/// A tool as an agent sees it.
#[derive(Debug, Clone, Serialize)]
pub struct VisibleTool {
    /// `component.tool`.
    pub id: String,
    pub description: String,
    /// The input's JSON Schema.
    pub input_schema: serde_json::Value,
    /// What it does to the world, as its component declares ([`airlock_runtime::Effects`]).
    pub effects: airlock_runtime::Effects,
    /// The JSON Schema of its result, when its component declares one.
    pub output_schema: Option<serde_json::Value>,
}

/// `effects` as the API shows it: `effect`, `idempotent`, `open_world`, `declared`.
pub fn effects_json(effects: &airlock_runtime::Effects) -> Value {
    json!({ "effect": effects.effect.as_str(), "idempotent": effects.idempotent,
            "open_world": effects.open_world, "declared": effects.declared })
}

/// A fresh call id for [`Airlock::call_tool_as`].
pub fn new_call_id() -> String {
    next_call_id()
}

/// A unique call id without a syscall per call: a random per-process prefix and a counter.
fn next_call_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string());
    format!("call_{prefix}{:08x}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A stable name for each kind of call failure (API error codes use it too).
pub fn error_kind(e: &CallError) -> &'static str {
    match e {
        CallError::UnknownComponent(_) | CallError::UnknownTool { .. } => "not_found",
        CallError::InvalidInput(_) => "invalid_input",
        CallError::Refused(_) => "tool_refused",
        CallError::Failed(_) => "tool_failed",
        CallError::Limit(airlock_runtime::LimitExceeded::Input(_)) => "input_too_large",
        CallError::Limit(_) => "limit_exceeded",
        CallError::Trap(_) => "tool_crashed",
        CallError::Upstream(f) if f.timed_out => "upstream_timeout",
        CallError::Upstream(f) if f.status.is_some() => "upstream_error",
        CallError::Upstream(_) => "upstream_unreachable",
    }
}

/// What to check when the external API failed a call: it is not a permission problem.
pub fn upstream_next_step(f: &airlock_runtime::UpstreamFailure) -> String {
    let check = format!(
        "nothing refused this call: check that connection `{}` points at the right API (`airlock connection list`) \
         and that `{}` is up and reachable from the Airlock host",
        f.connection, f.host
    );
    match (f.timed_out, f.status) {
        (true, _) => format!("{check}; it may have received the request, so check its side before retrying"),
        (false, Some(_)) => format!("{check}; the API reported its own error, so retry later or check its status"),
        (false, None) => format!("{check}; the request never reached it"),
    }
}
