//! The sandbox: runs tool components with wasmtime's component model.
//!
//! A component's only authority is the three `airlock:tool` imports, bound
//! here to the domain engines (one module per interface under `host/`), plus
//! WASI with no authority (no preopened directories, an empty environment,
//! stdout/stderr captured into the call's log and truncated at a bound, no
//! sockets, no `wasi:http`).
//!
//! Components are checked and compiled once when added ([`Runtime::add`]):
//! their imports must be in the allowed set, the machine code is cached on
//! disk, and an `InstancePre` is kept. Every call gets a fresh `Store` from
//! the pooling allocator, with a deadline (epoch), a CPU budget (fuel), a
//! linear-memory cap and an output cap ([`Limits`]).

pub mod bindings;
mod cache;
pub use cache::CompileCache;
mod effects;
pub use effects::{Effect, Effects};
mod engine;
pub use engine::EPOCH_IDLE_AFTER;
mod host;
mod imports;
mod limits;
mod log;
mod outputs;
mod state;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::component::Linker;
use wasmtime::{Engine, Store};

use bindings::exports::airlock::tool::tools::ToolError as WitToolError;
pub use imports::check_component_imports;
pub use limits::{LimitExceeded, Limits};
use state::CallState;
pub use state::{CallContext, Services};

/// Where vault requests get a W3C `traceparent` header from: set by the host when it exports
/// traces, so an external API sees the call's trace; unset, requests carry none.
static TRACE_HEADER: std::sync::OnceLock<fn() -> Option<String>> = std::sync::OnceLock::new();

/// Makes every vault request carry the `traceparent` `header` gives for the current span
/// (unless the tool set one itself). Set once per process; later calls are ignored.
pub fn set_trace_header(header: fn() -> Option<String>) {
    let _ = TRACE_HEADER.set(header);
}

pub(crate) fn trace_header() -> Option<String> {
    TRACE_HEADER.get().and_then(|header| header())
}

/// One tool a component offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub description: String,
    pub input_schema: serde_json::Value,
    /// What it does to the world, as declared by the component's `effects` export.
    #[serde(default)]
    pub effects: Effects,
    /// The JSON Schema of what it returns, as declared by the component's `outputs` export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<serde_json::Value>,
}

/// A component ready to run.
pub struct LoadedComponent {
    pub name: String,
    pub sha256: String,
    pub tools: Vec<ToolInfo>,
    /// What each call of this component may use: the runtime's limits, or tighter ones its
    /// package asked for ([`Runtime::load`]).
    pub limits: Limits,
    pre: bindings::ToolPre<CallState>,
}

/// Why a component was not added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("component name `{0}` must be lower-case letters, digits and `-`")]
    BadName(String),
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    #[error("component imports interfaces outside the allowed set: {}. A tool may import only `airlock:tool/{{authz,approval,vault}}@0.1.0` and WASI cli, io, clocks, random and filesystem", .0.join(", "))]
    ForbiddenImports(Vec<String>),
    #[error("component does not export `airlock:tool/tools@0.1.0`: build it against the `tool` world in wit/")]
    MissingExport,
    #[error("component cannot be prepared: {0}")]
    Link(String),
    #[error("component's describe() failed: {0}")]
    Describe(String),
    #[error("component's tool descriptors are invalid: {0}")]
    BadDescriptor(String),
}

/// Why a call did not return a value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum CallError {
    #[error("no component `{0}`")]
    UnknownComponent(String),
    #[error("component `{component}` has no tool `{tool}`")]
    UnknownTool { component: String, tool: String },
    #[error("input is not valid: {0}")]
    InvalidInput(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("tool failed: {0}")]
    Failed(String),
    #[error("{0}")]
    Limit(LimitExceeded),
    #[error("tool crashed: {0}")]
    Trap(String),
    /// The external API the tool depended on failed (no answer, or a 5xx): the call was
    /// allowed, nothing refused it, and it did not happen.
    #[error("{0}")]
    Upstream(UpstreamFailure),
}

/// How the external API behind a connection failed a call (see [`CallError::Upstream`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamFailure {
    /// The connection the request went through.
    pub connection: String,
    /// The API's host name.
    pub host: String,
    /// Why: `the name does not resolve`, `the connection was refused`, `answered 503`...
    pub reason: String,
    /// It may have received the request but did not answer in time.
    pub timed_out: bool,
    /// The API answered with a 5xx status (it was reached).
    pub status: Option<u16>,
    /// What the tool itself reported, for the log.
    pub tool_message: Option<String>,
}

impl std::fmt::Display for UpstreamFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(
                f,
                "the external API `{}` (connection `{}`) answered {status}: the call was allowed but the API failed it",
                self.host, self.connection
            ),
            None => write!(
                f,
                "the external API `{}` (connection `{}`) could not be reached: {}; the call was allowed but did not happen",
                self.host, self.connection, self.reason
            ),
        }
    }
}

