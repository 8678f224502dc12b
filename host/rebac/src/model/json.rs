//! The JSON form of a model, as OpenFGA's API and `fga model transform` write it.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{dsl, Condition, Model, RelatedType, RelationDef, Rewrite, TypeDef};

/// The model as OpenFGA JSON (`schema_version`, `type_definitions`, `conditions`).
pub fn to_json(model: &Model) -> Value {
    let types: Vec<Value> = model
        .types
        .iter()
        .map(|t| {
            let relations: Map<String, Value> =
                t.relations.iter().map(|r| (r.name.clone(), rewrite_json(&r.rewrite))).collect();
            let meta: Map<String, Value> = t
                .relations
                .iter()
                .map(|r| {
                    let direct: Vec<Value> = r.directly_related.iter().map(related_json).collect();
                    (r.name.clone(), json!({ "directly_related_user_types": direct }))
                })
                .collect();
            let metadata = if t.relations.is_empty() { Value::Null } else { json!({ "relations": meta }) };
            json!({ "type": t.name, "relations": relations, "metadata": metadata })
        })
        .collect();
    let mut out = json!({ "schema_version": model.schema, "type_definitions": types });
    if !model.conditions.is_empty() {
        let conditions: Map<String, Value> = model
            .conditions
            .values()
            .map(|c| {
                let params: Map<String, Value> = c.parameters.iter().map(|(k, v)| (k.clone(), param_json(v))).collect();
                (c.name.clone(), json!({ "name": c.name, "expression": c.expression, "parameters": params }))
            })
            .collect();
        out["conditions"] = Value::Object(conditions);
    }
    out
}

fn rewrite_json(rw: &Rewrite) -> Value {
    match rw {
        Rewrite::This => json!({ "this": {} }),
        Rewrite::Computed(r) => json!({ "computedUserset": { "relation": r } }),
        Rewrite::TupleToUserset { tupleset, computed } => {
            json!({ "tupleToUserset": { "tupleset": { "relation": tupleset }, "computedUserset": { "relation": computed } } })
        }
        Rewrite::Union(cs) => json!({ "union": { "child": cs.iter().map(rewrite_json).collect::<Vec<_>>() } }),
        Rewrite::Intersection(cs) => {
            json!({ "intersection": { "child": cs.iter().map(rewrite_json).collect::<Vec<_>>() } })
        }
        Rewrite::Difference(a, b) => json!({ "difference": { "base": rewrite_json(a), "subtract": rewrite_json(b) } }),
    }
}

fn related_json(d: &RelatedType) -> Value {
    let mut v = json!({ "type": d.type_name });
    if let Some(r) = &d.relation {
        v["relation"] = json!(r);
    }
    if d.wildcard {
        v["wildcard"] = json!({});
    }
    if let Some(c) = &d.condition {
        v["condition"] = json!(c);
    }
    v
}

/// DSL parameter type (`int`, `list<string>`) to OpenFGA's JSON form.
fn param_json(t: &str) -> Value {
    let t = t.trim();
    for (prefix, name) in [("list<", "TYPE_NAME_LIST"), ("map<", "TYPE_NAME_MAP")] {
        if let Some(inner) = t.strip_prefix(prefix).and_then(|s| s.strip_suffix('>')) {
            return json!({ "type_name": name, "generic_types": [param_json(inner)] });
        }
    }
    json!({ "type_name": format!("TYPE_NAME_{}", t.to_ascii_uppercase()) })
}

fn param_dsl(v: &Value) -> Result<String, String> {
    let name = v.get("type_name").and_then(Value::as_str).ok_or("a parameter has no `type_name`")?;
    let short =
        name.strip_prefix("TYPE_NAME_").ok_or_else(|| format!("unknown parameter type `{name}`"))?.to_ascii_lowercase();
    if short == "list" || short == "map" {
        let inner = v
            .get("generic_types")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .ok_or_else(|| format!("`{name}` needs `generic_types`"))?;
        return Ok(format!("{short}<{}>", param_dsl(inner)?));
    }
    Ok(short)
}

