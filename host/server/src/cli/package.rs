//! `airlock key` and `airlock package`: what a tool author needs to publish an agent.
//!
//! `key` makes an Ed25519 publisher key (private key file 0600, the public key beside it as
//! `NAME.pub`, for `airlock publisher trust` and the catalog's `marketplace/publishers/`);
//! `package` builds a signed package from an author's folder (`manifest.json` + built
//! components), printing each step.

use std::path::{Path, PathBuf};

use airlock_marketplace::SigningKey;

/// `airlock key --out FILE`: the private key in FILE (0600), the public key beside it
/// (`acme.key` -> `acme.pub`), ready for `airlock publisher trust acme @acme.pub` and for the
/// catalog's `marketplace/publishers/`.
pub(super) fn key(out: &Path) -> Result<(), String> {
    let public = public_path(out);
    if public.exists() {
        return Err(format!(
            "`{}` already exists: choose another `--out`, or move the old key pair away first",
            public.display()
        ));
    }
    let key = SigningKey::generate().map_err(|e| e.to_string())?;
    key.save(out).map_err(|e| format!("cannot write `{}`: {e}", out.display()))?;
    let text = format!("# airlock publisher key {}\n{}\n", key.key_id(), key.public_key_base64());
    std::fs::write(&public, text).map_err(|e| format!("cannot write `{}`: {e}", public.display()))?;
    eprintln!("airlock: private key written to {} (mode 0600; keep it out of the repository)", out.display());
    eprintln!("airlock: public key written to {}", public.display());
    println!("{}", serde_json::json!({ "key_id": key.key_id(), "public_key": key.public_key_base64() }));
    eprintln!(
        "airlock: hosts trust it with `airlock publisher trust PUBLISHER @{}`, or as marketplace/publishers/PUBLISHER.pub",
        public.display()
    );
    Ok(())
}

/// Where `airlock key` puts the public half of the key written to `private`.
fn public_path(private: &Path) -> PathBuf {
    if private.extension().is_some_and(|e| e != "pub") {
        private.with_extension("pub")
    } else {
        let mut name = private.as_os_str().to_owned();
        name.push(".pub");
        PathBuf::from(name)
    }
}

/// `airlock package FOLDER --key FILE --out DIR [--search DIR]...`.
pub(super) fn package(folder: &Path, key: &Path, out: &Path, search: &[PathBuf]) -> Result<(), String> {
    let key = SigningKey::load(key).map_err(|e| format!("cannot load the key `{}`: {e}", key.display()))?;
    eprintln!("[1/3] reading {}/manifest.json and validating it", folder.display());
    // Without `--search`, the components this binary's build made from `plugins/`.
    let built_plugins = [PathBuf::from(env!("AIRLOCK_PLUGIN_DIR"))];
    let search = if search.is_empty() { &built_plugins[..] } else { search };
    let search: Vec<&Path> = search.iter().map(PathBuf::as_path).collect();
    eprintln!("[2/3] digesting and copying components into {}/components", out.display());
    let built = airlock_marketplace::build(folder, out, &key, &search).map_err(|e| e.to_string())?;
    eprintln!("[3/3] signed as key {}", key.key_id());
    println!("{}", serde_json::json!({ "package": built, "key_id": key.key_id() }));
    Ok(())
}
