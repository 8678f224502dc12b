//! The allowed import set: what a tool component may ask the host for.

use wasmtime::component::Component;
use wasmtime::Engine;

use crate::AddError;

/// Interfaces a component may import, by prefix of the fully qualified name.
const ALLOWED: &[&str] = &[
    "airlock:tool/types@0.1.0",
    "airlock:tool/authz@0.1.0",
    "airlock:tool/approval@0.1.0",
    "airlock:tool/vault@0.1.0",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
];

/// Refuses a component that imports anything else, naming every offender.
pub(crate) fn check(engine: &Engine, component: &Component) -> Result<(), AddError> {
    let ty = component.component_type();
    let forbidden: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name)
        .filter(|name| !ALLOWED.iter().any(|allowed| name.starts_with(allowed)))
        .map(|name| format!("`{name}`"))
        .collect();
    if !forbidden.is_empty() {
        return Err(AddError::ForbiddenImports(forbidden));
    }
    if ty.get_export(engine, "airlock:tool/tools@0.1.0").is_none() {
        return Err(AddError::MissingExport);
    }
    Ok(())
}
