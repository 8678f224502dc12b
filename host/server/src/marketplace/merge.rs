//! Merging a package's model fragment into the tenant's authorization model.
//!
//! A tenant without a model runs in the engine's model-less mode (tuples are matched as
//! written); a fragment then adds nothing to merge, and its tuples are kept as they are. A
//! tenant with a model gets the fragment's types appended; a type the model already defines
//! is accepted only if it already has every relation the fragment defines (two packages may
//! share a type such as `customer`), never redefined.

use airlock_marketplace::model::parse_fragment;

/// The tenant's next model DSL, or `None` when nothing changes.
pub(super) fn merged_model(current: Option<&str>, fragment: Option<&str>) -> Result<Option<String>, String> {
    let (Some(current), Some(fragment)) = (current, fragment) else {
        return Ok(None);
    };
    let wanted = parse_fragment(fragment)?;
    let existing = defined_types(current);
    let mut added = String::new();
    for (ty, relations) in &wanted {
        match existing.iter().find(|(name, _)| name == ty) {
            Some((_, have)) => {
                if let Some(missing) = relations.iter().find(|r| !have.contains(r)) {
                    return Err(format!(
                        "type `{ty}` is already in the tenant's model without relation `{missing}`: an admin must add it, or remove the type"
                    ));
                }
            }
            None => added.push_str(&type_block(fragment, ty)),
        }
    }
    if added.is_empty() {
        return Ok(None);
    }
    let mut next = current.trim_end().to_string();
    next.push_str("\n\n");
    next.push_str(&added);
    airlock_rebac::model::dsl::parse(&next).map_err(|e| format!("the merged model does not parse: {e}"))?;
    Ok(Some(next))
}

/// `(type, relations)` defined by a full model's DSL (`type X` then `define R:` lines).
fn defined_types(dsl: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in dsl.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("type") => {
                if let Some(name) = words.next() {
                    out.push((name.to_string(), Vec::new()));
                }
            }
            Some("define") => {
                if let (Some(last), Some(rel)) = (out.last_mut(), words.next()) {
                    last.1.push(rel.trim_end_matches(':').to_string());
                }
            }
            _ => {}
        }
    }
    out
}

/// The lines of `fragment` that make up type `ty`'s block, re-indented as the DSL expects.
fn type_block(fragment: &str, ty: &str) -> String {
    let mut block = String::new();
    let mut inside = false;
    for line in fragment.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("type ") {
            inside = name.trim() == ty;
            if inside {
                block.push_str(&format!("type {ty}\n"));
            }
            continue;
        }
        if !inside || trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if trimmed == "relations" {
            block.push_str("  relations\n");
        } else {
            block.push_str(&format!("    {trimmed}\n"));
        }
    }
    block.push('\n');
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str =
        "model\n  schema 1.1\n\ntype user\n\ntype agent\n\ntype tool\n  relations\n    define can_use: [agent, user]\n";

    #[test]
    fn model_less_tenants_stay_model_less() {
        assert_eq!(merged_model(None, Some("type customer\n  relations\n    define offboard: [agent]\n")), Ok(None));
    }

    #[test]
    fn a_fragment_is_appended_and_parses() {
        let next = merged_model(Some(BASE), Some("type customer\n  relations\n    define offboard: [agent]\n"))
            .expect("merges")
            .expect("changes");
        assert!(next.starts_with(BASE.trim_end()), "{next}");
        assert!(next.contains("type customer\n  relations\n    define offboard: [agent]"), "{next}");
    }

    #[test]
    fn an_existing_type_is_shared_but_never_redefined() {
        let with = format!("{BASE}\ntype customer\n  relations\n    define offboard: [agent]\n");
        assert_eq!(
            merged_model(Some(&with), Some("type customer\n  relations\n    define offboard: [agent]\n")),
            Ok(None)
        );
        let err =
            merged_model(Some(&with), Some("type customer\n  relations\n    define erase: [agent]\n")).unwrap_err();
        assert!(err.contains("without relation `erase`"), "{err}");
    }

    #[test]
    fn a_fragment_that_breaks_the_model_is_refused() {
        let err =
            merged_model(Some(BASE), Some("type customer\n  relations\n    define offboard: [robot]\n")).unwrap_err();
        assert!(err.contains("does not parse"), "{err}");
    }
}
