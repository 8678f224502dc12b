//! Runs gated by an entry approval: no step before approval, steps while approved, none after.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use airlock_approvals::{
    ApprovalError, Approvals, BindingField, GrantState, LedgerError, Policies, PolicySpec, RunState, Runs, Status,
};
use airlock_store::testing;

async fn gate(policies: &Policies, ttl: Duration) {
    let entry = PolicySpec {
        tool: "agent:offboarder".into(),
        action: "run".into(),
        role: "ops_manager".into(),
        ttl,
        entry: true,
    };
    policies.put("acme", entry).await.unwrap();
}

fn events(history: &[airlock_approvals::LedgerEvent]) -> Vec<(&str, Option<&str>)> {
    history.iter().map(|e| (e.event.as_str(), e.reason.as_deref())).collect()
}

#[tokio::test]
async fn an_approved_run_steps_until_it_finishes() {
    for t in testing::all().await {
        let (approvals, runs) = (Approvals::new(t.db.clone()), Runs::new(t.db.clone()));
        gate(&Policies::new(t.db.clone()), Duration::from_secs(600)).await;

        let run = runs.start("acme", "agent:offboarder", "offboard bob").await.unwrap();
        assert_eq!((run.state, run.role.as_deref()), (RunState::AwaitingEntry, Some("ops_manager")));
        let approval_id = run.approval_id.clone().unwrap();
        let request = approvals.get("acme", &approval_id).await.unwrap();
        assert_eq!((request.status, request.run_id.as_deref()), (Status::Pending, Some(run.id.as_str())));
        assert_eq!((request.tool.as_str(), request.action.as_str()), ("agent:offboarder", "run"));
        assert!(matches!(
            runs.step_allowed("acme", &run.id, "agent:offboarder").await,
            Err(LedgerError::AwaitingApproval(_))
        ));

        approvals.decide("acme", &approval_id, "user:olivia", true, None).await.unwrap();
        let approved = runs.get("acme", &run.id).await.unwrap();
        assert_eq!(approved.state, RunState::Approved, "{:?}", t.backend);
        for _ in 0..3 {
            runs.step_allowed("acme", &run.id, "agent:offboarder").await.unwrap();
        }
        match runs.step_allowed("acme", &run.id, "agent:intruder").await {
            Err(LedgerError::WrongBinding { field: BindingField::Agent, .. }) => {}
            other => panic!("expected wrong agent, got {other:?}"),
        }
        // The entry grant is not a single call's grant: it cannot be spent through `consume`.
        let spent = approvals.consume("acme", &approval_id, "agent:offboarder", "agent:offboarder", "call_1").await;
        assert!(matches!(spent, Err(ApprovalError::GrantUnusable(_))));
        assert_eq!(approvals.ledger().get("acme", &approval_id).await.unwrap().state, GrantState::Issued);

        let finished = runs.finish("acme", &run.id, "ok").await.unwrap();
        assert_eq!((finished.state, finished.outcome.as_deref()), (RunState::Finished, Some("ok")));
        assert_eq!(approvals.ledger().get("acme", &approval_id).await.unwrap().state, GrantState::Consumed);
        assert!(matches!(runs.step_allowed("acme", &run.id, "agent:offboarder").await, Err(LedgerError::Replayed(_))));
        assert!(matches!(runs.finish("acme", &run.id, "again").await, Err(LedgerError::Replayed(_))));

        let history = approvals.ledger().history("acme", &approval_id).await.unwrap();
        assert_eq!(
            events(&history),
            [
                ("step_refused", Some("awaiting_approval")),
                ("issue", None),
                ("step_refused", Some("wrong_binding:agent")),
                ("claim_refused", Some("wrong_binding:run")),
                ("claim", Some("run finished")),
                ("consume", Some("ok")),
                ("step_refused", Some("replayed")),
            ],
            "{:?}",
            t.backend
        );
        assert!(matches!(runs.get("acme", "run_missing").await, Err(LedgerError::NotFound(_))));
        assert!(matches!(runs.get("globex", &run.id).await, Err(LedgerError::NotFound(_))));
    }
}

