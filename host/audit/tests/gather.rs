//! Group commit: the calls in flight share one commit, and nobody's commit waits for a call
//! that steps aside (a person deciding, an external API answering) or has finished; and a
//! writer dozing on an idle host wakes for the next record.
//!
//! The gather time is set to a minute, so a commit released by the wrong thing would show as
//! a durable wait that never ends (`NotYetDurable` after ten seconds), never as a slow test.

use std::time::Duration;

use airlock_audit::{AuditEvent, AuditLog};
use airlock_store::testing;
use serde_json::json;
use tokio::task::JoinSet;

fn event(n: usize) -> AuditEvent {
    AuditEvent {
        tenant: "acme".into(),
        kind: "tool.call".into(),
        outcome: "allowed".into(),
        agent: format!("agent:a{n}"),
        tool: "billing.refund".into(),
        detail: json!({ "n": n }),
    }
}

/// Long enough that only the guards can release a group in these tests.
const LONG_GATHER: Duration = Duration::from_secs(60);
/// How long a waiter is given to show it is (wrongly) already committed.
const SETTLE: Duration = Duration::from_millis(50);

#[tokio::test]
async fn the_calls_in_flight_share_one_commit() {
    for t in testing::all().await {
        let log = AuditLog::start(t.db.clone());
        log.set_gather(LONG_GATHER);
        let calls: Vec<_> = (0..4).map(|_| log.acting()).collect();
        let before = log.commits();
        let mut waiters = JoinSet::new();
        let last = calls.len() - 1;
        for (n, call) in calls.into_iter().enumerate() {
            let log = log.clone();
            waiters.spawn(async move {
                let durable = log.record_durable(event(n)).await;
                drop(call);
                durable
            });
            if n < last {
                tokio::time::sleep(SETTLE).await;
                assert!(
                    waiters.try_join_next().is_none(),
                    "{:?}: call {n} committed before the group was whole",
                    t.backend
                );
            }
        }
        while let Some(done) = waiters.join_next().await {
            done.unwrap().unwrap_or_else(|e| panic!("{:?}: {e}", t.backend));
        }
        assert_eq!(log.commits() - before, 1, "{:?}: four calls, one commit", t.backend);
        let stored = log.list("acme", 0, 10).await.unwrap();
        assert_eq!(stored.len(), 4, "{:?}", t.backend);
        assert_eq!(log.verify("acme").await.unwrap().broken_at, None, "{:?}", t.backend);
    }
}

/// `calls` acting calls recording a durable event each, every one acting until its record is
/// committed; answers the commits they took.
async fn round(log: &AuditLog, calls: usize, backend: impl std::fmt::Debug) -> u64 {
    let before = log.commits();
    let mut waiters = JoinSet::new();
    for n in 0..calls {
        let (log, call) = (log.clone(), log.acting());
        waiters.spawn(async move {
            let durable = log.record_durable(event(n)).await;
            drop(call);
            durable
        });
    }
    while let Some(done) = tokio::time::timeout(Duration::from_secs(5), waiters.join_next())
        .await
        .unwrap_or_else(|_| panic!("{backend:?}: a round of {calls} calls was held past five seconds"))
    {
        done.unwrap().unwrap_or_else(|e| panic!("{backend:?}: {e}"));
    }
    log.commits() - before
}

#[tokio::test]
async fn the_calls_a_commit_answered_are_awaited_when_they_come_back() {
    for t in testing::all().await {
        let log = AuditLog::start(t.db.clone());
        log.set_gather(LONG_GATHER);
        log.set_rejoin(LONG_GATHER);
        // One call at a time: each is the whole group, and nobody is waited for.
        for _ in 0..2 {
            assert_eq!(round(&log, 1, t.backend).await, 1, "{:?}", t.backend);
        }
        assert_eq!(round(&log, 4, t.backend).await, 1, "{:?}: four calls, one commit", t.backend);

        // Right after that commit, one call comes back: the next commit waits for the other three.
        let first_back = log.acting();
        let waiter = {
            let log = log.clone();
            tokio::spawn(async move { log.record_durable(event(10)).await })
        };
        tokio::time::sleep(SETTLE).await;
        assert!(!waiter.is_finished(), "{:?}: committed before the last group's calls came back", t.backend);
        let others = round(&log, 3, t.backend).await;
        let joined = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(matches!(joined, Ok(Ok(Ok(())))), "{:?}: {joined:?}", t.backend);
        drop(first_back);
        assert_eq!(others, 1, "{:?}: the four came back into one commit", t.backend);
        assert_eq!(log.verify("acme").await.unwrap().broken_at, None, "{:?}", t.backend);
    }
}

