//! Searching the trail and counting it per minute, against real databases (SQLite, and
//! PostgreSQL when `AIRLOCK_TEST_POSTGRES_URL` is set).

use std::time::Instant;

use airlock_audit::{AuditEvent, AuditLog, SearchFilter, StoredEvent, Tally};
use airlock_store::{sqlx, testing};
use serde_json::json;

fn event(tenant: &str, kind: &str, outcome: &str, agent: &str, tool: &str) -> AuditEvent {
    AuditEvent {
        tenant: tenant.into(),
        kind: kind.into(),
        outcome: outcome.into(),
        agent: agent.into(),
        tool: tool.into(),
        detail: json!({}),
    }
}

fn seqs(events: &[StoredEvent]) -> Vec<i64> {
    events.iter().map(|e| e.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_matches_every_given_field_newest_first_and_pages_both_ways() {
    for t in testing::all().await {
        let b = t.backend;
        let log = AuditLog::start(t.db.clone());
        // acme: 30 events, seq n = 1..=30; globex has the same shapes and must never show up.
        for n in 1..=30 {
            let (kind, tool) =
                if n % 3 == 0 { ("approval.request", "billing.refund") } else { ("tool.call", "hello.greet") };
            let outcome = if n % 2 == 0 { "denied" } else { "allowed" };
            let agent = if n % 5 == 0 { "agent:rare" } else { "agent:busy" };
            log.record(event("acme", kind, outcome, agent, tool));
            log.record(event("globex", kind, outcome, agent, tool));
        }
        log.flush().await.unwrap();
        // Times set apart: event n at 1_000_000 + n * 1000.
        sqlx::query("UPDATE audit_events SET ts = 1000000 + seq * 1000").execute(t.db.pool()).await.unwrap();

        let all = log.search("acme", &SearchFilter::default(), 100).await.unwrap();
        assert_eq!(seqs(&all), (1..=30).rev().collect::<Vec<_>>(), "{b:?}: newest first");
        assert!(all.iter().all(|e| e.event.tenant == "acme"));
        let first = log.search("acme", &SearchFilter::default(), 10).await.unwrap();
        assert_eq!(seqs(&first), (21..=30).rev().collect::<Vec<_>>(), "{b:?}");

        // Each field alone, and together.
        let rare = SearchFilter { agent: Some("agent:rare".into()), ..Default::default() };
        assert_eq!(seqs(&log.search("acme", &rare, 100).await.unwrap()), [30, 25, 20, 15, 10, 5], "{b:?}");
        let denied_calls = SearchFilter {
            kind: Some("tool.call".into()),
            outcome: Some("denied".into()),
            tool: Some("hello.greet".into()),
            ..Default::default()
        };
        let found = log.search("acme", &denied_calls, 100).await.unwrap();
        let expected: Vec<i64> = (1..=30).rev().filter(|n| n % 2 == 0 && n % 3 != 0).collect();
        assert_eq!(seqs(&found), expected, "{b:?}");
        assert!(found.iter().all(|e| e.event.kind == "tool.call" && e.event.outcome == "denied"));
        let rare_denied =
            SearchFilter { agent: Some("agent:rare".into()), outcome: Some("denied".into()), ..Default::default() };
        assert_eq!(seqs(&log.search("acme", &rare_denied, 100).await.unwrap()), [30, 20, 10], "{b:?}");

        // Time: since inclusive, until exclusive.
        let window =
            SearchFilter { since: Some(1_000_000 + 5_000), until: Some(1_000_000 + 9_000), ..Default::default() };
        assert_eq!(seqs(&log.search("acme", &window, 100).await.unwrap()), [8, 7, 6, 5], "{b:?}");

        // Paging backwards with `before` visits every matching event once.
        let calls = SearchFilter { kind: Some("tool.call".into()), ..Default::default() };
        let (mut paged, mut filter) = (Vec::new(), calls.clone());
        loop {
            let page = log.search("acme", &filter, 7).await.unwrap();
            let Some(last) = page.last() else { break };
            filter.before = Some(last.seq);
            paged.extend(seqs(&page));
        }
        let expected: Vec<i64> = (1..=30).rev().filter(|n| n % 3 != 0).collect();
        assert_eq!(paged, expected, "{b:?}");

        // Oldest first, paging forwards with `after`.
        let page =
            log.search_oldest_first("acme", &SearchFilter { after: Some(27), ..calls.clone() }, 10).await.unwrap();
        assert_eq!(seqs(&page), [28, 29], "{b:?}");
        let page = log.search_oldest_first("acme", &calls, 3).await.unwrap();
        assert_eq!(seqs(&page), [1, 2, 4], "{b:?}");

        // Values are bound, never spliced into the SQL.
        let hostile = SearchFilter { agent: Some("x' OR '1'='1".into()), ..Default::default() };
        assert!(log.search("acme", &hostile, 100).await.unwrap().is_empty(), "{b:?}");
        assert!(log.search("nobody", &SearchFilter::default(), 100).await.unwrap().is_empty());
        // The stored events are returned as stored.
        assert_eq!(
            log.search("acme", &SearchFilter::default(), 30).await.unwrap()[29],
            log.list("acme", 0, 1).await.unwrap()[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tally_counts_calls_and_denials_per_minute_in_the_database() {
    const MINUTE: i64 = 60_000;
    const N: i64 = 12_000;
    for t in testing::all().await {
        let b = t.backend;
        let log = AuditLog::start(t.db.clone());
        for n in 0..N {
            // Periods prime to the 90 minutes below, so every minute has some of each.
            let outcome = if n % 7 == 0 { "denied" } else { "allowed" };
            let kind = if n % 11 == 10 { "authz.check" } else { "tool.call" };
            log.record(event("acme", kind, outcome, "agent:a", "hello.greet"));
        }
        log.record(event("globex", "tool.call", "denied", "agent:a", "hello.greet"));
        log.flush().await.unwrap();
        // Spread over 90 minutes from `base`, not in seq order: seq s lands in minute s % 90.
        let base = 1_700_000_040_000_i64 / MINUTE * MINUTE;
        sqlx::query("UPDATE audit_events SET ts = $1 + (seq % 90) * 60000 + (seq % 13) * 1000")
            .bind(base)
            .execute(t.db.pool())
            .await
            .unwrap();

        // The last 60 minutes of the 90.
        let (since, until) = (base + 30 * MINUTE, base + 90 * MINUTE);
        let started = Instant::now();
        let tallies = log.tally("acme", "tool.call", "denied", since, until, MINUTE).await.unwrap();
        let took = started.elapsed();
        eprintln!("{b:?}: tally over {N} events took {took:?}");

        // What it must be, from the events themselves.
        let mut expected: std::collections::BTreeMap<i64, (i64, i64)> = Default::default();
        let mut after = 0;
        loop {
            let page = log.list("acme", after, 5000).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            for e in page.iter().filter(|e| e.event.kind == "tool.call" && e.ts >= since && e.ts < until) {
                let slot = expected.entry(e.ts / MINUTE * MINUTE).or_default();
                slot.0 += 1;
                slot.1 += i64::from(e.event.outcome == "denied");
            }
        }
        let expected: Vec<Tally> =
            expected.into_iter().map(|(start, (events, with_outcome))| Tally { start, events, with_outcome }).collect();
        assert_eq!(expected.len(), 60, "{b:?}");
        assert_eq!(tallies, expected, "{b:?}");
        let total: i64 = tallies.iter().map(|t| t.events).sum();
        assert!(total > 7000 && tallies.iter().all(|t| t.with_outcome > 0 && t.with_outcome < t.events), "{b:?}");
        assert!(took.as_secs() < 2, "{b:?}: grouped by the database, fast: {took:?}");

        // Nothing outside the window, nothing of another tenant.
        assert!(log.tally("acme", "tool.call", "denied", base - 10 * MINUTE, base, MINUTE).await.unwrap().is_empty());
        assert_eq!(log.tally("globex", "tool.call", "denied", 0, i64::MAX, MINUTE).await.unwrap().len(), 1);
    }
}
