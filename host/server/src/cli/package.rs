//! `airlock key` and `airlock package`: what a tool author needs to publish an agent.
//!
//! `key` makes an Ed25519 publisher key (private key file 0600, public key printed for the
//! catalog's `marketplace/publishers/NAME.pub`); `package` builds a signed package from an
//! author's folder (`manifest.json` + built components), printing each step.

use std::path::{Path, PathBuf};

use airlock_marketplace::SigningKey;

/// `airlock key --out FILE`.
pub(super) fn key(out: &Path) -> Result<(), String> {
    let key = SigningKey::generate().map_err(|e| e.to_string())?;
    key.save(out).map_err(|e| format!("cannot write `{}`: {e}", out.display()))?;
    eprintln!("airlock: private key written to {} (mode 0600; keep it out of the repository)", out.display());
    println!("{}", serde_json::json!({ "key_id": key.key_id(), "public_key": key.public_key_base64() }));
    eprintln!("airlock: publish the public key as marketplace/publishers/PUBLISHER.pub so hosts trust it");
    Ok(())
}

/// `airlock package FOLDER --key FILE --out DIR [--search DIR]...`.
pub(super) fn package(folder: &Path, key: &Path, out: &Path, search: &[PathBuf]) -> Result<(), String> {
    let key = SigningKey::load(key).map_err(|e| format!("cannot load the key `{}`: {e}", key.display()))?;
    eprintln!("[1/3] reading {}/manifest.json and validating it", folder.display());
    let search: Vec<&Path> = search.iter().map(PathBuf::as_path).collect();
    eprintln!("[2/3] digesting and copying components into {}/components", out.display());
    let built = airlock_marketplace::build(folder, out, &key, &search).map_err(|e| e.to_string())?;
    eprintln!("[3/3] signed as key {}", key.key_id());
    println!("{}", serde_json::json!({ "package": built, "key_id": key.key_id() }));
    Ok(())
}
