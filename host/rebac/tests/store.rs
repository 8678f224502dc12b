//! The engine against real databases: SQLite always, PostgreSQL when scripts/test runs it.

use airlock_rebac::{Rebac, RebacError, Tuple};
use airlock_store::testing;

#[tokio::test]
async fn direct_wildcard_and_userset_checks_on_every_backend() {
    for t in testing::all().await {
        let rebac = Rebac::open(t.db.clone()).await.unwrap();
        rebac
            .write(
                "acme",
                &[
                    Tuple::new("tool:billing.refund", "can_use", "agent:refunder"),
                    Tuple::new("tool:billing.lookup", "can_use", "group:support#member"),
                    Tuple::new("group:support", "member", "agent:helper"),
                    Tuple::new("tool:public.echo", "can_use", "agent:*"),
                ],
            )
            .await
            .unwrap();
        assert!(rebac.check("acme", "agent:refunder", "can_use", "tool:billing.refund").unwrap(), "{:?}", t.backend);
        assert!(!rebac.check("acme", "agent:helper", "can_use", "tool:billing.refund").unwrap());
        assert!(rebac.check("acme", "agent:helper", "can_use", "tool:billing.lookup").unwrap());
        assert!(rebac.check("acme", "agent:anyone", "can_use", "tool:public.echo").unwrap());
        // Tenants do not see each other's tuples.
        assert!(!rebac.check("other", "agent:refunder", "can_use", "tool:billing.refund").unwrap());
        assert_eq!(
            rebac.list_objects("acme", "agent:helper", "can_use", "tool").unwrap(),
            vec!["tool:billing.lookup".to_string(), "tool:public.echo".to_string()]
        );

        // Survives a reopen: the index is rebuilt from the database.
        let reopened = Rebac::open(t.db.clone()).await.unwrap();
        assert!(reopened.check("acme", "agent:helper", "can_use", "tool:billing.lookup").unwrap());

        // Revocation is visible to the very next check.
        let removed = rebac.delete("acme", &[Tuple::new("group:support", "member", "agent:helper")]).await.unwrap();
        assert_eq!(removed, 1);
        assert!(!rebac.check("acme", "agent:helper", "can_use", "tool:billing.lookup").unwrap());
        let stored = rebac.read("acme", Some("group:support")).await.unwrap();
        assert!(stored.is_empty());
    }
}

