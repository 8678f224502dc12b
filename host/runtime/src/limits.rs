//! Per-call limits and how a limit being hit is reported.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::Store;

use crate::state::CallState;
use crate::CallError;

/// What one call may use.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock time, not counting time spent waiting for a human's approval.
    pub deadline: Duration,
    /// CPU budget in fuel units (about one per wasm instruction).
    pub fuel: u64,
    /// Linear memory, per call.
    pub memory_bytes: usize,
    /// Size of the JSON a tool may return.
    pub output_bytes: usize,
    /// Size of the JSON a tool may be given.
    pub input_bytes: usize,
    /// Captured stdout and stderr, each; beyond it the log is truncated, not the call.
    pub log_bytes: usize,
    /// Concurrent instances the pooling allocator reserves room for.
    pub pool_slots: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_secs(10),
            fuel: 2_000_000_000,
            memory_bytes: 64 << 20,
            output_bytes: 1 << 20,
            input_bytes: 1 << 20,
            log_bytes: 64 << 10,
            pool_slots: 256,
        }
    }
}

impl Limits {
    /// These limits with each of `asked`'s that is smaller: a package may ask for less than
    /// the host allows, never more.
    pub fn tightened_by(&self, asked: &Limits) -> Limits {
        Limits {
            deadline: self.deadline.min(asked.deadline),
            fuel: self.fuel.min(asked.fuel),
            memory_bytes: self.memory_bytes.min(asked.memory_bytes),
            output_bytes: self.output_bytes.min(asked.output_bytes),
            input_bytes: self.input_bytes.min(asked.input_bytes),
            log_bytes: self.log_bytes.min(asked.log_bytes),
            pool_slots: self.pool_slots,
        }
    }
}

/// A limit a call ran into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "limit", content = "value", rename_all = "snake_case")]
pub enum LimitExceeded {
    #[error("deadline of {0:?} exceeded")]
    Deadline(Duration),
    #[error("CPU budget of {0} fuel exhausted")]
    Cpu(u64),
    #[error("memory cap of {0} bytes exceeded")]
    Memory(usize),
    #[error("output larger than {0} bytes")]
    Output(usize),
    #[error("input larger than {0} bytes: send a smaller input")]
    Input(usize),
}

/// Turns a trap into the limit it was, or a crash with its message.
pub(crate) fn classify_trap(e: &wasmtime::Error, store: &Store<CallState>) -> CallError {
    if let Some(limit) = e.downcast_ref::<LimitExceeded>() {
        return CallError::Limit(limit.clone());
    }
    if let Some(wasmtime::Trap::OutOfFuel) = e.downcast_ref::<wasmtime::Trap>() {
        return CallError::Limit(LimitExceeded::Cpu(store.data().limits.fuel));
    }
    if store.data().memory.hit {
        return CallError::Limit(LimitExceeded::Memory(store.data().limits.memory_bytes));
    }
    CallError::Trap(format!("{e:#}"))
}

/// A human-readable reason for a failure outside a tool call.
pub(crate) fn describe_trap(e: &wasmtime::Error, store: &Store<CallState>) -> String {
    classify_trap(e, store).to_string()
}

/// Caps linear memory growth, remembering that the cap was hit.
pub(crate) struct MemoryCap {
    pub(crate) max: usize,
    pub(crate) hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.hit = true;
            return Err(wasmtime::Error::new(LimitExceeded::Memory(self.max)));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