#[tokio::test]
async fn denied_expired_and_ungated_runs() {
    for t in testing::all().await {
        let (approvals, runs) = (Approvals::new(t.db.clone()), Runs::new(t.db.clone()));

        // No entry policy: nothing to approve, steps run.
        let free = runs.start("acme", "agent:offboarder", "ungated").await.unwrap();
        assert_eq!((free.state, free.approval_id.as_deref()), (RunState::Approved, None));
        runs.step_allowed("acme", &free.id, "agent:offboarder").await.unwrap();

        gate(&Policies::new(t.db.clone()), Duration::from_secs(1)).await;
        let denied = runs.start("acme", "agent:offboarder", "denied").await.unwrap();
        let denied_id = denied.approval_id.clone().unwrap();
        approvals.decide("acme", &denied_id, "user:olivia", false, Some("not today")).await.unwrap();
        assert_eq!(runs.get("acme", &denied.id).await.unwrap().state, RunState::Denied);
        assert!(matches!(runs.step_allowed("acme", &denied.id, "agent:offboarder").await, Err(LedgerError::Denied(_))));

        let waiting = runs.start("acme", "agent:offboarder", "still waiting").await.unwrap();
        let expiring = runs.start("acme", "agent:offboarder", "expiring").await.unwrap();
        let expiring_id = expiring.approval_id.clone().unwrap();
        approvals.decide("acme", &expiring_id, "user:olivia", true, None).await.unwrap();
        assert_eq!(runs.get("acme", &expiring.id).await.unwrap().state, RunState::Approved);

        // The policy's ttl (1 s) bounds both the wait for a decision and the approved run.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(runs.get("acme", &expiring.id).await.unwrap().state, RunState::Expired);
        assert!(matches!(
            runs.step_allowed("acme", &expiring.id, "agent:offboarder").await,
            Err(LedgerError::Expired(_))
        ));
        assert_eq!(approvals.ledger().get("acme", &expiring_id).await.unwrap().state, GrantState::Expired);
        let finished = runs.finish("acme", &expiring.id, "late").await.unwrap();
        assert_eq!(finished.state, RunState::Finished);
        assert_eq!(
            approvals.ledger().get("acme", &expiring_id).await.unwrap().state,
            GrantState::Expired,
            "an expired entry grant is not consumed by finishing"
        );
        assert_eq!(runs.get("acme", &waiting.id).await.unwrap().state, RunState::Expired, "never decided");
    }
}

#[tokio::test]
async fn uninstall_stops_a_live_run() {
    for t in testing::all().await {
        let (approvals, runs) = (Approvals::new(t.db.clone()), Runs::new(t.db.clone()));
        gate(&Policies::new(t.db.clone()), Duration::from_secs(600)).await;
        let live = runs.start("acme", "agent:offboarder", "live").await.unwrap();
        approvals.decide("acme", live.approval_id.as_deref().unwrap(), "user:olivia", true, None).await.unwrap();
        let waiting = runs.start("acme", "agent:offboarder", "waiting").await.unwrap();
        runs.step_allowed("acme", &live.id, "agent:offboarder").await.unwrap();

        let done = approvals.cancel_for_agent("acme", "agent:offboarder").await.unwrap();
        assert_eq!((done.grants, done.approvals), (1, 1), "{:?}", t.backend);
        assert_eq!(runs.get("acme", &live.id).await.unwrap().state, RunState::Cancelled);
        assert_eq!(runs.get("acme", &waiting.id).await.unwrap().state, RunState::Cancelled);
        assert!(matches!(
            runs.step_allowed("acme", &live.id, "agent:offboarder").await,
            Err(LedgerError::Cancelled(_))
        ));
        let decided =
            approvals.decide("acme", waiting.approval_id.as_deref().unwrap(), "user:olivia", true, None).await;
        assert!(matches!(decided, Err(ApprovalError::AlreadyDecided { status: Status::Denied, .. })));
    }
}
