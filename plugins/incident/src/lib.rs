//! Incident agent: lists open PagerDuty incidents, acknowledges them and adds notes.
//!
//! Every request goes through the vault connection `pagerduty` (a PagerDuty REST API key); the
//! component never sees it. PagerDuty wants the key as `Authorization: Token token=KEY`, which
//! is not the bearer form: the tenant admin sets the connection's placement to
//! `{"in":"header","name":"Authorization","prefix":"Token token="}` when filling the slot. The
//! component sends relative URLs, resolved by the host against the connection's `base_url`
//! (`https://api.pagerduty.com`), with `Accept: application/vnd.pagerduty+json;version=2`.
//!
//! PagerDuty records who acted: a change made with an account-level key must name the
//! requester in a `From` header, the email of a PagerDuty user. That person is an input
//! (`from`), checked to be a plain email address so that no header can be smuggled in.

wit_bindgen::generate!({ world: "tool", path: "../../wit" });

use airlock::tool::types::Error as HostError;
use airlock::tool::vault;
use exports::airlock::tool::tools::{Guest, ToolDescriptor, ToolError};
use exports::airlock::tool::effects::{Effect, Guest as EffectsGuest, ToolEffect};
use serde_json::{json, Value};

const PAGERDUTY: &str = "pagerduty";
const ACCEPT: &str = "application/vnd.pagerduty+json;version=2";

struct Incident;

fn tool(name: &str, description: &str, schema: Value) -> ToolDescriptor {
    ToolDescriptor { name: name.into(), description: description.into(), input_schema: schema.to_string() }
}

impl Guest for Incident {
    fn describe() -> Vec<ToolDescriptor> {
        let id = json!({ "type": "string", "pattern": "^[A-Z0-9]{1,32}$",
                         "description": "The incident's id, e.g. `PT4KHLK` (from list-incidents)." });
        let from = json!({ "type": "string", "format": "email", "maxLength": 254,
                           "description": "Email of the PagerDuty user on whose behalf the agent acts." });
        vec![
            tool(
                "list-incidents",
                "The open incidents (triggered or acknowledged): id, number, title, status, urgency, service.",
                json!({ "type": "object", "properties": {}, "additionalProperties": false }),
            ),
            tool(
                "acknowledge",
                "Acknowledge an incident (stops its escalation) on behalf of the PagerDuty user `from`.",
                json!({ "type": "object", "properties": { "incident_id": id, "from": from },
                        "required": ["incident_id", "from"], "additionalProperties": false }),
            ),
            tool(
                "add-note",
                "Add a note to an incident's timeline on behalf of the PagerDuty user `from`.",
                json!({ "type": "object",
                        "properties": { "incident_id": id, "from": from,
                                        "content": { "type": "string", "minLength": 1, "maxLength": 25000 } },
                        "required": ["incident_id", "from", "content"], "additionalProperties": false }),
            ),
        ]
    }

    fn call(name: String, input: String) -> Result<String, ToolError> {
        let input: Value =
            serde_json::from_str(&input).map_err(|e| ToolError::InvalidInput(format!("input is not JSON: {e}")))?;
        match name.as_str() {
            "list-incidents" => {
                let found = send("GET", "/incidents?statuses[]=triggered&statuses[]=acknowledged", None, None)?;
                let incidents: Vec<Value> =
                    found["incidents"].as_array().map(|a| a.iter().map(incident_json).collect()).unwrap_or_default();
                Ok(json!({ "incidents": incidents, "more": found["more"] }).to_string())
            }
            "acknowledge" => {
                let (id, from) = (incident_id(&input)?, from(&input)?);
                let body = json!({ "incident": { "type": "incident_reference", "status": "acknowledged" } });
                let done = send("PUT", &format!("/incidents/{id}"), Some(&from), Some(body))?;
                Ok(incident_json(&done["incident"]).to_string())
            }
            "add-note" => {
                let (id, from) = (incident_id(&input)?, from(&input)?);
                let content = input
                    .get("content")
                    .and_then(Value::as_str)
                    .filter(|c| !c.trim().is_empty() && c.len() <= 25_000)
                    .ok_or_else(|| ToolError::InvalidInput("`content` is required: the note's text".into()))?;
                let body = json!({ "note": { "content": content } });
                let done = send("POST", &format!("/incidents/{id}/notes"), Some(&from), Some(body))?;
                let note = &done["note"];
                Ok(json!({ "incident_id": id, "note_id": note["id"], "created_at": note["created_at"],
                           "user": note["user"]["summary"] })
                .to_string())
            }
            other => Err(ToolError::InvalidInput(format!("no tool `{other}` in incident"))),
        }
    }
}

