//! Publisher keys, the trust store, and building a package from an author's folder.
// Helpers outside `#[test]` fns unwrap too: a failed fixture is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;

use airlock_marketplace::{build, generate_key, key_id, signed_payload, verify, SigningKey, TrustStore};
use common::*;

#[test]
fn a_generated_key_is_saved_owner_only_and_loads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = generate_key().unwrap();
    let path = tmp.path().join("airlock.key");
    key.save(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let loaded = SigningKey::load(&path).unwrap();
    assert_eq!(loaded.public_key_base64(), public);
    assert_eq!(loaded.key_id(), key.key_id());
    // Never overwrites a key file.
    assert!(key.save(&path).unwrap_err().to_string().starts_with("i/o error on"));
    // Debug output does not show the private key.
    assert!(!format!("{key:?}").contains(key.to_base64().as_str()));
}

#[test]
fn the_trust_store_reads_pub_files_and_keys_added_at_run_time() {
    let tmp = tempfile::tempdir().unwrap();
    let (a1, p1) = generate_key().unwrap();
    let (_, p2) = generate_key().unwrap();
    let (c, p3) = generate_key().unwrap();
    std::fs::write(tmp.path().join("airlock.pub"), format!("# current and next key\n{p1}\n\n{p2}\n")).unwrap();
    std::fs::write(tmp.path().join("README.md"), "not a key").unwrap();
    let mut trust = TrustStore::load_dir(tmp.path()).unwrap();
    assert_eq!(trust.keys().len(), 2);
    assert!(trust.find("airlock", &a1.key_id()).is_some());

    assert_eq!(trust.add("contoso", &p3).unwrap(), c.key_id());
    assert_eq!(trust.add("contoso", &p3).unwrap(), c.key_id(), "adding twice is harmless");
    assert_eq!(
        trust.add("airlock", &p3).unwrap_err().to_string(),
        format!("invalid key: key `{}` is already trusted for `contoso`", c.key_id())
    );
    assert_eq!(
        trust.add("contoso", "AAAA").unwrap_err().to_string(),
        "invalid key: an Ed25519 public key is 32 bytes, this one 3"
    );
    assert!(trust.remove("contoso", &c.key_id()));
    assert!(trust.find("contoso", &c.key_id()).is_none());

    std::fs::write(tmp.path().join("bad.pub"), "not base64!\n").unwrap();
    assert!(TrustStore::load_dir(tmp.path()).unwrap_err().to_string().starts_with("invalid key: `bad.pub`: "));
}

#[test]
fn key_ids_and_the_payload_are_stable() {
    assert_eq!(key_id(&[0u8; 32]), "ed25519:66687aadf862bd77");
    let manifest = br#"{"tools": [{"component": "a", "file": "components/a.wasm", "sha256": "ab"}]}"#;
    let payload = String::from_utf8(signed_payload(manifest)).unwrap();
    assert_eq!(
        payload,
        format!("airlock-package-v1\nmanifest.json sha256:{}\ncomponents/a.wasm sha256:ab\n", sha256(manifest))
    );
}

#[test]
fn build_pins_digests_and_refuses_a_mismatched_pin_or_a_non_empty_output() {
    let f = Fixture::new();
    let folder = f.path("src");
    std::fs::create_dir_all(folder.join("target")).unwrap();
    std::fs::write(folder.join("target/offboarding.wasm"), good_component()).unwrap();
    let manifest = CATALOG_MANIFEST.replace("components/offboarding.wasm", "target/offboarding.wasm");
    std::fs::write(folder.join("manifest.json"), &manifest).unwrap();
    let out = build(&folder, &f.path("out"), &f.key, &[]).unwrap();
    assert!(verify(&out, &f.trust, &check_imports).is_ok());

    assert_eq!(
        build(&folder, &out, &f.key, &[]).unwrap_err().to_string(),
        format!("cannot build package: `{}` is not empty", out.display())
    );

    let pinned = manifest.replace(
        "\"file\": \"target/offboarding.wasm\"",
        &format!("\"file\": \"target/offboarding.wasm\", \"sha256\": \"{}\"", "0".repeat(64)),
    );
    std::fs::write(folder.join("manifest.json"), pinned).unwrap();
    let err = build(&folder, &f.path("out2"), &f.key, &[]).unwrap_err().to_string();
    assert!(err.starts_with("cannot build package: component `offboarding`: "), "{err}");
    assert!(err.ends_with(&format!("the manifest pins {}", "0".repeat(64))), "{err}");

    // A source manifest that breaks the rules is refused before anything is written.
    std::fs::write(folder.join("manifest.json"), manifest.replace("agent:$AGENT", "agent:root")).unwrap();
    let err = build(&folder, &f.path("out3"), &f.key, &[]).unwrap_err().to_string();
    assert!(err.starts_with("invalid manifest: tuples[0].user: `agent:root`"), "{err}");
    assert!(!f.path("out3").exists());
}
