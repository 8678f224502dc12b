//! Marketing's ContentBot: writes drafts on the company blog and publishes them.
//!
//! The blog is a WordPress.com site reached through the WordPress.com REST API v2
//! (`/wp/v2/sites/{site}/posts`, the core WordPress REST API hosted per site). Every request is
//! made by the host through the vault connection `blog` (a bearer token of a WordPress.com user
//! who may write posts); the component never sees the token and sends relative URLs, which the
//! host resolves against the connection's `base_url` (`https://public-api.wordpress.com`).
//!
//! Drafting is harmless and runs on its own; publishing puts words in the company's mouth, so a
//! marketing lead must approve each `publish-post`. That is not decided here: it is the host's
//! approval policy `contentbot.publish-post` (see `marketplace/contentbot`), which holds the call
//! before this component runs. The component cannot skip it.

wit_bindgen::generate!({ world: "tool", path: "../../wit" });

use airlock::tool::types::Error as HostError;
use airlock::tool::vault;
use exports::airlock::tool::tools::{Guest, ToolDescriptor, ToolError};
use exports::airlock::tool::effects::{Effect, Guest as EffectsGuest, ToolEffect};
use serde_json::{json, Value};

const BLOG: &str = "blog";
const SITE_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$";

struct ContentBot;

fn tool(name: &str, description: &str, schema: Value) -> ToolDescriptor {
    ToolDescriptor { name: name.into(), description: description.into(), input_schema: schema.to_string() }
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({ "type": "object", "properties": properties, "required": required, "additionalProperties": false })
}

impl Guest for ContentBot {
    fn describe() -> Vec<ToolDescriptor> {
        let site = json!({ "type": "string", "pattern": SITE_PATTERN,
                           "description": "The WordPress.com site: its domain (`blog.example.com`) or numeric id." });
        vec![
            tool(
                "draft-post",
                "Write a new blog post as a draft (not visible to readers). Returns its id, status and preview link.",
                object(
                    json!({ "site": site, "title": { "type": "string", "minLength": 1, "maxLength": 300 },
                            "content": { "type": "string", "minLength": 1, "description": "The post body (HTML)." } }),
                    &["site", "title", "content"],
                ),
            ),
            tool(
                "list-drafts",
                "List the site's draft posts: id, title, last change and link.",
                object(json!({ "site": site }), &["site"]),
            ),
            tool(
                "publish-post",
                "Publish a draft so readers see it. A marketing lead must approve each publication.",
                object(json!({ "site": site, "post_id": { "type": "integer", "minimum": 1 } }), &["site", "post_id"]),
            ),
        ]
    }

    fn call(name: String, input: String) -> Result<String, ToolError> {
        let input: Value =
            serde_json::from_str(&input).map_err(|e| ToolError::InvalidInput(format!("input is not JSON: {e}")))?;
        let site = site(&input)?;
        let posts = format!("/wp/v2/sites/{site}/posts");
        match name.as_str() {
            "draft-post" => {
                let title = text(&input, "title", 300)?;
                let content = text(&input, "content", 1 << 20)?;
                let body = json!({ "title": title, "content": content, "status": "draft" });
                let post = send("POST", &posts, Some(body))?;
                Ok(summary(&post).to_string())
            }
            "list-drafts" => {
                let list = send("GET", &format!("{posts}?status=draft"), None)?;
                let drafts: Vec<Value> = list.as_array().map(|a| a.iter().map(summary).collect()).unwrap_or_default();
                Ok(json!({ "site": site, "drafts": drafts }).to_string())
            }
            "publish-post" => {
                let id = post_id(&input)?;
                let post = send("POST", &format!("{posts}/{id}"), Some(json!({ "status": "publish" })))?;
                Ok(summary(&post).to_string())
            }
            other => Err(ToolError::InvalidInput(format!("no tool `{other}` in contentbot"))),
        }
    }
}

/// The fields an agent needs from a WordPress post object.
fn summary(post: &Value) -> Value {
    json!({
        "id": post["id"],
        "status": post["status"],
        "title": post["title"]["rendered"].as_str().or(post["title"]["raw"].as_str()),
        "link": post["link"],
        "modified": post["modified"],
    })
}

