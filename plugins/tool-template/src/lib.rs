//! Tool template: one trivial tool, `shout`, and comments on everything a real tool needs.
//!
//! Copy this folder to start a tool component (see `README.md` beside this file). Say here, in
//! the crate's doc comment, *why* the component exists and what it may touch: which service,
//! through which vault connection, which checks it makes itself (`authz`) and which the host
//! makes for it (approval policies in the package's manifest). A reviewer deciding whether to
//! install the agent reads this first.
//!
//! How a call runs: the host has already checked that the agent may use this tool (`can_use` on
//! `tool:COMPONENT.TOOL`) and, if the manifest has an approval policy for the tool, that a human
//! approved this exact input. The component starts in a fresh sandbox (no files, no environment,
//! no sockets, a deadline, a CPU budget and a memory cap), gets the input as a JSON string and
//! returns a JSON string or a [`ToolError`].

// Generates the bindings for `wit/tool.wit`: the host interfaces under `airlock::tool::*` and the
// `Guest` trait this crate implements under `exports::airlock::tool::tools`. The path is relative
// to this crate's folder; keep it when you copy the folder next to this one.
wit_bindgen::generate!({ world: "tool", path: "../../wit" });

#[allow(unused_imports)]
use airlock::tool::approval::{self, ApprovalError, ApprovalRequest};
use airlock::tool::types::Error as HostError;
#[allow(unused_imports)]
use airlock::tool::{authz, vault};
use exports::airlock::tool::tools::{Guest, ToolDescriptor, ToolError};
use exports::airlock::tool::effects::{Effect, Guest as EffectsGuest, ToolEffect};
use serde_json::{json, Value};

/// The vault connection this component would use: the manifest declares a slot of this name
/// (`connections[].name`), the tenant admin fills it, and the host stores it as `AGENT/NAME`.
/// The component names it unqualified; the host finds the agent's own first.
#[allow(dead_code)]
const CONNECTION: &str = "example-api";

struct Template;

impl Guest for Template {
    /// The tools this component offers. Must be cheap and pure: the host calls it when the
    /// component is added and whenever it lists tools. Tool names are lower-case letters,
    /// digits and `-`; agents see them as `COMPONENT.TOOL` (here `tool-template.shout`).
    fn describe() -> Vec<ToolDescriptor> {
        vec![ToolDescriptor {
            name: "shout".into(),
            // For the agent's language model: what the tool does and when to use it, in one or two
            // sentences. Mention approvals a human gives, so the model expects the wait.
            description: "Repeat a text in upper case. A harmless example tool.".into(),
            // JSON Schema (draft 2020-12) of the input object. The host shows it to agents (MCP's
            // `inputSchema`) but does not enforce it: `call` validates its input itself. Be strict:
            // `additionalProperties: false`, patterns for anything that ends up in a URL or header.
            input_schema: json!({
                "type": "object",
                "properties": { "text": { "type": "string", "minLength": 1, "maxLength": 1000 } },
                "required": ["text"],
                "additionalProperties": false,
            })
            .to_string(),
        }]
    }

