//! `airlock key` and `airlock package` as a tool author runs them: the catalog's offboarding
//! agent built from plugins/, signed, and verified by the marketplace's checks.

use std::process::Command;

use serde_json::Value;

fn airlock(args: &[&std::ffi::OsStr]) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock")).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (
        out.status.success(),
        serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_tool_author_makes_a_key_and_a_signed_package_that_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("acme.key");
    let (ok, made, err) = airlock(&["key".as_ref(), "--out".as_ref(), key.as_os_str()]);
    assert!(ok, "{err}");
    let public = made["public_key"].as_str().unwrap().to_string();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    // A second `key` never overwrites an existing private key.
    let (ok, _, _) = airlock(&["key".as_ref(), "--out".as_ref(), key.as_os_str()]);
    assert!(!ok, "an existing key file is kept");

    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/../../marketplace/offboarding");
    let out = tmp.path().join("offboarding-pkg");
    let (ok, built, err) = airlock(&[
        "package".as_ref(),
        folder.as_ref(),
        "--key".as_ref(),
        key.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--search".as_ref(),
        env!("AIRLOCK_PLUGIN_DIR").as_ref(),
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("[3/3] signed"), "progress is shown: {err}");
    assert_eq!(built["key_id"], made["key_id"]);

    let manifest: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let publisher = manifest["publisher"].as_str().unwrap();
    let mut trust = airlock_marketplace::TrustStore::new();
    trust.add(publisher, &public).unwrap();
    let verified = airlock_marketplace::verify(&out, &trust, &|_, _| Ok(())).unwrap();
    assert_eq!(verified.manifest().name, "offboarding");
    assert_eq!(verified.components().len(), 1);
    assert_eq!(
        verified.components()[0].bytes(),
        std::fs::read(format!("{}/offboarding.wasm", env!("AIRLOCK_PLUGIN_DIR"))).unwrap()
    );

    // The same package is refused by a host that does not trust this publisher.
    let err = airlock_marketplace::verify(&out, &airlock_marketplace::TrustStore::new(), &|_, _| Ok(())).unwrap_err();
    assert!(err.to_string().starts_with("unknown publisher"), "{err}");
}

/// Every manifest in the catalog (`marketplace/*/manifest.json`) builds into a signed package
/// from the real plugin build, and that package verifies: each passes the policy-sanity rules,
/// names a component the plugin build made, and carries exactly its bytes.
#[test]
fn every_catalog_manifest_builds_into_a_package_that_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("airlock.key");
    let (ok, made, err) = airlock(&["key".as_ref(), "--out".as_ref(), key.as_os_str()]);
    assert!(ok, "{err}");
    let public = made["public_key"].as_str().unwrap().to_string();

    let catalog = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../marketplace"));
    let mut folders: Vec<std::path::PathBuf> = std::fs::read_dir(catalog)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    folders.sort();
    let names: Vec<String> = folders.iter().map(|f| f.file_name().unwrap().to_string_lossy().to_string()).collect();
    for expected in ["code-review", "contentbot", "crm", "incident", "offboarding"] {
        assert!(names.iter().any(|n| n == expected), "marketplace/{expected} is in the catalog: {names:?}");
    }

    for (folder, name) in folders.iter().zip(&names) {
        let out = tmp.path().join(format!("{name}-pkg"));
        let (ok, built, err) = airlock(&[
            "package".as_ref(),
            folder.as_os_str(),
            "--key".as_ref(),
            key.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
            "--search".as_ref(),
            env!("AIRLOCK_PLUGIN_DIR").as_ref(),
        ]);
        assert!(ok, "{name}: {err}");
        assert_eq!(built["key_id"], made["key_id"], "{name}");

        let manifest: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
        let mut trust = airlock_marketplace::TrustStore::new();
        trust.add(manifest["publisher"].as_str().unwrap(), &public).unwrap();
        let verified = airlock_marketplace::verify(&out, &trust, &|_, _| Ok(()))
            .unwrap_or_else(|e| panic!("{name}: the built package does not verify: {e}"));
        assert_eq!(&verified.manifest().name, name, "the folder is named after its agent");
        assert_eq!(verified.manifest().publisher, "airlock", "{name}");
        let tools = manifest["tools"].as_array().unwrap();
        assert_eq!(verified.components().len(), tools.len(), "{name}");
        for (tool, component) in tools.iter().zip(verified.components()) {
            let component_name = tool["component"].as_str().unwrap();
            let built = format!("{}/{}.wasm", env!("AIRLOCK_PLUGIN_DIR"), component_name.replace('-', "_"));
            assert_eq!(component.bytes(), std::fs::read(&built).unwrap(), "{name}: {component_name} is {built}");
            assert!(tool["sha256"].as_str().is_some_and(|s| s.len() == 64), "{name}: the digest is filled in");
        }
        // A package grants its agent only its own tools and connection slots (the sanity rules
        // verify checked); and every slot is `can_use` by the agent, or the agent could not use it.
        for slot in manifest["connections"].as_array().into_iter().flatten() {
            let object = format!("connection:$AGENT/{}", slot["name"].as_str().unwrap());
            assert!(
                manifest["tuples"].as_array().unwrap().iter().any(|t| t["object"] == object.as_str()
                    && t["relation"] == "can_use"
                    && t["user"] == "agent:$AGENT"),
                "{name}: {object} is can_use by the agent"
            );
        }
    }
}
