//! Host bindings for the `airlock:tool` world, generated from `wit/`.
//! Public so benchmarks and embedders can drive a component without the gate.

//! They are generated for `tool-without-effects`, what the host requires of every component;
//! the `effects` export of the full `tool` world is optional and read by [`crate::effects`].

wasmtime::component::bindgen!({
    world: "tool-without-effects",
    path: "../../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

/// A component's required exports, instantiated.
pub type Tool = ToolWithoutEffects;
/// A component ready to instantiate.
pub type ToolPre<T> = ToolWithoutEffectsPre<T>;