/// Reads OpenFGA JSON into a model, with the same consistency checks as the DSL.
pub fn from_json(v: &Value) -> Result<Model, String> {
    let schema = v.get("schema_version").and_then(Value::as_str).unwrap_or("1.1").to_string();
    let defs =
        v.get("type_definitions").and_then(Value::as_array).ok_or("`type_definitions` is missing or not a list")?;
    let mut types = Vec::new();
    for d in defs {
        let name = d.get("type").and_then(Value::as_str).ok_or("a type definition has no `type`")?.to_string();
        let meta = d.get("metadata").and_then(|m| m.get("relations"));
        let mut relations = Vec::new();
        if let Some(rels) = d.get("relations").and_then(Value::as_object) {
            for (rname, rw) in rels {
                let rewrite = rewrite_from(rw).map_err(|e| format!("type `{name}`, relation `{rname}`: {e}"))?;
                let mut directly_related = Vec::new();
                if let Some(list) = meta
                    .and_then(|m| m.get(rname))
                    .and_then(|r| r.get("directly_related_user_types"))
                    .and_then(Value::as_array)
                {
                    for item in list {
                        directly_related.push(RelatedType {
                            type_name: item
                                .get("type")
                                .and_then(Value::as_str)
                                .ok_or("a related type has no `type`")?
                                .to_string(),
                            relation: item
                                .get("relation")
                                .and_then(Value::as_str)
                                .filter(|s| !s.is_empty())
                                .map(str::to_string),
                            wildcard: item.get("wildcard").map(|w| !w.is_null()).unwrap_or(false),
                            condition: item
                                .get("condition")
                                .and_then(Value::as_str)
                                .filter(|s| !s.is_empty())
                                .map(str::to_string),
                        });
                    }
                }
                relations.push(RelationDef { name: rname.clone(), rewrite, directly_related });
            }
        }
        types.push(TypeDef { name, relations });
    }
    let mut conditions = BTreeMap::new();
    if let Some(cs) = v.get("conditions").and_then(Value::as_object) {
        for (cname, c) in cs {
            let expression = c
                .get("expression")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("condition `{cname}` has no expression"))?;
            let mut parameters = BTreeMap::new();
            if let Some(ps) = c.get("parameters").and_then(Value::as_object) {
                for (p, t) in ps {
                    parameters.insert(
                        p.clone(),
                        param_dsl(t).map_err(|e| format!("condition `{cname}`, parameter `{p}`: {e}"))?,
                    );
                }
            }
            conditions.insert(
                cname.clone(),
                Condition { name: cname.clone(), parameters, expression: dsl_expression(expression) },
            );
        }
    }
    let model = Model { schema, types, conditions };
    // One set of consistency rules for both forms: print as DSL and parse that. The DSL must read
    // back this very model: a name with a space or a line break in it would otherwise print as
    // other text (more types, say) and pass the checks in place of the model returned.
    let reparsed = dsl::parse(&model.to_string()).map_err(|e| e.message)?;
    if reparsed != model {
        return Err(
            "the model has a name or expression the DSL cannot write (a space or a line break in a name?)".into()
        );
    }
    Ok(model)
}

/// An expression as the DSL reads one: each line trimmed, blank lines left out (OpenFGA's JSON
/// keeps the indentation of a multi-line condition).
fn dsl_expression(expression: &str) -> String {
    expression.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n")
}

