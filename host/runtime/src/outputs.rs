//! `airlock:tool/outputs`: the JSON Schema of what each tool returns, as its author declares
//! it (MCP's `outputSchema`).
//!
//! Optional like `effects` (components built before it lack it), so it is read by name;
//! a schema must be JSON whose `type` is `object`, since MCP's structured content is one.

use std::collections::HashMap;

use wasmtime::component::{ComponentType, Instance, Lift};
use wasmtime::Store;

use crate::state::CallState;

/// The export's name.
pub(crate) const EXPORT: &str = "airlock:tool/outputs@0.1.0";

/// The export's record, as the component lowers it.
#[derive(ComponentType, Lift)]
#[component(record)]
struct ToolOutput {
    tool: String,
    #[component(name = "output-schema")]
    output_schema: String,
}

/// Calls the component's `outputs` export: `None` when it has none, else each listed tool's
/// output schema. A tool listed twice, a schema that is not JSON or not of an object, is an
/// error that names it.
pub(crate) async fn read(
    store: &mut Store<CallState>,
    instance: &Instance,
) -> wasmtime::Result<Option<HashMap<String, serde_json::Value>>> {
    let Some(interface) = instance.get_export_index(&mut *store, None, EXPORT) else { return Ok(None) };
    let Some(func) = instance.get_export_index(&mut *store, Some(&interface), "outputs") else {
        wasmtime::bail!("`{EXPORT}` is exported without its `outputs` function");
    };
    let outputs = instance.get_typed_func::<(), (Vec<ToolOutput>,)>(&mut *store, &func)?;
    let (listed,) = outputs.call_async(&mut *store, ()).await?;
    let mut by_tool = HashMap::with_capacity(listed.len());
    for o in listed {
        let schema = parse(&o.tool, &o.output_schema).map_err(wasmtime::Error::msg)?;
        if by_tool.insert(o.tool.clone(), schema).is_some() {
            wasmtime::bail!("outputs() lists tool `{}` twice", o.tool);
        }
    }
    Ok(Some(by_tool))
}

/// An output schema as declared: JSON, an object schema.
fn parse(tool: &str, text: &str) -> Result<serde_json::Value, String> {
    let schema: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("output schema of `{tool}` is not JSON: {e}"))?;
    if schema.get("type").and_then(serde_json::Value::as_str) != Some("object") {
        return Err(format!("output schema of `{tool}` must have `\"type\": \"object\"` (MCP's structured content)"));
    }
    Ok(schema)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn an_output_schema_is_json_describing_an_object() {
        assert!(parse("t", r#"{"type":"object","properties":{"a":{"type":"string"}}}"#).is_ok());
        assert!(parse("t", r#"{"type":"string"}"#).unwrap_err().contains("\"type\": \"object\""));
        assert!(parse("t", "{not json").unwrap_err().contains("not JSON"));
    }
}
