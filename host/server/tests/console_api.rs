//! What the web console reads, over real HTTP: the audit trail searched, summarized per
//! minute and exported; the tenant's agents; an approver's queue as it changes (SSE).

// The helpers below (and the shared `support`) unwrap as the tests do: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use airlock_audit::AuditEvent;
use reqwest::Method;
use serde_json::{json, Value};
use support::TestHost;

/// Records `n` events straight into the default tenant's trail (as the gate would), committed.
async fn record(t: &TestHost, n: usize, make: impl Fn(usize) -> (&'static str, &'static str, String)) {
    for i in 0..n {
        let (kind, outcome, agent) = make(i);
        t.host.audit.record(AuditEvent {
            tenant: "default".into(),
            kind: kind.into(),
            outcome: outcome.into(),
            agent,
            tool: "hello.greet".into(),
            detail: json!({ "i": i }),
        });
    }
    t.host.audit.flush().await.unwrap();
}

fn seqs(events: &Value) -> Vec<i64> {
    events.as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_search_filters_pages_newest_first_and_refuses_what_it_does_not_know() {
    let t = TestHost::start().await;
    let greeter = t.agent("greeter").await;
    let other = t.agent("other").await;
    assert_eq!(t.call(&greeter, "hello.greet", json!({ "name": "Ada" })).await.0, 403);
    t.grant(&[("agent:greeter", "can_use", "tool:hello.greet")]).await;
    for name in ["Ada", "Grace", "Edsger", "Barbara", "Alan"] {
        assert_eq!(t.call(&greeter, "hello.greet", json!({ "name": name })).await.0, 200);
    }
    assert_eq!(t.call(&other, "hello.greet", json!({ "name": "Ada" })).await.0, 403);
    // No flush: the search itself includes everything recorded before it.

    // Everything, newest first, as the trail holds it.
    let (status, all) = t.admin_get("/v1/audit/search?limit=500").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["next_before"], Value::Null, "no more: {all}");
    let every = seqs(&all["events"]);
    assert!(every.windows(2).all(|w| w[0] > w[1]), "newest first: {every:?}");
    let trail = t.audit().await;
    assert_eq!(every.len(), trail.len());
    assert_eq!(all["events"][0], *trail.last().unwrap(), "the same stored events as /v1/audit");

    // The greeter's calls, two per page, followed back through `next_before`.
    let (mut pages, mut found, mut before) = (0, Vec::new(), None::<i64>);
    loop {
        let path = match before {
            Some(b) => format!("/v1/audit/search?agent=agent:greeter&kind=tool.call&limit=2&before={b}"),
            None => "/v1/audit/search?agent=agent:greeter&kind=tool.call&limit=2".to_string(),
        };
        let (status, page) = t.admin_get(&path).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let events = page["events"].as_array().unwrap();
        assert!(events.iter().all(|e| e["agent"] == "agent:greeter" && e["kind"] == "tool.call"), "{page}");
        found.extend(events.iter().map(|e| (e["seq"].as_i64().unwrap(), e["outcome"].as_str().unwrap().to_string())));
        match page["next_before"].as_i64() {
            Some(b) => {
                assert_eq!(Some(b), events.last().and_then(|e| e["seq"].as_i64()), "the last seq of the page");
                before = Some(b);
            }
            None => break,
        }
    }
    assert_eq!(pages, 3, "6 calls in pages of 2: {found:?}");
    let outcomes: Vec<&str> = found.iter().map(|(_, o)| o.as_str()).collect();
    assert_eq!(outcomes, ["allowed", "allowed", "allowed", "allowed", "allowed", "denied"]);
    assert!(found.windows(2).all(|w| w[0].0 > w[1].0));

    // Denials of any agent; an outcome and a tool together.
    let (_, denied) = t.admin_get("/v1/audit/search?outcome=denied&kind=tool.call").await;
    let agents: Vec<&str> = denied["events"].as_array().unwrap().iter().map(|e| e["agent"].as_str().unwrap()).collect();
    assert_eq!(agents, ["agent:other", "agent:greeter"], "{denied}");
    let (_, none) = t.admin_get("/v1/audit/search?outcome=denied&tool=nope.nothing").await;
    assert_eq!(none, json!({ "events": [], "next_before": null }));
    // An empty text filter is no filter; the tenant's own name is allowed (the door checks it).
    let (status, same) = t.admin_get("/v1/audit/search?limit=500&agent=&tenant=default").await;
    assert_eq!((status, seqs(&same["events"])), (200, every.clone()), "{same}");

    // Time window on `ts`: since inclusive, until exclusive.
    let first_call = trail.iter().find(|e| e["kind"] == "tool.call" && e["outcome"] == "allowed").unwrap();
    let ts = first_call["ts"].as_i64().unwrap();
    let (_, window) = t.admin_get(&format!("/v1/audit/search?kind=tool.call&since={ts}&until={}", ts + 1)).await;
    assert!(seqs(&window["events"]).contains(&first_call["seq"].as_i64().unwrap()), "{window}");
    assert!(window["events"].as_array().unwrap().iter().all(|e| e["ts"] == ts), "{window}");
    let (_, empty) = t.admin_get(&format!("/v1/audit/search?since={ts}&until={ts}")).await;
    assert_eq!(empty["events"], json!([]));

    // The limit is clamped to 1..=500 (default 50).
    let (_, one) = t.admin_get("/v1/audit/search?limit=0").await;
    assert_eq!(seqs(&one["events"]), [every[0]]);
    assert_eq!(one["next_before"], every[0]);
    record(&t, 600, |i| ("authz.check", "allowed", format!("agent:bulk{}", i % 3))).await;
    let (_, default) = t.admin_get("/v1/audit/search").await;
    assert_eq!(default["events"].as_array().unwrap().len(), 50);
    let (_, most) = t.admin_get("/v1/audit/search?limit=100000").await;
    assert_eq!(most["events"].as_array().unwrap().len(), 500);

    // What the route does not know, or a number that is not one: the API's 400.
    for bad in ["limit=ten", "since=yesterday", "before=-x", "colour=red", "after=3", "limit=1&limit=2"] {
        let (status, body) = t.admin_get(&format!("/v1/audit/search?{bad}")).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_request")), "{bad}: {body}");
        assert!(body["message"].is_string(), "{body}");
    }

    // Readers only: an auditor may, an approver may not; another tenant's admin sees its own.
    t.grant(&[("user:ivy", "auditor", "tenant:default"), ("user:carol", "cfo", "tenant:default")]).await;
    let ivy = t.member_token("user:ivy").await;
    let (status, body) = t.request(Method::GET, "/v1/audit/search?kind=tool.call", &ivy, None).await;
    assert_eq!((status, body["events"].as_array().map(Vec::len)), (200, Some(7)), "{body}");
    let carol = t.member_token("user:carol").await;
    assert_eq!(t.request(Method::GET, "/v1/audit/search", &carol, None).await.0, 403);
    let acme = t.tenant_admin("acme").await;
    let (status, body) = t.request(Method::GET, "/v1/audit/search?kind=tool.call", &acme, None).await;
    assert_eq!((status, &body["events"]), (200, &json!([])), "{body}");
    assert_eq!(t.request(Method::GET, "/v1/audit/search?tenant=default", &acme, None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_summary_counts_tool_calls_and_denials_per_minute_every_minute_present() {
    const MINUTE: i64 = 60_000;
    let t = TestHost::start().await;
    let greeter = t.agent("greeter").await;
    assert_eq!(t.call(&greeter, "hello.greet", json!({ "name": "Ada" })).await.0, 403);
    t.grant(&[("agent:greeter", "can_use", "tool:hello.greet")]).await;
    for _ in 0..3 {
        assert_eq!(t.call(&greeter, "hello.greet", json!({ "name": "Ada" })).await.0, 200);
    }

    let (status, s) = t.admin_get("/v1/audit/summary?minutes=5").await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["bucket_ms"], MINUTE);
    let buckets = s["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 5, "{s}");
    let since = s["since"].as_i64().unwrap();
    assert_eq!(since % MINUTE, 0, "buckets are whole minutes");
    for (i, b) in buckets.iter().enumerate() {
        assert_eq!(b["start"].as_i64(), Some(since + i as i64 * MINUTE), "oldest first, every minute: {s}");
    }
    let now = airlock_store::now_millis();
    let last = buckets[4]["start"].as_i64().unwrap();
    assert!(last <= now && now < last + MINUTE, "the last bucket is the minute under way: {s}");
    // 4 calls (one denied); agent.create, tuples.write and the like are no calls.
    assert_eq!(s["totals"], json!({ "calls": 4, "denials": 1 }), "{s}");
    let sum = |key: &str| buckets.iter().map(|b| b[key].as_i64().unwrap()).sum::<i64>();
    assert_eq!((sum("calls"), sum("denials")), (4, 1));

    // Older calls land in their minute; those before the window are not counted.
    let ago = |minutes: i64| now - minutes * MINUTE;
    for (minutes_ago, outcome) in [(3, "denied"), (3, "allowed"), (3, "failed"), (30, "denied")] {
        t.host.audit.record(AuditEvent {
            tenant: "default".into(),
            kind: "tool.call".into(),
            outcome: outcome.into(),
            agent: "agent:greeter".into(),
            tool: "hello.greet".into(),
            detail: json!({}),
        });
        t.host.audit.flush().await.unwrap();
        let (seq,): (i64,) =
            airlock_store::sqlx::query_as("SELECT MAX(seq) FROM audit_events WHERE tenant = 'default'")
                .fetch_one(t.host.db.pool())
                .await
                .unwrap();
        airlock_store::sqlx::query("UPDATE audit_events SET ts = $1 WHERE tenant = 'default' AND seq = $2")
            .bind(ago(minutes_ago))
            .bind(seq)
            .execute(t.host.db.pool())
            .await
            .unwrap();
    }
    let (_, s) = t.admin_get("/v1/audit/summary?minutes=5").await;
    assert_eq!(s["totals"], json!({ "calls": 7, "denials": 2 }), "{s}");
    let three_ago = ago(3) / MINUTE * MINUTE;
    let bucket = s["buckets"].as_array().unwrap().iter().find(|b| b["start"] == three_ago).unwrap().clone();
    assert_eq!(bucket, json!({ "start": three_ago, "calls": 3, "denials": 1 }), "{s}");
    let (_, s) = t.admin_get("/v1/audit/summary?minutes=60").await;
    assert_eq!((s["buckets"].as_array().unwrap().len(), &s["totals"]), (60, &json!({ "calls": 8, "denials": 3 })));
    // 60 by default; clamped to 1..=1440.
    let (_, s) = t.admin_get("/v1/audit/summary").await;
    assert_eq!(s["buckets"].as_array().unwrap().len(), 60);
    let (_, s) = t.admin_get("/v1/audit/summary?minutes=0").await;
    assert_eq!(s["buckets"].as_array().unwrap().len(), 1);

    // Stays fast over a busy day: 12,000 calls, grouped by the database.
    record(&t, 12_000, |i| ("tool.call", if i % 4 == 0 { "denied" } else { "allowed" }, "agent:busy".into())).await;
    let started = Instant::now();
    let (status, s) = t.admin_get("/v1/audit/summary?minutes=99999").await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["buckets"].as_array().unwrap().len(), 1440);
    assert_eq!(s["totals"], json!({ "calls": 12_000 + 8, "denials": 3_000 + 3 }));
    eprintln!("summary over 12,000+ events: {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");

    for bad in ["minutes=an-hour", "minutes=5&kind=tool.call"] {
        let (status, body) = t.admin_get(&format!("/v1/audit/summary?{bad}")).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_request")), "{bad}: {body}");
    }
    t.grant(&[("user:carol", "cfo", "tenant:default")]).await;
    let carol = t.member_token("user:carol").await;
    assert_eq!(t.request(Method::GET, "/v1/audit/summary", &carol, None).await.0, 403);
}

/// `GET path` as the admin: status, headers and the body's lines.
async fn download(t: &TestHost, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<Value>) {
    let resp = reqwest::Client::new().get(format!("{}{path}", t.url)).bearer_auth(&t.admin).send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let text = resp.text().await.unwrap();
    let lines = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    (status, headers, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_export_streams_the_whole_matching_trail_oldest_first_as_json_lines() {
    let t = TestHost::start().await;
    // More than two pages of 1000.
    record(&t, 2_500, |i| ("tool.call", if i % 5 == 0 { "denied" } else { "allowed" }, format!("agent:a{}", i % 2)))
        .await;
    let head = t.host.audit.head("default").await.unwrap();

    let (status, headers, lines) = download(&t, "/v1/audit/export").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/x-ndjson");
    assert_eq!(headers["content-disposition"], "attachment; filename=\"audit-default.jsonl\"");
    let exported: Vec<i64> = lines.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(exported, (1..=head).collect::<Vec<_>>(), "the whole trail, oldest first, once each");
    // Each line is a stored event, as /v1/audit gives it, hash and link included.
    let (_, page) = t.admin_get("/v1/audit?limit=3").await;
    assert_eq!(lines[..3], page["events"].as_array().unwrap()[..]);
    assert!(lines.windows(2).all(|w| w[1]["prev_hash"] == w[0]["hash"]));

    // The same filters as search.
    let (_, _, denied) = download(&t, "/v1/audit/export?agent=agent:a0&outcome=denied").await;
    assert_eq!(denied.len(), 250);
    assert!(denied.iter().all(|e| e["agent"] == "agent:a0" && e["outcome"] == "denied"));
    assert!(denied.windows(2).all(|w| w[0]["seq"].as_i64() < w[1]["seq"].as_i64()));
    let (_, _, range) = download(&t, "/v1/audit/export?after=10&before=15").await;
    assert_eq!(range.iter().map(|e| e["seq"].as_i64().unwrap()).collect::<Vec<_>>(), [11, 12, 13, 14]);
    let (_, _, none) = download(&t, "/v1/audit/export?kind=nothing.here").await;
    assert!(none.is_empty());

    let resp = reqwest::Client::new()
        .get(format!("{}/v1/audit/export?limit=5", t.url))
        .bearer_auth(&t.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "invalid_request", "{body}");
    t.grant(&[("user:carol", "cfo", "tenant:default"), ("user:ivy", "auditor", "tenant:default")]).await;
    let carol = t.member_token("user:carol").await;
    assert_eq!(t.request(Method::GET, "/v1/audit/export", &carol, None).await.0, 403);
    let ivy = t.member_token("user:ivy").await;
    let resp = reqwest::Client::new().get(format!("{}/v1/audit/export", t.url)).bearer_auth(&ivy).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().lines().count() as i64 > head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_listed_newest_first_live_or_revoked_with_their_package() {
    let t = TestHost::start_with(support::catalog_limits()).await;
    t.agent("first").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    t.agent("second").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    support::catalog::install_catalog_agent(&t, "offboarding").await;
    let (status, _) = t.request(Method::DELETE, "/v1/agents/first", &t.admin, None).await;
    assert_eq!(status, 200);
    let acme = t.tenant_admin("acme").await;
    let (status, _) = t.request(Method::POST, "/v1/agents", &acme, Some(json!({ "name": "elsewhere" }))).await;
    assert_eq!(status, 201);

    let (status, body) = t.admin_get("/v1/agents").await;
    assert_eq!(status, 200, "{body}");
    let agents = body["agents"].as_array().unwrap();
    let names: Vec<&str> = agents.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["offboarding", "second", "first"], "newest first, this tenant's only: {body}");
    let [offboarding, second, first] = &agents[..] else { unreachable!() };
    assert_eq!(first["subject"], "agent:first");
    assert_eq!((&first["live"], first["revoked_at"].is_i64()), (&json!(false), true), "{first}");
    assert_eq!(
        (&second["live"], &second["revoked_at"], &second["package"]),
        (&json!(true), &Value::Null, &Value::Null)
    );
    assert!(second["created_at"].as_i64().unwrap() < offboarding["created_at"].as_i64().unwrap());
    let package = &offboarding["package"];
    assert_eq!(package["name"], "offboarding", "{offboarding}");
    assert!(package["version"].is_string() && package["publisher"].is_string() && package["installed_at"].is_i64());
    assert!(!body.to_string().contains("alk_") && !body.to_string().contains("token_hash"), "never a token");

    // Re-creating a revoked name makes it the newest, live again.
    tokio::time::sleep(Duration::from_millis(5)).await;
    t.agent("first").await;
    let (_, body) = t.admin_get("/v1/agents").await;
    assert_eq!(body["agents"][0]["name"], "first");
    assert_eq!((&body["agents"][0]["live"], &body["agents"][0]["revoked_at"]), (&json!(true), &Value::Null));

    // Readers: an auditor may, an approver may not.
    t.grant(&[("user:ivy", "auditor", "tenant:default"), ("user:carol", "cfo", "tenant:default")]).await;
    let ivy = t.member_token("user:ivy").await;
    let (status, body) = t.request(Method::GET, "/v1/agents", &ivy, None).await;
    assert_eq!((status, body["agents"].as_array().map(Vec::len)), (200, Some(3)), "{body}");
    let carol = t.member_token("user:carol").await;
    assert_eq!(t.request(Method::GET, "/v1/agents", &carol, None).await.0, 403);
    let (_, theirs) = t.request(Method::GET, "/v1/agents", &acme, None).await;
    assert_eq!(theirs["agents"].as_array().unwrap().len(), 1, "{theirs}");
}

// ---- the approvals stream ----------------------------------------------------------------------

/// Opens `GET /v1/approvals/events` with `token`.
async fn open_approvals(t: &TestHost, token: &str, last_event_id: Option<&str>) -> Stream {
    let mut req = reqwest::Client::new().get(format!("{}/v1/approvals/events", t.url)).bearer_auth(token);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    Stream { resp, buf: String::new() }
}

/// The agent asks ahead for an approval of `hello.greet`; returns it.
async fn ask(t: &TestHost, agent: &str) -> Value {
    let body = json!({ "tool": "hello.greet", "input": { "name": "Ada" } });
    let (status, a) = t.request(Method::POST, "/v1/approvals", agent, Some(body)).await;
    assert_eq!(status, 201, "{a}");
    a
}

/// An open event stream and what was read of it but not yet parsed.
struct Stream {
    resp: reqwest::Response,
    buf: String,
}

/// The next SSE frames of `stream` within `wait`, up to `n`.
async fn frames(stream: &mut Stream, n: usize, wait: Duration) -> Vec<(String, String, Value)> {
    support::sse_frames(&mut stream.resp, &mut stream.buf, n, wait).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_stream_shows_each_member_the_approvals_it_may_see_as_they_change() {
    let t = TestHost::start().await;
    let agent = t.agent("payer").await;
    t.grant(&[
        ("agent:payer", "can_use", "tool:hello.greet"),
        ("user:carol", "cfo", "tenant:default"),
        ("user:dave", "dpo", "tenant:default"),
    ])
    .await;
    t.policy("hello.greet", "cfo", 600).await;
    // Asked before the streams open: not shown (they start with what happens next).
    let earlier = ask(&t, &agent).await;
    t.host.flush().await;

    let (status, made) =
        t.admin_post("/v1/tokens", json!({ "name": "carol-console", "as_member": "user:carol" })).await;
    assert_eq!(status, 201, "{made}");
    let carol = made["token"].as_str().unwrap().to_string();
    let dave = t.member_token("user:dave").await;
    let mut carol_sees = open_approvals(&t, &carol, None).await;
    let mut dave_sees = open_approvals(&t, &dave, None).await;
    let mut admin_sees = open_approvals(&t, &t.admin, None).await;

    // A request for a cfo: carol (cfo) and the admin see it, as GET /v1/approvals/{id} shows it.
    let asked = ask(&t, &agent).await;
    let id = asked["id"].as_str().unwrap();
    let seen = frames(&mut carol_sees, 1, Duration::from_secs(10)).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (seq, kind, approval) = &seen[0];
    assert_eq!(
        (kind.as_str(), approval["id"].as_str(), approval["status"].as_str()),
        ("approval", Some(id), Some("pending"))
    );
    let (_, got) = t.request(Method::GET, &format!("/v1/approvals/{id}"), &carol, None).await;
    assert_eq!(*approval, got);
    let trail = t.audit().await;
    let request = trail.iter().find(|e| e["kind"] == "approval.request" && e["detail"]["approval_id"] == id).unwrap();
    assert_eq!(seq, &request["seq"].to_string(), "the id is the audit event's seq");
    let admin_seen = frames(&mut admin_sees, 1, Duration::from_secs(10)).await;
    assert_eq!(admin_seen[0].2["id"], id);

    // Carol decides (a denial needs no passkey): she and the admin see it change.
    let (status, body) = t
        .request(
            Method::POST,
            &format!("/v1/approvals/{id}/decision"),
            &carol,
            Some(json!({ "approve": false, "reason": "not today" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let seen = frames(&mut carol_sees, 1, Duration::from_secs(10)).await;
    assert_eq!((seen[0].2["id"].as_str(), seen[0].2["status"].as_str()), (Some(id), Some("denied")), "{seen:?}");
    assert!(seen[0].0.parse::<i64>().unwrap() > seq.parse::<i64>().unwrap());
    let admin_seen = frames(&mut admin_sees, 1, Duration::from_secs(10)).await;
    assert_eq!(admin_seen[0].2["status"], "denied");

    // Dave holds no cfo role: nothing of it reached him.
    let dave_seen = frames(&mut dave_sees, 1, Duration::from_millis(1500)).await;
    assert!(dave_seen.is_empty(), "{dave_seen:?}");

    // Reconnecting with Last-Event-ID resumes right after it (the approval as it is now).
    let mut resumed = open_approvals(&t, &carol, Some(seq)).await;
    let again = frames(&mut resumed, 1, Duration::from_secs(10)).await;
    assert_eq!((again[0].2["id"].as_str(), again[0].2["status"].as_str()), (Some(id), Some("denied")));
    assert!(again[0].0.parse::<i64>().unwrap() > seq.parse::<i64>().unwrap());
    // From the start of the trail: the earlier request too.
    let mut from_start = open_approvals(&t, &carol, Some("0")).await;
    let all = frames(&mut from_start, 1, Duration::from_secs(10)).await;
    assert_eq!(all[0].2["id"], earlier["id"]);

    // Revoking the stream's token ends it at its next news.
    let (status, _) = t.request(Method::DELETE, "/v1/tokens/carol-console", &t.admin, None).await;
    assert_eq!(status, 200);
    ask(&t, &agent).await;
    let admin_seen = frames(&mut admin_sees, 1, Duration::from_secs(10)).await;
    assert_eq!(admin_seen.len(), 1, "the admin's stream goes on");
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match carol_sees.resp.chunk().await {
                Ok(Some(chunk)) => assert!(!String::from_utf8_lossy(&chunk).contains("data:"), "nothing more is sent"),
                _ => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the revoked token's stream ended");

    // A Last-Event-ID that is no sequence number is a 400; no token is a 401.
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/approvals/events", t.url))
        .bearer_auth(&t.admin)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = reqwest::Client::new().get(format!("{}/v1/approvals/events", t.url)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

// ---- the same reads on PostgreSQL ------------------------------------------------------------

/// A new, empty PostgreSQL database, when the test server is configured.
async fn fresh_postgres(prefix: &str) -> Option<String> {
    let server = airlock_store::testing::postgres_server_url()?;
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let admin = airlock_store::Db::connect_without_migrations(&server).await.unwrap();
    airlock_store::sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin.pool()).await.unwrap();
    Some(airlock_store::testing::with_database(&server, &name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_summary_export_and_agents_answer_the_same_on_postgresql() {
    let Some(url) = fresh_postgres("airlock_console").await else { return };
    let tmp = tempfile::tempdir().unwrap();
    let t = TestHost::start_in(tmp.path().to_path_buf(), Some(url), support::test_limits()).await;
    let greeter = t.agent("greeter").await;
    assert_eq!(t.call(&greeter, "hello.greet", json!({ "name": "Ada" })).await.0, 403);
    t.grant(&[("agent:greeter", "can_use", "tool:hello.greet")]).await;
    for _ in 0..3 {
        assert_eq!(t.call(&greeter, "hello.greet", json!({ "name": "Ada" })).await.0, 200);
    }
    t.agent("gone").await;
    assert_eq!(t.request(Method::DELETE, "/v1/agents/gone", &t.admin, None).await.0, 200);

    let (status, page) = t.admin_get("/v1/audit/search?agent=agent:greeter&kind=tool.call&limit=3").await;
    assert_eq!(status, 200, "{page}");
    let outcomes: Vec<&str> =
        page["events"].as_array().unwrap().iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["allowed", "allowed", "allowed"]);
    let before = page["next_before"].as_i64().expect("one more");
    let (_, rest) = t.admin_get(&format!("/v1/audit/search?agent=agent:greeter&kind=tool.call&before={before}")).await;
    assert_eq!((rest["events"][0]["outcome"].as_str(), &rest["next_before"]), (Some("denied"), &Value::Null), "{rest}");
    let ts = rest["events"][0]["ts"].as_i64().unwrap();
    let (_, window) = t.admin_get(&format!("/v1/audit/search?outcome=denied&since={ts}&until={}", ts + 1)).await;
    assert_eq!(window["events"].as_array().unwrap().len(), 1, "{window}");

    let (status, s) = t.admin_get("/v1/audit/summary?minutes=10").await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(
        (s["buckets"].as_array().unwrap().len(), &s["totals"]),
        (10, &json!({ "calls": 4, "denials": 1 })),
        "{s}"
    );

    let (status, _, lines) = download(&t, "/v1/audit/export?kind=tool.call").await;
    assert_eq!(status, 200);
    assert_eq!(lines.len(), 4);
    assert!(lines.windows(2).all(|w| w[0]["seq"].as_i64() < w[1]["seq"].as_i64()));

    let (_, agents) = t.admin_get("/v1/agents").await;
    let shown: Vec<(&str, bool)> = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["live"].as_bool().unwrap()))
        .collect();
    assert_eq!(shown, [("gone", false), ("greeter", true)], "{agents}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_approvers_stream_leaves_the_idle_clock_alone_and_ends_at_sign_out() {
    let t = TestHost::start().await;
    let agent = t.agent("payer").await;
    t.grant(&[("agent:payer", "can_use", "tool:hello.greet"), ("user:erin", "cfo", "tenant:default")]).await;
    t.policy("hello.greet", "cfo", 600).await;
    let (status, inv) = t.admin_post("/v1/invitations", json!({ "member": "user:erin" })).await;
    assert_eq!(status, 201, "{inv}");
    let browser = t.register_from(inv["invitation"]["code"].as_str().unwrap(), "default", "user:erin").await;
    t.host.flush().await;

    // The console opens the stream with the session cookie, as a page's EventSource does.
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/approvals/events", t.url))
        .header(reqwest::header::COOKIE, &browser.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut erin_sees = Stream { resp, buf: String::new() };
    let last_seen = || async {
        let (at,): (i64,) =
            airlock_store::sqlx::query_as("SELECT last_seen_at FROM sessions WHERE member = 'user:erin'")
                .fetch_one(t.host.db.pool())
                .await
                .unwrap();
        at
    };
    let before = last_seen().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let asked = ask(&t, &agent).await;
    let seen = frames(&mut erin_sees, 1, Duration::from_secs(10)).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!((seen[0].1.as_str(), &seen[0].2["id"]), ("approval", &asked["id"]));
    assert_eq!(last_seen().await, before, "news on an open tab is no use of the session");

    // Signing out ends the stream at its next news.
    let (status, body) = browser.send(Method::POST, "/v1/signout", None, true).await;
    assert_eq!(status, 200, "{body}");
    ask(&t, &agent).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match erin_sees.resp.chunk().await {
                Ok(Some(chunk)) => assert!(!String::from_utf8_lossy(&chunk).contains("data:"), "nothing more is sent"),
                _ => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the signed-out session's stream ended");
}
