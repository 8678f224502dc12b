//! `airlock:tool/effects`: what each tool declares it does to the world.
//!
//! The export is optional (components built for `tool-without-effects` lack it), so it is
//! read by name rather than through the generated world bindings; a tool it does not list
//! counts as [`Effects::UNDECLARED`], the riskiest kind.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use wasmtime::component::{ComponentType, Instance, Lift};
use wasmtime::Store;

use crate::state::CallState;

/// The export's name.
pub(crate) const EXPORT: &str = "airlock:tool/effects@0.1.0";

/// What a call changes, least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ComponentType, Lift)]
#[component(enum)]
#[repr(u8)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    #[component(name = "read-only")]
    ReadOnly,
    #[component(name = "reversible")]
    Reversible,
    #[component(name = "irreversible")]
    Irreversible,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::ReadOnly => "read-only",
            Effect::Reversible => "reversible",
            Effect::Irreversible => "irreversible",
        }
    }

    pub fn parse(s: &str) -> Option<Effect> {
        [Effect::ReadOnly, Effect::Reversible, Effect::Irreversible].into_iter().find(|e| e.as_str() == s)
    }
}

/// What a tool does to the world, as the host acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effects {
    pub effect: Effect,
    /// A second call with the same input changes nothing more than the first.
    pub idempotent: bool,
    /// It reaches systems outside Airlock.
    pub open_world: bool,
    /// Whether its author declared this; [`Effects::UNDECLARED`] otherwise.
    pub declared: bool,
}

impl Default for Effects {
    fn default() -> Effects {
        Effects::UNDECLARED
    }
}

impl Effects {
    /// What a tool whose author declared nothing is taken to do: the worst.
    pub const UNDECLARED: Effects =
        Effects { effect: Effect::Irreversible, idempotent: false, open_world: true, declared: false };

    /// How `self` lets a tool do more than `before` did, in words (empty: it does not).
    pub fn widening_from(&self, before: &Effects) -> Vec<String> {
        let mut more = Vec::new();
        if self.effect > before.effect {
            more.push(format!("is now {} (was {})", self.effect.as_str(), before.effect.as_str()));
        }
        if self.open_world && !before.open_world {
            more.push("now reaches outside systems".to_string());
        }
        if before.idempotent && !self.idempotent && self.effect != Effect::ReadOnly {
            more.push("is no longer idempotent".to_string());
        }
        more
    }
}

/// The export's record, as the component lowers it.
#[derive(ComponentType, Lift)]
#[component(record)]
struct ToolEffect {
    tool: String,
    effect: Effect,
    idempotent: bool,
    #[component(name = "open-world")]
    open_world: bool,
}

/// Calls the component's `effects` export: `None` when it has none, else each listed tool's
/// effects. A tool listed twice is an error (which entry would count?).
pub(crate) async fn read(
    store: &mut Store<CallState>,
    instance: &Instance,
) -> wasmtime::Result<Option<HashMap<String, Effects>>> {
    let Some(interface) = instance.get_export_index(&mut *store, None, EXPORT) else { return Ok(None) };
    let Some(func) = instance.get_export_index(&mut *store, Some(&interface), "effects") else {
        wasmtime::bail!("`{EXPORT}` is exported without its `effects` function");
    };
    let effects = instance.get_typed_func::<(), (Vec<ToolEffect>,)>(&mut *store, &func)?;
    let (listed,) = effects.call_async(&mut *store, ()).await?;
    let mut by_tool = HashMap::with_capacity(listed.len());
    for e in listed {
        let declared = Effects { effect: e.effect, idempotent: e.idempotent, open_world: e.open_world, declared: true };
        if by_tool.insert(e.tool.clone(), declared).is_some() {
            wasmtime::bail!("effects() lists tool `{}` twice", e.tool);
        }
    }
    Ok(Some(by_tool))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(effect: Effect, idempotent: bool, open_world: bool) -> Effects {
        Effects { effect, idempotent, open_world, declared: true }
    }

    #[test]
    fn riskier_effects_widen_and_safer_ones_do_not() {
        let read = declared(Effect::ReadOnly, true, false);
        let undo = declared(Effect::Reversible, true, false);
        let reach = declared(Effect::Reversible, true, true);
        let once = declared(Effect::Reversible, false, false);
        assert_eq!(undo.widening_from(&read), ["is now reversible (was read-only)"]);
        assert_eq!(reach.widening_from(&undo), ["now reaches outside systems"]);
        assert_eq!(once.widening_from(&undo), ["is no longer idempotent"]);
        assert_eq!(
            Effects::UNDECLARED.widening_from(&read),
            ["is now irreversible (was read-only)", "now reaches outside systems", "is no longer idempotent"]
        );
        for safer in [(read, undo), (undo, reach), (undo, once), (read, Effects::UNDECLARED)] {
            assert!(safer.0.widening_from(&safer.1).is_empty(), "{safer:?}");
        }
    }

    #[test]
    fn effects_name_themselves_as_the_wit_enum_does() {
        for e in [Effect::ReadOnly, Effect::Reversible, Effect::Irreversible] {
            assert_eq!(Effect::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
        assert_eq!(Effect::parse("dangerous"), None);
    }
}
