//! Canonical JSON and the argument digest a grant is bound to.
//!
//! Two presenters of the same arguments must compute the same digest whatever order their
//! JSON library writes keys in, so the digest is taken over a canonical text: object keys
//! sorted by their UTF-8 bytes, no whitespace, strings escaped as `serde_json` escapes them,
//! numbers as `serde_json` prints them (so `1` and `1.0` are different arguments). The
//! ordering is done here rather than relied on from `serde_json::Map`, whose order depends on
//! a cargo feature another crate in the build may switch on.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The canonical text of `value`: sorted keys, no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// Hex sha256 of the canonical text of `value`: what a grant's `args_digest` holds.
pub fn args_digest(value: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(value).as_bytes()))
}

/// [`args_digest`] of JSON text, or `None` when the text is not JSON.
pub fn args_digest_of_text(json: &str) -> Option<String> {
    serde_json::from_str::<Value>(json).ok().map(|v| args_digest(&v))
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => out.push_str(&value.to_string()),
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(key, out);
                out.push(':');
                write(item, out);
            }
            out.push('}');
        }
    }
}

fn write_str(s: &str, out: &mut String) {
    // Serializing a string cannot fail; the fallback keeps the function total anyway.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\"")));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_whitespace_do_not_change_the_digest() {
        let a = r#"{"amount":"120.00","customer":42,"meta":{"z":[1,{"b":2,"a":1}],"a":null}}"#;
        let b = "{ \"meta\" : { \"a\" : null, \"z\" : [ 1, { \"a\" : 1, \"b\" : 2 } ] },\n \"customer\": 42, \"amount\": \"120.00\" }";
        assert_eq!(args_digest_of_text(a), args_digest_of_text(b));
        assert_eq!(
            canonical_json(&serde_json::from_str(b).unwrap()),
            r#"{"amount":"120.00","customer":42,"meta":{"a":null,"z":[1,{"a":1,"b":2}]}}"#
        );
    }

    #[test]
    fn different_arguments_have_different_digests() {
        let base = args_digest(&json!({"customer": 42, "amount": "120.00"}));
        assert_ne!(base, args_digest(&json!({"customer": 42, "amount": "1200.00"})));
        assert_ne!(base, args_digest(&json!({"customer": "42", "amount": "120.00"})));
        assert_ne!(args_digest(&json!([1, 2])), args_digest(&json!([2, 1])), "array order matters");
        assert_ne!(args_digest(&json!(1)), args_digest(&json!(1.0)));
        assert_eq!(base.len(), 64);
        assert_eq!(args_digest_of_text("not json"), None);
    }

    #[test]
    fn strings_are_escaped_and_keys_sorted_by_bytes() {
        let v = json!({"é": 1, "z": 2, "A": "quote \" and \n newline"});
        assert_eq!(canonical_json(&v), "{\"A\":\"quote \\\" and \\n newline\",\"z\":2,\"é\":1}");
        // A known vector, so the digest cannot silently change between releases.
        assert_eq!(
            args_digest(&json!({"b": 1, "a": [true, null]})),
            hex::encode(Sha256::digest(br#"{"a":[true,null],"b":1}"#))
        );
    }
}
