//! The tar transport form: a good archive verifies; hostile entries are refused before writing.
// Helpers outside `#[test]` fns unwrap too: a failed fixture is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use airlock_marketplace::{pack, unpack, verify_archive, HostCaps};
use common::*;
use tar::{EntryType, Header};

fn verify_tar(path: &Path, f: &Fixture) -> Result<(), String> {
    verify_archive(path, &f.trust, &HostCaps::default(), &check_imports).map(|_| ()).map_err(|e| e.to_string())
}

/// Writes an archive of the good package plus one raw entry whose name is written into the
/// header bytes as is (the tar crate's own builder refuses `..` and absolute paths).
fn with_raw_entry(f: &Fixture, name: &str, kind: EntryType, link: Option<&str>, data: &[u8]) -> PathBuf {
    let pkg = f.good_package("pkg");
    let out = f.path("hostile.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&out).unwrap());
    for rel in ["manifest.json", "signature.json", "components/offboarding.wasm"] {
        let bytes = std::fs::read(pkg.join(rel)).unwrap();
        let mut h = Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        builder.append_data(&mut h, rel, bytes.as_slice()).unwrap();
    }
    let mut h = Header::new_old();
    let raw = &mut h.as_old_mut().name;
    raw[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(link) = link {
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    builder.append(&h, data).unwrap();
    builder.into_inner().unwrap();
    out
}

#[test]
fn a_packed_good_package_verifies_from_its_archive() {
    let f = Fixture::new();
    let pkg = f.good_package("pkg");
    let out = f.path("pkg.tar");
    pack(&pkg, &out).unwrap();
    let verified = verify_archive(&out, &f.trust, &HostCaps::default(), &check_imports).unwrap();
    assert_eq!(verified.manifest().name, "offboarding");
    assert_eq!(verified.components()[0].bytes(), good_component().as_slice());

    // Packing is deterministic, and the temporary directory is gone after an unpack is dropped.
    let again = f.path("again.tar");
    pack(&pkg, &again).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
    let unpacked = unpack(&out).unwrap();
    let dir = unpacked.path().to_path_buf();
    assert!(dir.join("components/offboarding.wasm").is_file());
    drop(unpacked);
    assert!(!dir.exists());
}

#[test]
fn an_archive_of_a_tampered_package_is_refused_naming_the_check() {
    let f = Fixture::new();
    let pkg = f.good_package("pkg");
    let file = pkg.join("components/offboarding.wasm");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 0x80;
    std::fs::write(&file, &bytes).unwrap();
    let out = f.path("pkg.tar");
    pack(&pkg, &out).unwrap();
    assert!(verify_tar(&out, &f).unwrap_err().starts_with("tampered component `offboarding`: sha256 "));
}

#[test]
fn a_dot_dot_entry_is_refused() {
    let f = Fixture::new();
    let tar = with_raw_entry(&f, "components/../../escaped.wasm", EntryType::Regular, None, b"x");
    assert_eq!(
        verify_tar(&tar, &f).unwrap_err(),
        "unsafe archive entry `components/../../escaped.wasm`: contains `..`"
    );
    assert!(!f.tmp.path().join("escaped.wasm").exists());
}

#[test]
fn an_absolute_entry_is_refused() {
    let f = Fixture::new();
    let target = f.path("absolute.wasm").display().to_string();
    let tar = with_raw_entry(&f, &target, EntryType::Regular, None, b"x");
    assert_eq!(verify_tar(&tar, &f).unwrap_err(), format!("unsafe archive entry `{target}`: is an absolute path"));
    assert!(!Path::new(&target).exists());
}

#[test]
fn a_symlink_entry_is_refused() {
    let f = Fixture::new();
    let tar = with_raw_entry(&f, "components/link.wasm", EntryType::Symlink, Some("/etc/passwd"), b"");
    assert_eq!(
        verify_tar(&tar, &f).unwrap_err(),
        "unsafe archive entry `components/link.wasm`: is a symlink: a package holds regular files only"
    );
}

#[test]
fn a_hard_link_entry_is_refused() {
    let f = Fixture::new();
    let tar = with_raw_entry(&f, "components/link.wasm", EntryType::Link, Some("/etc/passwd"), b"");
    assert_eq!(
        verify_tar(&tar, &f).unwrap_err(),
        "unsafe archive entry `components/link.wasm`: is a hard link: a package holds regular files only"
    );
}

#[test]
fn a_device_entry_and_a_duplicate_are_refused() {
    let f = Fixture::new();
    let tar = with_raw_entry(&f, "components/dev", EntryType::Char, None, b"");
    assert_eq!(
        verify_tar(&tar, &f).unwrap_err(),
        "unsafe archive entry `components/dev`: is not a regular file or directory"
    );
    let g = Fixture::new();
    let tar = with_raw_entry(&g, "./manifest.json", EntryType::Regular, None, b"{}");
    assert_eq!(verify_tar(&tar, &g).unwrap_err(), "unsafe archive entry `./manifest.json`: appears twice");
}

#[test]
fn an_unlisted_file_in_an_archive_is_refused_after_unpacking() {
    let f = Fixture::new();
    let tar = with_raw_entry(&f, "components/extra.wasm", EntryType::Regular, None, b"x");
    assert_eq!(
        verify_tar(&tar, &f).unwrap_err(),
        "unlisted file: `components/extra.wasm` is not listed in the manifest"
    );
}

#[test]
fn an_oversized_entry_is_refused_before_it_is_read() {
    let f = Fixture::new();
    let out = f.path("big.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&out).unwrap());
    let mut h = Header::new_ustar();
    h.set_path("components/big.wasm").unwrap();
    h.set_size(airlock_marketplace::MAX_COMPONENT_BYTES + 1);
    h.set_mode(0o644);
    h.set_cksum();
    // The header claims more than the cap; no data follows, and none is needed to refuse.
    builder.append(&h, std::io::empty()).unwrap_or(());
    drop(builder);
    let err = verify_tar(&out, &f).unwrap_err();
    assert_eq!(
        err,
        format!("too large: `components/big.wasm` exceeds {} bytes", airlock_marketplace::MAX_COMPONENT_BYTES)
    );
}
