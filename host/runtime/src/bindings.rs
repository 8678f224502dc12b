//! Host bindings for the `airlock:tool` world, generated from `wit/`.

wasmtime::component::bindgen!({
    world: "tool",
    path: "../../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});