#[tokio::test]
async fn writing_twice_is_harmless_and_bad_tuples_write_nothing() {
    let t = testing::sqlite().await;
    let rebac = Rebac::open(t.db.clone()).await.unwrap();
    let tuple = Tuple::new("doc:1", "viewer", "agent:a");
    rebac.write("acme", &[tuple.clone()]).await.unwrap();
    rebac.write("acme", &[tuple.clone()]).await.unwrap();
    assert_eq!(rebac.read("acme", None).await.unwrap(), vec![tuple]);

    let err = rebac
        .write("acme", &[Tuple::new("doc:2", "viewer", "agent:b"), Tuple::new("doc 3", "viewer", "agent:c")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`doc 3`"), "{err}");
    assert_eq!(rebac.read("acme", None).await.unwrap().len(), 1, "nothing of a refused batch is written");
}

#[tokio::test]
async fn cyclic_usersets_end_in_an_error_not_a_hang() {
    let t = testing::sqlite().await;
    let rebac = Rebac::open(t.db.clone()).await.unwrap();
    rebac
        .write(
            "acme",
            &[Tuple::new("group:a", "member", "group:b#member"), Tuple::new("group:b", "member", "group:a#member")],
        )
        .await
        .unwrap();
    let err = rebac.check("acme", "agent:x", "member", "group:a").unwrap_err();
    assert!(matches!(err, RebacError::ResolutionTooComplex));
}

const MODEL: &str = "model
  schema 1.1
type agent
type team
  relations
    define member: [agent]
type tool
  relations
    define owner: [team]
    define blocked: [agent]
    define can_use: ([agent] or member from owner) but not blocked
";

#[tokio::test]
async fn a_tenant_model_gives_openfga_semantics_and_survives_a_reopen() {
    for t in testing::all().await {
        let rebac = Rebac::open(t.db.clone()).await.unwrap();
        let active = rebac.write_model("acme", MODEL).await.unwrap();
        rebac
            .write(
                "acme",
                &[
                    Tuple::new("tool:billing.refund", "owner", "team:finance"),
                    Tuple::new("team:finance", "member", "agent:refunder"),
                    Tuple::new("team:finance", "member", "agent:intern"),
                    Tuple::new("tool:billing.refund", "blocked", "agent:intern"),
                ],
            )
            .await
            .unwrap();
        assert!(rebac.check("acme", "agent:refunder", "can_use", "tool:billing.refund").unwrap(), "{:?}", t.backend);
        assert!(!rebac.check("acme", "agent:intern", "can_use", "tool:billing.refund").unwrap(), "exclusion");
        assert_eq!(
            rebac.list_objects("acme", "agent:refunder", "can_use", "tool").unwrap(),
            vec!["tool:billing.refund"]
        );

        // The model's type restrictions guard writes.
        let err = rebac.write("acme", &[Tuple::new("tool:x", "owner", "agent:refunder")]).await.unwrap_err();
        assert!(err.to_string().contains("does not admit"), "{err}");
        // And checks of relations it does not define fail (closed) with a reason.
        assert!(rebac.check("acme", "agent:refunder", "viewer", "tool:billing.refund").is_err());
        // Other tenants keep plain tuple semantics.
        assert!(rebac.model("globex").is_none());

        let reopened = Rebac::open(t.db.clone()).await.unwrap();
        assert_eq!(reopened.model("acme").unwrap().id, active.id);
        assert!(!reopened.check("acme", "agent:intern", "can_use", "tool:billing.refund").unwrap());

        let bad = rebac
            .write_model("acme", "model\n  schema 1.1\ntype a\n  relations\n    define b: [c]\n")
            .await
            .unwrap_err();
        assert!(bad.to_string().contains("line 5"), "{bad}");
        assert_eq!(rebac.model("acme").unwrap().id, active.id, "a refused model changes nothing");
    }
}

/// Two hosts over one PostgreSQL database: a revoke through one is never answered "allowed" by the other.
#[tokio::test]
async fn a_revoke_through_one_host_is_seen_by_the_next_check_on_another() {
    let Some(t) = testing::postgres().await else { return };
    let a = Rebac::open(t.db.clone()).await.unwrap();
    let b = Rebac::open(t.db.clone()).await.unwrap();
    let tuple = Tuple::new("tool:billing.refund", "can_use", "agent:refunder");
    a.write("acme", &[tuple.clone()]).await.unwrap();
    assert!(b.check_now("acme", "agent:refunder", "can_use", "tool:billing.refund").await.unwrap(), "a write is seen");
    a.delete("acme", &[tuple.clone()]).await.unwrap();
    assert!(
        !b.check_now("acme", "agent:refunder", "can_use", "tool:billing.refund").await.unwrap(),
        "a revoke is seen"
    );

    // A model written through one host governs checks on the other.
    a.write_model("acme", MODEL).await.unwrap();
    a.write(
        "acme",
        &[Tuple::new("tool:x", "blocked", "agent:refunder"), Tuple::new("tool:x", "can_use", "agent:refunder")],
    )
    .await
    .unwrap();
    assert!(!b.check_now("acme", "agent:refunder", "can_use", "tool:x").await.unwrap(), "exclusion from A's model");
    assert_eq!(b.model("acme").map(|m| m.id), a.model("acme").map(|m| m.id));

    // A host that starts later sees everything, and syncing again changes nothing.
    let c = Rebac::open(t.db.clone()).await.unwrap();
    assert!(!c.check_now("acme", "agent:refunder", "can_use", "tool:x").await.unwrap());
    a.delete("acme", &[Tuple::new("tool:x", "blocked", "agent:refunder")]).await.unwrap();
    assert!(c.check_now("acme", "agent:refunder", "can_use", "tool:x").await.unwrap(), "un-blocking is seen too");
}

/// A store created and deleted through one host is seen so by another host on the same database.
#[tokio::test]
async fn stores_created_and_deleted_through_one_host_are_seen_by_another() {
    let Some(t) = testing::postgres().await else { return };
    let a = Rebac::open(t.db.clone()).await.unwrap();
    let b = Rebac::open(t.db.clone()).await.unwrap();
    let store = a.create_store("shared").await.unwrap();
    a.write(&store.id, &[Tuple::new("doc:1", "viewer", "user:x")]).await.unwrap();
    assert!(b.store_live(&store.id).await.unwrap(), "created elsewhere");
    assert!(b.check_now(&store.id, "user:x", "viewer", "doc:1").await.unwrap());
    assert!(a.delete_store(&store.id).await.unwrap());
    assert!(
        !b.check_now(&store.id, "user:x", "viewer", "doc:1").await.unwrap(),
        "deleted elsewhere: nothing is allowed"
    );
    assert!(!b.store_live(&store.id).await.unwrap());
}
