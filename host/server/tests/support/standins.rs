//! Local stand-ins for the services the catalog's agents talk to: WordPress.com, HubSpot,
//! GitHub and PagerDuty. Each listens on `127.0.0.1:0`, checks the real request shapes (the
//! exact credential header, the headers each service requires, methods, paths, JSON bodies),
//! answers with realistic JSON and the service's own error shapes, and records every request
//! (authorized or not) for the tests to assert on.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;
use serde_json::{json, Value};

/// One request a stand-in received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Headers, names lower-case (the last value of a repeated header).
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Seen {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// `METHOD /path` or `METHOD /path?query`.
    pub fn line(&self) -> String {
        match &self.query {
            Some(q) => format!("{} {}?{q}", self.method, self.path),
            None => format!("{} {}", self.method, self.path),
        }
    }

    /// The decoded query parameters, in order (`statuses[]` appears once per value).
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query.as_deref().map(decode_query).unwrap_or_default()
    }
}

/// Everything a stand-in received, in order.
#[derive(Debug, Default, Clone)]
pub struct Calls {
    requests: Arc<Mutex<Vec<Seen>>>,
}

impl Calls {
    pub fn all(&self) -> Vec<Seen> {
        self.requests.lock().unwrap().clone()
    }

    /// `METHOD /path[?query]` of every request, in order.
    pub fn lines(&self) -> Vec<String> {
        self.all().iter().map(Seen::line).collect()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// The last request, if any.
    pub fn last(&self) -> Option<Seen> {
        self.requests.lock().unwrap().last().cloned()
    }

    pub fn clear(&self) {
        self.requests.lock().unwrap().clear();
    }
}

type Answer = (u16, Value);
type Shared<T> = Arc<Mutex<T>>;
type Handler = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

/// Serves `handler` on a fresh loopback port, recording every request before it answers.
async fn serve(handler: Handler) -> (SocketAddr, Calls) {
    let calls = Calls::default();
    let rec = calls.clone();
    let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: String| {
        let (rec, handler) = (rec.clone(), handler.clone());
        async move {
            let seen = Seen {
                method: method.to_string(),
                path: uri.path().to_string(),
                query: uri.query().map(str::to_string),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).to_string()))
                    .collect(),
                body,
            };
            rec.requests.lock().unwrap().push(seen.clone());
            let (status, body) = handler(&seen);
            (
                StatusCode::from_u16(status).unwrap(),
                [("content-type", "application/json; charset=utf-8")],
                body.to_string(),
            )
                .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, calls)
}

fn decode_query(q: &str) -> Vec<(String, String)> {
    fn unescape(s: &str) -> String {
        let s = s.replace('+', " ");
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                if let Some(b) =
                    std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).to_string()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (unescape(k), unescape(v)),
            None => (unescape(p), String::new()),
        })
        .collect()
}

/// The path's segments after splitting on `/` (a leading `/` gives no empty first segment).
fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('/').split('/').collect()
}

fn is_json(seen: &Seen) -> bool {
    seen.header("content-type").is_some_and(|c| c.starts_with("application/json"))
}

const NOW: &str = "2025-05-06T09:30:00Z";

// ---- WordPress.com (REST API v2) ---------------------------------------------------------

