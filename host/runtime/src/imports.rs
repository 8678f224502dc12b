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

/// The same check on a component's bytes, without compiling it: its top-level imports read
/// with `wasmparser`. Install runs it while verifying a package, before anything is written
/// or compiled; [`crate::Runtime::load`] checks the compiled component again.
pub fn check_component_imports(wasm: &[u8]) -> Result<(), AddError> {
    let mut depth = 0usize;
    let mut forbidden = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| AddError::Invalid(e.to_string()))? {
            wasmparser::Payload::Version { encoding, .. } => {
                if depth == 0 && encoding != wasmparser::Encoding::Component {
                    return Err(AddError::Invalid("a core wasm module, not a component".into()));
                }
                depth += 1;
            }
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let name = import.map_err(|e| AddError::Invalid(e.to_string()))?.name.name;
                    if !ALLOWED.iter().any(|allowed| name.starts_with(allowed)) {
                        forbidden.push(format!("`{name}`"));
                    }
                }
            }
            _ => {}
        }
    }
    if forbidden.is_empty() {
        Ok(())
    } else {
        Err(AddError::ForbiddenImports(forbidden))
    }
}
