//! Customer offboarding: the steps a company takes when a customer leaves.
//!
//! Every step is a host-made request through the vault (the component holds no credential):
//! `directory-api` is the identity provider (sessions, personal data), `billing-api` the billing
//! system. Which steps need a human is not decided here but by the host's approval policies:
//! the run needs an operations manager's entry approval, `issue-refund` the CFO's, and
//! `delete-customer-data` the DPO's (see `marketplace/offboarding`). The component only checks,
//! through `authz`, that the agent may act on this customer at all.

wit_bindgen::generate!({ world: "tool", path: "../../wit" });

use airlock::tool::types::Error as HostError;
use airlock::tool::{authz, vault};
use exports::airlock::tool::tools::{Guest, ToolDescriptor, ToolError};
use exports::airlock::tool::effects::{Effect, Guest as EffectsGuest, ToolEffect};
use serde_json::{json, Value};

const DIRECTORY: &str = "directory-api";
const BILLING: &str = "billing-api";

struct Offboarding;

fn customer_schema(extra: Value, required: &[&str]) -> String {
    let mut properties = json!({ "customer_id": { "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" } });
    if let (Some(p), Some(extra)) = (properties.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    let mut req = vec!["customer_id"];
    req.extend_from_slice(required);
    json!({ "type": "object", "properties": properties, "required": req, "additionalProperties": false }).to_string()
}

fn tool(name: &str, description: &str, schema: String) -> ToolDescriptor {
    ToolDescriptor { name: name.into(), description: description.into(), input_schema: schema }
}

impl Guest for Offboarding {
    fn describe() -> Vec<ToolDescriptor> {
        vec![
            tool(
                "revoke-access",
                "Sign the customer out everywhere and disable their logins.",
                customer_schema(json!({}), &[]),
            ),
            tool(
                "export-billing-data",
                "Export the customer's invoices and payments (for the customer to keep).",
                customer_schema(json!({}), &[]),
            ),
            tool(
                "cancel-subscriptions",
                "Cancel every active subscription of the customer.",
                customer_schema(json!({}), &[]),
            ),
            tool(
                "issue-refund",
                "Refund an amount to the customer. The CFO must approve each refund.",
                customer_schema(
                    json!({ "amount": { "type": "string", "pattern": "^[0-9]+(\\.[0-9]{2})?$" },
                            "currency": { "type": "string", "pattern": "^[A-Z]{3}$" } }),
                    &["amount", "currency"],
                ),
            ),
            tool(
                "delete-customer-data",
                "Erase the customer's personal data (GDPR art. 17). The DPO must approve.",
                customer_schema(json!({}), &[]),
            ),
        ]
    }

    fn call(name: String, input: String) -> Result<String, ToolError> {
        let input: Value =
            serde_json::from_str(&input).map_err(|e| ToolError::InvalidInput(format!("input is not JSON: {e}")))?;
        let customer = input
            .get("customer_id")
            .and_then(Value::as_str)
            .filter(|c| {
                !c.is_empty()
                    && c.len() <= 64
                    && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
            })
            .ok_or_else(|| ToolError::InvalidInput("`customer_id` is required: letters, digits, `_` or `-`".into()))?;
        require("offboard", &format!("customer:{customer}"))?;
        let (connection, method, path, body) = match name.as_str() {
            "revoke-access" => (DIRECTORY, "POST", format!("/users/{customer}/revoke"), None),
            "export-billing-data" => (BILLING, "GET", format!("/customers/{customer}/export"), None),
            "cancel-subscriptions" => (BILLING, "POST", format!("/customers/{customer}/subscriptions/cancel"), None),
            "issue-refund" => {
                let text = |k: &str| {
                    input
                        .get(k)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| ToolError::InvalidInput(format!("`{k}` is required and must be a string")))
                };
                let body = json!({ "customer_id": customer, "amount": text("amount")?, "currency": text("currency")? });
                (BILLING, "POST", "/refunds".to_string(), Some(body))
            }
            "delete-customer-data" => (DIRECTORY, "DELETE", format!("/users/{customer}/data"), None),
            other => return Err(ToolError::InvalidInput(format!("no tool `{other}` in offboarding"))),
        };
        send(connection, method, &path, body)
    }
}

fn require(relation: &str, object: &str) -> Result<(), ToolError> {
    match authz::check(relation, object) {
        Ok(true) => Ok(()),
        Ok(false) => Err(ToolError::Refused(format!("this agent is not `{relation}` on `{object}`"))),
        Err(e) => Err(ToolError::Refused(format!("authorization unavailable: {}", describe(&e)))),
    }
}

fn send(connection: &str, method: &str, path: &str, body: Option<Value>) -> Result<String, ToolError> {
    let req = vault::HttpRequest {
        method: method.into(),
        url: path.into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.map(|b| b.to_string().into_bytes()),
    };
    let resp = vault::fetch(connection, &req, None).map_err(|e| {
        let why = format!("`{connection}` {method} {path}: {}", describe(&e));
        match e {
            HostError::Denied(_) | HostError::NotFound(_) => ToolError::Refused(why),
            HostError::Invalid(_) | HostError::Unavailable(_) => ToolError::Failed(why),
        }
    })?;
    let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    if !(200..300).contains(&resp.status) {
        return Err(ToolError::Failed(format!("`{connection}` answered {} to {method} {path}: {body}", resp.status)));
    }
    Ok(json!({ "status": resp.status, "response": body }).to_string())
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
impl EffectsGuest for Offboarding {
    fn effects() -> Vec<ToolEffect> {
        vec![
            ToolEffect { tool: "revoke-access".into(), effect: Effect::Reversible, idempotent: true, open_world: true },
            ToolEffect { tool: "export-billing-data".into(), effect: Effect::ReadOnly, idempotent: true, open_world: true },
            ToolEffect { tool: "cancel-subscriptions".into(), effect: Effect::Irreversible, idempotent: true, open_world: true },
            ToolEffect { tool: "issue-refund".into(), effect: Effect::Irreversible, idempotent: false, open_world: true },
            ToolEffect { tool: "delete-customer-data".into(), effect: Effect::Irreversible, idempotent: true, open_world: true },
        ]
    }
}

/// No output schemas yet: results are JSON objects whose shape follows the external API.
impl exports::airlock::tool::outputs::Guest for Offboarding {
    fn outputs() -> Vec<exports::airlock::tool::outputs::ToolOutput> {
        Vec::new()
    }
}

export!(Offboarding);
