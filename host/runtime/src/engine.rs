//! The wasmtime engine configuration and its epoch clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::Limits;

/// How often the epoch advances: the granularity of deadlines.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The engine every component of this host runs on.
///
/// - pooling allocator, with memories and tables kept resident between calls,
///   pagemap scanning where the kernel has it, and no copy-on-write memory
///   images: no page remapping per call, so a second thread scales instead of
///   fighting TLB shootdowns;
/// - no component-model concurrency (only WASIp3 async needs it; it makes every
///   call slower), fiber-based async host functions instead;
/// - fuel for the CPU budget, epochs for the wall-clock deadline.
pub(crate) fn build(limits: &Limits) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(limits.pool_slots)
        .total_core_instances(limits.pool_slots * 4)
        .total_memories(limits.pool_slots)
        .total_tables(limits.pool_slots * 2)
        .max_memory_size(limits.memory_bytes)
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .concurrency_support(false)
        .consume_fuel(true)
        .epoch_interruption(true)
        // Copy-on-write images save a memcpy at instantiation but make every reset
        // remap pages, and the TLB shootdowns that follow stall the other core:
        // measured with benches/gated_call.rs, 2 threads scaled 1.3x with CoW, 1.9x without.
        .memory_init_cow(false)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// A thread that advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("airlock-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .ok();
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
