//! Conditions: CEL expressions over typed parameters, OpenFGA style.
//!
//! A conditional tuple holds only if its condition evaluates to `true` with
//! the tuple's own context merged over the request's context (the tuple wins
//! on a key clash). A missing parameter, a value of the wrong type, or an
//! expression that fails or is not boolean is an error, never a "yes".

use std::net::IpAddr;
use std::sync::Arc;

use cel_interpreter::extractors::This;
use cel_interpreter::{Context, Program, Value};
use serde_json::{Map, Value as Json};

use crate::engine::EngineError;
use crate::model::Condition;

/// Evaluates `condition` with the tuple's and the request's context.
pub fn evaluate(
    condition: &Condition,
    tuple_context: &Map<String, Json>,
    request_context: &Map<String, Json>,
) -> Result<bool, EngineError> {
    let fail = |why: String| EngineError::Validation(format!("condition `{}`: {why}", condition.name));
    let program =
        Program::compile(&condition.expression).map_err(|e| fail(format!("expression does not parse: {e}")))?;
    let mut ctx = Context::default();
    ctx.add_function("in_cidr", in_cidr);
    let mut missing = Vec::new();
    for (name, type_name) in &condition.parameters {
        match tuple_context.get(name).or_else(|| request_context.get(name)) {
            Some(v) => {
                let value = to_cel(v, type_name).map_err(|why| fail(format!("parameter `{name}`: {why}")))?;
                ctx.add_variable_from_value(name.as_str(), value);
            }
            None => missing.push(name.as_str()),
        }
    }
    if !missing.is_empty() {
        return Err(fail(format!("missing parameters: {}", missing.join(", "))));
    }
    match program.execute(&ctx) {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(other) => Err(fail(format!("expression returned {other:?}, not a bool"))),
        Err(e) => Err(fail(format!("evaluation failed: {e}"))),
    }
}

/// Converts a JSON context value to the CEL value of the declared parameter type.
fn to_cel(v: &Json, type_name: &str) -> Result<Value, String> {
    let wrong = || format!("`{v}` is not a {type_name}");
    let t = type_name.trim();
    if let Some(inner) = t.strip_prefix("list<").and_then(|s| s.strip_suffix('>')) {
        let items = v.as_array().ok_or_else(wrong)?;
        return Ok(Value::List(Arc::new(items.iter().map(|i| to_cel(i, inner)).collect::<Result<_, _>>()?)));
    }
    if let Some(inner) = t.strip_prefix("map<").and_then(|s| s.strip_suffix('>')) {
        let obj = v.as_object().ok_or_else(wrong)?;
        let mut map = std::collections::HashMap::new();
        for (k, item) in obj {
            map.insert(k.clone(), to_cel(item, inner)?);
        }
        return Ok(Value::from(map));
    }
    Ok(match t {
        "int" => Value::Int(match v {
            Json::Number(n) => {
                n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)).ok_or_else(wrong)?
            }
            Json::String(s) => s.parse().map_err(|_| wrong())?,
            _ => return Err(wrong()),
        }),
        "uint" => Value::UInt(match v {
            Json::Number(n) => n.as_u64().ok_or_else(wrong)?,
            Json::String(s) => s.parse().map_err(|_| wrong())?,
            _ => return Err(wrong()),
        }),
        "double" => Value::Float(
            match v {
                Json::Number(n) => n.as_f64(),
                Json::String(s) => s.parse::<f64>().ok(),
                _ => None,
            }
            // Out of range (parsed as infinity) is an error, as in OpenFGA.
            .filter(|f| f.is_finite())
            .ok_or_else(wrong)?,
        ),
        "bool" => Value::Bool(v.as_bool().ok_or_else(wrong)?),
        "string" => Value::String(Arc::new(v.as_str().ok_or_else(wrong)?.to_string())),
        "timestamp" => {
            Value::Timestamp(chrono::DateTime::parse_from_rfc3339(v.as_str().ok_or_else(wrong)?).map_err(|_| wrong())?)
        }
        "duration" => cel_interpreter::functions::duration(Arc::new(v.as_str().ok_or_else(wrong)?.to_string()))
            .map_err(|_| wrong())?,
        "ipaddress" => {
            let s = v.as_str().ok_or_else(wrong)?;
            s.parse::<IpAddr>().map_err(|_| wrong())?;
            Value::String(Arc::new(s.to_string()))
        }
        "any" => json_to_cel(v),
        other => return Err(format!("unknown parameter type `{other}`")),
    })
}

fn json_to_cel(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => n.as_i64().map(Value::Int).unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(f64::NAN))),
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(a) => Value::List(Arc::new(a.iter().map(json_to_cel).collect())),
        Json::Object(o) => {
            Value::from(o.iter().map(|(k, v)| (k.clone(), json_to_cel(v))).collect::<std::collections::HashMap<_, _>>())
        }
    }
}

/// `ip.in_cidr("10.0.0.0/8")`: whether the address is in the network.
fn in_cidr(This(ip): This<Arc<String>>, cidr: Arc<String>) -> bool {
    let (Ok(ip), Some((net, bits))) = (ip.parse::<IpAddr>(), cidr.split_once('/')) else { return false };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else { return false };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(expr: &str, params: &[(&str, &str)]) -> Condition {
        Condition {
            name: "c".into(),
            parameters: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            expression: expr.into(),
        }
    }

    fn ctx(v: Json) -> Map<String, Json> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn typed_parameters_and_the_tuple_context_winning() {
        let c = cond("x < 100", &[("x", "int")]);
        assert_eq!(evaluate(&c, &ctx(json!({"x": 5})), &ctx(json!({"x": 500}))), Ok(true));
        assert_eq!(evaluate(&c, &ctx(json!({})), &ctx(json!({"x": 500}))), Ok(false));
        let err = evaluate(&c, &ctx(json!({})), &ctx(json!({}))).unwrap_err();
        assert!(err.to_string().contains("missing parameters: x"), "{err}");
        assert!(evaluate(&c, &ctx(json!({"x": "many"})), &ctx(json!({}))).is_err());

        let ts = cond("ts < timestamp(\"2023-10-11T10:00:00.000Z\")", &[("ts", "timestamp")]);
        assert_eq!(evaluate(&ts, &ctx(json!({"ts": "2023-10-11T09:00:00Z"})), &Map::new()), Ok(true));
        let ip = cond("user_ip.in_cidr(cidr)", &[("user_ip", "ipaddress"), ("cidr", "string")]);
        assert_eq!(
            evaluate(&ip, &ctx(json!({"user_ip": "192.168.0.9", "cidr": "192.168.0.0/24"})), &Map::new()),
            Ok(true)
        );
        assert_eq!(
            evaluate(&ip, &ctx(json!({"user_ip": "10.0.0.1", "cidr": "192.168.0.0/24"})), &Map::new()),
            Ok(false)
        );
        let not_bool = cond("x + 1", &[("x", "int")]);
        assert!(evaluate(&not_bool, &ctx(json!({"x": 1})), &Map::new()).is_err());
    }
}
