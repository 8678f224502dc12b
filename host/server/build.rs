//! Builds the tool components in `plugins/` for `wasm32-wasip2`, so one
//! `cargo build` (or `cargo test`) builds the host and every component it
//! bundles or tests against. Installs the target with rustup when missing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir.join("../..");
    let plugins = root.join("plugins");
    watch(&root.join("wit"));
    watch(&plugins.join("Cargo.toml"));
    watch(&plugins.join("Cargo.lock"));
    if let Ok(entries) = std::fs::read_dir(&plugins) {
        for entry in entries.flatten() {
            let dir = entry.path();
            if dir.join("Cargo.toml").exists() {
                watch(&dir.join("Cargo.toml"));
                // A plugin built from another's sources (`sandbox-probe-declared`) has no `src`:
                // watching a path that does not exist makes cargo rerun this script, and
                // rebuild the whole package, on every invocation.
                if dir.join("src").exists() {
                    watch(&dir.join("src"));
                }
            }
        }
    }

    ship_publishers(&root.join("marketplace/publishers"));
    ensure_wasm_target();

    // A target directory of its own beside the host's: the outer cargo holds a lock on its own.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    let target_dir =
        out_dir.ancestors().nth(4).map(|p| p.join("wasm-plugins")).unwrap_or_else(|| out_dir.join("wasm-plugins"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("cargo:warning=compiling tool components in plugins/ for wasm32-wasip2 (first build takes a minute)");
    let status = Command::new(cargo)
        .args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_PRIMARY_PACKAGE")
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!("building plugins/ for wasm32-wasip2 failed ({s}); the compiler's messages are above")),
        Err(e) => fail(&format!("cannot run cargo to build plugins/: {e}")),
    }
    println!("cargo:rustc-env=AIRLOCK_PLUGIN_DIR={}", target_dir.join("wasm32-wasip2/release").display());
}

/// Writes `OUT_DIR/shipped_publishers.rs`: `(publisher, contents)` of every `NAME.pub` in
/// `dir`, the publisher keys the binary trusts (`host/server/src/marketplace/trust.rs`).
fn ship_publishers(dir: &Path) {
    watch(dir);
    let mut entries: Vec<(String, String)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let path = e.path();
                    let name = path.file_name()?.to_str()?.strip_suffix(".pub")?.to_string();
                    Some((name, std::fs::read_to_string(&path).ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    let body: Vec<String> = entries.iter().map(|(n, text)| format!("({n:?}, {text:?})")).collect();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("shipped_publishers.rs");
    if let Err(e) = std::fs::write(&out, format!("&[{}]", body.join(", "))) {
        fail(&format!("cannot write {}: {e}", out.display()));
    }
}

fn watch(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}

fn ensure_wasm_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == "wasm32-wasip2"))
        .unwrap_or(false);
    if installed {
        return;
    }
    println!("cargo:warning=installing the wasm32-wasip2 target with rustup");
    match Command::new("rustup").args(["target", "add", "wasm32-wasip2"]).status() {
        Ok(s) if s.success() => {}
        _ => fail("the wasm32-wasip2 target is missing and `rustup target add wasm32-wasip2` failed: run it by hand"),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
