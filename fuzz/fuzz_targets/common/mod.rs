//! What several fuzz targets share (included with `#[path]`: each target is its own binary).

use std::path::PathBuf;
use std::sync::OnceLock;

/// Removes `dir` when the fuzzer exits normally (at the end of `-max_total_time` or `-runs`):
/// the fixture lives in a static, and statics are never dropped.
pub fn remove_at_exit(dir: PathBuf) {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn remove() {
        if let Some(dir) = DIR.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    extern "C" {
        fn atexit(callback: extern "C" fn()) -> std::os::raw::c_int;
    }
    if DIR.set(dir).is_ok() {
        // SAFETY: registers a plain function with the C runtime's exit handlers.
        unsafe {
            atexit(remove);
        }
    }
}
