//! JWT and JWKS parsing of `airlock_identity`, through its public entry points: the host's
//! own `Identity` (SQLite in a temporary directory, made once) verifying presented tokens, and
//! the JWKS reader a fetched external key set goes through.
//!
//! The first byte picks what the rest is:
//! - 0: a compact token as presented (`Identity::verify`): the unverified header and payload
//!   are read to route it (own key or external issuer), then verified. Nobody but the host
//!   holds its key, so it must be refused.
//! - 1: the same, written as `HEADER-JSON \n PAYLOAD-JSON \n SIGNATURE` and base64url-encoded
//!   here, so mutations work on the JSON; must be refused too.
//! - 2: claims (a JSON object, laid over valid claims of this host when the byte's bit 2 is
//!   set) that the host's key signs; `verify` then checks them: whatever it accepts must say
//!   what the claims say, with a bounded delegation chain.
//! - 3: a JWKS document (`jwks_signing_keys`, what a fetched key set goes through): only
//!   RS256, ES256 and EdDSA keys may come out.
#![no_main]

use std::sync::{Arc, OnceLock};

use airlock_identity::{jwks_signing_keys, Identity, LEEWAY_SECS, MAX_CHAIN};
use airlock_store::Db;
use airlock_vault::MasterKey;
use base64_url::encode as b64;
use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;
use common::remove_at_exit;
use serde_json::{json, Map, Value};

const ISSUER: &str = "https://airlock.fuzz";
const AUD: &str = "airlock-api";

struct Fixture {
    rt: tokio::runtime::Runtime,
    identity: Identity,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let dir = tempfile::Builder::new().prefix("airlock-fuzz-jwt-").tempdir().expect("dir").keep();
        remove_at_exit(dir.clone());
        let identity = rt.block_on(async {
            let db = Db::connect(&Db::sqlite_url(&dir)).await.expect("db");
            let master = MasterKey::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").expect("master key");
            Identity::open(db, Arc::new(master), ISSUER.to_string()).await.expect("identity")
        });
        Fixture { rt, identity }
    })
}


mod base64_url {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    pub fn encode(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

fn now() -> i64 {
    airlock_store::now_millis() / 1000
}

/// A presented token nobody signed with the host's key must be refused, for either audience.
fn must_refuse(f: &Fixture, token: &str) {
    for aud in [AUD, ISSUER] {
        if let Ok(v) = f.rt.block_on(f.identity.verify(token, aud)) {
            panic!("a token the host never signed verified: {v:?}\n{token}");
        }
    }
}

fn signed_claims(f: &Fixture, flags: u8, rest: &[u8]) {
    let Ok(claims) = serde_json::from_slice::<Value>(rest) else { return };
    let claims = match (flags & 4 != 0, claims) {
        (true, Value::Object(over)) => {
            let now = now();
            let mut base: Map<String, Value> = json!({
                "iss": ISSUER, "sub": "agent:fuzz", "aud": AUD, "iat": now, "nbf": now, "exp": now + 300,
                "jti": "fuzz-jti", "tenant": "acme", "agent": "fuzz",
            })
            .as_object()
            .cloned()
            .unwrap_or_default();
            base.extend(over);
            Value::Object(base)
        }
        (_, claims) => claims,
    };
    let Ok(token) = f.rt.block_on(f.identity.sign_claims_for_tests(&claims)) else { return };
    let Ok(v) = f.rt.block_on(f.identity.verify(&token, AUD)) else { return };
    // What it accepted, it read from these claims.
    assert_eq!(claims["iss"], ISSUER);
    let auds: Vec<&str> = match &claims["aud"] {
        Value::String(a) => vec![a.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    assert!(auds.contains(&AUD), "accepted for audiences {auds:?}");
    assert_eq!(Some(v.tenant.as_str()), claims["tenant"].as_str());
    assert!(!v.tenant.is_empty());
    assert_eq!(Some(v.subject.as_str()), claims["sub"].as_str());
    assert_eq!(Some(v.exp), claims["exp"].as_i64());
    assert!(v.exp + LEEWAY_SECS as i64 >= now(), "accepted an expired token");
    assert!(v.act.len() <= MAX_CHAIN, "chain of {} accepted", v.act.len());
    assert_ne!(v.agent.as_deref(), Some(""));
    assert_ne!(v.user.as_deref(), Some(""));
    if v.act.is_empty() {
        assert_eq!(v.agent.as_deref(), v.subject.strip_prefix("agent:"));
    } else {
        assert_eq!(v.agent.as_deref(), v.act[0].strip_prefix("agent:"));
    }
    assert_eq!(v.user.as_deref(), v.subject.strip_prefix("user:"));
    assert_eq!(v.issuer, ISSUER);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => {
            let f = fixture();
            if let Ok(token) = std::str::from_utf8(rest) {
                must_refuse(f, token);
            }
        }
        1 => {
            let f = fixture();
            let mut parts = rest.splitn(3, |&b| b == b'\n');
            let (h, p, s) =
                (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            must_refuse(f, &format!("{}.{}.{}", b64(h), b64(p), b64(s)));
        }
        2 => signed_claims(fixture(), mode, rest),
        _ => {
            if let Ok(keys) = jwks_signing_keys(rest) {
                for (_, alg) in keys {
                    assert!(matches!(alg.as_str(), "RS256" | "ES256" | "EdDSA"), "key for {alg}");
                }
            }
        }
    }
});
