//! What an approver reads, written by the host from the bound action.
//!
//! The one line an approver decides on (the console, the CLI, an external OP's binding
//! message) is rendered from the fields the grant is bound to: the action, the tool, the
//! asking agent and each argument of `details`, quoted as JSON so no argument can pass for
//! another or for the text around it. The asker's own words (a tool's or an agent's
//! `summary`) are kept apart as [`crate::Approval::note`], shown labelled as theirs: an agent
//! whose note says "refund 1.00 EUR" while its arguments say 9999 cannot change what the
//! approver reads.

use serde_json::Value;

/// The host's one-line summary of an action: `refund with billing by agent:offboarder:
/// amount "120.00", currency "EUR", customer_id "42"`.
pub fn summary(agent: &str, tool: &str, action: &str, details: &str) -> String {
    let args = match serde_json::from_str::<Value>(details) {
        Ok(Value::Object(fields)) if fields.is_empty() => "no arguments".to_string(),
        Ok(Value::Object(fields)) => {
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort();
            keys.iter().map(|k| format!("{} {}", name(k), value(&fields[k.as_str()]))).collect::<Vec<_>>().join(", ")
        }
        Ok(other) => value(&other),
        Err(_) => "arguments that are not JSON".to_string(),
    };
    format!("{} with {} by {}: {args}", name(action), name(tool), name(agent))
}

/// A name as is when it is plain (`customer_id`, `billing.refund`, `agent:x`), else quoted.
fn name(s: &str) -> String {
    let plain =
        !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/' | '@'));
    if plain {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

/// A value as JSON (strings quoted and escaped, so no control character or quote breaks out).
fn value(v: &Value) -> String {
    crate::canonical_json(v)
}

#[cfg(test)]
mod tests {
    use super::summary;

    #[test]
    fn arguments_are_quoted_so_none_can_pass_for_another() {
        let s = summary("agent:bot", "billing", "refund", r#"{"customer_id":"42\", amount \"1.00","amount":"9999"}"#);
        assert_eq!(s, r#"refund with billing by agent:bot: amount "9999", customer_id "42\", amount \"1.00""#);
        assert_eq!(summary("agent:bot", "x", "do it", "{}"), r#""do it" with x by agent:bot: no arguments"#);
        assert_eq!(summary("agent:bot", "x", "y", "[1,2]"), "y with x by agent:bot: [1,2]");
        assert!(summary("a", "b", "c", "{\"k\":\"line\\nbreak\"}").lines().count() == 1);
    }
}