/// A WordPress.com stand-in for `/wp/v2/sites/{site}/posts` (create, list by status, update),
/// demanding `Authorization: Bearer {token}`. Post ids start at 101. Errors are WordPress's
/// `{code, message, data: {status}}`: 401 `rest_not_logged_in`, 400 `rest_invalid_param`,
/// 404 `rest_post_invalid_id` / `rest_no_route`.
pub async fn wordpress(token: &str) -> (SocketAddr, Calls) {
    let expected = format!("Bearer {token}");
    // site -> posts (id, title, content, status)
    let posts: Shared<Vec<(String, Value)>> = Default::default();
    let next = Arc::new(Mutex::new(101u64));
    let error = |status: u16, code: &str, message: &str| {
        (status, json!({ "code": code, "message": message, "data": { "status": status } }))
    };
    serve(Arc::new(move |seen: &Seen| {
        if seen.header("authorization") != Some(expected.as_str()) {
            return error(401, "rest_not_logged_in", "You are not currently logged in.");
        }
        let parts = segments(&seen.path);
        let (site, rest) = match parts.as_slice() {
            ["wp", "v2", "sites", site, "posts", rest @ ..] if !site.is_empty() => (site.to_string(), rest.to_vec()),
            _ => return error(404, "rest_no_route", "No route was found matching the URL and request method."),
        };
        let post_json = |id: u64, p: &Value| {
            let status = p["status"].as_str().unwrap_or("draft");
            let slug = p["title"].as_str().unwrap_or("").to_lowercase().replace(' ', "-");
            let link = if status == "publish" {
                format!("https://{site}/2025/05/06/{slug}/")
            } else {
                format!("https://{site}/?p={id}")
            };
            json!({ "id": id, "date": NOW, "modified": NOW, "slug": slug, "status": status, "type": "post",
                    "link": link, "author": 7,
                    "title": { "raw": p["title"], "rendered": p["title"] },
                    "content": { "raw": p["content"], "rendered": format!("<p>{}</p>\n", p["content"].as_str().unwrap_or("")),
                                 "protected": false } })
        };
        let mut store = posts.lock().unwrap();
        match (seen.method.as_str(), rest.as_slice()) {
            ("POST", []) => {
                let body = seen.json();
                if !is_json(seen) || !body.is_object() {
                    return error(400, "rest_invalid_json", "Invalid JSON body passed.");
                }
                let (Some(_), Some(_)) = (body["title"].as_str(), body["content"].as_str()) else {
                    return error(400, "rest_invalid_param", "Invalid parameter(s): title, content");
                };
                if !matches!(body["status"].as_str(), Some("draft" | "publish" | "pending" | "private" | "future")) {
                    return error(400, "rest_invalid_param", "Invalid parameter(s): status");
                }
                let id = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let mut post = body.clone();
                post["id"] = json!(id);
                store.push((site.clone(), post.clone()));
                (201, post_json(id, &post))
            }
            ("GET", []) => {
                let status = seen
                    .query_pairs()
                    .into_iter()
                    .find(|(k, _)| k == "status")
                    .map(|(_, v)| v)
                    .unwrap_or_else(|| "publish".into());
                let list: Vec<Value> = store
                    .iter()
                    .filter(|(s, p)| *s == site && p["status"] == status.as_str())
                    .map(|(_, p)| post_json(p["id"].as_u64().unwrap(), p))
                    .collect();
                (200, Value::Array(list))
            }
            ("POST" | "PUT" | "PATCH", [id]) => {
                let Some(id) = id.parse::<u64>().ok() else {
                    return error(404, "rest_no_route", "No route was found matching the URL and request method.");
                };
                let body = seen.json();
                if !is_json(seen) || !body.is_object() {
                    return error(400, "rest_invalid_json", "Invalid JSON body passed.");
                }
                let Some(post) = store.iter_mut().find(|(s, p)| *s == site && p["id"] == id).map(|(_, p)| p) else {
                    return error(404, "rest_post_invalid_id", "Invalid post ID.");
                };
                if let Some(status) = body.get("status") {
                    if !matches!(status.as_str(), Some("draft" | "publish" | "pending" | "private" | "future")) {
                        return error(400, "rest_invalid_param", "Invalid parameter(s): status");
                    }
                    post["status"] = status.clone();
                }
                for key in ["title", "content"] {
                    if let Some(v) = body.get(key) {
                        post[key] = v.clone();
                    }
                }
                let post = post.clone();
                (200, post_json(id, &post))
            }
            _ => error(404, "rest_no_route", "No route was found matching the URL and request method."),
        }
    }))
    .await
}

// ---- HubSpot (CRM v3 contacts) -----------------------------------------------------------

/// The contact the HubSpot stand-in starts with: id `51`, `ada@example.com`.
pub const HUBSPOT_SEEDED_ID: &str = "51";
pub const HUBSPOT_SEEDED_EMAIL: &str = "ada@example.com";

