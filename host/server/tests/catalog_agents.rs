//! The catalog's agents (`marketplace/{contentbot,crm,code-review,incident}`) end to end: each
//! installed from its manifest, its connection slot filled with a local stand-in of the real
//! service, every tool called through the HTTP API with the agent's token, and both the answers
//! and what the service received checked.
//!
//! Provisioning goes through `support::catalog::install_catalog_agent` only, so that these
//! tests do not depend on how an agent gets installed.

mod support;

use std::time::Duration;

use serde_json::json;
use support::catalog::{catalog_manifest, install_catalog_agent};
use support::standins::{self, Calls};
use support::{spawn_call, wait_for_pending_of, TestHost};

const WP_TOKEN: &str = "wpcom_oauth_3b1f9d0c7e";
const HUBSPOT_TOKEN: &str = "pat-na1-7c0e5a12-4b6d-4f0e-9a3b-2d1c0e9f8a77";
const GITHUB_TOKEN: &str = "github_pat_11ABCDEFG0123456789_review";
const PAGERDUTY_KEY: &str = "u+Zx9Qf1Yb2-pdkey";

/// Every request the stand-in saw carried exactly `auth` as its `Authorization`.
fn all_authorized(calls: &Calls, auth: &str) {
    for seen in calls.all() {
        assert_eq!(seen.header("authorization"), Some(auth), "{}", seen.line());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_catalog_manifest_grants_exactly_its_components_tools_and_slots() {
    let t = TestHost::start_with(support::catalog_limits()).await;
    for name in ["contentbot", "crm", "code-review", "incident"] {
        let token = install_catalog_agent(&t, name).await;
        let m = catalog_manifest(name);
        let component = m["tools"][0]["component"].as_str().unwrap();
        assert_eq!(component, name, "the agent is named after its component");
        let mut offered: Vec<String> =
            t.host.installed.get("default", component).unwrap().tools.iter().map(|t| t.name.clone()).collect();
        let prefix = format!("tool:{component}.");
        let mut granted: Vec<String> = m["tuples"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["object"].as_str()?.strip_prefix(prefix.as_str()).map(str::to_string))
            .collect();
        offered.sort();
        granted.sort();
        assert_eq!(granted, offered, "{name}: the manifest grants exactly the component's tools");
        // The agent sees its tools, and only its own.
        let (status, listed) = t.request(reqwest::Method::GET, "/v1/tools", &token, None).await;
        assert_eq!(status, 200, "{listed}");
        let ids: Vec<&str> = listed["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(ids.len(), offered.len(), "{name}: {ids:?}");
        assert!(ids.iter().all(|id| id.starts_with(&format!("{component}."))), "{name}: {ids:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contentbot_drafts_on_its_own_and_publishes_only_after_a_marketing_lead_approves() {
    let t = TestHost::start_with(support::catalog_limits()).await;
    let token = install_catalog_agent(&t, "contentbot").await;
    let (wp, seen) = standins::wordpress(WP_TOKEN).await;
    t.fill_slot("contentbot", "blog", "bearer", wp, WP_TOKEN, None).await;
    // The tenant names the people: dana leads marketing, mike does not.
    t.grant(&[("user:dana", "marketing_lead", "tenant:default")]).await;
    let site = "blog.example.com";
    let posts = format!("/wp/v2/sites/{site}/posts");

    // A draft runs without anyone's approval.
    let (status, body) = t
        .call(
            &token,
            "contentbot.draft-post",
            json!({ "site": site, "title": "Spring launch", "content": "<p>Our spring release is here.</p>" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let draft = &body["result"];
    assert_eq!((draft["id"].as_u64(), draft["status"].as_str()), (Some(101), Some("draft")), "{draft}");
    assert_eq!(draft["link"], format!("https://{site}/?p=101"));
    let sent = seen.last().unwrap();
    assert_eq!(sent.line(), format!("POST {posts}"));
    assert_eq!(
        sent.json(),
        json!({ "title": "Spring launch", "content": "<p>Our spring release is here.</p>", "status": "draft" })
    );
    assert!(sent.header("content-type").unwrap().starts_with("application/json"));

    let (status, body) = t.call(&token, "contentbot.list-drafts", json!({ "site": site })).await;
    assert_eq!(status, 200, "{body}");
    let drafts = body["result"]["drafts"].as_array().unwrap();
    assert_eq!(drafts.len(), 1, "{body}");
    assert_eq!((drafts[0]["id"].as_u64(), drafts[0]["title"].as_str()), (Some(101), Some("Spring launch")));
    assert_eq!(seen.last().unwrap().line(), format!("GET {posts}?status=draft"));

    // Publishing waits for a marketing lead; WordPress sees nothing until then.
    let before = seen.count();
    let call = spawn_call(&t, &token, "contentbot.publish-post", json!({ "site": site, "post_id": 101 }));
    let asked = wait_for_pending_of(&t, "contentbot.publish-post").await;
    assert_eq!(asked["role"], "marketing_lead", "{asked}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!call.is_finished(), "the publication waits for the approval");
    assert_eq!(seen.count(), before, "nothing reached WordPress before the approval");
    let id = asked["id"].as_str().unwrap();
    assert_eq!(t.decide(id, "user:mike", true).await.0, 403, "only a marketing lead may approve");
    assert_eq!(seen.count(), before);
    let (status, decided) = t.decide(id, "user:dana", true).await;
    assert_eq!(status, 200, "{decided}");
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), call).await.unwrap().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["result"]["id"].as_u64(), body["result"]["status"].as_str()), (Some(101), Some("publish")));
    assert_eq!(body["result"]["link"], format!("https://{site}/2025/05/06/spring-launch/"));
    let published = seen.last().unwrap();
    assert_eq!(published.line(), format!("POST {posts}/101"));
    assert_eq!(published.json(), json!({ "status": "publish" }));

    // A second draft, whose publication the marketing lead refuses: no publish request at all.
    let (status, body) = t
        .call(&token, "contentbot.draft-post", json!({ "site": site, "title": "Leaked roadmap", "content": "Oops." }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["id"].as_u64(), Some(102));
    let before = seen.count();
    let call = spawn_call(&t, &token, "contentbot.publish-post", json!({ "site": site, "post_id": 102 }));
    let asked = wait_for_pending_of(&t, "contentbot.publish-post").await;
    let (status, decided) = t.decide(asked["id"].as_str().unwrap(), "user:dana", false).await;
    assert_eq!(status, 200, "{decided}");
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), call).await.unwrap().unwrap();
    assert_eq!((status, body["code"].as_str()), (403, Some("approval_denied")), "{body}");
    assert_eq!(seen.count(), before, "a denied publication never reaches WordPress");
    assert!(seen.lines().iter().all(|l| l != &format!("POST {posts}/102")));

    // A bad site name never leaves the sandbox.
    let (status, body) = t.call(&token, "contentbot.list-drafts", json!({ "site": "../../admin" })).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(seen.count(), before);

    all_authorized(&seen, &format!("Bearer {WP_TOKEN}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_finds_creates_and_updates_hubspot_contacts_and_explains_conflicts() {
    let t = TestHost::start_with(support::catalog_limits()).await;
    let token = install_catalog_agent(&t, "crm").await;
    let (api, seen) = standins::hubspot(HUBSPOT_TOKEN).await;
    t.fill_slot("crm", "hubspot", "bearer", api, HUBSPOT_TOKEN, None).await;

    // Find by email: HubSpot's search with an EQ filter on `email`.
    let (status, body) = t.call(&token, "crm.find-contact", json!({ "email": "Ada@Example.com" })).await;
    assert_eq!(status, 200, "{body}");
    let found = &body["result"];
    assert_eq!(found["found"], true, "{found}");
    assert_eq!(found["contact"]["id"], standins::HUBSPOT_SEEDED_ID);
    assert_eq!(found["contact"]["firstname"], "Ada");
    assert_eq!(found["contact"]["company"], "Analytical Engines");
    let search = seen.last().unwrap();
    assert_eq!(search.line(), "POST /crm/v3/objects/contacts/search");
    let sent = search.json();
    assert_eq!(
        sent["filterGroups"],
        json!([{ "filters": [{ "propertyName": "email", "operator": "EQ", "value": "ada@example.com" }] }])
    );
    for p in ["email", "firstname", "lastname", "company"] {
        assert!(sent["properties"].as_array().unwrap().contains(&json!(p)), "{sent}");
    }

    let (status, body) = t.call(&token, "crm.find-contact", json!({ "email": "nobody@example.com" })).await;
    assert_eq!((status, body["result"]["found"].as_bool()), (200, Some(false)), "{body}");

    // Create a new contact.
    let grace = json!({ "email": "grace@example.com", "firstname": "Grace", "lastname": "Hopper", "company": "Navy" });
    let (status, body) = t.call(&token, "crm.create-contact", grace.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["result"]["created"].as_bool(), body["result"]["contact"]["id"].as_str()),
        (Some(true), Some("1001"))
    );
    let created = seen.last().unwrap();
    assert_eq!(created.line(), "POST /crm/v3/objects/contacts");
    assert_eq!(created.json(), json!({ "properties": grace }));

    // A second contact with a known email: HubSpot's 409, explained with the existing id.
    let (status, body) = t.call(&token, "crm.create-contact", json!({ "email": "ada@example.com" })).await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("already exists (id 51)") && message.contains("update-contact"), "{message}");

    // Update by id.
    let (status, body) = t
        .call(&token, "crm.update-contact", json!({ "contact_id": "51", "properties": { "company": "Babbage & Co" } }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["contact"]["company"], "Babbage & Co");
    assert_eq!(body["result"]["contact"]["firstname"], "Ada");
    let patched = seen.last().unwrap();
    assert_eq!(patched.line(), "PATCH /crm/v3/objects/contacts/51");
    assert_eq!(patched.json(), json!({ "properties": { "company": "Babbage & Co" } }));

    // An unknown id: HubSpot's 404, explained.
    let (status, body) =
        t.call(&token, "crm.update-contact", json!({ "contact_id": "999", "properties": { "phone": "+1 555" } })).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("find-contact"), "{body}");
    assert_eq!(seen.last().unwrap().line(), "PATCH /crm/v3/objects/contacts/999");

    // Nothing path-like gets through as an id.
    let count = seen.count();
    let (status, _) =
        t.call(&token, "crm.update-contact", json!({ "contact_id": "51/../../x", "properties": { "a": "b" } })).await;
    assert_eq!(status, 400);
    assert_eq!(seen.count(), count);
    all_authorized(&seen, &format!("Bearer {HUBSPOT_TOKEN}"));

    // A revoked token: HubSpot's 401 becomes a refusal that says who fixes it.
    t.fill_slot("crm", "hubspot", "bearer", api, "pat-na1-revoked", None).await;
    let (status, body) = t.call(&token, "crm.find-contact", json!({ "email": "ada@example.com" })).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("refill the `crm/hubspot` connection"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_review_acts_only_on_repositories_the_tenant_lets_it_review() {
    let t = TestHost::start_with(support::catalog_limits()).await;
    let token = install_catalog_agent(&t, "code-review").await;
    let (api, seen) = standins::github(GITHUB_TOKEN).await;
    t.fill_slot("code-review", "github", "bearer", api, GITHUB_TOKEN, None).await;
    let pr = json!({ "owner": "acme", "repo": "widgets", "number": 42 });

    // Installed, but not yet allowed to review anything: refused before any request.
    let (status, body) = t.call(&token, "code-review.get-pull-request", pr.clone()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("`review` on `repository:acme/widgets`"), "{body}");
    assert_eq!(seen.count(), 0, "GitHub was not asked");

    // The tenant admin lets it review acme/widgets.
    t.grant(&[("agent:code-review", "review", "repository:acme/widgets")]).await;
    let (status, body) = t.call(&token, "code-review.get-pull-request", pr.clone()).await;
    assert_eq!(status, 200, "{body}");
    let got = &body["result"];
    assert_eq!(got["title"], "Fix the flux capacitor");
    assert_eq!((got["state"].as_str(), got["author"].as_str()), (Some("open"), Some("octocat")));
    assert_eq!((got["head"].as_str(), got["base"].as_str()), (Some("fix-flux"), Some("main")));
    assert_eq!((got["additions"].as_u64(), got["deletions"].as_u64()), (Some(13), Some(2)));
    assert_eq!(seen.last().unwrap().line(), "GET /repos/acme/widgets/pulls/42");

    let (status, body) = t.call(&token, "code-review.list-changed-files", pr.clone()).await;
    assert_eq!(status, 200, "{body}");
    let files = body["result"]["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().filter_map(|f| f["filename"].as_str()).collect();
    assert_eq!(names, vec!["src/flux.rs", "README.md"]);
    assert!(files[0]["patch"].as_str().unwrap().contains("1_210"));
    assert_eq!(seen.last().unwrap().line(), "GET /repos/acme/widgets/pulls/42/files?per_page=100");

    let mut review = pr.clone();
    review["body"] = json!("Looks right; one nit.");
    review["event"] = json!("COMMENT");
    review["comments"] = json!([{ "path": "src/flux.rs", "line": 2, "body": "Name the constant?" }]);
    let (status, body) = t.call(&token, "code-review.post-review", review.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["result"]["id"].as_u64(), body["result"]["state"].as_str()), (Some(80), Some("COMMENTED")));
    let posted = seen.last().unwrap();
    assert_eq!(posted.line(), "POST /repos/acme/widgets/pulls/42/reviews");
    assert_eq!(
        posted.json(),
        json!({ "body": "Looks right; one nit.", "event": "COMMENT",
                "comments": [{ "path": "src/flux.rs", "line": 2, "side": "RIGHT", "body": "Name the constant?" }] })
    );

    // GitHub's 422 (a comment on a file the pull request does not change), explained.
    review["comments"] = json!([{ "path": "src/other.rs", "line": 1, "body": "?" }]);
    let (status, body) = t.call(&token, "code-review.post-review", review).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("Path could not be resolved"), "{body}");

    // Every request carried what GitHub requires.
    for s in seen.all() {
        assert_eq!(s.header("authorization"), Some(format!("Bearer {GITHUB_TOKEN}").as_str()), "{}", s.line());
        assert_eq!(s.header("accept"), Some("application/vnd.github+json"));
        assert_eq!(s.header("x-github-api-version"), Some("2022-11-28"));
        assert!(s.header("user-agent").is_some_and(|ua| ua.starts_with("airlock-code-review")));
    }

    // Another repository of the same owner, which the token could read: refused, not asked.
    let count = seen.count();
    let (status, body) = t
        .call(&token, "code-review.get-pull-request", json!({ "owner": "acme", "repo": "secrets", "number": 7 }))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("repository:acme/secrets"), "{body}");
    // Nor smuggled through the names.
    for (owner, repo) in [("acme", "widgets/../secrets"), ("acme/secrets", "x"), ("acme", ".."), ("-acme", "widgets")] {
        let (status, body) =
            t.call(&token, "code-review.get-pull-request", json!({ "owner": owner, "repo": repo, "number": 7 })).await;
        assert_eq!(status, 400, "{owner}/{repo}: {body}");
    }
    assert_eq!(seen.count(), count, "GitHub saw nothing of the refused calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_lists_acknowledges_and_annotates_with_the_requester() {
    let t = TestHost::start_with(support::catalog_limits()).await;
    let token = install_catalog_agent(&t, "incident").await;
    let (api, seen) = standins::pagerduty(PAGERDUTY_KEY).await;
    // PagerDuty's `Authorization: Token token=KEY`, as the slot's description tells the admin.
    let placement = json!({ "in": "header", "name": "Authorization", "prefix": "Token token=" });
    t.fill_slot("incident", "pagerduty", "api_key", api, PAGERDUTY_KEY, Some(placement)).await;
    let me = standins::PAGERDUTY_USER;

    let (status, body) = t.call(&token, "incident.list-incidents", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let open: Vec<(&str, &str)> = body["result"]["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_str().unwrap(), i["status"].as_str().unwrap()))
        .collect();
    assert_eq!(open, vec![("PT4KHLK", "triggered"), ("PXP12GZ", "acknowledged")], "{body}");
    assert_eq!(body["result"]["incidents"][0]["service"], "Checkout API");
    let listed = seen.last().unwrap();
    assert_eq!((listed.method.as_str(), listed.path.as_str()), ("GET", "/incidents"));
    assert_eq!(
        listed.query_pairs(),
        vec![
            ("statuses[]".to_string(), "triggered".to_string()),
            ("statuses[]".to_string(), "acknowledged".to_string())
        ]
    );

    let (status, body) = t.call(&token, "incident.acknowledge", json!({ "incident_id": "PT4KHLK", "from": me })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["result"]["id"].as_str(), body["result"]["status"].as_str()),
        (Some("PT4KHLK"), Some("acknowledged"))
    );
    let ack = seen.last().unwrap();
    assert_eq!(ack.line(), "PUT /incidents/PT4KHLK");
    assert_eq!(ack.header("from"), Some(me));
    assert_eq!(ack.json(), json!({ "incident": { "type": "incident_reference", "status": "acknowledged" } }));

    let note = "Rolled back deploy 2025-05-06.3; error rate back to normal.";
    let (status, body) =
        t.call(&token, "incident.add-note", json!({ "incident_id": "PT4KHLK", "from": me, "content": note })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["result"]["note_id"].as_str(), body["result"]["user"].as_str()),
        (Some("PWL7QXS"), Some("Oscar Oncall"))
    );
    let noted = seen.last().unwrap();
    assert_eq!(noted.line(), "POST /incidents/PT4KHLK/notes");
    assert_eq!(noted.header("from"), Some(me));
    assert_eq!(noted.json(), json!({ "note": { "content": note } }));

    // PagerDuty's errors, explained: an unknown requester, an unknown incident.
    let (status, body) =
        t.call(&token, "incident.acknowledge", json!({ "incident_id": "PXP12GZ", "from": "eve@example.com" })).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("Requester User Not Found"), "{body}");
    let (status, body) = t.call(&token, "incident.acknowledge", json!({ "incident_id": "PNOPE00", "from": me })).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("list-incidents"), "{body}");

    // No header can be smuggled through `from`, no path through the id.
    let count = seen.count();
    for input in [
        json!({ "incident_id": "PT4KHLK", "from": "oscar@example.com\r\nX-Evil: 1" }),
        json!({ "incident_id": "PT4KHLK/../../users", "from": me }),
        json!({ "incident_id": "PT4KHLK" }),
    ] {
        let (status, body) = t.call(&token, "incident.acknowledge", input).await;
        assert_eq!(status, 400, "{body}");
    }
    assert_eq!(seen.count(), count);

    for s in seen.all() {
        assert_eq!(s.header("authorization"), Some(format!("Token token={PAGERDUTY_KEY}").as_str()), "{}", s.line());
        assert_eq!(s.header("accept"), Some("application/vnd.pagerduty+json;version=2"));
        assert!(s.header("content-type").is_some_and(|c| c.starts_with("application/json")));
    }
}
