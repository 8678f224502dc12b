//! Billing tools: the example component that uses all three host interfaces.
//!
//! - `lookup-customer`: asks `authz` whether the agent may view the customer,
//!   then reads it from the billing API through the `vault` connection `billing-api`.
//! - `refund`: asks `authz` whether the agent may refund the customer, asks a
//!   CFO through `approval`, then posts the refund through the vault, spending
//!   the grant. The component never sees the billing API's credential.

wit_bindgen::generate!({ world: "tool", path: "../../wit" });

use airlock::tool::approval::{self, ApprovalError, ApprovalRequest};
use airlock::tool::types::Error as HostError;
use airlock::tool::{authz, vault};
use exports::airlock::tool::tools::{Guest, ToolDescriptor, ToolError};
use exports::airlock::tool::effects::{Effect, Guest as EffectsGuest, ToolEffect};
use serde_json::{json, Value};

const CONNECTION: &str = "billing-api";

struct Billing;

impl Guest for Billing {
    fn describe() -> Vec<ToolDescriptor> {
        vec![
            ToolDescriptor {
                name: "lookup-customer".into(),
                description: "Read a customer's billing record (plan, balance, status).".into(),
                input_schema: json!({
                    "type": "object",
                    "properties": { "customer_id": { "type": "string", "description": "The customer's id" } },
                    "required": ["customer_id"],
                    "additionalProperties": false
                })
                .to_string(),
            },
            ToolDescriptor {
                name: "refund".into(),
                description: "Refund an amount to a customer. A CFO must approve each refund.".into(),
                input_schema: json!({
                    "type": "object",
                    "properties": {
                        "customer_id": { "type": "string" },
                        "amount": { "type": "string", "pattern": "^[0-9]+(\\.[0-9]{2})?$" },
                        "currency": { "type": "string", "pattern": "^[A-Z]{3}$" },
                        "reason": { "type": "string" }
                    },
                    "required": ["customer_id", "amount", "currency"],
                    "additionalProperties": false
                })
                .to_string(),
            },
        ]
    }

    fn call(name: String, input: String) -> Result<String, ToolError> {
        let input: Value =
            serde_json::from_str(&input).map_err(|e| ToolError::InvalidInput(format!("input is not JSON: {e}")))?;
        match name.as_str() {
            "lookup-customer" => lookup(&input),
            "refund" => refund(&input),
            other => Err(ToolError::InvalidInput(format!("no tool `{other}` in billing"))),
        }
    }
}

fn field<'a>(input: &'a Value, name: &str) -> Result<&'a str, ToolError> {
    input
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ToolError::InvalidInput(format!("`{name}` is required and must be a string")))
}

fn require(relation: &str, object: &str) -> Result<(), ToolError> {
    match authz::check(relation, object) {
        Ok(true) => Ok(()),
        Ok(false) => Err(ToolError::Refused(format!("this agent is not `{relation}` on `{object}`"))),
        Err(e) => Err(ToolError::Refused(format!("authorization unavailable: {}", describe(&e)))),
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

fn send(method: &str, path: &str, body: Option<Value>, grant: Option<&str>) -> Result<Value, ToolError> {
    let req = vault::HttpRequest {
        method: method.into(),
        url: path.into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.map(|b| b.to_string().into_bytes()),
    };
    let resp =
        vault::fetch(CONNECTION, &req, grant).map_err(|e| ToolError::Refused(format!("vault: {}", describe(&e))))?;
    let parsed: Value =
        serde_json::from_slice(&resp.body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&resp.body)));
    if !(200..300).contains(&resp.status) {
        return Err(ToolError::Failed(format!("billing API answered {}: {parsed}", resp.status)));
    }
    Ok(parsed)
}

fn lookup(input: &Value) -> Result<String, ToolError> {
    let id = field(input, "customer_id")?;
    require("viewer", &format!("customer:{id}"))?;
    Ok(send("GET", &format!("/customers/{id}"), None, None)?.to_string())
}

fn refund(input: &Value) -> Result<String, ToolError> {
    let id = field(input, "customer_id")?;
    let amount = field(input, "amount")?;
    let currency = field(input, "currency")?;
    require("refunder", &format!("customer:{id}"))?;
    let details = json!({ "customer_id": id, "amount": amount, "currency": currency });
    let grant = approval::request(&ApprovalRequest {
        action: "refund".into(),
        summary: format!("refund {amount} {currency} to customer {id}"),
        role: Some("cfo".into()),
        details: details.to_string(),
        expires_in_seconds: None,
    })
    .map_err(|e| match e {
        ApprovalError::Denied(reason) => ToolError::Refused(format!("the CFO refused the refund: {reason}")),
        ApprovalError::Expired => ToolError::Refused("nobody approved the refund before it expired".into()),
        ApprovalError::Invalid(m) => ToolError::Failed(format!("approval request rejected: {m}")),
        ApprovalError::Unavailable(m) => ToolError::Refused(format!("approval unavailable: {m}")),
    })?;
    let receipt = send("POST", "/refunds", Some(details), Some(&grant.id))?;
    Ok(json!({ "refund": receipt, "approved_by": grant.approver }).to_string())
}

/// What each tool does to the world: MCP clients see it as annotations, and a tenant may
/// require approval for every irreversible tool.
impl EffectsGuest for Billing {
    fn effects() -> Vec<ToolEffect> {
        vec![
            ToolEffect { tool: "lookup-customer".into(), effect: Effect::ReadOnly, idempotent: true, open_world: true },
            ToolEffect { tool: "refund".into(), effect: Effect::Irreversible, idempotent: false, open_world: true },
        ]
    }
}

/// No output schemas yet: results are JSON objects whose shape follows the external API.
impl exports::airlock::tool::outputs::Guest for Billing {
    fn outputs() -> Vec<exports::airlock::tool::outputs::ToolOutput> {
        Vec::new()
    }
}

export!(Billing);
