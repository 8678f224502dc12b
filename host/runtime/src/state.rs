//! What one call's store holds: its sandbox, its caller, and the services behind the imports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_approvals::Approvals;
use airlock_audit::{AuditEvent, AuditLog};
use airlock_rebac::Rebac;
use airlock_vault::Vault;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::limits::MemoryCap;
use crate::log::LogPipe;
use crate::Limits;

/// The engines the host interfaces answer from.
pub struct Services {
    pub rebac: Arc<Rebac>,
    pub approvals: Arc<Approvals>,
    pub vault: Arc<Vault>,
    pub audit: AuditLog,
}

/// Who is calling which tool: every import acts as this caller and nobody else.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub tenant: String,
    /// `agent:NAME`; empty while the host asks a component to describe itself.
    pub agent: String,
    /// The user who delegated to the agent, when known (`user:NAME`).
    pub on_behalf_of: Vec<String>,
    /// Who approved the run this call is a step of (audit only: an approver vouches for the
    /// run, it does not delegate its own rights, so authz never checks it).
    pub approved_by: Option<String>,
    /// Who approved the action whose grant this call spends (a policy's approver), audit only.
    pub action_approved_by: Option<String>,
    pub component: String,
    /// `component.tool`.
    pub tool: String,
    /// Unique per call, to tie its audit events together.
    pub call_id: String,
}

impl CallContext {
    /// The context of the host's own `describe()` call: no agent, so every import refuses.
    pub(crate) fn describe(component: &str) -> CallContext {
        CallContext {
            tenant: String::new(),
            agent: String::new(),
            on_behalf_of: vec![],
            approved_by: None,
            action_approved_by: None,
            component: component.to_string(),
            tool: format!("{component}.describe"),
            call_id: String::new(),
        }
    }

    /// The delegation chain as the audit shows it: user -> agent -> tool [-> external].
    pub fn chain(&self, beyond: &[&str]) -> Vec<String> {
        let mut chain: Vec<String> = self.approved_by.iter().cloned().collect();
        chain.extend(self.on_behalf_of.iter().cloned());
        chain.push(self.agent.clone());
        chain.push(format!("tool:{}", self.tool));
        chain.extend(beyond.iter().map(|hop| hop.to_string()));
        chain
    }

    /// An audit event about this call.
    pub fn event(&self, kind: &str, outcome: &str, mut detail: serde_json::Value, beyond: &[&str]) -> AuditEvent {
        if let Some(map) = detail.as_object_mut() {
            map.insert("call_id".into(), self.call_id.clone().into());
            map.insert("chain".into(), self.chain(beyond).into());
            if let Some(approver) = &self.approved_by {
                map.insert("run_approved_by".into(), approver.clone().into());
            }
            if let Some(approver) = &self.action_approved_by {
                map.insert("approved_by".into(), vec![approver.clone()].into());
            }
        }
        AuditEvent {
            tenant: self.tenant.clone(),
            kind: kind.to_string(),
            outcome: outcome.to_string(),
            agent: self.agent.clone(),
            tool: self.tool.clone(),
            detail,
        }
    }
}

/// The data of one call's `Store`.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    stdout: LogPipe,
    stderr: LogPipe,
    pub(crate) memory: MemoryCap,
    pub(crate) ctx: Arc<CallContext>,
    pub(crate) services: Arc<Services>,
    pub(crate) limits: Limits,
    /// When the call must end; pushed back by the time spent waiting for a human.
    pub(crate) deadline: Instant,
    /// The last `vault.fetch` of this call failed at the API (no answer, or a 5xx); cleared
    /// by a later answer. Turns the tool's error into [`crate::CallError::Upstream`].
    pub(crate) upstream: Option<crate::UpstreamFailure>,
    /// Who granted an action of this call so far (`approval.request` answered `approved`):
    /// named on the call's later events, so the audit shows who approved the external request.
    pub(crate) action_approvers: Vec<String>,
    /// Keeps the epoch clock ticking while this call's store lives (see `engine::EpochTicker`).
    pub(crate) running: Option<crate::engine::Running>,
}

impl CallState {
    pub(crate) fn new(ctx: Arc<CallContext>, services: Arc<Services>, limits: &Limits) -> CallState {
        let stdout = LogPipe::new(limits.log_bytes);
        let stderr = LogPipe::new(limits.log_bytes);
        // No preopens, no environment, no arguments, no network: WASI with no authority.
        let wasi = WasiCtxBuilder::new().stdout(stdout.clone()).stderr(stderr.clone()).build();
        let action_approvers = ctx.action_approved_by.iter().cloned().collect();
        CallState {
            wasi,
            table: ResourceTable::new(),
            stdout,
            stderr,
            memory: MemoryCap { max: limits.memory_bytes, hit: false },
            ctx,
            services,
            limits: limits.clone(),
            deadline: Instant::now() + limits.deadline,
            upstream: None,
            action_approvers,
            running: None,
        }
    }

    /// An audit event about this call, naming who approved its actions so far.
    pub(crate) fn event(
        &self,
        kind: &str,
        outcome: &str,
        mut detail: serde_json::Value,
        beyond: &[&str],
    ) -> AuditEvent {
        if let (Some(map), false) = (detail.as_object_mut(), self.action_approvers.is_empty()) {
            map.insert("approved_by".into(), self.action_approvers.clone().into());
        }
        self.ctx.event(kind, outcome, detail, beyond)
    }

    /// Excludes `waited` (time a human took to decide) from the deadline.
    pub(crate) fn extend_deadline(&mut self, waited: Duration) {
        self.deadline += waited;
    }

    /// Captured stdout, then stderr, each bounded; a note marks what was dropped.
    pub(crate) fn log(&self) -> String {
        let mut log = String::new();
        for (name, pipe) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let (bytes, truncated) = pipe.contents();
            log.push_str(&String::from_utf8_lossy(&bytes));
            if truncated {
                log.push_str(&format!("\n[airlock: {name} truncated at {} bytes]\n", self.limits.log_bytes));
            }
        }
        log
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
