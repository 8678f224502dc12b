//! A marketplace package's manifest: `Manifest::parse` (strict JSON), the policy-sanity rules
//! (`Manifest::validate`, both stages), what install would provision, and the model-fragment
//! reader (`model::parse_fragment`), on the input as a manifest and on the input as a fragment.
//!
//! Checked, beyond "never panics": a parsed manifest written back (`to_json`, as `build` writes
//! it) parses to the same manifest; a manifest that validates has a fragment that
//! `parse_fragment` accepts without any host type in it.
#![no_main]

use airlock_marketplace::model::{parse_fragment, RESERVED_TYPES};
use airlock_marketplace::{HostCaps, Manifest, Stage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = Manifest::parse(data) {
        let bytes = manifest.to_json().expect("a parsed manifest serializes");
        match Manifest::parse(&bytes) {
            Ok(again) => assert_eq!(again, manifest, "to_json then parse changed the manifest"),
            Err(e) => panic!("a parsed manifest, written back, does not parse: {e}"),
        }
        let caps = HostCaps::default();
        for stage in [Stage::Source, Stage::Package] {
            if manifest.validate(stage, &caps).is_ok() {
                if let Some(fragment) = &manifest.model {
                    let defined = parse_fragment(fragment).expect("a valid manifest's fragment parses");
                    assert!(defined.keys().all(|t| !RESERVED_TYPES.contains(&t.as_str())), "host type in {defined:?}");
                }
            }
        }
        let _ = manifest.provisioning("fuzz-agent", "fuzz-tenant");
    }

    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(defined) = parse_fragment(text) {
            assert!(!defined.is_empty());
            assert!(defined.keys().all(|t| !RESERVED_TYPES.contains(&t.as_str())), "host type in {defined:?}");
        }
    }
});
