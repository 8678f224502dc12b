//! In-process check latency of the authorization engine, through `Rebac` (the
//! path the gate and the `authz` import take), on stores of 10^4 and 10^6
//! tuples (SQLite in a temp dir, mirrored in memory as in production).
//!
//! Cases: a direct tuple, a 2-level userset chain, a 3-level tuple-to-userset
//! chain, an exclusion; and list-objects over 10^4 documents.
//!
//! Run: `cargo bench -p airlock-rebac --bench check` (AIRLOCK_BENCH_SIZES=10000,1000000 by default).

use std::time::{Duration, Instant};

use airlock_rebac::{Rebac, Tuple};
use airlock_store::Db;

const MODEL: &str = "model
  schema 1.1
type user
type group
  relations
    define member: [user, group#member]
type folder
  relations
    define parent: [folder]
    define viewer: [user, group#member] or viewer from parent
type document
  relations
    define parent: [folder]
    define blocked: [user]
    define viewer: [user, group#member] or viewer from parent
    define editor: [user] but not blocked
";

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |p: f64| v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

fn measure(rebac: &Rebac, object: &str, relation: &str, user: &str, expect: bool) -> (f64, f64) {
    assert_eq!(rebac.check("bench", user, relation, object).expect("check"), expect, "{object} {relation} {user}");
    for _ in 0..1000 {
        let _ = rebac.check("bench", user, relation, object);
    }
    let mut lat = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let t = Instant::now();
        let _ = std::hint::black_box(rebac.check("bench", user, relation, object));
        lat.push(t.elapsed());
    }
    percentiles(lat)
}

fn main() {
    let sizes: Vec<usize> = std::env::var("AIRLOCK_BENCH_SIZES")
        .unwrap_or_else(|_| "10000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    println!("{:<10} {:<28} {:>9} {:>9}", "tuples", "case", "p50 us", "p99 us");
    for size in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let rebac = rt.block_on(async {
            let db = Db::connect(&Db::sqlite_url(dir.path())).await.expect("db");
            let rebac = Rebac::open(db).await.expect("rebac");
            rebac.write_model("bench", MODEL).await.expect("model");
            let fixed = vec![
                Tuple::new("document:target", "viewer", "user:direct"),
                Tuple::new("document:target", "viewer", "group:outer#member"),
                Tuple::new("group:outer", "member", "group:inner#member"),
                Tuple::new("group:inner", "member", "user:nested"),
                Tuple::new("document:target", "parent", "folder:f1"),
                Tuple::new("folder:f1", "parent", "folder:f2"),
                Tuple::new("folder:f2", "parent", "folder:f3"),
                Tuple::new("folder:f3", "viewer", "user:inherited"),
                Tuple::new("document:target", "editor", "user:editor"),
                Tuple::new("document:target", "blocked", "user:someone-else"),
            ];
            rebac.write("bench", &fixed).await.expect("fixed tuples");
            let start = Instant::now();
            let filler = size.saturating_sub(fixed.len());
            let mut batch = Vec::with_capacity(10_000);
            for i in 0..filler {
                // Spread over 10^4 documents and many users, like a real tenant.
                batch.push(Tuple::new(format!("document:d{}", i % 10_000), "viewer", format!("user:u{i}")));
                if batch.len() == 10_000 {
                    rebac.write("bench", &batch).await.expect("filler");
                    batch.clear();
                }
            }
            rebac.write("bench", &batch).await.expect("filler");
            eprintln!("loaded {size} tuples in {:?}", start.elapsed());
            rebac
        });
        let cases = [
            ("direct tuple", "document:target", "viewer", "user:direct", true),
            ("userset chain (2 levels)", "document:target", "viewer", "user:nested", true),
            ("tuple-to-userset (3 levels)", "document:target", "viewer", "user:inherited", true),
            ("exclusion", "document:target", "editor", "user:editor", true),
            ("denied (full search)", "document:target", "viewer", "user:stranger", false),
        ];
        for (name, object, relation, user, expect) in cases {
            let (p50, p99) = measure(&rebac, object, relation, user, expect);
            println!("{size:<10} {name:<28} {p50:>9.2} {p99:>9.2}");
        }
        // List-objects over the 10^4 documents.
        let mut lat = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let found = rebac.list_objects("bench", "user:u7", "viewer", "document").expect("list");
            lat.push(t.elapsed());
            assert_eq!(found, vec!["document:d7".to_string()]);
        }
        let (p50, p99) = percentiles(lat);
        println!("{size:<10} {:<28} {p50:>9.0} {p99:>9.0}", "list-objects (10^4 docs)");
    }
}