#[tokio::test]
async fn calls_that_do_not_come_back_hold_a_commit_no_longer_than_the_rejoin_time() {
    for t in testing::all().await {
        let log = AuditLog::start(t.db.clone());
        log.set_gather(LONG_GATHER);
        log.set_rejoin(Duration::from_millis(200));
        assert_eq!(round(&log, 4, t.backend).await, 1, "{:?}", t.backend);
        // Only one comes back: its commit waits out the rejoin time (not the minute-long gather).
        assert_eq!(round(&log, 1, t.backend).await, 1, "{:?}", t.backend);
    }
}

#[tokio::test]
async fn a_call_waiting_on_a_person_or_finished_holds_no_commit() {
    for t in testing::all().await {
        let log = AuditLog::start(t.db.clone());
        log.set_gather(LONG_GATHER);
        let first = log.acting();
        let second = log.acting();

        // The second call waits for an approver: the first call's record commits without it.
        let approving = log.idle();
        let alone = tokio::time::timeout(Duration::from_secs(5), log.record_durable(event(1))).await;
        assert!(matches!(alone, Ok(Ok(()))), "{:?}: a call waiting on a person held the commit: {alone:?}", t.backend);
        drop(approving);

        // Back at work, the second call is awaited again, until it finishes.
        let waiter = {
            let log = log.clone();
            tokio::spawn(async move { log.record_durable(event(2)).await })
        };
        tokio::time::sleep(SETTLE).await;
        assert!(!waiter.is_finished(), "{:?}: committed while another acting call could still join", t.backend);
        drop(second);
        let joined = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(matches!(joined, Ok(Ok(Ok(())))), "{:?}: a finished call held the commit: {joined:?}", t.backend);
        drop(first);
        assert_eq!(log.list("acme", 0, 10).await.unwrap().len(), 2, "{:?}", t.backend);
    }
}

#[tokio::test]
async fn a_flush_is_never_held_for_a_group() {
    for t in testing::all().await {
        let log = AuditLog::start(t.db.clone());
        log.set_gather(LONG_GATHER);
        let _others = (log.acting(), log.acting());
        let waiter = {
            let log = log.clone();
            tokio::spawn(async move { log.record_durable(event(1)).await })
        };
        tokio::time::sleep(SETTLE).await;
        assert!(!waiter.is_finished(), "{:?}: the group was not gathered at all", t.backend);
        // A flush (shutdown, a reader that must see everything) commits what is queued at once.
        tokio::time::timeout(Duration::from_secs(5), log.flush()).await.expect("flush held for a group").unwrap();
        let released = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(matches!(released, Ok(Ok(Ok(())))), "{:?}: {released:?}", t.backend);
    }
}

#[tokio::test]
async fn an_idle_writer_dozes_and_the_next_record_wakes_it() {
    for t in testing::all().await {
        let log = AuditLog::start(t.db.clone());
        log.record_durable(event(0)).await.unwrap();
        // Nothing to write for a second: the writer stops ticking.
        let dozed = tokio::time::timeout(Duration::from_secs(10), async {
            while !log.dozing() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        dozed.await.unwrap_or_else(|_| panic!("{:?}: the writer never dozed off", t.backend));
        // A plain record (no flush, nobody waiting) rings a dozing writer, which commits it:
        // without the ring it would stay queued for good.
        let ticket = log.record(event(1));
        let mut committed = log.committed();
        let written = tokio::time::timeout(Duration::from_secs(10), committed.wait_for(|&n| n >= ticket));
        written.await.unwrap_or_else(|_| panic!("{:?}: a dozing writer missed a record", t.backend)).unwrap();
        assert_eq!(log.list("acme", 0, 10).await.unwrap().len(), 2, "{:?}", t.backend);
    }
}