/// A HubSpot stand-in for `/crm/v3/objects/contacts` (search, create, update), demanding
/// `Authorization: Bearer {token}`. Starts with contact 51 (`ada@example.com`). Errors are
/// HubSpot's `{status: "error", message, correlationId, category}`: 401
/// `INVALID_AUTHENTICATION`, 400 `VALIDATION_ERROR`, 409 `CONFLICT` ("Contact already exists.
/// Existing ID: N") on a known email, 404 `OBJECT_NOT_FOUND` on an unknown id.
pub async fn hubspot(token: &str) -> (SocketAddr, Calls) {
    let expected = format!("Bearer {token}");
    let contacts: Shared<Vec<(String, BTreeMap<String, String>)>> = Arc::new(Mutex::new(vec![(
        HUBSPOT_SEEDED_ID.to_string(),
        BTreeMap::from([
            ("email".to_string(), HUBSPOT_SEEDED_EMAIL.to_string()),
            ("firstname".to_string(), "Ada".to_string()),
            ("lastname".to_string(), "Lovelace".to_string()),
            ("company".to_string(), "Analytical Engines".to_string()),
        ]),
    )]));
    let next = Arc::new(Mutex::new(1001u64));
    let error = |status: u16, category: &str, message: &str| {
        (
            status,
            json!({ "status": "error", "message": message, "correlationId": "7f1e2c1a-1b2c-4d5e-8f90-0a1b2c3d4e5f",
                    "category": category }),
        )
    };
    let contact_json = |id: &str, props: &BTreeMap<String, String>, only: Option<&[String]>| {
        let mut properties = serde_json::Map::new();
        for (k, v) in props {
            if only.is_none_or(|o| o.contains(k)) {
                properties.insert(k.clone(), json!(v));
            }
        }
        for key in only.unwrap_or_default() {
            properties.entry(key.clone()).or_insert(Value::Null);
        }
        properties.insert("hs_object_id".into(), json!(id));
        properties.insert("createdate".into(), json!("2025-01-10T10:00:00.000Z"));
        properties.insert("lastmodifieddate".into(), json!("2025-05-06T09:30:00.000Z"));
        json!({ "id": id, "properties": properties, "createdAt": "2025-01-10T10:00:00.000Z",
                "updatedAt": "2025-05-06T09:30:00.000Z", "archived": false })
    };
    let string_props = |body: &Value| -> Option<BTreeMap<String, String>> {
        body.get("properties")?.as_object()?.iter().map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()
    };
    serve(Arc::new(move |seen: &Seen| {
        if seen.header("authorization") != Some(expected.as_str()) {
            return error(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find \
                 more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            );
        }
        let body = seen.json();
        if seen.method != "GET" && (!is_json(seen) || !body.is_object()) {
            return error(400, "VALIDATION_ERROR", "Invalid input JSON on line 1");
        }
        let mut store = contacts.lock().unwrap();
        match (seen.method.as_str(), segments(&seen.path).as_slice()) {
            ("POST", ["crm", "v3", "objects", "contacts", "search"]) => {
                let filter = &body["filterGroups"][0]["filters"][0];
                let (Some(property), Some("EQ"), Some(value)) =
                    (filter["propertyName"].as_str(), filter["operator"].as_str(), filter["value"].as_str())
                else {
                    return error(
                        400,
                        "VALIDATION_ERROR",
                        "Invalid input JSON: filterGroups[0].filters[0] is required",
                    );
                };
                let only: Option<Vec<String>> = body["properties"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_string)).collect());
                let results: Vec<Value> = store
                    .iter()
                    .filter(|(_, p)| p.get(property).is_some_and(|v| v.eq_ignore_ascii_case(value)))
                    .map(|(id, p)| contact_json(id, p, only.as_deref()))
                    .collect();
                (200, json!({ "total": results.len(), "results": results }))
            }
            ("POST", ["crm", "v3", "objects", "contacts"]) => {
                let Some(props) = string_props(&body) else {
                    return error(
                        400,
                        "VALIDATION_ERROR",
                        "Invalid input JSON: `properties` must map names to strings",
                    );
                };
                if let Some(email) = props.get("email") {
                    if let Some((id, _)) =
                        store.iter().find(|(_, p)| p.get("email").is_some_and(|e| e.eq_ignore_ascii_case(email)))
                    {
                        return error(409, "CONFLICT", &format!("Contact already exists. Existing ID: {id}"));
                    }
                }
                let id = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    (*n - 1).to_string()
                };
                store.push((id.clone(), props.clone()));
                (201, contact_json(&id, &props, None))
            }
            ("PATCH", ["crm", "v3", "objects", "contacts", id]) => {
                let Some(props) = string_props(&body) else {
                    return error(
                        400,
                        "VALIDATION_ERROR",
                        "Invalid input JSON: `properties` must map names to strings",
                    );
                };
                let Some((id, current)) = store.iter_mut().find(|(i, _)| i == id) else {
                    return error(404, "OBJECT_NOT_FOUND", "resource not found");
                };
                current.extend(props);
                (200, contact_json(id, current, None))
            }
            _ => error(404, "OBJECT_NOT_FOUND", "resource not found"),
        }
    }))
    .await
}

