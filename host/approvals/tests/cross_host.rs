//! Two hosts on one PostgreSQL: a decision taken on host A wakes the call waiting on host B
//! through a signal (LISTEN/NOTIFY), not through B's poll. B's poll is set to an hour, so a
//! wake-up that depended on it would never come within the test's limit.
//!
//! `cargo test --release -p airlock-approvals --test cross_host -- --nocapture` prints the
//! wake-up latency of each run (the figure in issue 17's note).

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_approvals::{Approvals, NewApproval, Status};
use airlock_store::{sqlx, testing, Db};

fn refund(n: usize) -> NewApproval {
    NewApproval {
        agent: "agent:offboarder".into(),
        tool: "billing.refund".into(),
        call_id: Some(format!("call_{n}")),
        action: "refund".into(),
        note: "refund 120.00 EUR to customer 42".into(),
        role: Some("cfo".into()),
        details: r#"{"customer":42,"amount":"120.00"}"#.into(),
        ttl: None,
    }
}

/// Another host's pool on the same database.
async fn other_host(t: &testing::TestDb) -> Db {
    let (name,): (String,) = sqlx::query_as("SELECT current_database()::text").fetch_one(t.db.pool()).await.unwrap();
    let server = testing::postgres_server_url().unwrap();
    Db::connect(&testing::with_database(&server, &name)).await.unwrap()
}

const NO_POLL: Duration = Duration::from_secs(3600);
/// Far beyond a signal's delivery, far below the poll: only a signal wakes the waiter in time.
const WAKE_LIMIT: Duration = Duration::from_secs(10);

/// Waits on host B for approval `id`; answers its status and when B's waiter woke.
async fn wait_on(host_b: Arc<Approvals>, id: String) -> (Status, Instant) {
    let decided = host_b.wait("acme", &id).await.unwrap();
    (decided.status, Instant::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_on_one_host_wakes_the_waiter_on_another_without_polling() {
    let Some(t) = testing::postgres().await else { return };
    let host_a = Arc::new(Approvals::new(t.db.clone()).with_poll(NO_POLL));
    let host_b = Arc::new(Approvals::new(other_host(&t).await).with_poll(NO_POLL));
    // Both listeners are connected once a signal sent now is heard: give them that long.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut latencies = Vec::new();
    for n in 0..10 {
        let pending = host_a.create("acme", refund(n)).await.unwrap();
        let waiter = tokio::spawn(wait_on(host_b.clone(), pending.id.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "run {n}: host B's waiter answered before the decision");
        let approve = n % 2 == 0;
        let deciding = Instant::now();
        host_a.decide("acme", &pending.id, "user:carol", approve, None).await.unwrap();
        let (status, woke_at) = tokio::time::timeout(WAKE_LIMIT, waiter)
            .await
            .unwrap_or_else(|_| panic!("run {n}: host B's waiter was not woken by host A's decision"))
            .unwrap();
        assert_eq!(status, if approve { Status::Approved } else { Status::Denied }, "run {n}");
        latencies.push(woke_at.saturating_duration_since(deciding));
    }
    latencies.sort();
    eprintln!(
        "host B woke after host A began deciding, 10 runs: min {:?}, median {:?}, max {:?}",
        latencies[0], latencies[5], latencies[9]
    );

    // Cancelling an agent's requests (uninstall, revocation) on A reaches B's waiters too.
    let pending = host_a.create("acme", refund(99)).await.unwrap();
    let waiter = tokio::spawn(wait_on(host_b.clone(), pending.id.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    host_a.cancel_for_agent("acme", "agent:offboarder").await.unwrap();
    let (status, _) = tokio::time::timeout(WAKE_LIMIT, waiter)
        .await
        .expect("host B's waiter was not woken by host A's cancellation")
        .unwrap();
    assert_eq!(status, Status::Denied);
}
