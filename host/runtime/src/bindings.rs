//! Host bindings for the `airlock:tool` world, generated from `wit/`.
//! Public so benchmarks and embedders can drive a component without the gate.

wasmtime::component::bindgen!({
    world: "tool",
    path: "../../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});
