//! Code review agent: reads a GitHub pull request and the files it changes, and posts a review.
//!
//! Every request goes through the vault connection `github` (a fine-grained personal access
//! token or GitHub App installation token with read access to contents and read/write access
//! to pull requests, sent by the host as a bearer token); the component never sees it. It sends
//! relative URLs, resolved by the host against the connection's `base_url`
//! (`https://api.github.com`), and the headers GitHub's REST API asks for: `Accept:
//! application/vnd.github+json`, `X-GitHub-Api-Version: 2022-11-28` and a `User-Agent` (GitHub
//! refuses requests without one).
//!
//! A token usually reaches far more repositories than the agent should review, so before any
//! request the component asks `authz` whether the agent holds `review` on
//! `repository:OWNER/REPO` (the package's model fragment defines the type). The package writes
//! no such tuple: which repositories the agent reviews is the tenant admin's decision. Owner and
//! repository names are checked against GitHub's own character sets first, so that no input can
//! smuggle another path (`../`, `?`, `#`) into the request.

wit_bindgen::generate!({ world: "tool", path: "../../wit" });

use airlock::tool::types::Error as HostError;
use airlock::tool::{authz, vault};
use exports::airlock::tool::tools::{Guest, ToolDescriptor, ToolError};
use exports::airlock::tool::effects::{Effect, Guest as EffectsGuest, ToolEffect};
use serde_json::{json, Value};

const GITHUB: &str = "github";
const USER_AGENT: &str = "airlock-code-review/0.1";
/// How much of one file's patch an answer carries (the agent's context is not unlimited).
const MAX_PATCH: usize = 20_000;
const MAX_COMMENTS: usize = 50;

struct CodeReview;

fn tool(name: &str, description: &str, schema: Value) -> ToolDescriptor {
    ToolDescriptor { name: name.into(), description: description.into(), input_schema: schema.to_string() }
}

fn pull_schema(extra: Value, required: &[&str]) -> Value {
    let mut properties = json!({
        "owner": { "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9-]{0,38}$",
                   "description": "The repository's owner (user or organization)." },
        "repo": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,100}$", "description": "The repository's name." },
        "number": { "type": "integer", "minimum": 1, "description": "The pull request's number." },
    });
    if let (Some(p), Some(extra)) = (properties.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    let mut req = vec!["owner", "repo", "number"];
    req.extend_from_slice(required);
    json!({ "type": "object", "properties": properties, "required": req, "additionalProperties": false })
}

impl Guest for CodeReview {
    fn describe() -> Vec<ToolDescriptor> {
        vec![
            tool(
                "get-pull-request",
                "A pull request's title, state, author, head and base branches, and size (additions, deletions, files).",
                pull_schema(json!({}), &[]),
            ),
            tool(
                "list-changed-files",
                "The files a pull request changes, each with its status, line counts and patch (unified diff).",
                pull_schema(json!({}), &[]),
            ),
            tool(
                "post-review",
                "Post a review on a pull request: a summary `body`, an `event` (COMMENT, APPROVE or \
                 REQUEST_CHANGES) and optional line comments `[{path, line, body}]` on the new side of the diff.",
                pull_schema(
                    json!({
                        "body": { "type": "string", "maxLength": 65536 },
                        "event": { "enum": ["COMMENT", "APPROVE", "REQUEST_CHANGES"] },
                        "comments": { "type": "array", "maxItems": MAX_COMMENTS, "items": {
                            "type": "object",
                            "properties": { "path": { "type": "string", "minLength": 1, "maxLength": 4096 },
                                            "line": { "type": "integer", "minimum": 1 },
                                            "body": { "type": "string", "minLength": 1, "maxLength": 65536 } },
                            "required": ["path", "line", "body"], "additionalProperties": false } },
                    }),
                    &["body", "event"],
                ),
            ),
        ]
    }