/// The fields an agent needs from a PagerDuty incident object.
fn incident_json(i: &Value) -> Value {
    json!({ "id": i["id"], "number": i["incident_number"], "title": i["title"], "status": i["status"],
            "urgency": i["urgency"], "service": i["service"]["summary"], "created_at": i["created_at"],
            "url": i["html_url"] })
}

fn incident_id(input: &Value) -> Result<String, ToolError> {
    input
        .get("incident_id")
        .and_then(Value::as_str)
        .filter(|id| (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
        .map(str::to_string)
        .ok_or_else(|| {
            ToolError::InvalidInput("`incident_id` is required: an incident id like `PT4KHLK` (list-incidents)".into())
        })
}

/// The requester's email, for the `From` header: one `@`, a dotted domain, nothing a header
/// could be split on.
fn from(input: &Value) -> Result<String, ToolError> {
    input
        .get("from")
        .and_then(Value::as_str)
        .filter(|e| {
            e.len() <= 254
                && e.matches('@').count() == 1
                && e.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.ends_with('.'))
                && e.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b',' | b';' | b'"'))
        })
        .map(str::to_string)
        .ok_or_else(|| {
            ToolError::InvalidInput("`from` is required: the email address of a PagerDuty user (the requester)".into())
        })
}

/// Makes a request through the vault; PagerDuty's error objects
/// (`{"error": {message, code, errors}}`) become tool errors saying what to do.
fn send(method: &str, path: &str, from: Option<&str>, body: Option<Value>) -> Result<Value, ToolError> {
    let mut headers =
        vec![("accept".to_string(), ACCEPT.to_string()), ("content-type".into(), "application/json".into())];
    if let Some(from) = from {
        headers.push(("from".into(), from.into()));
    }
    let req = vault::HttpRequest {
        method: method.into(),
        url: path.into(),
        headers,
        body: body.map(|b| b.to_string().into_bytes()),
    };
    let resp = vault::fetch(PAGERDUTY, &req, None).map_err(|e| {
        let why = |m: String, kind: &str| format!("`{PAGERDUTY}` {method} {path}: {kind}: {m}");
        match e {
            HostError::Denied(m) => ToolError::Refused(why(m, "denied")),
            HostError::NotFound(m) => ToolError::Refused(format!(
                "{}; the tenant admin must fill the `{PAGERDUTY}` connection slot for this agent",
                why(m, "not found")
            )),
            HostError::Invalid(m) => ToolError::Failed(why(m, "invalid")),
            HostError::Unavailable(m) => ToolError::Failed(why(m, "unavailable")),
        }
    })?;
    let answer: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    if (200..300).contains(&resp.status) {
        return Ok(answer);
    }
    let error = &answer["error"];
    let mut message = error["message"].as_str().unwrap_or("no message").to_string();
    if let Some(errors) = error["errors"].as_array().filter(|e| !e.is_empty()) {
        message = format!("{message}: {}", Value::Array(errors.clone()));
    }
    let what = format!("PagerDuty answered {} ({message}, code {}) to {method} {path}", resp.status, error["code"]);
    Err(match resp.status {
        401 => ToolError::Refused(format!(
            "{what}: the `{PAGERDUTY}` API key is missing or revoked, or the connection's placement is not \
             `Authorization: Token token=KEY`; ask the tenant admin to refill the `incident/{PAGERDUTY}` connection"
        )),
        403 => ToolError::Refused(format!("{what}: the API key may not do this (a read-only key?)")),
        404 => ToolError::InvalidInput(format!("{what}: no such incident; take the id from list-incidents")),
        400 => ToolError::InvalidInput(format!(
            "{what}: check the input; `from` must be the email of an existing PagerDuty user"
        )),
        429 => ToolError::Failed(format!("{what}: PagerDuty's rate limit; try again in a minute")),
        _ => ToolError::Failed(what),
    })
}

/// What each tool does to the world: MCP clients see it as annotations, and a tenant may
/// require approval for every irreversible tool.
impl EffectsGuest for Incident {
    fn effects() -> Vec<ToolEffect> {
        vec![
            ToolEffect { tool: "list-incidents".into(), effect: Effect::ReadOnly, idempotent: true, open_world: true },
            ToolEffect { tool: "acknowledge".into(), effect: Effect::Irreversible, idempotent: true, open_world: true },
            ToolEffect { tool: "add-note".into(), effect: Effect::Irreversible, idempotent: false, open_world: true },
        ]
    }
}

/// No output schemas yet: results are JSON objects whose shape follows the external API.
impl exports::airlock::tool::outputs::Guest for Incident {
    fn outputs() -> Vec<exports::airlock::tool::outputs::ToolOutput> {
        Vec::new()
    }
}

export!(Incident);