// ---- GitHub (REST, pull requests) --------------------------------------------------------

/// A GitHub stand-in for `/repos/{owner}/{repo}/pulls/{number}`, `.../files` and `.../reviews`.
/// Demands `Authorization: Bearer {token}`, `Accept: application/vnd.github+json`,
/// `X-GitHub-Api-Version: 2022-11-28` and a `User-Agent` (GitHub answers 403 without one).
/// Knows pull requests `acme/widgets#42` and `acme/secrets#7`. Errors are GitHub's
/// `{message, documentation_url, status}`: 401 "Bad credentials", 404 "Not Found", 422
/// "Unprocessable Entity" for a bad review (unknown event, comment on a file not in the PR).
pub async fn github(token: &str) -> (SocketAddr, Calls) {
    let expected = format!("Bearer {token}");
    let error = |status: u16, message: &str| {
        (
            status,
            json!({ "message": message, "documentation_url": "https://docs.github.com/rest", "status": status.to_string() }),
        )
    };
    let files = |repo: &str| -> Vec<Value> {
        match repo {
            "widgets" => vec![
                json!({ "sha": "bbcd538c8e72b8c175046e27cc8f907076331401", "filename": "src/flux.rs", "status": "modified",
                        "additions": 10, "deletions": 2, "changes": 12,
                        "patch": "@@ -1,4 +1,12 @@\n-fn flux() {}\n+fn flux() -> u32 {\n+    1_210\n+}" }),
                json!({ "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e", "filename": "README.md", "status": "added",
                        "additions": 3, "deletions": 0, "changes": 3, "patch": "@@ -0,0 +1,3 @@\n+# Widgets\n+\n+Flux." }),
            ],
            _ => {
                vec![json!({ "sha": "aa", "filename": "keys.txt", "status": "modified", "additions": 1, "deletions": 1,
                              "changes": 2, "patch": "@@ -1 +1 @@\n-old\n+new" })]
            }
        }
    };
    let review_id = Arc::new(Mutex::new(80u64));
    serve(Arc::new(move |seen: &Seen| {
        let ua = seen.header("user-agent").unwrap_or_default();
        if ua.trim().is_empty() {
            return error(
                403,
                "Request forbidden by administrative rules. Please make sure your request has a User-Agent header \
                 (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required).",
            );
        }
        if seen.header("authorization") != Some(expected.as_str()) {
            return error(401, "Bad credentials");
        }
        if seen.header("accept") != Some("application/vnd.github+json")
            || seen.header("x-github-api-version") != Some("2022-11-28")
        {
            return error(415, "Unsupported 'Accept' or 'X-GitHub-Api-Version' header");
        }
        let parts = segments(&seen.path);
        let (owner, repo, number, rest) = match parts.as_slice() {
            ["repos", owner, repo, "pulls", number, rest @ ..] => (*owner, *repo, *number, rest.to_vec()),
            _ => return error(404, "Not Found"),
        };
        let known = matches!((owner, repo, number), ("acme", "widgets", "42") | ("acme", "secrets", "7"));
        if !known {
            return error(404, "Not Found");
        }
        let number: u64 = number.parse().unwrap();
        let html = format!("https://github.com/{owner}/{repo}/pull/{number}");
        match (seen.method.as_str(), rest.as_slice()) {
            ("GET", []) => (
                200,
                json!({
                    "url": format!("https://api.github.com/repos/{owner}/{repo}/pulls/{number}"),
                    "id": 1_934_567_001u64, "node_id": "PR_kwDOA1b2c84dQ2Zx", "html_url": html,
                    "number": number, "state": "open", "locked": false, "draft": false, "merged": false,
                    "title": "Fix the flux capacitor", "body": "Makes the flux capacitor return 1.21 GW.",
                    "user": { "login": "octocat", "id": 1, "type": "User" },
                    "head": { "label": "octocat:fix-flux", "ref": "fix-flux", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e" },
                    "base": { "label": format!("{owner}:main"), "ref": "main", "sha": "9c2f2a4e",
                              "repo": { "full_name": format!("{owner}/{repo}") } },
                    "additions": 13, "deletions": 2, "changed_files": files(repo).len(), "commits": 1,
                    "created_at": "2025-05-05T12:00:00Z", "updated_at": NOW,
                }),
            ),
            ("GET", ["files"]) => (200, Value::Array(files(repo))),
            ("POST", ["reviews"]) => {
                let body = seen.json();
                if !is_json(seen) || !body.is_object() {
                    return error(400, "Problems parsing JSON");
                }
                let state = match body["event"].as_str() {
                    Some("COMMENT") => "COMMENTED",
                    Some("APPROVE") => "APPROVED",
                    Some("REQUEST_CHANGES") => "CHANGES_REQUESTED",
                    _ => return error(422, "Unprocessable Entity"),
                };
                let names: Vec<String> =
                    files(repo).iter().map(|f| f["filename"].as_str().unwrap().to_string()).collect();
                for c in body["comments"].as_array().into_iter().flatten() {
                    let ok = c["path"].as_str().is_some_and(|p| names.iter().any(|n| n == p))
                        && c["line"].as_u64().is_some()
                        && c["body"].as_str().is_some();
                    if !ok {
                        let (status, mut e) = error(422, "Unprocessable Entity");
                        e["errors"] = json!(["Path could not be resolved"]);
                        return (status, e);
                    }
                }
                let id = {
                    let mut n = review_id.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                (
                    200,
                    json!({ "id": id, "node_id": "PRR_kwDOA1b2c85Aa1Bb", "user": { "login": "airlock-reviewer", "id": 9 },
                            "body": body["body"], "state": state, "commit_id": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
                            "html_url": format!("{html}#pullrequestreview-{id}"),
                            "pull_request_url": format!("https://api.github.com/repos/{owner}/{repo}/pulls/{number}"),
                            "submitted_at": NOW }),
                )
            }
            _ => error(404, "Not Found"),
        }
    }))
    .await
}

// ---- PagerDuty (REST API v2) -------------------------------------------------------------

/// The PagerDuty user the stand-in knows as a requester (`From`).
pub const PAGERDUTY_USER: &str = "oscar@example.com";

/// A PagerDuty stand-in for `/incidents` (list by `statuses[]`), `PUT /incidents/{id}` and
/// `POST /incidents/{id}/notes`. Demands `Authorization: Token token={key}` and `Accept:
/// application/vnd.pagerduty+json;version=2`; changes need `Content-Type: application/json`
/// and `From: {PAGERDUTY_USER}`. Incidents `PT4KHLK` (triggered), `PXP12GZ` (acknowledged) and
/// `PRESOLV` (resolved). Errors are PagerDuty's `{"error": {message, code, errors?}}`: 401 code
/// 2006, 400 code 2001 "Invalid Input Provided" (missing or unknown `From`, bad body), 404 code
/// 2100 "Not Found".
pub async fn pagerduty(key: &str) -> (SocketAddr, Calls) {
    let expected = format!("Token token={key}");
    let incidents: Shared<HashMap<String, (u64, &'static str, String)>> = Arc::new(Mutex::new(HashMap::from([
        ("PT4KHLK".to_string(), (1234u64, "The server is on fire.", "triggered".to_string())),
        ("PXP12GZ".to_string(), (1233, "Disk usage above 90% on db-2", "acknowledged".to_string())),
        ("PRESOLV".to_string(), (1200, "Old outage", "resolved".to_string())),
    ])));
    let error = |status: u16, code: u32, message: &str, errors: &[&str]| {
        let mut e = json!({ "message": message, "code": code });
        if !errors.is_empty() {
            e["errors"] = json!(errors);
        }
        (status, json!({ "error": e }))
    };
    let incident_json = |id: &str, (number, title, status): &(u64, &str, String)| {
        json!({ "id": id, "type": "incident", "summary": format!("[#{number}] {title}"), "incident_number": number,
                "title": title, "status": status, "urgency": "high", "created_at": "2025-05-06T08:00:00Z",
                "html_url": format!("https://acme.pagerduty.com/incidents/{id}"),
                "service": { "id": "PIJ90N7", "type": "service_reference", "summary": "Checkout API" },
                "incident_key": format!("baf7cf21b1da41b4b0221008339ff{number}") })
    };
    serve(Arc::new(move |seen: &Seen| {
        if seen.header("authorization") != Some(expected.as_str()) {
            return error(401, 2006, "Invalid Credentials", &[]);
        }
        if seen.header("accept") != Some("application/vnd.pagerduty+json;version=2") {
            return error(
                400,
                2001,
                "Invalid Input Provided",
                &["Accept must be application/vnd.pagerduty+json;version=2"],
            );
        }
        let mut store = incidents.lock().unwrap();
        let parts = segments(&seen.path);
        if seen.method == "GET" && parts.as_slice() == ["incidents"] {
            let wanted: Vec<String> =
                seen.query_pairs().into_iter().filter(|(k, _)| k == "statuses[]").map(|(_, v)| v).collect();
            let mut list: Vec<(&String, &(u64, &str, String))> =
                store.iter().filter(|(_, i)| wanted.is_empty() || wanted.contains(&i.2)).collect();
            list.sort_by_key(|(_, i)| std::cmp::Reverse(i.0));
            let list: Vec<Value> = list.into_iter().map(|(id, i)| incident_json(id, i)).collect();
            return (200, json!({ "incidents": list, "limit": 25, "offset": 0, "total": null, "more": false }));
        }
        // Changes: JSON body, and a requester.
        let body = seen.json();
        if !is_json(seen) || !body.is_object() {
            return error(400, 2001, "Invalid Input Provided", &["Request body must be JSON"]);
        }
        match seen.header("from") {
            Some(from) if from == PAGERDUTY_USER => {}
            Some(_) => return error(400, 2001, "Invalid Input Provided", &["Requester User Not Found"]),
            None => return error(400, 2001, "Invalid Input Provided", &["From header is required"]),
        }
        match (seen.method.as_str(), parts.as_slice()) {
            ("PUT", ["incidents", id]) => {
                let Some(incident) = store.get_mut(*id) else {
                    return error(404, 2100, "Not Found", &[]);
                };
                let change = &body["incident"];
                if change["type"] != "incident_reference"
                    || !matches!(change["status"].as_str(), Some("acknowledged" | "resolved"))
                {
                    return error(400, 2001, "Invalid Input Provided", &["Incident type must be incident_reference"]);
                }
                incident.2 = change["status"].as_str().unwrap().to_string();
                (200, json!({ "incident": incident_json(id, incident) }))
            }
            ("POST", ["incidents", id, "notes"]) => {
                if !store.contains_key(*id) {
                    return error(404, 2100, "Not Found", &[]);
                }
                let Some(content) = body["note"]["content"].as_str().filter(|c| !c.is_empty()) else {
                    return error(400, 2001, "Invalid Input Provided", &["Note content is required"]);
                };
                (
                    201,
                    json!({ "note": { "id": "PWL7QXS", "content": content, "created_at": NOW,
                                      "user": { "id": "PXPGF42", "type": "user_reference", "summary": "Oscar Oncall",
                                                "html_url": "https://acme.pagerduty.com/users/PXPGF42" } } }),
                )
            }
            _ => error(404, 2100, "Not Found", &[]),
        }
    }))
    .await
}
