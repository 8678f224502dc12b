//! Approvals against real databases: decide, wait, expire, consume once.

use std::sync::Arc;
use std::time::Duration;

use airlock_approvals::{ApprovalError, Approvals, NewApproval, Status};
use airlock_store::testing;

fn refund(ttl: Option<Duration>) -> NewApproval {
    NewApproval {
        agent: "agent:offboarder".into(),
        tool: "billing.refund".into(),
        call_id: Some("call_1".into()),
        action: "refund".into(),
        note: "refund 120.00 EUR to customer 42".into(),
        role: Some("cfo".into()),
        details: r#"{"customer":42,"amount":"120.00"}"#.into(),
        ttl,
    }
}

#[tokio::test]
async fn a_waiter_resumes_when_a_human_decides() {
    for t in testing::all().await {
        let approvals = Arc::new(Approvals::new(t.db.clone()));
        let pending = approvals.create("acme", refund(None)).await.unwrap();
        assert_eq!(pending.status, Status::Pending);
        assert_eq!(approvals.list("acme", Some(Status::Pending)).await.unwrap().len(), 1);
        assert!(approvals.list("globex", None).await.unwrap().is_empty(), "tenants are separate");

        let waiter = tokio::spawn({
            let approvals = approvals.clone();
            let id = pending.id.clone();
            async move { approvals.wait("acme", &id).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "waits while pending");
        approvals.decide("acme", &pending.id, "user:carol", true, None).await.unwrap();
        let decided = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap().unwrap();
        assert_eq!(decided.status, Status::Approved);
        assert_eq!(decided.approver.as_deref(), Some("user:carol"));

        // A decision is final.
        let again = approvals.decide("acme", &pending.id, "user:mallory", false, None).await.unwrap_err();
        assert!(matches!(again, ApprovalError::AlreadyDecided { status: Status::Approved, .. }), "{again}");
    }
}

#[tokio::test]
async fn denial_carries_the_reason_and_expiry_ends_the_wait() {
    let t = testing::sqlite().await;
    let approvals = Approvals::new(t.db.clone());
    let denied = approvals.create("acme", refund(None)).await.unwrap();
    approvals.decide("acme", &denied.id, "user:carol", false, Some("not this month")).await.unwrap();
    let got = approvals.wait("acme", &denied.id).await.unwrap();
    assert_eq!((got.status, got.reason.as_deref()), (Status::Denied, Some("not this month")));

    let short = approvals.create("acme", refund(Some(Duration::from_millis(200)))).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), approvals.wait("acme", &short.id)).await.unwrap().unwrap();
    assert_eq!(got.status, Status::Expired);
    let late = approvals.decide("acme", &short.id, "user:carol", true, None).await.unwrap_err();
    assert!(matches!(late, ApprovalError::AlreadyDecided { status: Status::Expired, .. }), "{late}");
}

#[tokio::test]
async fn a_grant_is_spent_once_and_only_by_its_agent_and_tool() {
    for t in testing::all().await {
        let approvals = Arc::new(Approvals::new(t.db.clone()));
        let a = approvals.create("acme", refund(None)).await.unwrap();
        approvals.decide("acme", &a.id, "user:carol", true, None).await.unwrap();

        assert!(
            approvals.consume("acme", &a.id, "agent:offboarder", "crm.delete", "call_1").await.is_err(),
            "other tool"
        );
        assert!(
            approvals.consume("acme", &a.id, "agent:other", "billing.refund", "call_1").await.is_err(),
            "other agent"
        );
        assert!(
            approvals.consume("globex", &a.id, "agent:offboarder", "billing.refund", "call_1").await.is_err(),
            "other tenant"
        );
        assert!(
            approvals.consume("acme", &a.id, "agent:offboarder", "billing.refund", "call_2").await.is_err(),
            "another call of the same agent and tool"
        );

        let attempts = (0..20).map(|_| {
            let approvals = approvals.clone();
            let id = a.id.clone();
            tokio::spawn(async move {
                approvals.consume("acme", &id, "agent:offboarder", "billing.refund", "call_1").await.is_ok()
            })
        });
        let mut wins = 0;
        for attempt in attempts {
            wins += attempt.await.unwrap() as u32;
        }
        assert_eq!(wins, 1, "exactly one concurrent consume succeeds on {:?}", t.backend);
        assert_eq!(approvals.get("acme", &a.id).await.unwrap().status, Status::Consumed);
    }
}

#[tokio::test]
async fn malformed_requests_are_refused() {
    let t = testing::sqlite().await;
    let approvals = Approvals::new(t.db.clone());
    let mut bad = refund(None);
    bad.details = "not json".into();
    let err = approvals.create("acme", bad).await.unwrap_err();
    assert!(err.to_string().contains("`details` is not JSON"), "{err}");
    assert!(matches!(approvals.get("acme", "apr_nope").await.unwrap_err(), ApprovalError::NotFound(_)));
}
