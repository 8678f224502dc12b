//! Reading the model fragment just far enough to know which types and relations it defines.
//!
//! The full DSL is the authorization engine's to parse when install merges the fragment; here
//! we need the defined names, so policy sanity can allow tuples on the package's own types and
//! refuse a fragment that redefines the host's types.

use std::collections::BTreeMap;

use crate::names::is_relation;

/// Types the host owns: a package may not define them (it would rewrite who may use every
/// tool, connection or agent of the tenant), nor write tuples on them except as allowed.
pub const RESERVED_TYPES: &[&str] = &["agent", "tool", "connection", "tenant", "user", "group", "team"];

/// The types a fragment defines, each with its relations.
pub type Defined = BTreeMap<String, Vec<String>>;

/// Parses `type NAME` / `relations` / `define REL: ...` lines; anything else is an error
/// naming the line (1-based). `model` and `schema` headers are refused: the host owns them.
pub fn parse_fragment(text: &str) -> Result<Defined, String> {
    let mut defined = Defined::new();
    let mut current: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = match raw.split_once('#') {
            // `#` starts a comment only at the start or after whitespace (`team#member` is syntax).
            Some((before, _)) if before.trim().is_empty() => "",
            _ => raw.trim(),
        };
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        match words.next() {
            Some("type") => {
                let name = words.next().unwrap_or_default();
                if !is_relation(name) || words.next().is_some() {
                    return Err(format!("line {line_no}: `{line}` is not `type NAME`"));
                }
                if RESERVED_TYPES.contains(&name) {
                    return Err(format!(
                        "line {line_no}: type `{name}` belongs to the host; a package may not define it"
                    ));
                }
                if defined.insert(name.to_string(), Vec::new()).is_some() {
                    return Err(format!("line {line_no}: type `{name}` is defined twice"));
                }
                current = Some(name.to_string());
            }
            Some("relations") if words.next().is_none() && current.is_some() => {}
            Some("define") => {
                let Some(ty) = current.as_ref() else {
                    return Err(format!("line {line_no}: `define` outside a type"));
                };
                let rest = line.trim_start_matches("define").trim_start();
                let Some((rel, expr)) = rest.split_once(':') else {
                    return Err(format!("line {line_no}: `{line}` is not `define RELATION: ...`"));
                };
                let rel = rel.trim();
                if !is_relation(rel) || expr.trim().is_empty() {
                    return Err(format!("line {line_no}: `{line}` is not `define RELATION: ...`"));
                }
                let relations = defined.entry(ty.clone()).or_default();
                if relations.iter().any(|r| r == rel) {
                    return Err(format!("line {line_no}: relation `{rel}` of `{ty}` is defined twice"));
                }
                relations.push(rel.to_string());
            }
            Some(word) => {
                return Err(format!(
                    "line {line_no}: `{word}` is not allowed in a fragment (only `type`, `relations`, `define`)"
                ))
            }
            None => {}
        }
    }
    if defined.is_empty() {
        return Err("the fragment defines no type".into());
    }
    Ok(defined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_types_and_relations() {
        let d = parse_fragment(
            "# customers\ntype customer\n  relations\n    define offboard: [agent]\n    define viewer: [agent, team#member]\n",
        )
        .unwrap();
        assert_eq!(d["customer"], vec!["offboard", "viewer"]);
    }

    #[test]
    fn refuses_host_types_and_headers() {
        assert!(parse_fragment("type tool\n relations\n define can_use: [agent]").unwrap_err().contains("`tool`"));
        assert!(parse_fragment("model\n schema 1.1\ntype x").unwrap_err().contains("`model`"));
    }
}
