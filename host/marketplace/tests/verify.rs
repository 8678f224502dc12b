//! Verification of packages on disk: one test per check, each asserting the exact refusal.
// Helpers outside `#[test]` fns unwrap too: a failed fixture is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use airlock_marketplace::{sign, verify, SigningKey, TrustStore, ENTRY_ACTION};
use common::*;
use serde_json::json;

#[test]
fn a_good_package_signed_with_a_generated_key_verifies() {
    let f = Fixture::new();
    let pkg = f.good_package("good");
    let verified = verify(&pkg, &f.trust, &check_imports).unwrap();

    assert_eq!(verified.publisher(), "airlock");
    assert_eq!(verified.key_id(), f.key.key_id());
    assert_eq!(verified.manifest().name, "offboarding");
    assert_eq!(verified.components().len(), 1);
    assert_eq!(verified.components()[0].name(), "offboarding");
    assert_eq!(verified.components()[0].bytes(), good_component().as_slice());
    assert_eq!(verified.components()[0].sha256(), sha256(&good_component()));
    assert_eq!(verified.digest().len(), 64);
    // The manifest written by `build` pins the component where the package keeps it.
    let m = manifest_json(&pkg);
    assert_eq!(m["tools"][0]["file"], "components/offboarding.wasm");
    assert_eq!(m["tools"][0]["sha256"], sha256(&good_component()));

    // What an installer provisions for agent `offboarder` in tenant `acme`.
    let p = verified.manifest().provisioning("offboarder", "acme");
    assert_eq!(p.agent, "agent:offboarder");
    assert_eq!(p.tuples.len(), 7);
    assert!(p.tuples.iter().all(|t| t.user == "agent:offboarder" && t.relation == "can_use"));
    assert!(p.tuples.iter().any(|t| t.object == "tool:offboarding.issue-refund"));
    assert!(p.tuples.iter().any(|t| t.object == "connection:offboarder/directory-api"));
    let names: Vec<_> = p.connections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["offboarder/directory-api", "offboarder/billing-api"]);
    let policies: Vec<_> =
        p.policies.iter().map(|p| (p.tool.as_str(), p.action.as_str(), p.role.as_str(), p.entry)).collect();
    assert_eq!(
        policies,
        [
            ("offboarding", "issue-refund", "cfo", false),
            ("offboarding", "delete-customer-data", "dpo", false),
            ("agent:offboarder", ENTRY_ACTION, "ops_manager", true),
        ]
    );

    // The same content signed again is the same package.
    sign(&pkg, &f.key).unwrap();
    assert_eq!(verify(&pkg, &f.trust, &check_imports).unwrap().digest(), verified.digest());
}

#[test]
fn one_changed_byte_of_a_component_is_a_tampered_component() {
    let f = Fixture::new();
    let pkg = f.good_package("pkg");
    let file = pkg.join("components/offboarding.wasm");
    let mut bytes = std::fs::read(&file).unwrap();
    let declared = sha256(&bytes);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    assert_eq!(
        refusal(&pkg, &f.trust),
        format!("tampered component `offboarding`: sha256 {} != manifest {declared}", sha256(&bytes))
    );
}

#[test]
fn one_changed_byte_of_the_manifest_is_a_bad_signature() {
    let f = Fixture::new();
    let pkg = f.good_package("pkg");
    let file = pkg.join("manifest.json");
    let text = std::fs::read_to_string(&file).unwrap();
    // `cfo` -> `cfp`: one byte, still a valid manifest, now naming another approver.
    std::fs::write(&file, text.replacen("\"cfo\"", "\"cfp\"", 1)).unwrap();
    assert_eq!(
        refusal(&pkg, &f.trust),
        "bad signature: the package was changed after signing or signed by another key"
    );
}

#[test]
fn a_package_signed_by_an_untrusted_key_is_refused() {
    let f = Fixture::new();
    let pkg = f.good_package("pkg");
    let (other, _) = airlock_marketplace::generate_key().unwrap();
    sign(&pkg, &other).unwrap();
    assert_eq!(
        refusal(&pkg, &f.trust),
        format!("unknown publisher `airlock` (key `{}`): no trusted key matches", other.key_id())
    );
}

#[test]
fn a_signature_by_another_key_claiming_the_trusted_key_id_is_a_bad_signature() {
    let f = Fixture::new();
    let pkg = f.good_package("pkg");
    let (other, _) = airlock_marketplace::generate_key().unwrap();
    sign(&pkg, &other).unwrap();
    let sig_file = pkg.join("signature.json");
    let mut sig: serde_json::Value = serde_json::from_slice(&std::fs::read(&sig_file).unwrap()).unwrap();
    sig["key_id"] = json!(f.key.key_id());
    std::fs::write(&sig_file, serde_json::to_vec(&sig).unwrap()).unwrap();
    assert_eq!(
        refusal(&pkg, &f.trust),
        "bad signature: the package was changed after signing or signed by another key"
    );
}

