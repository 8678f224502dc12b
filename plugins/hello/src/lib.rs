//! `hello.greet`: no host interface needed, so a call exercises only the gate,
//! the sandbox and the audit trail. The first tool to try on a new host.

wit_bindgen::generate!({ world: "tool", path: "../../wit" });

use exports::airlock::tool::tools::{Guest, ToolDescriptor, ToolError};
use exports::airlock::tool::effects::{Effect, Guest as EffectsGuest, ToolEffect};
use serde_json::{json, Value};

struct Hello;

impl Guest for Hello {
    fn describe() -> Vec<ToolDescriptor> {
        vec![ToolDescriptor {
            name: "greet".into(),
            description: "Return a greeting for `name`.".into(),
            input_schema: json!({
                "type": "object",
                "properties": { "name": { "type": "string", "maxLength": 200 } },
                "required": ["name"],
                "additionalProperties": false
            })
            .to_string(),
        }]
    }

    fn call(name: String, input: String) -> Result<String, ToolError> {
        if name != "greet" {
            return Err(ToolError::InvalidInput(format!("no tool `{name}` in hello")));
        }
        let input: Value = serde_json::from_str(&input).map_err(|e| ToolError::InvalidInput(e.to_string()))?;
        let who = input
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ToolError::InvalidInput("`name` is required and must be a string".into()))?;
        Ok(json!({ "greeting": format!("hello, {who}") }).to_string())
    }
}

/// What each tool does to the world: MCP clients see it as annotations, and a tenant may
/// require approval for every irreversible tool.
impl EffectsGuest for Hello {
    fn effects() -> Vec<ToolEffect> {
        vec![
            ToolEffect { tool: "greet".into(), effect: Effect::ReadOnly, idempotent: true, open_world: false },
        ]
    }
}

/// What `greet` returns: MCP clients see it as the tool's `outputSchema`.
impl exports::airlock::tool::outputs::Guest for Hello {
    fn outputs() -> Vec<exports::airlock::tool::outputs::ToolOutput> {
        let schema = json!({
            "type": "object",
            "properties": { "greeting": { "type": "string" } },
            "required": ["greeting"],
            "additionalProperties": false
        });
        vec![exports::airlock::tool::outputs::ToolOutput { tool: "greet".into(), output_schema: schema.to_string() }]
    }
}

export!(Hello);