fn site(input: &Value) -> Result<String, ToolError> {
    input
        .get("site")
        .and_then(Value::as_str)
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 253
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && !s.contains("..")
        })
        .map(str::to_string)
        .ok_or_else(|| {
            ToolError::InvalidInput("`site` is required: the site's domain (`blog.example.com`) or numeric id".into())
        })
}

fn post_id(input: &Value) -> Result<u64, ToolError> {
    let v = input.get("post_id");
    v.and_then(Value::as_u64)
        .or_else(|| v.and_then(Value::as_str).and_then(|s| s.parse().ok()))
        .filter(|id| *id > 0)
        .ok_or_else(|| ToolError::InvalidInput("`post_id` is required: the post's numeric id (see list-drafts)".into()))
}

fn text(input: &Value, key: &str, max: usize) -> Result<String, ToolError> {
    input
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty() && s.len() <= max)
        .map(str::to_string)
        .ok_or_else(|| {
            ToolError::InvalidInput(format!("`{key}` is required: a non-empty string of at most {max} bytes"))
        })
}

/// Makes a request through the vault and returns the JSON body of a 2xx answer; WordPress's
/// error objects (`{code, message, data: {status}}`) become tool errors saying what to do.
fn send(method: &str, path: &str, body: Option<Value>) -> Result<Value, ToolError> {
    let mut headers = vec![("accept".to_string(), "application/json".to_string())];
    if body.is_some() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    let req = vault::HttpRequest {
        method: method.into(),
        url: path.into(),
        headers,
        body: body.map(|b| b.to_string().into_bytes()),
    };
    let resp = vault::fetch(BLOG, &req, None).map_err(|e| host_error(method, path, e))?;
    let answer: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    if (200..300).contains(&resp.status) {
        return Ok(answer);
    }
    let message = answer["message"].as_str().unwrap_or("no message");
    let code = answer["code"].as_str().unwrap_or("unknown");
    let what = format!("WordPress answered {} ({code}: {message}) to {method} {path}", resp.status);
    Err(match resp.status {
        401 | 403 => ToolError::Refused(format!(
            "{what}: the `{BLOG}` connection's token is missing, expired or may not write posts on this site; \
             ask the tenant admin to refill the `contentbot/{BLOG}` connection"
        )),
        404 => {
            ToolError::InvalidInput(format!("{what}: no such site or post; check `site` and `post_id` (list-drafts)"))
        }
        400 => ToolError::InvalidInput(what),
        _ => ToolError::Failed(what),
    })
}

fn host_error(method: &str, path: &str, e: HostError) -> ToolError {
    let why = |m: &str, kind: &str| format!("`{BLOG}` {method} {path}: {kind}: {m}");
    match e {
        HostError::Denied(m) => ToolError::Refused(why(&m, "denied")),
        HostError::NotFound(m) => ToolError::Refused(format!(
            "{}; the tenant admin must fill the `{BLOG}` connection slot for this agent",
            why(&m, "not found")
        )),
        HostError::Invalid(m) => ToolError::Failed(why(&m, "invalid")),
        HostError::Unavailable(m) => ToolError::Failed(why(&m, "unavailable")),
    }
}

/// What each tool does to the world: MCP clients see it as annotations, and a tenant may
/// require approval for every irreversible tool.
impl EffectsGuest for ContentBot {
    fn effects() -> Vec<ToolEffect> {
        vec![
            ToolEffect { tool: "draft-post".into(), effect: Effect::Reversible, idempotent: false, open_world: true },
            ToolEffect { tool: "list-drafts".into(), effect: Effect::ReadOnly, idempotent: true, open_world: true },
            ToolEffect { tool: "publish-post".into(), effect: Effect::Irreversible, idempotent: true, open_world: true },
        ]
    }
}

/// No output schemas yet: results are JSON objects whose shape follows the external API.
impl exports::airlock::tool::outputs::Guest for ContentBot {
    fn outputs() -> Vec<exports::airlock::tool::outputs::ToolOutput> {
        Vec::new()
    }
}

export!(ContentBot);
