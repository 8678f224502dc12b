//! The wasmtime engine configuration and its epoch clock.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// After this long with no call running, the epoch thread sleeps until the next call starts: an
/// idle host (thousands of calls waiting for people, none running) spends nothing on the clock.
pub const EPOCH_IDLE_AFTER: Duration = Duration::from_secs(1);

/// A thread that advances the engine's epoch every [`EPOCH_TICK`] while calls run (and for
/// [`EPOCH_IDLE_AFTER`] after the last one), until dropped.
pub(crate) struct EpochTicker {
    clock: Arc<Clock>,
    thread: Option<std::thread::Thread>,
}

/// What the calls and the epoch thread share.
#[derive(Default)]
struct Clock {
    /// Stores alive now (a store is a call's sandbox).
    running: AtomicUsize,
    /// The thread sleeps (or is about to): the next call to start wakes it.
    parked: AtomicBool,
    stop: AtomicBool,
}

/// Held by a store while it lives: the epoch advances meanwhile.
pub(crate) struct Running(Arc<Clock>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine) -> EpochTicker {
        let clock = Arc::new(Clock::default());
        let weak = engine.weak();
        let shared = clock.clone();
        let idle_ticks = (EPOCH_IDLE_AFTER.as_millis() / EPOCH_TICK.as_millis()) as u32;
        let thread = std::thread::Builder::new()
            .name("airlock-epoch".into())
            .spawn(move || {
                let mut idle = 0u32;
                while !shared.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                    idle = if shared.running.load(Ordering::SeqCst) == 0 { idle + 1 } else { 0 };
                    if idle < idle_ticks {
                        continue;
                    }
                    // Say so first, then look again: a call starting meanwhile either counted
                    // itself before this look or sees `parked` and wakes the thread.
                    shared.parked.store(true, Ordering::SeqCst);
                    while shared.running.load(Ordering::SeqCst) == 0
                        && shared.parked.load(Ordering::SeqCst)
                        && !shared.stop.load(Ordering::Relaxed)
                    {
                        std::thread::park();
                    }
                    shared.parked.store(false, Ordering::SeqCst);
                    idle = 0;
                }
            })
            .ok()
            .map(|handle| handle.thread().clone());
        EpochTicker { clock, thread }
    }

    /// Counts a store as running until the guard drops, waking the thread if it sleeps.
    pub(crate) fn running(&self) -> Running {
        self.clock.running.fetch_add(1, Ordering::SeqCst);
        if self.clock.parked.swap(false, Ordering::SeqCst) {
            if let Some(thread) = &self.thread {
                thread.unpark();
            }
        }
        Running(self.clock.clone())
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.clock.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = &self.thread {
            thread.unpark();
        }
    }
}