/// What a call produced, whatever the outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallOutcome {
    pub result: Result<serde_json::Value, CallError>,
    /// stdout then stderr, each truncated at [`Limits::log_bytes`].
    pub log: String,
    pub fuel_used: u64,
    pub elapsed: Duration,
}

/// The wasmtime engine, linker and loaded components.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    limits: Limits,
    services: Arc<Services>,
    cache: Option<CompileCache>,
    components: RwLock<HashMap<String, Arc<LoadedComponent>>>,
    /// Components compiled, and loaded from the cache, since start (what `serve` reports).
    compiled: std::sync::atomic::AtomicUsize,
    from_cache: std::sync::atomic::AtomicUsize,
    /// Advances the epoch (the deadline clock) while calls run.
    ticker: engine::EpochTicker,
}

impl Runtime {
    /// A runtime with `limits` for every call; compiled code is cached in `cache` when given.
    pub fn new(
        services: Arc<Services>,
        limits: Limits,
        cache: Option<CompileCache>,
    ) -> Result<Runtime, wasmtime::Error> {
        let engine = engine::build(&limits)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::Tool::add_to_linker::<CallState, wasmtime::component::HasSelf<CallState>>(&mut linker, |s| s)?;
        if let Some(dir) = cache.as_ref().map(|c| &c.dir) {
            std::fs::create_dir_all(dir)
                .map_err(|e| wasmtime::format_err!("cannot create cache dir `{}`: {e}", dir.display()))?;
        }
        let ticker = engine::EpochTicker::start(&engine);
        Ok(Runtime {
            engine,
            linker,
            limits,
            services,
            cache,
            components: RwLock::new(HashMap::new()),
            compiled: Default::default(),
            from_cache: Default::default(),
            ticker,
        })
    }

