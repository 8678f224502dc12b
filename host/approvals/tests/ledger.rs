//! The authority ledger against real databases: one use per grant, exact binding, every
//! refusal on record.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use airlock_approvals::{
    args_digest, Approvals, BindingField, GrantSpec, GrantState, Ledger, LedgerError, NewApproval, Presented, Status,
};
use airlock_store::{now_millis, testing, Db};
use serde_json::json;

fn refund_digest() -> String {
    args_digest(&json!({"customer": 42, "amount": "120.00"}))
}

fn refund_spec(expires_in_ms: i64) -> GrantSpec {
    GrantSpec {
        agent: "agent:offboarder".into(),
        tool: "billing".into(),
        action: "refund".into(),
        args_digest: refund_digest(),
        run_id: None,
        call_id: Some("call_1".into()),
        approver: "user:carol".into(),
        role: Some("cfo".into()),
        expires_at: now_millis() + expires_in_ms,
    }
}

fn refund_presented() -> Presented {
    Presented {
        agent: "agent:offboarder".into(),
        tool: "billing".into(),
        action: "refund".into(),
        // Same arguments, other key order: the same digest.
        args_digest: args_digest(&serde_json::from_str(r#"{"amount":"120.00","customer":42}"#).unwrap()),
        call_id: Some("call_1".into()),
        run_id: None,
    }
}

/// (event, reason) pairs of a grant's history.
async fn events(ledger: &Ledger, tenant: &str, id: &str) -> Vec<(String, Option<String>)> {
    ledger.history(tenant, id).await.unwrap().into_iter().map(|e| (e.event, e.reason)).collect()
}

fn count(events: &[(String, Option<String>)], event: &str, reason: Option<&str>) -> usize {
    events.iter().filter(|(e, r)| e == event && r.as_deref() == reason).count()
}

/// 100 tasks claim one grant at once, spread over `dbs`; exactly one wins.
async fn race(dbs: &[Db], label: &str) {
    let ledgers: Vec<Arc<Ledger>> = dbs.iter().map(|db| Arc::new(Ledger::new(db.clone()))).collect();
    let grant = ledgers[0].issue("acme", refund_spec(60_000)).await.unwrap();
    assert_eq!(grant.state, GrantState::Issued);
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let ledger = ledgers[i % ledgers.len()].clone();
            let id = grant.id.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                ledger.claim("acme", &id, refund_presented()).await
            })
        })
        .collect();
    let (mut won, mut replayed) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(claim) => {
                won += 1;
                assert_eq!(claim.grant.state, GrantState::Claimed);
            }
            Err(LedgerError::Replayed(id)) => {
                replayed += 1;
                assert_eq!(id, grant.id);
            }
            Err(other) => panic!("{label}: unexpected refusal {other}"),
        }
    }
    assert_eq!((won, replayed), (1, 99), "{label}");
    let ledger = &ledgers[0];
    assert_eq!(ledger.get("acme", &grant.id).await.unwrap().state, GrantState::Claimed, "{label}");
    let history = events(ledger, "acme", &grant.id).await;
    assert_eq!(history.len(), 101, "{label}: issue, claim, 99 refusals");
    assert_eq!(count(&history, "issue", None), 1, "{label}");
    assert_eq!(count(&history, "claim", None), 1, "{label}");
    assert_eq!(count(&history, "claim_refused", Some("replayed")), 99, "{label}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_claims_win_once_on_one_pool() {
    for t in testing::all().await {
        race(std::slice::from_ref(&t.db), &format!("{:?}, one pool", t.backend)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_claims_win_once_across_two_processes() {
    for (backend, first, second, _keep) in common::twins().await {
        race(&[first, second], &format!("{backend:?}, two pools")).await;
    }
}

#[tokio::test]
async fn a_grant_is_spent_only_on_its_own_binding() {
    for t in testing::all().await {
        let ledger = Ledger::new(t.db.clone());
        let grant = ledger.issue("acme", refund_spec(60_000)).await.unwrap();
        let wrong: Vec<(BindingField, Presented)> = vec![
            (BindingField::Action, Presented { action: "delete_customer".into(), ..refund_presented() }),
            (BindingField::Agent, Presented { agent: "agent:other".into(), ..refund_presented() }),
            (BindingField::Tool, Presented { tool: "crm".into(), ..refund_presented() }),
            (
                BindingField::ArgsDigest,
                Presented {
                    args_digest: args_digest(&json!({"customer": 42, "amount": "1200.00"})),
                    ..refund_presented()
                },
            ),
            (BindingField::Call, Presented { call_id: Some("call_2".into()), ..refund_presented() }),
            (BindingField::Call, Presented { call_id: None, ..refund_presented() }),
        ];
        for (field, presented) in wrong {
            match ledger.claim("acme", &grant.id, presented).await {
                Err(LedgerError::WrongBinding { field: got, grant: id }) => {
                    assert_eq!((got, id.as_str()), (field, grant.id.as_str()), "{:?}", t.backend)
                }
                other => panic!("{:?}: expected wrong binding of {field}, got {other:?}", t.backend),
            }
        }
        assert!(
            matches!(ledger.claim("globex", &grant.id, refund_presented()).await, Err(LedgerError::NotFound(_))),
            "another tenant does not see the grant"
        );
        assert_eq!(ledger.get("acme", &grant.id).await.unwrap().state, GrantState::Issued, "refusals change nothing");

        let history = events(&ledger, "acme", &grant.id).await;
        assert_eq!(count(&history, "claim_refused", Some("wrong_binding:action")), 1);
        assert_eq!(count(&history, "claim_refused", Some("wrong_binding:agent")), 1);
        assert_eq!(count(&history, "claim_refused", Some("wrong_binding:tool")), 1);
        assert_eq!(count(&history, "claim_refused", Some("wrong_binding:args_digest")), 1);
        assert_eq!(count(&history, "claim_refused", Some("wrong_binding:call")), 2);
        assert_eq!(history.len(), 7, "issue and six refusals");
        assert_eq!(
            events(&ledger, "globex", &grant.id).await,
            vec![("claim_refused".into(), Some("not_found".into()))]
        );

        // The right presenter still gets it, then never again.
        ledger.claim("acme", &grant.id, refund_presented()).await.unwrap();
        let spent = ledger.consume("acme", &grant.id, "refunded").await.unwrap();
        assert_eq!((spent.state, spent.outcome.as_deref()), (GrantState::Consumed, Some("refunded")));
        assert!(matches!(ledger.claim("acme", &grant.id, refund_presented()).await, Err(LedgerError::Replayed(_))));
        assert!(matches!(ledger.consume("acme", &grant.id, "again").await, Err(LedgerError::Replayed(_))));
        let history = events(&ledger, "acme", &grant.id).await;
        let tail: Vec<&str> = history[7..].iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(tail, ["claim", "consume", "claim_refused", "consume_refused"], "{:?}", t.backend);
        assert_eq!(count(&history, "claim_refused", Some("replayed")), 1);
        assert_eq!(ledger.get("acme", &grant.id).await.unwrap().state, GrantState::Consumed);
    }
}

#[tokio::test]
async fn an_unclaimed_grant_cannot_be_consumed_and_a_claimed_one_stays_claimed() {
    for t in testing::all().await {
        let ledger = Ledger::new(t.db.clone());
        let grant = ledger.issue("acme", refund_spec(60_000)).await.unwrap();
        assert!(matches!(ledger.consume("acme", &grant.id, "x").await, Err(LedgerError::NotClaimed(_))));
        ledger.claim("acme", &grant.id, refund_presented()).await.unwrap();
        // The action "crashed": nothing consumes it; a sweep long after its deadline leaves it claimed.
        ledger.expire_due(now_millis() + 3_600_000).await.unwrap();
        assert_eq!(ledger.get("acme", &grant.id).await.unwrap().state, GrantState::Claimed);
        assert!(matches!(ledger.claim("acme", &grant.id, refund_presented()).await, Err(LedgerError::Replayed(_))));
        let history = events(&ledger, "acme", &grant.id).await;
        assert_eq!(count(&history, "consume_refused", Some("not_claimed")), 1);
        assert_eq!(count(&history, "claim_refused", Some("replayed")), 1);
    }
}

#[tokio::test]
async fn expired_grants_are_refused_and_swept() {
    for t in testing::all().await {
        let ledger = Ledger::new(t.db.clone());
        let late = ledger.issue("acme", refund_spec(-1)).await.unwrap();
        match ledger.claim("acme", &late.id, refund_presented()).await {
            Err(LedgerError::Expired(id)) => assert_eq!(id, late.id),
            other => panic!("{:?}: expected expired, got {other:?}", t.backend),
        }
        assert_eq!(ledger.get("acme", &late.id).await.unwrap().state, GrantState::Expired);
        let history = ledger.history("acme", &late.id).await.unwrap();
        let steps: Vec<_> = history.iter().map(|e| (e.event.as_str(), e.from, e.to)).collect();
        assert_eq!(
            steps,
            [
                ("issue", None, Some(GrantState::Issued)),
                ("expire", Some(GrantState::Issued), Some(GrantState::Expired)),
                ("claim_refused", Some(GrantState::Expired), Some(GrantState::Expired)),
            ]
        );
        assert_eq!(history[2].by, "agent:offboarder");
        assert_eq!(history[2].reason.as_deref(), Some("expired"));

        let a = ledger.issue("acme", refund_spec(1_000)).await.unwrap();
        let b = ledger.issue("globex", refund_spec(1_000)).await.unwrap();
        let c = ledger.issue("acme", refund_spec(120_000)).await.unwrap();
        assert_eq!(ledger.expire_due(now_millis() + 60_000).await.unwrap(), 2, "the sweep covers every tenant");
        assert_eq!(ledger.get("acme", &a.id).await.unwrap().state, GrantState::Expired);
        assert_eq!(ledger.get("globex", &b.id).await.unwrap().state, GrantState::Expired);
        assert_eq!(ledger.get("acme", &c.id).await.unwrap().state, GrantState::Issued);
        assert_eq!(ledger.expire_due(now_millis() + 60_000).await.unwrap(), 0, "nothing is swept twice");
        assert_eq!(events(&ledger, "globex", &b.id).await.len(), 2);
    }
}

#[tokio::test]
async fn issuing_checks_the_spec() {
    let t = testing::sqlite().await;
    let ledger = Ledger::new(t.db.clone());
    let err = ledger.issue("acme", GrantSpec { args_digest: "abc".into(), ..refund_spec(1000) }).await.unwrap_err();
    assert!(err.to_string().contains("`abc` is not a hex sha256 digest"), "{err}");
    let err = ledger.issue("acme", GrantSpec { action: " ".into(), ..refund_spec(1000) }).await.unwrap_err();
    assert!(matches!(err, LedgerError::Invalid(_)), "{err}");
}

fn refund_request() -> NewApproval {
    NewApproval {
        agent: "agent:offboarder".into(),
        tool: "billing".into(),
        call_id: Some("call_1".into()),
        action: "refund".into(),
        note: "refund 120.00 EUR to customer 42".into(),
        role: Some("cfo".into()),
        details: r#"{"customer": 42, "amount": "120.00"}"#.into(),
        ttl: None,
    }
}

#[tokio::test]
async fn approving_issues_a_grant_bound_to_the_request_and_consume_spends_it_once() {
    for t in testing::all().await {
        let approvals = Approvals::new(t.db.clone());
        let ledger = approvals.ledger().clone();
        let pending = approvals.create("acme", refund_request()).await.unwrap();
        assert_eq!(pending.args_digest, refund_digest(), "the approval binds the canonical digest");
        assert!(matches!(ledger.get("acme", &pending.id).await, Err(LedgerError::NotFound(_))), "no grant yet");

        let before = now_millis();
        approvals.decide("acme", &pending.id, "user:carol", true, None).await.unwrap();
        let grant = ledger.get("acme", &pending.id).await.unwrap();
        assert_eq!(grant.state, GrantState::Issued);
        assert_eq!(
            (grant.agent.as_str(), grant.tool.as_str(), grant.action.as_str(), grant.call_id.as_deref()),
            ("agent:offboarder", "billing", "refund", Some("call_1"))
        );
        assert_eq!((grant.approver.as_str(), grant.role.as_deref()), ("user:carol", Some("cfo")));
        assert_eq!(grant.args_digest, refund_digest());
        let ttl = pending.expires_at - pending.created_at;
        assert!(grant.expires_at >= before + ttl && grant.expires_at <= now_millis() + ttl);

        // The server's path: spend it for the call that asked; refusals are recorded.
        let wrong = approvals.consume("acme", &pending.id, "agent:offboarder", "billing", "call_9").await;
        assert!(matches!(wrong, Err(airlock_approvals::ApprovalError::GrantUnusable(_))));
        let spent = approvals.consume("acme", &pending.id, "agent:offboarder", "billing", "call_1").await.unwrap();
        assert_eq!(spent.status, Status::Consumed);
        let again = approvals.consume("acme", &pending.id, "agent:offboarder", "billing", "call_1").await;
        assert!(matches!(again, Err(airlock_approvals::ApprovalError::GrantUnusable(_))));
        assert_eq!(ledger.get("acme", &pending.id).await.unwrap().state, GrantState::Consumed);
        let history = events(&ledger, "acme", &pending.id).await;
        let names: Vec<&str> = history.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(names, ["issue", "claim_refused", "claim", "consume", "claim_refused"], "{:?}", t.backend);
        assert_eq!(history[1].1.as_deref(), Some("wrong_binding:call"));
        assert_eq!(history[4].1.as_deref(), Some("replayed"));

        let missing = approvals.consume("acme", "apr_missing", "agent:offboarder", "billing", "call_1").await;
        assert!(matches!(missing, Err(airlock_approvals::ApprovalError::GrantUnusable(_))));
        assert_eq!(events(&ledger, "acme", "apr_missing").await.len(), 1, "even an unknown grant's attempt is kept");
    }
}

#[tokio::test]
async fn denial_is_recorded_and_the_grant_never_usable() {
    for t in testing::all().await {
        let approvals = Approvals::new(t.db.clone());
        let ledger = approvals.ledger();
        let pending = approvals.create("acme", refund_request()).await.unwrap();
        approvals.decide("acme", &pending.id, "user:carol", false, Some("not this month")).await.unwrap();
        let grant = ledger.get("acme", &pending.id).await.unwrap();
        assert_eq!((grant.state, grant.approver.as_str()), (GrantState::Denied, "user:carol"));
        match ledger.claim("acme", &pending.id, refund_presented()).await {
            Err(LedgerError::Denied(id)) => assert_eq!(id, pending.id),
            other => panic!("{:?}: expected denied, got {other:?}", t.backend),
        }
        assert!(approvals.consume("acme", &pending.id, "agent:offboarder", "billing", "call_1").await.is_err());
        let history = ledger.history("acme", &pending.id).await.unwrap();
        let got: Vec<_> = history.iter().map(|e| (e.event.as_str(), e.to, e.reason.as_deref())).collect();
        assert_eq!(
            got,
            [
                ("deny", Some(GrantState::Denied), Some("not this month")),
                ("claim_refused", Some(GrantState::Denied), Some("denied")),
                ("claim_refused", Some(GrantState::Denied), Some("denied")),
            ]
        );
    }
}

#[tokio::test]
async fn uninstall_cancels_issued_grants_and_pending_requests_of_that_agent_only() {
    for t in testing::all().await {
        let approvals = Arc::new(Approvals::new(t.db.clone()));
        let ledger = approvals.ledger().clone();
        let approved = approvals.create("acme", refund_request()).await.unwrap();
        approvals.decide("acme", &approved.id, "user:carol", true, None).await.unwrap();
        let pending = approvals.create("acme", refund_request()).await.unwrap();
        let other = approvals.create("acme", NewApproval { agent: "agent:keeper".into(), ..refund_request() }).await;
        let other = other.unwrap();
        approvals.decide("acme", &other.id, "user:carol", true, None).await.unwrap();
        let spent = ledger.issue("acme", refund_spec(60_000)).await.unwrap();
        ledger.claim("acme", &spent.id, refund_presented()).await.unwrap();

        let waiter = tokio::spawn({
            let approvals = approvals.clone();
            let id = pending.id.clone();
            async move { approvals.wait("acme", &id).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let done = approvals.cancel_for_agent("acme", "agent:offboarder").await.unwrap();
        assert_eq!((done.grants, done.approvals), (1, 1), "{:?}", t.backend);
        let woke = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap().unwrap();
        assert_eq!(woke.status, Status::Denied);
        assert!(woke.reason.unwrap_or_default().contains("`agent:offboarder` uninstalled"));

        let states: HashMap<&str, GrantState> = [
            ("approved", ledger.get("acme", &approved.id).await.unwrap().state),
            ("pending", ledger.get("acme", &pending.id).await.unwrap().state),
            ("other", ledger.get("acme", &other.id).await.unwrap().state),
            ("claimed", ledger.get("acme", &spent.id).await.unwrap().state),
        ]
        .into();
        assert_eq!(states["approved"], GrantState::Cancelled);
        assert_eq!(states["pending"], GrantState::Cancelled);
        assert_eq!(states["other"], GrantState::Issued, "another agent keeps its grant");
        assert_eq!(states["claimed"], GrantState::Claimed, "a claimed grant is left as it is");
        let presented = Presented { call_id: Some("call_1".into()), ..refund_presented() };
        assert!(matches!(ledger.claim("acme", &approved.id, presented).await, Err(LedgerError::Cancelled(_))));
        assert_eq!(approvals.cancel_for_agent("acme", "agent:offboarder").await.unwrap(), Default::default());
    }
}

#[tokio::test]
async fn the_purge_forgets_ended_grants_and_guessed_ids_and_keeps_live_ones() {
    for t in testing::all().await {
        let ledger = Ledger::new(t.db.clone());
        let spent = ledger.issue("acme", refund_spec(60_000)).await.unwrap();
        ledger.claim("acme", &spent.id, refund_presented()).await.unwrap();
        ledger.consume("acme", &spent.id, "refunded").await.unwrap();
        let live = ledger.issue("acme", refund_spec(60_000)).await.unwrap();
        // Anyone may present any id: each guess is a refused claim on record.
        for i in 0..5 {
            assert!(ledger.claim("acme", &format!("apr_guess{i}"), refund_presented()).await.is_err());
        }
        assert_eq!(events(&ledger, "acme", "apr_guess3").await.len(), 1);

        // Nothing is old enough yet: a purge as of an hour ago forgets nothing.
        assert_eq!(ledger.purge(now_millis() - 3_600_000).await.unwrap(), (0, 0), "{:?}", t.backend);
        // As of a moment from now, the spent grant (issue, claim, consume) and the five guesses go.
        let (grants, rows) = ledger.purge(now_millis() + 1).await.unwrap();
        assert_eq!((grants, rows), (1, 3 + 5), "{:?}", t.backend);
        assert!(matches!(ledger.get("acme", &spent.id).await, Err(LedgerError::NotFound(_))));
        assert!(events(&ledger, "acme", "apr_guess3").await.is_empty());
        // A purged grant presented again is refused as unknown: purging never revives one.
        assert!(matches!(ledger.claim("acme", &spent.id, refund_presented()).await, Err(LedgerError::NotFound(_))));
        // The live grant and its history stay.
        assert_eq!(ledger.get("acme", &live.id).await.unwrap().state, GrantState::Issued);
        assert_eq!(events(&ledger, "acme", &live.id).await.len(), 1);
    }
}
