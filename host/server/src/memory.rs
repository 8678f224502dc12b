//! Giving memory back to the operating system after a burst.
//!
//! The binary's own allocations go to jemalloc (`src/main.rs`), whose background thread hands
//! freed pages back after a few seconds. The C libraries inside the host (SQLite, OpenSSL)
//! allocate through glibc's allocator, which keeps what they free for its own reuse and
//! returns pages to the system only from the top of its heaps; [`spawn_reclaimer`] asks glibc
//! every [`RECLAIM_EVERY`] to hand back free pages wherever they are (`malloc_trim`, which also
//! releases whole free pages inside its heaps). Neither can release a page that still holds
//! something alive: while 10,000 calls wait for people, they keep the pages they use (about
//! 700 MiB, README "Benchmarks"). Elsewhere (musl, other systems) the reclaimer does nothing.

use std::time::Duration;

/// How often free memory is handed back.
pub const RECLAIM_EVERY: Duration = Duration::from_secs(5);

/// Starts handing free memory back to the system every [`RECLAIM_EVERY`], for as long as the
/// runtime runs.
#[allow(unsafe_code)] // one FFI call to glibc, below
pub fn spawn_reclaimer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async {
        let mut every = tokio::time::interval(RECLAIM_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // It walks the allocator's free lists under their locks: off the async workers.
            let _ = tokio::task::spawn_blocking(|| {
                // SAFETY: `malloc_trim` only releases memory the allocator holds as free; it
                // takes the allocator's own locks and touches no memory in use.
                unsafe { libc::malloc_trim(0) }
            })
            .await;
        }
    });
}
