//! A marketplace package in transport form: the tar reader (`unpack`) and `verify_archive`,
//! on arbitrary bytes written to a file, as the server does with an uploaded package.
//!
//! Checked, beyond "never panics":
//! - nothing is written outside the temporary directory `unpack` makes: the process's temp
//!   dir is pointed (TMPDIR) into a guard directory that, after each input, must hold only the
//!   input file and an empty temp dir (unpacked packages are removed when dropped);
//! - `verify_archive` refuses any archive no trusted key signed;
//! - to get past the signature to the manifest, digest, listing and policy checks, an archive
//!   that unpacks and has a manifest is then signed with the fuzz key (trusted for publisher
//!   `airlock`, the catalog's) and verified: a package that passes has every component's bytes
//!   matching its digest and a manifest that validates; packed again (`pack`) it verifies to
//!   the same digest.
#![no_main]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use airlock_marketplace::{
    pack, sign, unpack, verify_archive, verify_with, HostCaps, PackageError, SigningKey, Stage, TrustStore,
};
use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;
use common::remove_at_exit;
use sha2::{Digest, Sha256};

struct Fixture {
    /// The guard directory: holds `input.tar` and `tmp/` (TMPDIR), nothing else.
    guard: PathBuf,
    tmp: PathBuf,
    key: SigningKey,
    trust: TrustStore,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // On tmpfs where there is one: the crate syncs what it writes (sign, pack), and a disk
        // would make that most of the time spent per input.
        let mut builder = tempfile::Builder::new();
        builder.prefix("airlock-fuzz-archive-");
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() { builder.tempdir_in(shm) } else { builder.tempdir() }.expect("guard dir");
        let guard = dir.keep();
        remove_at_exit(guard.clone());
        let tmp = guard.join("tmp");
        fs::create_dir(&tmp).expect("tmp dir");
        // Every temporary directory the crate makes from now on is inside the guard.
        std::env::set_var("TMPDIR", &tmp);
        let key = SigningKey::generate().expect("key");
        let mut trust = TrustStore::new();
        trust.add("airlock", &key.public_key_base64()).expect("trust");
        Fixture { guard, tmp, key, trust }
    })
}


fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn accept_imports(_component: &str, _bytes: &[u8]) -> Result<(), String> {
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let input = f.guard.join("input.tar");
    fs::write(&input, data).expect("write input");
    let caps = HostCaps::default();

    // As uploaded: nobody trusted signed it, so it must be refused.
    match verify_archive(&input, &f.trust, &caps, &accept_imports) {
        Ok(p) => panic!("an archive nobody signed verified as {}", p.digest()),
        Err(_) => {}
    }

    // Past the signature: sign what unpacked, then verify the directory.
    if let Ok(unpacked) = unpack(&input) {
        let dir = unpacked.path();
        assert!(dir.starts_with(&f.tmp), "unpacked outside TMPDIR: {}", dir.display());
        if dir.join("manifest.json").is_file() && sign(dir, &f.key).is_ok() {
            match verify_with(dir, &f.trust, &caps, &accept_imports) {
                Ok(p) => {
                    assert_eq!(p.publisher(), "airlock");
                    assert!(p.manifest().validate(Stage::Package, &caps).is_ok());
                    for c in p.components() {
                        let digest = hex::encode(Sha256::digest(c.bytes()));
                        assert_eq!(digest, c.sha256(), "component {} digest", c.name());
                    }
                    let repacked = f.guard.join("repacked.tar");
                    pack(dir, &repacked).expect("a verified package packs");
                    let again = verify_archive(&repacked, &f.trust, &caps, &accept_imports);
                    fs::remove_file(&repacked).expect("remove repacked");
                    match again {
                        Ok(q) => assert_eq!(q.digest(), p.digest(), "packing changed the package"),
                        Err(e) => panic!("a verified package, packed, no longer verifies: {e}"),
                    }
                }
                Err(PackageError::Unsigned | PackageError::BadSignature) => {
                    panic!("a package just signed was refused as unsigned or badly signed")
                }
                Err(_) => {}
            }
        }
        drop(unpacked);
    }

    // Nothing left behind, nothing written beside.
    assert_eq!(names(&f.guard), ["input.tar", "tmp"], "something was written outside the work dir");
    assert!(names(&f.tmp).is_empty(), "left in TMPDIR: {:?}", names(&f.tmp));
});