    /// The engine (shared with benchmarks that compare against bare wasmtime).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// How many components were compiled, and how many loaded from the compile cache, since
    /// this runtime started: a restart that recompiles shows here.
    pub fn compile_counts(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.compiled.load(Relaxed), self.from_cache.load(Relaxed))
    }

    /// The per-call limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Checks, compiles (or loads from the cache) and registers a component.
    pub async fn add(&self, name: &str, wasm: &[u8]) -> Result<Arc<LoadedComponent>, AddError> {
        let loaded = self.load(name, wasm, None).await?;
        self.components.write().insert(name.to_string(), loaded.clone());
        Ok(loaded)
    }

    /// Checks and compiles (or loads from the cache) a component without registering it, for
    /// a caller that keeps its own registry (the marketplace keeps one per tenant) and runs it
    /// with [`Runtime::call_loaded`]. `limits` may only tighten the runtime's: each field is
    /// the smaller of the two.
    pub async fn load(
        &self,
        name: &str,
        wasm: &[u8],
        limits: Option<&Limits>,
    ) -> Result<Arc<LoadedComponent>, AddError> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(AddError::BadName(name.to_string()));
        }
        let sha256 = hex::encode(Sha256::digest(wasm));
        let (component, source) = cache::load_or_compile(&self.engine, self.cache.as_ref(), &sha256, wasm)?;
        let counter = if source == cache::Source::Cache { &self.from_cache } else { &self.compiled };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        imports::check(&self.engine, &component)?;
        let pre = self.linker.instantiate_pre(&component).map_err(|e| AddError::Link(format!("{e:#}")))?;
        let pre = bindings::ToolPre::new(pre).map_err(|_| AddError::MissingExport)?;
        let tools = self.describe(name, &pre).await?;
        let limits = match limits {
            Some(asked) => self.limits.tightened_by(asked),
            None => self.limits.clone(),
        };
        Ok(Arc::new(LoadedComponent { name: name.to_string(), sha256, tools, limits, pre }))
    }

    /// Puts back a component that [`Runtime::add`] replaced (when storing the new one failed).
    pub fn restore(&self, component: Arc<LoadedComponent>) {
        self.components.write().insert(component.name.clone(), component);
    }

    /// Forgets a component; calls already running finish.
    pub fn remove(&self, name: &str) -> bool {
        self.components.write().remove(name).is_some()
    }

    /// A loaded component by name.
    pub fn component(&self, name: &str) -> Option<Arc<LoadedComponent>> {
        self.components.read().get(name).cloned()
    }

    /// All loaded components, by name.
    pub fn components(&self) -> Vec<Arc<LoadedComponent>> {
        let mut all: Vec<_> = self.components.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    async fn describe(&self, name: &str, pre: &bindings::ToolPre<CallState>) -> Result<Vec<ToolInfo>, AddError> {
        let ctx = Arc::new(CallContext::describe(name));
        let mut store = self.new_store(ctx, &self.limits);
        let run = async {
            let instance = pre.instance_pre().instantiate_async(&mut store).await?;
            let tool = bindings::Tool::new(&mut store, &instance)?;
            let descriptors = tool.airlock_tool_tools().call_describe(&mut store).await?;
            let effects = effects::read(&mut store, &instance).await?;
            let outputs = outputs::read(&mut store, &instance).await?;
            wasmtime::Result::<_>::Ok((descriptors, effects, outputs))
        };
        let (descriptors, mut effects, mut outputs) =
            run.await.map_err(|e| AddError::Describe(limits::describe_trap(&e, &store)))?;
        let mut tools = Vec::with_capacity(descriptors.len());
        for d in descriptors {
            if d.name.is_empty() || !d.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
                return Err(AddError::BadDescriptor(format!(
                    "tool name `{}` must be lower-case letters, digits and `-`",
                    d.name
                )));
            }
            let input_schema = serde_json::from_str(&d.input_schema)
                .map_err(|e| AddError::BadDescriptor(format!("input schema of `{}` is not JSON: {e}", d.name)))?;
            let effects = effects.as_mut().and_then(|e| e.remove(&d.name)).unwrap_or_default();
            let output_schema = outputs.as_mut().and_then(|o| o.remove(&d.name));
            tools.push(ToolInfo { name: d.name, description: d.description, input_schema, effects, output_schema });
        }
        if let Some(unknown) = effects.and_then(|left| left.into_keys().next()) {
            return Err(AddError::BadDescriptor(format!(
                "effects() names tool `{unknown}`, which describe() does not list"
            )));
        }
        if let Some(unknown) = outputs.and_then(|left| left.into_keys().next()) {
            return Err(AddError::BadDescriptor(format!(
                "outputs() names tool `{unknown}`, which describe() does not list"
            )));
        }
        Ok(tools)
    }

    fn new_store(&self, ctx: Arc<CallContext>, limits: &Limits) -> Store<CallState> {
        let mut state = CallState::new(ctx, self.services.clone(), limits);
        state.running = Some(self.ticker.running());
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        // Fuel is on for every store of this engine; a failure here would be a config bug.
        let _ = store.set_fuel(limits.fuel);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(wasmtime::Error::new(LimitExceeded::Deadline(ctx.data().limits.deadline)))
            } else {
                // Let other tasks on this worker run, then keep going.
                Ok(wasmtime::UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// Runs `tool` of `component` with JSON `input` as the caller in `ctx`.
    ///
    /// The caller (the gate) has already decided the agent may use the tool;
    /// each import re-checks its own authorization at the moment of use.
    pub async fn call(&self, ctx: Arc<CallContext>, component: &str, tool: &str, input: &str) -> CallOutcome {
        let Some(loaded) = self.component(component) else {
            return CallOutcome::early(CallError::UnknownComponent(component.to_string()), Instant::now());
        };
        self.call_loaded(ctx, &loaded, tool, input).await
    }

    /// [`Runtime::call`] of a component the caller holds (from [`Runtime::load`]), under the
    /// component's own limits.
    pub async fn call_loaded(
        &self,
        ctx: Arc<CallContext>,
        loaded: &LoadedComponent,
        tool: &str,
        input: &str,
    ) -> CallOutcome {
        let started = Instant::now();
        let limits = &loaded.limits;
        if !loaded.tools.iter().any(|t| t.name == tool) {
            return CallOutcome::early(
                CallError::UnknownTool { component: loaded.name.clone(), tool: tool.to_string() },
                started,
            );
        }
        if input.len() > limits.input_bytes {
            return CallOutcome::early(CallError::Limit(LimitExceeded::Input(limits.input_bytes)), started);
        }
        let mut store = self.new_store(ctx, limits);
        let run = async {
            let instance = loaded.pre.instantiate_async(&mut store).await?;
            instance.airlock_tool_tools().call_call(&mut store, tool, input).await
        };
        let raw = run.await;
        let result = match raw {
            Ok(Ok(output)) if output.len() > limits.output_bytes => {
                Err(CallError::Limit(LimitExceeded::Output(limits.output_bytes)))
            }
            Ok(Ok(output)) => {
                serde_json::from_str(&output).map_err(|e| CallError::Failed(format!("tool returned invalid JSON: {e}")))
            }
            // A tool reports an API that failed it as it likes (often as a refusal); the host
            // saw the request fail, and says so.
            Ok(Err(e)) => match (e, store.data_mut().upstream.take()) {
                (WitToolError::InvalidInput(m), _) => Err(CallError::InvalidInput(m)),
                (WitToolError::Refused(m) | WitToolError::Failed(m), Some(mut failure)) => {
                    failure.tool_message = Some(m);
                    Err(CallError::Upstream(failure))
                }
                (WitToolError::Refused(m), None) => Err(CallError::Refused(m)),
                (WitToolError::Failed(m), None) => Err(CallError::Failed(m)),
            },
            Err(e) => Err(limits::classify_trap(&e, &store)),
        };
        let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let log = store.data().log();
        CallOutcome { result, log, fuel_used, elapsed: started.elapsed() }
    }
}

impl CallOutcome {
    fn early(error: CallError, started: Instant) -> CallOutcome {
        CallOutcome { result: Err(error), log: String::new(), fuel_used: 0, elapsed: started.elapsed() }
    }
}
