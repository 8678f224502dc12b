//! Merging a package's model fragment into the tenant's authorization model.
//!
//! A tenant without a model runs in the engine's model-less mode (tuples are matched as
//! written); a fragment then adds nothing to merge, and its tuples are kept as they are. A
//! tenant with a model gets the fragment's types appended; a type the model already defines
//! is accepted only if it already has every relation the fragment defines (two packages may
//! share a type such as `customer`), never redefined.

use airlock_marketplace::model::parse_fragment;

/// The tenant's next model DSL, or `None` when nothing changes. `own` are the types this
/// agent's installed version brought: an upgrade replaces their blocks (it may add relations
/// to them); other existing types are only shared.
pub(super) fn merged_model(
    current: Option<&str>,
    fragment: Option<&str>,
    own: &[String],
) -> Result<Option<String>, String> {
    let (Some(current), Some(fragment)) = (current, fragment) else {
        return Ok(None);
    };
    let wanted = parse_fragment(fragment)?;
    let mut current = current.to_string();
    let mut replaced = false;
    let before = defined_types(&current);
    for (ty, relations) in wanted.iter().filter(|(t, _)| own.contains(t)) {
        // An upgrade may add relations to its own type, never drop one: tuples (its own, or
        // other packages' sharing the type) may use it.
        if let Some((_, had)) = before.iter().find(|(name, _)| name == ty) {
            if let Some(dropped) = had.iter().find(|r| !relations.contains(r)) {
                return Err(format!(
                    "the upgrade drops relation `{dropped}` of type `{ty}`: relations are only ever added"
                ));
            }
        }
        let block = type_block(fragment, ty);
        let without = remove_type_block(&current, ty);
        if without != current && type_block(&current, ty).trim() != block.trim() {
            current = without;
            replaced = true;
        }
    }
    let current = current.as_str();
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
    if added.is_empty() && !replaced {
        return Ok(None);
    }
    let mut next = current.trim_end().to_string();
    next.push_str("\n\n");
    next.push_str(&added);
    airlock_rebac::model::dsl::parse(&next).map_err(|e| format!("the merged model does not parse: {e}"))?;
    Ok(Some(next))
}

/// `dsl` without type `ty`'s block (its `type` line up to the next `type` line).
fn remove_type_block(dsl: &str, ty: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in dsl.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // A block ends at the next top-level keyword (`type`, `condition`, `model`).
        if matches!(words.first(), Some(&"type") | Some(&"condition") | Some(&"model")) {
            skipping = words.first() == Some(&"type") && words.get(1) == Some(&ty);
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `(type, relations)` defined by a full model's DSL (`type X` then `define R:` lines).
pub(super) fn defined_types(dsl: &str) -> Vec<(String, Vec<String>)> {
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
        if trimmed.starts_with("condition ") || trimmed == "model" {
            inside = false;
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
        assert_eq!(
            merged_model(None, Some("type customer\n  relations\n    define offboard: [agent]\n"), &[]),
            Ok(None)
        );
    }

    #[test]
    fn a_fragment_is_appended_and_parses() {
        let next = merged_model(Some(BASE), Some("type customer\n  relations\n    define offboard: [agent]\n"), &[])
            .expect("merges")
            .expect("changes");
        assert!(next.starts_with(BASE.trim_end()), "{next}");
        assert!(next.contains("type customer\n  relations\n    define offboard: [agent]"), "{next}");
    }

    #[test]
    fn an_existing_type_is_shared_but_never_redefined() {
        let with = format!("{BASE}\ntype customer\n  relations\n    define offboard: [agent]\n");
        assert_eq!(
            merged_model(Some(&with), Some("type customer\n  relations\n    define offboard: [agent]\n"), &[]),
            Ok(None)
        );
        let err = merged_model(Some(&with), Some("type customer\n  relations\n    define erase: [agent]\n"), &[])
            .unwrap_err();
        assert!(err.contains("without relation `erase`"), "{err}");
    }

    #[test]
    fn an_upgrade_may_add_relations_to_its_own_type() {
        let with = format!("{BASE}\ntype repository\n  relations\n    define review: [agent]\n");
        let next = merged_model(
            Some(&with),
            Some("type repository\n  relations\n    define review: [agent]\n    define merge: [agent]\n"),
            &["repository".to_string()],
        )
        .expect("merges")
        .expect("changes");
        assert_eq!(next.matches("type repository").count(), 1, "{next}");
        assert!(next.contains("define merge: [agent]"), "{next}");
        assert!(next.contains("type tool"), "the rest of the model stays: {next}");
    }

    #[test]
    fn an_upgrade_never_drops_a_relation_and_keeps_conditions() {
        let with = format!(
            "{BASE}\ntype repository\n  relations\n    define review: [agent]\n\ncondition in_hours(hour: int) {{\n  hour < 18\n}}\n"
        );
        let err = merged_model(
            Some(&with),
            Some("type repository\n  relations\n    define merge: [agent]\n"),
            &["repository".to_string()],
        )
        .unwrap_err();
        assert!(err.contains("drops relation `review`"), "{err}");
        // Unchanged: nothing to do, and the condition after the type is untouched.
        assert_eq!(
            merged_model(
                Some(&with),
                Some("type repository\n  relations\n    define review: [agent]\n"),
                &["repository".to_string()]
            ),
            Ok(None)
        );
        assert!(!remove_type_block(&with, "repository").contains("type repository"));
        assert!(remove_type_block(&with, "repository").contains("condition in_hours"));
    }

    #[test]
    fn a_fragment_that_breaks_the_model_is_refused() {
        let err = merged_model(Some(BASE), Some("type customer\n  relations\n    define offboard: [robot]\n"), &[])
            .unwrap_err();
        assert!(err.contains("does not parse"), "{err}");
    }
}
