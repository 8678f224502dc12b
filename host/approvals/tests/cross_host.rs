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

/// Waits until `db`'s host may answer from memory (its own heartbeat came back).
async fn until_fresh(db: &Db) {
    for _ in 0..250 {
        if db.changes().fresh() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the change feed never became live");
}

/// Commits a change of `topic` for `tenant` through `db`, then settles it.
async fn change(db: &Db, topic: &str, tenant: &str) {
    let mut tx = db.pool().begin().await.unwrap();
    db.changes().notify_in(&mut tx, topic, tenant).await.unwrap();
    tx.commit().await.unwrap();
    db.changes().settle().await;
}

/// The change feed (`airlock_store::Changes`): what host A commits, host B has applied by the
/// time A's `settle` returns, per topic and tenant; a rolled-back change tells nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_change_is_applied_by_the_other_host_before_settle_returns() {
    let Some(t) = testing::postgres().await else { return };
    let host_a = t.db.clone();
    let host_b = other_host(&t).await;
    let tuples_b = airlock_store::FreshTenants::new(host_b.changes(), "tuples");
    let policies_b = airlock_store::FreshTenants::new(host_b.changes(), "policies");
    // A writes too, so its listener runs and it hears B's heartbeats.
    let _tuples_a = airlock_store::FreshTenants::new(host_a.changes(), "tuples");
    until_fresh(&host_a).await;
    until_fresh(&host_b).await;
    // Both peers know each other once each heard a heartbeat of the other.
    tokio::time::sleep(Duration::from_millis(3 * airlock_store::changes::HEARTBEAT.as_millis() as u64)).await;

    for tenant in ["acme", "globex"] {
        tuples_b.reading(tenant);
        policies_b.reading(tenant);
    }
    assert!(tuples_b.is_fresh("acme") && policies_b.is_fresh("globex"));
    for round in 0..20 {
        change(&host_a, "tuples", "acme").await;
        // No sleep: settle returned, so B applied it.
        assert!(!tuples_b.is_fresh("acme"), "round {round}: B still trusts acme's tuples");
        assert!(tuples_b.is_fresh("globex"), "round {round}: another tenant was dropped");
        assert!(policies_b.is_fresh("acme"), "round {round}: another topic was dropped");
        tuples_b.reading("acme");
    }

    // A rolled-back transaction's change is never delivered.
    let mut tx = host_a.pool().begin().await.unwrap();
    host_a.changes().notify_in(&mut tx, "policies", "globex").await.unwrap();
    tx.rollback().await.unwrap();
    change(&host_a, "tuples", "acme").await;
    assert!(policies_b.is_fresh("globex"), "a rolled-back change was applied");

    // A deleted tenant: every topic forgets it.
    change(&host_a, "*", "globex").await;
    assert!(!tuples_b.is_fresh("globex") && !policies_b.is_fresh("globex"));

    // SQLite has no feed: memory is never vouched for by it.
    let sqlite = testing::sqlite().await;
    let fresh = airlock_store::FreshTenants::new(sqlite.db.changes(), "tuples");
    fresh.reading("acme");
    assert!(!sqlite.db.changes().fresh() && !fresh.is_fresh("acme"));
}