#[test]
fn an_unsigned_package_is_refused() {
    let f = Fixture::new();
    let pkg = f.good_package("pkg");
    std::fs::remove_file(pkg.join("signature.json")).unwrap();
    assert_eq!(refusal(&pkg, &f.trust), "unsigned: the package has no `signature.json`");
}

#[test]
fn an_unknown_publisher_is_refused() {
    let f = Fixture::new();
    let (acme, _) = airlock_marketplace::generate_key().unwrap();
    let manifest = CATALOG_MANIFEST.replace("\"publisher\": \"airlock\"", "\"publisher\": \"acme\"");
    let g = Fixture { key: acme, ..Fixture::new() };
    let pkg = g.package_with("acme", &manifest, &good_component());
    assert_eq!(
        refusal(&pkg, &f.trust),
        format!("unknown publisher `acme` (key `{}`): no trusted key matches", g.key.key_id())
    );
    // Nor may a trusted key speak for a publisher it is not trusted under.
    let mut trust = TrustStore::new();
    trust.add("airlock", &g.key.public_key_base64()).unwrap();
    assert!(refusal(&pkg, &trust).starts_with("unknown publisher `acme`"));
}

#[test]
fn a_manifest_naming_another_publisher_than_the_signer_is_refused() {
    let f = Fixture::new();
    let pkg = f.good_package("pkg");
    let mut m = manifest_json(&pkg);
    m["publisher"] = json!("acme");
    std::fs::write(pkg.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    // `sign` signs as the manifest's publisher; make the signature claim `airlock` instead.
    sign(&pkg, &f.key).unwrap();
    let sig_file = pkg.join("signature.json");
    let mut sig: serde_json::Value = serde_json::from_slice(&std::fs::read(&sig_file).unwrap()).unwrap();
    sig["publisher"] = json!("airlock");
    std::fs::write(&sig_file, serde_json::to_vec(&sig).unwrap()).unwrap();
    assert_eq!(refusal(&pkg, &f.trust), "invalid manifest: publisher: `acme` is not the signer `airlock`");
}

#[test]
fn a_malformed_signature_is_refused() {
    let f = Fixture::new();
    let pkg = f.good_package("pkg");
    let sig_file = pkg.join("signature.json");
    let mut sig: serde_json::Value = serde_json::from_slice(&std::fs::read(&sig_file).unwrap()).unwrap();
    sig["alg"] = json!("RS256");
    std::fs::write(&sig_file, serde_json::to_vec(&sig).unwrap()).unwrap();
    assert_eq!(refusal(&pkg, &f.trust), "malformed signature: algorithm `RS256` is not `Ed25519`");
}

/// Rewrites the package's manifest and re-signs it with the trusted key, so only the
/// manifest checks can refuse it.
fn resigned(f: &Fixture, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> std::path::PathBuf {
    let pkg = f.good_package(name);
    let mut m = manifest_json(&pkg);
    edit(&mut m);
    std::fs::write(pkg.join("manifest.json"), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    sign(&pkg, &f.key).unwrap();
    pkg
}

#[test]
fn a_manifest_with_an_unknown_field_is_malformed() {
    let f = Fixture::new();
    let pkg = resigned(&f, "pkg", |m| m["admin"] = json!(true));
    let msg = refusal(&pkg, &f.trust);
    assert!(msg.starts_with("malformed manifest: unknown field `admin`, expected one of `name`"), "{msg}");
}

#[test]
fn a_manifest_with_a_bad_name_is_invalid() {
    let f = Fixture::new();
    let pkg = resigned(&f, "pkg", |m| m["name"] = json!("Offboarding!"));
    assert_eq!(
        refusal(&pkg, &f.trust),
        "invalid manifest: name: `Offboarding!` is not an agent name (lower-case letters, digits and `-`, \
         starting with a letter)"
    );
}

#[test]
fn a_tuple_granting_another_agent_is_refused() {
    let f = Fixture::new();
    let pkg = resigned(&f, "pkg", |m| m["tuples"][3]["user"] = json!("agent:assistant"));
    assert_eq!(
        refusal(&pkg, &f.trust),
        "invalid manifest: tuples[3].user: `agent:assistant` is not `agent:$AGENT`: a package grants permissions \
         only to its own agent"
    );
}

#[test]
fn a_tuple_on_another_packages_tool_is_refused() {
    let f = Fixture::new();
    let pkg = resigned(&f, "pkg", |m| m["tuples"][0]["object"] = json!("tool:billing.refund"));
    assert_eq!(
        refusal(&pkg, &f.trust),
        "invalid manifest: tuples[0].object: `tool:billing.refund`: component `billing` is not in this package"
    );
}

#[test]
fn a_wildcard_host_is_refused() {
    let f = Fixture::new();
    let pkg = resigned(&f, "pkg", |m| m["connections"][1]["allowed_hosts"] = json!(["*.example.com"]));
    assert_eq!(
        refusal(&pkg, &f.trust),
        "invalid manifest: connections[1].allowed_hosts[0]: `*.example.com`: wildcards are not allowed, list each host"
    );
}

#[test]
fn a_component_importing_outside_the_allowed_world_is_refused() {
    let f = Fixture::new();
    let pkg = f.package_with("pkg", CATALOG_MANIFEST, &http_component());
    assert_eq!(
        refusal(&pkg, &f.trust),
        "forbidden imports in component `offboarding`: `wasi:http/outgoing-handler@0.2.0`"
    );
    // A core module is not a component at all.
    let g = Fixture::new();
    let pkg = g.package_with("core", CATALOG_MANIFEST, &wat::parse_str("(module)").unwrap());
    assert_eq!(refusal(&pkg, &g.trust), "forbidden imports in component `offboarding`: a core module, not a component");
}

#[test]
fn an_unlisted_extra_file_is_refused() {
    let f = Fixture::new();
    let pkg = f.good_package("pkg");
    std::fs::write(pkg.join("components/extra.wasm"), good_component()).unwrap();
    assert_eq!(refusal(&pkg, &f.trust), "unlisted file: `components/extra.wasm` is not listed in the manifest");

    let pkg = f.good_package("pkg2");
    std::fs::write(pkg.join("README"), "hi").unwrap();
    assert_eq!(refusal(&pkg, &f.trust), "unlisted file: `README` is not listed in the manifest");
}

#[test]
fn a_symlink_inside_the_package_is_refused_even_pointing_inside() {
    let f = Fixture::new();
    let pkg = f.good_package("pkg");
    std::os::unix::fs::symlink("offboarding.wasm", pkg.join("components/alias.wasm")).unwrap();
    assert_eq!(
        refusal(&pkg, &f.trust),
        "unlisted file: `components/alias.wasm` is a symlink: a package holds regular files only"
    );
}

/// A package whose manifest lists `file` with the right digest of a file outside the
/// package, signed by the trusted key: only the directory handle stands in the way.
fn escaping(f: &Fixture, name: &str, file: &str, outside: &[u8]) -> std::path::PathBuf {
    let mut m: serde_json::Value = serde_json::from_str(CATALOG_MANIFEST).unwrap();
    m["tools"][0]["file"] = json!(file);
    m["tools"][0]["sha256"] = json!(sha256(outside));
    f.crafted(name, &m, &f.key)
}

#[test]
fn a_dot_dot_path_cannot_leave_the_package() {
    let f = Fixture::new();
    std::fs::write(f.path("outside.wasm"), good_component()).unwrap();
    let pkg = escaping(&f, "pkg", "../outside.wasm", &good_component());
    assert_eq!(
        refusal(&pkg, &f.trust),
        "path escape: `../outside.wasm` is outside the package directory (a path led outside of the filesystem)"
    );
}

#[test]
fn an_absolute_path_cannot_leave_the_package() {
    let f = Fixture::new();
    let outside = f.path("outside.wasm");
    std::fs::write(&outside, good_component()).unwrap();
    let abs = outside.display().to_string();
    let pkg = escaping(&f, "pkg", &abs, &good_component());
    assert_eq!(
        refusal(&pkg, &f.trust),
        format!("path escape: `{abs}` is outside the package directory (a path led outside of the filesystem)")
    );
}

#[test]
fn a_symlink_pointing_outside_cannot_leave_the_package() {
    let f = Fixture::new();
    let outside = f.path("outside.wasm");
    std::fs::write(&outside, good_component()).unwrap();
    let pkg = escaping(&f, "pkg", "components/offboarding.wasm", &good_component());
    std::os::unix::fs::symlink(&outside, pkg.join("components/offboarding.wasm")).unwrap();
    assert_eq!(
        refusal(&pkg, &f.trust),
        "path escape: `components/offboarding.wasm` is outside the package directory (a path led outside of the \
         filesystem)"
    );
    // Relative symlinks too.
    let pkg = escaping(&f, "pkg2", "components/offboarding.wasm", &good_component());
    std::os::unix::fs::symlink("../../outside.wasm", pkg.join("components/offboarding.wasm")).unwrap();
    assert!(refusal(&pkg, &f.trust).starts_with("path escape: `components/offboarding.wasm`"));
}

#[test]
fn a_missing_component_is_refused() {
    let f = Fixture::new();
    let pkg = f.good_package("pkg");
    std::fs::remove_file(pkg.join("components/offboarding.wasm")).unwrap();
    assert_eq!(
        refusal(&pkg, &f.trust),
        "missing file: `components/offboarding.wasm` is listed in the manifest but not in the package"
    );
}

#[test]
fn errors_carry_a_stable_check_name() {
    let f = Fixture::new();
    let pkg = f.good_package("pkg");
    std::fs::remove_file(pkg.join("signature.json")).unwrap();
    let err = verify(&pkg, &f.trust, &check_imports).unwrap_err();
    assert_eq!(err.check(), "unsigned");
    let _ = SigningKey::generate().unwrap();
}