    /// Runs tool `name` with `input` (a JSON object as a string); returns a JSON value as a string.
    fn call(name: String, input: String) -> Result<String, ToolError> {
        // 1. Parse and validate. `InvalidInput` tells the agent its input was wrong: say what a
        //    right one looks like, the agent will try again with it.
        let input: Value =
            serde_json::from_str(&input).map_err(|e| ToolError::InvalidInput(format!("input is not JSON: {e}")))?;
        match name.as_str() {
            "shout" => {
                let text = input
                    .get("text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty() && t.len() <= 1000)
                    .ok_or_else(|| ToolError::InvalidInput("`text` is required: 1 to 1000 bytes of text".into()))?;
                // 2. Authorization on the object the tool acts on (optional; see `require`). A
                //    real tool would call e.g. `require("viewer", &format!("customer:{id}"))?`.
                // 3. The work. A real tool would call `send(...)` below.
                Ok(json!({ "shout": text.to_uppercase() }).to_string())
            }
            // The host only calls names `describe` listed, but a component must not trust that.
            other => Err(ToolError::InvalidInput(format!("no tool `{other}` in tool-template"))),
        }
    }
}

/// `authz`: may the calling agent hold `relation` on `object` (`type:id`)? The subject is always
/// the agent running this call. Define the type in the manifest's `model` fragment
/// (`type customer\n  relations\n    define viewer: [agent]\n`) and leave the tuples that say
/// *which* objects to the tenant admin: a package that granted its agent every customer would
/// make the check pointless. An `Err` means no answer: treat it as "no" (the host does).
#[allow(dead_code)]
fn require(relation: &str, object: &str) -> Result<(), ToolError> {
    match authz::check(relation, object) {
        Ok(true) => Ok(()),
        Ok(false) => Err(ToolError::Refused(format!("this agent is not `{relation}` on `{object}`"))),
        Err(e) => Err(ToolError::Refused(format!("authorization unavailable: {}", describe(&e)))),
    }
}

/// `approval`: prefer a host approval policy in the manifest (`approval_policies`: the host holds
/// the call before the component runs, and the component cannot skip it). Ask from inside only
/// when the decision depends on what the component learns while running (an amount it looked
/// up, say). The call suspends until a human with `role` on the tenant decides; the grant's id
/// is then passed to `vault::fetch` for a connection that requires approved actions.
#[allow(dead_code)]
fn ask(action: &str, summary: String, role: &str, details: Value) -> Result<approval::Grant, ToolError> {
    approval::request(&ApprovalRequest {
        action: action.into(),
        summary,
        role: Some(role.into()),
        details: details.to_string(),
        expires_in_seconds: None,
    })
    .map_err(|e| match e {
        ApprovalError::Denied(reason) => ToolError::Refused(format!("the {role} refused: {reason}")),
        ApprovalError::Expired => ToolError::Refused(format!("no {role} decided before the request expired")),
        ApprovalError::Invalid(m) => ToolError::Failed(format!("approval request rejected: {m}")),
        ApprovalError::Unavailable(m) => ToolError::Refused(format!("approval unavailable: {m}")),
    })
}

/// `vault`: the host makes the HTTP request with the connection's credential, which never
/// enters the sandbox. Use a relative URL (`/v1/things`): the host resolves it against the
/// connection's `base_url` and refuses hosts outside its `allowed_hosts`. Do not set the header
/// the credential occupies (usually `authorization`): the host refuses the request.
#[allow(dead_code)]
fn send(method: &str, path: &str, body: Option<Value>, grant: Option<&str>) -> Result<Value, ToolError> {
    let req = vault::HttpRequest {
        method: method.into(),
        url: path.into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.map(|b| b.to_string().into_bytes()),
    };
    // Host errors: `Denied`/`NotFound` are the agent's permissions or a missing connection
    // (`Refused`: say who can fix it), `Invalid`/`Unavailable` a bad request or the network
    // (`Failed`).
    let resp = vault::fetch(CONNECTION, &req, grant).map_err(|e| {
        let why = format!("`{CONNECTION}` {method} {path}: {}", describe(&e));
        match e {
            HostError::Denied(_) | HostError::NotFound(_) => ToolError::Refused(why),
            HostError::Invalid(_) | HostError::Unavailable(_) => ToolError::Failed(why),
        }
    })?;
    let answer: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    // The service's own errors: map each status the service documents to a message that says
    // what to do next (a wrong id -> which tool finds the right one; 401 -> the admin refills
    // the connection). Never echo the response headers: they may carry tokens.
    match resp.status {
        200..=299 => Ok(answer),
        401 | 403 => Err(ToolError::Refused(format!("`{CONNECTION}` refused the credential: {answer}"))),
        404 => Err(ToolError::InvalidInput(format!("not found: {path}"))),
        status => Err(ToolError::Failed(format!("`{CONNECTION}` answered {status}: {answer}"))),
    }
}

fn describe(e: &HostError) -> String {
    match e {
        HostError::Denied(m) => format!("denied: {m}"),
        HostError::NotFound(m) => format!("not found: {m}"),
        HostError::Invalid(m) => format!("invalid: {m}"),
        HostError::Unavailable(m) => format!("unavailable: {m}"),
    }
}

/// What each tool does to the world. Be honest: MCP clients show it to people, a tenant may
/// require approval for every irreversible tool, and an upgrade that makes a tool riskier
/// needs the admin's consent. `open_world`: it reaches an outside system (through `vault`).
impl EffectsGuest for Template {
    fn effects() -> Vec<ToolEffect> {
        vec![
            ToolEffect { tool: "shout".into(), effect: Effect::ReadOnly, idempotent: true, open_world: false },
        ]
    }
}

/// The JSON Schema of what each tool returns (MCP's `outputSchema`): list a tool here once
/// its result's shape is settled; clients then check every result against it. A tool left
/// out declares none.
impl exports::airlock::tool::outputs::Guest for Template {
    fn outputs() -> Vec<exports::airlock::tool::outputs::ToolOutput> {
        Vec::new()
    }
}

export!(Template);
