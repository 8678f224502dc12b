//! The OpenFGA model readers of `airlock_rebac`: the DSL parser (`model::dsl::parse`) and the
//! JSON model reader (`model::json::from_json`), which tenants' admins and packages feed.
//!
//! The input is read as both (DSL text, and JSON when it is JSON). Checked, beyond "never
//! panics":
//! - a model the DSL parser accepts prints (`Display`, the canonical layout) to text that
//!   parses back to the same model;
//! - its OpenFGA JSON (`to_json`) reads back (`from_json`) to the same model, relation order
//!   aside (JSON objects do not keep it);
//! - a model `from_json` accepts is one the DSL accepts too, with the same content (it is
//!   documented to apply the DSL's consistency checks), and its JSON reads back the same.
#![no_main]

use airlock_rebac::model::{dsl, json, Model};
use libfuzzer_sys::fuzz_target;

/// Relations sorted by name in every type: JSON objects do not keep their order.
fn sorted(mut m: Model) -> Model {
    for t in &mut m.types {
        t.relations.sort_by(|a, b| a.name.cmp(&b.name));
    }
    m
}

fn json_round_trip(model: &Model) {
    let j = json::to_json(model);
    match json::from_json(&j) {
        Ok(back) => assert_eq!(sorted(back), sorted(model.clone()), "to_json then from_json changed the model\n{j}"),
        Err(e) => panic!("the JSON of a valid model does not read back: {e}\n{j}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };

    if let Ok(model) = dsl::parse(text) {
        let printed = model.to_string();
        match dsl::parse(&printed) {
            Ok(again) => assert_eq!(
                again, model,
                "print then parse changed the model\n--- input\n{text}\n--- printed\n{printed}"
            ),
            Err(e) => panic!(
                "a parsed model prints as text that does not parse: {e}\n--- input\n{text}\n--- printed\n{printed}"
            ),
        }
        json_round_trip(&model);
    }

    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        if let Ok(model) = json::from_json(&value) {
            let printed = model.to_string();
            match dsl::parse(&printed) {
                Ok(again) => assert_eq!(
                    sorted(again),
                    sorted(model.clone()),
                    "from_json accepted a model the DSL reads differently\n--- json\n{text}\n--- printed\n{printed}"
                ),
                Err(e) => panic!("from_json accepted a model the DSL refuses: {e}\n{printed}"),
            }
            json_round_trip(&model);
        }
    }
});
