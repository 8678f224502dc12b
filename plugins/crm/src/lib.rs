//! CRM agent: looks up, creates and updates contacts in HubSpot (CRM API v3).
//!
//! Every request goes through the vault connection `hubspot` (a HubSpot private app token with
//! the `crm.objects.contacts.read` and `.write` scopes, sent by the host as a bearer token); the
//! component never sees it and sends relative URLs, which the host resolves against the
//! connection's `base_url` (`https://api.hubapi.com`).
//!
//! HubSpot keys contacts by email: creating a second contact with a known email answers 409,
//! which this component turns into an error that tells the agent to find and update the
//! existing contact instead, with its id. Unknown ids (404) name the tool that finds the right
//! one.

wit_bindgen::generate!({ world: "tool", path: "../../wit" });

use airlock::tool::types::Error as HostError;
use airlock::tool::vault;
use exports::airlock::tool::tools::{Guest, ToolDescriptor, ToolError};
use exports::airlock::tool::effects::{Effect, Guest as EffectsGuest, ToolEffect};
use serde_json::{json, Map, Value};

const HUBSPOT: &str = "hubspot";
const CONTACTS: &str = "/crm/v3/objects/contacts";
/// The properties every answer carries (HubSpot returns only the ones asked for).
const PROPERTIES: [&str; 5] = ["email", "firstname", "lastname", "company", "phone"];

struct Crm;

fn tool(name: &str, description: &str, schema: Value) -> ToolDescriptor {
    ToolDescriptor { name: name.into(), description: description.into(), input_schema: schema.to_string() }
}

impl Guest for Crm {
    fn describe() -> Vec<ToolDescriptor> {
        let email = json!({ "type": "string", "format": "email", "maxLength": 254 });
        let field = json!({ "type": "string", "maxLength": 1000 });
        vec![
            tool(
                "find-contact",
                "Find a HubSpot contact by email. Returns `found` and, when found, the contact's id and \
                 email, first name, last name, company and phone.",
                json!({ "type": "object", "properties": { "email": email }, "required": ["email"],
                        "additionalProperties": false }),
            ),
            tool(
                "create-contact",
                "Create a HubSpot contact. Fails if a contact with this email exists (then use \
                 find-contact and update-contact).",
                json!({ "type": "object",
                        "properties": { "email": email, "firstname": field, "lastname": field,
                                        "company": field, "phone": field },
                        "required": ["email"], "additionalProperties": false }),
            ),
            tool(
                "update-contact",
                "Change properties of a HubSpot contact, by its id (from find-contact). `properties` maps \
                 HubSpot property names (`firstname`, `lastname`, `company`, `phone`, `jobtitle`...) to new values.",
                json!({ "type": "object",
                        "properties": {
                            "contact_id": { "type": "string", "pattern": "^[0-9]{1,20}$" },
                            "properties": { "type": "object", "minProperties": 1,
                                            "propertyNames": { "pattern": "^[a-z][a-z0-9_]{0,99}$" },
                                            "additionalProperties": { "type": "string", "maxLength": 65536 } } },
                        "required": ["contact_id", "properties"], "additionalProperties": false }),
            ),
        ]
    }

    fn call(name: String, input: String) -> Result<String, ToolError> {
        let input: Value =
            serde_json::from_str(&input).map_err(|e| ToolError::InvalidInput(format!("input is not JSON: {e}")))?;
        match name.as_str() {
            "find-contact" => {
                let email = email(&input)?;
                let search = json!({
                    "filterGroups": [{ "filters": [{ "propertyName": "email", "operator": "EQ", "value": email }] }],
                    "properties": PROPERTIES,
                    "limit": 1,
                });
                let found = send("POST", &format!("{CONTACTS}/search"), Some(search))?;
                Ok(match found["results"].as_array().and_then(|r| r.first()) {
                    Some(contact) => json!({ "found": true, "contact": contact_json(contact) }),
                    None => json!({ "found": false, "email": email }),
                }
                .to_string())
            }
            "create-contact" => {
                let mut properties = Map::new();
                properties.insert("email".into(), Value::String(email(&input)?));
                for key in ["firstname", "lastname", "company", "phone"] {
                    match input.get(key) {
                        None | Some(Value::Null) => {}
                        Some(Value::String(v)) if v.len() <= 1000 => {
                            properties.insert(key.into(), Value::String(v.clone()));
                        }
                        Some(_) => {
                            return Err(ToolError::InvalidInput(format!(
                                "`{key}` must be a string of at most 1000 bytes"
                            )))
                        }
                    }
                }
                let created = send("POST", CONTACTS, Some(json!({ "properties": properties })))?;
                Ok(json!({ "created": true, "contact": contact_json(&created) }).to_string())
            }
            "update-contact" => {
                let id = input
                    .get("contact_id")
                    .and_then(|v| v.as_str().map(str::to_string).or_else(|| v.as_u64().map(|n| n.to_string())))
                    .filter(|id| !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| {
                        ToolError::InvalidInput(
                            "`contact_id` is required: the contact's numeric id (find-contact)".into(),
                        )
                    })?;
                let properties =
                    input.get("properties").and_then(Value::as_object).filter(|p| !p.is_empty()).ok_or_else(|| {
                        ToolError::InvalidInput("`properties` is required: an object of new values".into())
                    })?;
                for (key, value) in properties {
                    let good_name = key.len() <= 100
                        && key.starts_with(|c: char| c.is_ascii_lowercase())
                        && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                    if !good_name || !value.is_string() {
                        return Err(ToolError::InvalidInput(format!(
                            "property `{key}`: names are HubSpot internal names (lower-case, digits, `_`) and values strings"
                        )));
                    }
                }
                let updated = send("PATCH", &format!("{CONTACTS}/{id}"), Some(json!({ "properties": properties })))?;
                Ok(json!({ "updated": true, "contact": contact_json(&updated) }).to_string())
            }
            other => Err(ToolError::InvalidInput(format!("no tool `{other}` in crm"))),
        }
    }
}

