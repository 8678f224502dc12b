//! A call waiting for approval survives a restart: the wait is in the database, not the process.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use airlock_approvals::{Approvals, GrantState, NewApproval, Status};

fn request(call: &str) -> NewApproval {
    NewApproval {
        agent: "agent:offboarder".into(),
        tool: "billing".into(),
        call_id: Some(call.into()),
        action: "refund".into(),
        note: "refund".into(),
        role: Some("cfo".into()),
        details: r#"{"amount":"1.00"}"#.into(),
        ttl: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_by_another_process_wakes_the_waiter() {
    for (backend, first, second, _keep) in common::twins().await {
        let host_a = Arc::new(Approvals::new(first));
        let host_b = Approvals::new(second);
        let pending = host_a.create("acme", request("call_1")).await.unwrap();
        let waiter = tokio::spawn({
            let host_a = host_a.clone();
            let id = pending.id.clone();
            async move { host_a.wait("acme", &id).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished(), "{backend:?}: waits while pending");
        host_b.decide("acme", &pending.id, "user:carol", true, None).await.unwrap();
        let decided = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap().unwrap();
        assert_eq!((decided.status, decided.approver.as_deref()), (Status::Approved, Some("user:carol")));
        // And the grant host B issued is spent by host A, once.
        host_a.consume("acme", &pending.id, "agent:offboarder", "billing", "call_1").await.unwrap();
        assert!(host_b.consume("acme", &pending.id, "agent:offboarder", "billing", "call_1").await.is_err());
        assert_eq!(host_b.ledger().get("acme", &pending.id).await.unwrap().state, GrantState::Consumed);
    }
}

#[tokio::test]
async fn a_restarted_host_finds_the_waits_in_flight_and_resumes_them() {
    for (backend, first, second, _keep) in common::twins().await {
        let before = Approvals::new(first);
        let a = before.create("acme", request("call_a")).await.unwrap();
        // Apart by more than the millisecond the order is kept in.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let b = before.create("globex", request("call_b")).await.unwrap();
        let decided = before.create("acme", request("call_c")).await.unwrap();
        before.decide("acme", &decided.id, "user:carol", true, None).await.unwrap();
        let expired = before.create("acme", NewApproval { ttl: Some(Duration::from_millis(1)), ..request("call_d") });
        let expired = expired.await.unwrap();
        drop(before);
        tokio::time::sleep(Duration::from_millis(10)).await;

        // "After the restart": a fresh service over its own pool.
        let after = Arc::new(Approvals::new(second));
        let all = after.pending_for_resume(None).await.unwrap();
        let ids: Vec<&str> = all.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, [a.id.as_str(), b.id.as_str()], "{backend:?}: oldest first, decided and expired left out");
        assert_eq!(all[0].call_id.as_deref(), Some("call_a"), "the call to resume is named");
        let acme = after.pending_for_resume(Some("acme")).await.unwrap();
        assert_eq!(acme.len(), 1);
        assert_eq!(after.get("acme", &expired.id).await.unwrap().status, Status::Expired);

        let waiter = tokio::spawn({
            let after = after.clone();
            let id = a.id.clone();
            async move { after.wait("acme", &id).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        after.decide("acme", &a.id, "user:carol", false, Some("no")).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap().unwrap();
        assert_eq!(got.status, Status::Denied);
        assert_eq!(after.pending_for_resume(None).await.unwrap().len(), 1);
    }
}