    fn call(name: String, input: String) -> Result<String, ToolError> {
        let input: Value =
            serde_json::from_str(&input).map_err(|e| ToolError::InvalidInput(format!("input is not JSON: {e}")))?;
        let owner = owner(&input)?;
        let repo = repo(&input)?;
        let number = input
            .get("number")
            .and_then(Value::as_u64)
            .filter(|n| *n > 0)
            .ok_or_else(|| ToolError::InvalidInput("`number` is required: the pull request's number".into()))?;
        require("review", &format!("repository:{owner}/{repo}"))?;
        let pull = format!("/repos/{owner}/{repo}/pulls/{number}");
        match name.as_str() {
            "get-pull-request" => {
                let pr = send("GET", &pull, None)?;
                Ok(json!({
                    "number": pr["number"], "title": pr["title"], "state": pr["state"], "draft": pr["draft"],
                    "merged": pr["merged"], "author": pr["user"]["login"],
                    "head": pr["head"]["ref"], "base": pr["base"]["ref"], "head_sha": pr["head"]["sha"],
                    "additions": pr["additions"], "deletions": pr["deletions"], "changed_files": pr["changed_files"],
                    "body": pr["body"], "url": pr["html_url"],
                })
                .to_string())
            }
            "list-changed-files" => {
                let files = send("GET", &format!("{pull}/files?per_page=100"), None)?;
                let files: Vec<Value> = files
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|f| {
                                let patch = f["patch"].as_str().map(|p| truncate(p, MAX_PATCH));
                                json!({ "filename": f["filename"], "status": f["status"], "additions": f["additions"],
                                        "deletions": f["deletions"], "changes": f["changes"], "patch": patch })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(json!({ "number": number, "files": files }).to_string())
            }
            "post-review" => {
                let body = input.get("body").and_then(Value::as_str).unwrap_or_default();
                let event = input
                    .get("event")
                    .and_then(Value::as_str)
                    .filter(|e| matches!(*e, "COMMENT" | "APPROVE" | "REQUEST_CHANGES"))
                    .ok_or_else(|| {
                        ToolError::InvalidInput("`event` is required: COMMENT, APPROVE or REQUEST_CHANGES".into())
                    })?;
                if body.trim().is_empty() && event != "APPROVE" {
                    return Err(ToolError::InvalidInput(format!("`body` is required for a {event} review")));
                }
                let mut review = json!({ "body": body, "event": event });
                if let Some(comments) = input.get("comments").filter(|c| !c.is_null()) {
                    review["comments"] = line_comments(comments)?;
                }
                let posted = send("POST", &format!("{pull}/reviews"), Some(review))?;
                Ok(json!({ "id": posted["id"], "state": posted["state"], "url": posted["html_url"] }).to_string())
            }
            other => Err(ToolError::InvalidInput(format!("no tool `{other}` in code-review"))),
        }
    }
}

fn line_comments(comments: &Value) -> Result<Value, ToolError> {
    let bad = |why: &str| ToolError::InvalidInput(format!("`comments`: {why}"));
    let list = comments.as_array().ok_or_else(|| bad("an array of {path, line, body}"))?;
    if list.len() > MAX_COMMENTS {
        return Err(bad(&format!("at most {MAX_COMMENTS} comments")));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        let path = c["path"].as_str().filter(|p| !p.is_empty() && p.len() <= 4096);
        let line = c["line"].as_u64().filter(|l| *l > 0);
        let body = c["body"].as_str().filter(|b| !b.trim().is_empty());
        match (path, line, body) {
            (Some(path), Some(line), Some(body)) => {
                out.push(json!({ "path": path, "line": line, "side": "RIGHT", "body": body }))
            }
            _ => {
                return Err(bad(&format!("[{i}] needs `path` (a changed file), `line` (>= 1) and a non-empty `body`")))
            }
        }
    }
    Ok(Value::Array(out))
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n... (truncated)", &s[..end])
}

/// A GitHub user or organization name: letters, digits and single inner hyphens, 1..=39.
fn owner(input: &Value) -> Result<String, ToolError> {
    input
        .get("owner")
        .and_then(Value::as_str)
        .filter(|o| {
            (1..=39).contains(&o.len())
                && o.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !o.starts_with('-')
                && !o.ends_with('-')
                && !o.contains("--")
        })
        .map(str::to_string)
        .ok_or_else(|| {
            ToolError::InvalidInput("`owner` is required: a GitHub user or organization (letters, digits, `-`)".into())
        })
}

/// A GitHub repository name: letters, digits, `.`, `_`, `-`, 1..=100, and not `.` or `..`.
fn repo(input: &Value) -> Result<String, ToolError> {
    input
        .get("repo")
        .and_then(Value::as_str)
        .filter(|r| {
            (1..=100).contains(&r.len())
                && r.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                && *r != "."
                && *r != ".."
        })
        .map(str::to_string)
        .ok_or_else(|| {
            ToolError::InvalidInput("`repo` is required: a repository name (letters, digits, `.`, `_`, `-`)".into())
        })
}

fn require(relation: &str, object: &str) -> Result<(), ToolError> {
    match authz::check(relation, object) {
        Ok(true) => Ok(()),
        Ok(false) => Err(ToolError::Refused(format!(
            "this agent is not `{relation}` on `{object}`: the tenant admin decides which repositories it reviews \
             (tuple `agent:AGENT {relation} {object}`)"
        ))),
        Err(e) => Err(ToolError::Refused(format!("authorization unavailable: {}", describe(&e)))),
    }
}

/// Makes a request through the vault; GitHub's error objects (`{message, documentation_url}`)
/// become tool errors saying what to do.
fn send(method: &str, path: &str, body: Option<Value>) -> Result<Value, ToolError> {
    let mut headers = vec![
        ("accept".to_string(), "application/vnd.github+json".to_string()),
        ("x-github-api-version".into(), "2022-11-28".into()),
        ("user-agent".into(), USER_AGENT.into()),
    ];
    if body.is_some() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    let req = vault::HttpRequest {
        method: method.into(),
        url: path.into(),
        headers,
        body: body.map(|b| b.to_string().into_bytes()),
    };
    let resp = vault::fetch(GITHUB, &req, None).map_err(|e| {
        let why = format!("`{GITHUB}` {method} {path}: {}", describe(&e));
        match e {
            HostError::Denied(_) => ToolError::Refused(why),
            HostError::NotFound(_) => ToolError::Refused(format!(
                "{why}; the tenant admin must fill the `{GITHUB}` connection slot for this agent"
            )),
            HostError::Invalid(_) | HostError::Unavailable(_) => ToolError::Failed(why),
        }
    })?;
    let answer: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    if (200..300).contains(&resp.status) {
        return Ok(answer);
    }
    let mut message = answer["message"].as_str().unwrap_or("no message").to_string();
    if let Some(errors) = answer["errors"].as_array().filter(|e| !e.is_empty()) {
        message = format!("{message}: {}", Value::Array(errors.clone()));
    }
    let what = format!("GitHub answered {} ({message}) to {method} {path}", resp.status);
    Err(match resp.status {
        401 => ToolError::Refused(format!(
            "{what}: the `{GITHUB}` token is missing, expired or revoked; ask the tenant admin to refill the \
             `code-review/{GITHUB}` connection"
        )),
        403 => ToolError::Refused(format!(
            "{what}: the token may not do this here (its permissions, or a rate limit); check the token's access"
        )),
        404 => ToolError::InvalidInput(format!(
            "{what}: no such repository or pull request, or the token cannot see it; check owner, repo and number"
        )),
        422 => ToolError::InvalidInput(format!(
            "{what}: GitHub refused the review; line comments must be on lines the pull request changes"
        )),
        _ => ToolError::Failed(what),
    })
}

fn describe(e: &HostError) -> String {
    match e {
        HostError::Denied(m) => format!("denied: {m}"),
        HostError::NotFound(m) => format!("not found: {m}"),
        HostError::Invalid(m) => format!("invalid: {m}"),
        HostError::Unavailable(m) => format!("unavailable: {m}"),
    }
}

/// What each tool does to the world: MCP clients see it as annotations, and a tenant may
/// require approval for every irreversible tool.
impl EffectsGuest for CodeReview {
    fn effects() -> Vec<ToolEffect> {
        vec![
            ToolEffect { tool: "get-pull-request".into(), effect: Effect::ReadOnly, idempotent: true, open_world: true },
            ToolEffect { tool: "list-changed-files".into(), effect: Effect::ReadOnly, idempotent: true, open_world: true },
            ToolEffect { tool: "post-review".into(), effect: Effect::Irreversible, idempotent: false, open_world: true },
        ]
    }
}

/// No output schemas yet: results are JSON objects whose shape follows the external API.
impl exports::airlock::tool::outputs::Guest for CodeReview {
    fn outputs() -> Vec<exports::airlock::tool::outputs::ToolOutput> {
        Vec::new()
    }
}

export!(CodeReview);