/// A HubSpot contact object (`{id, properties: {...}, ...}`) as the agent sees it.
fn contact_json(contact: &Value) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), contact["id"].clone());
    for key in PROPERTIES {
        out.insert(key.into(), contact["properties"][key].clone());
    }
    for (key, value) in contact["properties"].as_object().into_iter().flatten() {
        if !out.contains_key(key) && !key.starts_with("hs_") && key != "createdate" && key != "lastmodifieddate" {
            out.insert(key.clone(), value.clone());
        }
    }
    Value::Object(out)
}

fn email(input: &Value) -> Result<String, ToolError> {
    input
        .get("email")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|e| {
            e.len() <= 254
                && e.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
                && e.matches('@').count() == 1
                && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        })
        .map(str::to_lowercase)
        .ok_or_else(|| ToolError::InvalidInput("`email` is required: an email address like `ada@example.com`".into()))
}

/// Makes a request through the vault; HubSpot's error objects
/// (`{status: "error", message, category, correlationId}`) become tool errors saying what to do.
fn send(method: &str, path: &str, body: Option<Value>) -> Result<Value, ToolError> {
    let req = vault::HttpRequest {
        method: method.into(),
        url: path.into(),
        headers: vec![("accept".into(), "application/json".into()), ("content-type".into(), "application/json".into())],
        body: body.map(|b| b.to_string().into_bytes()),
    };
    let resp = vault::fetch(HUBSPOT, &req, None).map_err(|e| {
        let why = |m: String, kind: &str| format!("`{HUBSPOT}` {method} {path}: {kind}: {m}");
        match e {
            HostError::Denied(m) => ToolError::Refused(why(m, "denied")),
            HostError::NotFound(m) => ToolError::Refused(format!(
                "{}; the tenant admin must fill the `{HUBSPOT}` connection slot for this agent",
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
    let message = answer["message"].as_str().unwrap_or("no message").to_string();
    let category = answer["category"].as_str().unwrap_or("unknown");
    let what = format!("HubSpot answered {} ({category}: {message}) to {method} {path}", resp.status);
    Err(match resp.status {
        409 => {
            let existing = message.rsplit_once("Existing ID: ").map(|(_, id)| id.trim().to_string());
            ToolError::InvalidInput(match existing {
                Some(id) => format!(
                    "a contact with this email already exists (id {id}): change it with update-contact \
                     (`contact_id`: \"{id}\") instead of creating another"
                ),
                None => format!("{what}: the contact already exists; use find-contact, then update-contact"),
            })
        }
        404 => ToolError::InvalidInput(format!(
            "{what}: no contact with this id; find the right id with find-contact (by email)"
        )),
        401 | 403 => ToolError::Refused(format!(
            "{what}: the `{HUBSPOT}` private app token is missing, revoked or lacks the contacts scopes; \
             ask the tenant admin to refill the `crm/{HUBSPOT}` connection"
        )),
        400 => ToolError::InvalidInput(what),
        429 => ToolError::Failed(format!("{what}: HubSpot's rate limit; try again in a few seconds")),
        _ => ToolError::Failed(what),
    })
}

/// What each tool does to the world: MCP clients see it as annotations, and a tenant may
/// require approval for every irreversible tool.
impl EffectsGuest for Crm {
    fn effects() -> Vec<ToolEffect> {
        vec![
            ToolEffect { tool: "find-contact".into(), effect: Effect::ReadOnly, idempotent: true, open_world: true },
            ToolEffect { tool: "create-contact".into(), effect: Effect::Reversible, idempotent: false, open_world: true },
            ToolEffect { tool: "update-contact".into(), effect: Effect::Reversible, idempotent: true, open_world: true },
        ]
    }
}

/// No output schemas yet: results are JSON objects whose shape follows the external API.
impl exports::airlock::tool::outputs::Guest for Crm {
    fn outputs() -> Vec<exports::airlock::tool::outputs::ToolOutput> {
        Vec::new()
    }
}

export!(Crm);
