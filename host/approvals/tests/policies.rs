//! Approval policies: stored per tool action, role names checked, entry policies per agent.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use airlock_approvals::{Policies, PolicyError, PolicySpec};
use airlock_store::testing;

fn spec(tool: &str, action: &str, role: &str) -> PolicySpec {
    PolicySpec {
        tool: tool.into(),
        action: action.into(),
        role: role.into(),
        ttl: Duration::from_secs(900),
        entry: false,
    }
}

#[tokio::test]
async fn policies_are_put_found_listed_and_deleted() {
    for t in testing::all().await {
        let policies = Policies::new(t.db.clone());
        assert!(policies.for_action("acme", "billing", "refund").await.unwrap().is_none(), "no policy, no approval");

        policies.put("acme", spec("billing", "refund", "cfo")).await.unwrap();
        policies.put("acme", spec("crm", "*", "dpo")).await.unwrap();
        policies.put("globex", spec("billing", "refund", "controller")).await.unwrap();

        let refund = policies.for_action("acme", "billing", "refund").await.unwrap().unwrap();
        assert_eq!((refund.role.as_str(), refund.ttl, refund.entry), ("cfo", Duration::from_secs(900), false));
        assert!(policies.for_action("acme", "billing", "invoice").await.unwrap().is_none());
        let delete = policies.for_action("acme", "crm", "delete_contact").await.unwrap().unwrap();
        assert_eq!((delete.action.as_str(), delete.role.as_str()), ("*", "dpo"), "the tool's `*` covers it");

        // Replacing keeps one row per key.
        let mut cfo = spec("billing", "refund", "finance_lead");
        cfo.ttl = Duration::from_secs(60);
        policies.put("acme", cfo).await.unwrap();
        let listed = policies.list("acme").await.unwrap();
        let keys: Vec<(&str, &str, &str, u128)> =
            listed.iter().map(|p| (p.tool.as_str(), p.action.as_str(), p.role.as_str(), p.ttl.as_millis())).collect();
        assert_eq!(
            keys,
            [("billing", "refund", "finance_lead", 60_000), ("crm", "*", "dpo", 900_000)],
            "{:?}",
            t.backend
        );
        assert_eq!(policies.list("globex").await.unwrap().len(), 1, "tenants are separate");

        assert!(policies.delete("acme", "billing", "refund").await.unwrap());
        assert!(!policies.delete("acme", "billing", "refund").await.unwrap());
        assert!(policies.for_action("acme", "billing", "refund").await.unwrap().is_none());
        assert_eq!(policies.list("acme").await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn entry_policies_are_keyed_by_agent() {
    for t in testing::all().await {
        let policies = Policies::new(t.db.clone());
        let entry = PolicySpec { entry: true, ..spec("agent:offboarder", "run", "ops_manager") };
        policies.put("acme", entry).await.unwrap();
        let got = policies.entry_for("acme", "agent:offboarder").await.unwrap().unwrap();
        assert_eq!((got.role.as_str(), got.entry), ("ops_manager", true));
        assert!(policies.entry_for("acme", "agent:other").await.unwrap().is_none());
        assert!(policies.entry_for("globex", "agent:offboarder").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn malformed_policies_are_refused() {
    let t = testing::sqlite().await;
    let policies = Policies::new(t.db.clone());
    let cases = [
        (spec("billing", "refund", "cfo#member"), "role `cfo#member` is not a relation name"),
        (spec("billing", "refund", ""), "role `` is not a relation name"),
        (spec("billing", "re fund", "cfo"), "action `re fund` is empty or contains whitespace"),
        (spec("", "refund", "cfo"), "tool `` is empty"),
        (PolicySpec { ttl: Duration::from_millis(10), ..spec("billing", "refund", "cfo") }, "ttl of 10 ms"),
        (PolicySpec { entry: true, ..spec("billing", "refund", "cfo") }, "an entry policy is keyed by an agent"),
        (PolicySpec { entry: true, ..spec("agent:x", "refund", "cfo") }, "an entry policy is keyed by an agent"),
        (spec("agent:x", "run", "cfo"), "names an agent"),
    ];
    for (bad, message) in cases {
        match policies.put("acme", bad).await {
            Err(e @ PolicyError::Invalid(_)) => assert!(e.to_string().contains(message), "{e} / {message}"),
            other => panic!("expected refusal containing {message}, got {other:?}"),
        }
    }
    assert!(policies.list("acme").await.unwrap().is_empty(), "nothing was stored");
}

#[tokio::test]
async fn a_cached_policy_table_sees_its_own_writes_at_once() {
    let t = testing::sqlite().await;
    let cached = Policies::cached(t.db.clone());
    assert_eq!(cached.for_action("acme", "billing", "refund").await.unwrap(), None, "loads the empty table");
    cached.put("acme", spec("billing", "refund", "cfo")).await.unwrap();
    assert_eq!(cached.for_action("acme", "billing", "refund").await.unwrap().map(|p| p.role), Some("cfo".into()));
    cached.put("acme", spec("billing", "*", "controller")).await.unwrap();
    assert_eq!(
        cached.for_action("acme", "billing", "export").await.unwrap().map(|p| p.role),
        Some("controller".into())
    );
    assert!(cached.delete("acme", "billing", "refund").await.unwrap());
    assert_eq!(
        cached.for_action("acme", "billing", "refund").await.unwrap().map(|p| p.role),
        Some("controller".into()),
        "falls back to the tool's `*` policy once its own is gone"
    );
    assert_eq!(cached.for_action("globex", "billing", "refund").await.unwrap(), None, "tenants apart");
}