fn rewrite_from(v: &Value) -> Result<Rewrite, String> {
    let obj = v.as_object().ok_or("a rewrite must be an object")?;
    let relation_of = |v: &Value, key: &str| -> Result<String, String> {
        v.get(key)
            .and_then(|u| u.get("relation"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("`{key}` has no relation"))
    };
    if obj.contains_key("this") {
        Ok(Rewrite::This)
    } else if let Some(c) = obj.get("computedUserset") {
        Ok(Rewrite::Computed(
            c.get("relation").and_then(Value::as_str).ok_or("`computedUserset` has no relation")?.to_string(),
        ))
    } else if let Some(t) = obj.get("tupleToUserset") {
        Ok(Rewrite::TupleToUserset {
            tupleset: relation_of(t, "tupleset")?,
            computed: relation_of(t, "computedUserset")?,
        })
    } else if let Some(u) = obj.get("union") {
        Ok(one_or(children(u)?, Rewrite::Union))
    } else if let Some(i) = obj.get("intersection") {
        Ok(one_or(children(i)?, Rewrite::Intersection))
    } else if let Some(d) = obj.get("difference") {
        let base = rewrite_from(d.get("base").ok_or("`difference` has no base")?)?;
        let subtract = rewrite_from(d.get("subtract").ok_or("`difference` has no subtract")?)?;
        Ok(Rewrite::Difference(Box::new(base), Box::new(subtract)))
    } else {
        Err(format!("unknown rewrite {v}"))
    }
}

/// A union or intersection of one rewrite is that rewrite (which is how the DSL writes and reads it).
fn one_or(mut children: Vec<Rewrite>, group: fn(Vec<Rewrite>) -> Rewrite) -> Rewrite {
    match (children.len(), children.pop()) {
        (1, Some(only)) => only,
        (_, last) => {
            children.extend(last);
            group(children)
        }
    }
}

fn children(v: &Value) -> Result<Vec<Rewrite>, String> {
    v.get("child").and_then(Value::as_array).ok_or("missing `child` list")?.iter().map(rewrite_from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_dsl_round_trip() {
        let m = dsl::parse(
            "model\n  schema 1.1\ntype user\ntype group\n  relations\n    define member: [user, user:*, group#member with c]\n\
type doc\n  relations\n    define parent: [group]\n    define blocked: [user]\n\
    define viewer: ([user] or member from parent) but not blocked\n    define both: viewer and blocked\n\
condition c(x: int, tags: list<string>) {\n  x < 3 && \"a\" in tags\n}\n",
        )
        .unwrap();
        let j = to_json(&m);
        assert_eq!(
            j["type_definitions"][2]["relations"]["viewer"]["difference"]["subtract"]["computedUserset"]["relation"],
            "blocked"
        );
        assert_eq!(j["conditions"]["c"]["parameters"]["tags"]["generic_types"][0]["type_name"], "TYPE_NAME_STRING");
        // JSON objects do not keep relation order; compare with relations sorted.
        let sorted = |mut m: Model| {
            m.types.iter_mut().for_each(|t| t.relations.sort_by(|a, b| a.name.cmp(&b.name)));
            m
        };
        assert_eq!(sorted(from_json(&j).unwrap()), sorted(m));
        // Found by fuzzing (fuzz/, target `openfga_dsl`): names that print as other DSL text were
        // checked as that text and returned as they were.
        let mut injected = j.clone();
        injected["type_definitions"][0]["type"] = json!("user\ntype admin");
        assert!(from_json(&injected).unwrap_err().contains("cannot write"));
        let mut spaced = j.clone();
        spaced["conditions"]["c"]["expression"] = json!("  x < 3 &&\n\n    \"a\" in tags\n");
        assert_eq!(from_json(&spaced).unwrap().conditions["c"].expression, "x < 3 &&\n\"a\" in tags");
        let mut single = j.clone();
        single["type_definitions"][2]["relations"]["both"] =
            json!({ "union": { "child": [{ "computedUserset": { "relation": "viewer" } }] } });
        let single = from_json(&single).unwrap();
        assert_eq!(single.relation("doc", "both").unwrap().rewrite, Rewrite::Computed("viewer".into()));
        let mut broken = j.clone();
        broken["type_definitions"][2]["relations"]["viewer"] = json!({ "computedUserset": { "relation": "nope" } });
        assert!(from_json(&broken).unwrap_err().contains("nope"));
    }
}
