//! `airlock:tool/approval`: ask a human, wait without holding a thread.

use std::time::{Duration, Instant};
use tracing::Instrument;

use airlock_approvals::{NewApproval, Status};
use serde_json::json;

use crate::bindings::airlock::tool::approval::{self, ApprovalError, ApprovalRequest, Grant};
use crate::state::CallState;

impl approval::Host for CallState {
    async fn request(&mut self, req: ApprovalRequest) -> wasmtime::Result<Result<Grant, ApprovalError>> {
        let agent = match super::agent(self) {
            Ok(a) => a.to_string(),
            Err(e) => return Ok(Err(ApprovalError::Unavailable(format!("{e:?}")))),
        };
        let approvals = self.services.approvals.clone();
        let new = NewApproval {
            agent,
            tool: self.ctx.tool.clone(),
            call_id: Some(self.ctx.call_id.clone()),
            action: req.action.clone(),
            note: req.summary,
            role: req.role,
            details: req.details,
            ttl: req.expires_in_seconds.map(|s| Duration::from_secs(s.into())),
        };
        let pending = match approvals.create(&self.ctx.tenant, new).await {
            Ok(p) => p,
            Err(airlock_approvals::ApprovalError::Invalid(m)) => return Ok(Err(ApprovalError::Invalid(m))),
            Err(e) => return Ok(Err(ApprovalError::Unavailable(e.to_string()))),
        };
        let detail = json!({ "approval_id": pending.id, "action": pending.action, "role": pending.role,
                             "summary": pending.summary, "note": pending.note, "args_digest": pending.args_digest });
        self.services.audit.record(self.event("approval.request", "pending", detail, &[]));

        let waiting_since = Instant::now();
        let decided = {
            let _idle = self.services.audit.idle(); // no commit waits for a person
            let span = tracing::trace_span!(target: "airlock::stage", "approval_wait", approval_id = %pending.id,
                                            enforced_by = "component");
            approvals.wait(&self.ctx.tenant, &pending.id).instrument(span).await
        };
        self.extend_deadline(waiting_since.elapsed());

        let decided = match decided {
            Ok(d) => d,
            Err(e) => return Ok(Err(ApprovalError::Unavailable(e.to_string()))),
        };
        let detail = json!({ "approval_id": decided.id, "action": decided.action, "approver": decided.approver,
                             "reason": decided.reason });
        let (outcome, answer) = match decided.status {
            Status::Approved => (
                "approved",
                Ok(Grant {
                    id: decided.id.clone(),
                    approver: decided.approver.clone().unwrap_or_default(),
                    action: decided.action.clone(),
                }),
            ),
            Status::Expired => ("expired", Err(ApprovalError::Expired)),
            Status::Denied => ("denied", Err(ApprovalError::Denied(decided.reason.clone().unwrap_or_default()))),
            // A grant must come back `approved`; anything else is refused.
            Status::Pending | Status::Consumed => {
                ("error", Err(ApprovalError::Unavailable(format!("approval ended in state {:?}", decided.status))))
            }
        };
        if let Ok(grant) = &answer {
            if !self.action_approvers.contains(&grant.approver) {
                self.action_approvers.push(grant.approver.clone());
            }
        }
        self.services.audit.record(self.event("approval.decision", outcome, detail, &[]));
        Ok(answer)
    }
}
