//! Who seals the signing keys at rest.
//!
//! In the host it is the vault ([`airlock_vault::Vault`]): the keys are sealed under a data key
//! of a reserved owner, itself sealed by the master key, so a master-key rotation re-seals them
//! with everything else and a restart after it still opens them. A bare [`MasterKey`] also
//! works (tests, tools), but then a master rotation must not happen underneath.

use std::future::Future;
use std::pin::Pin;

use airlock_vault::{MasterKey, Vault};
use zeroize::Zeroizing;

/// A boxed future, so the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Seals and opens a signing key's private bytes, bound to its kid.
pub trait KeySealer: Send + Sync {
    /// Seals `plain` for key `kid`.
    fn seal<'a>(&'a self, kid: &'a str, plain: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, String>>;
    /// Opens what `seal` sealed for the same `kid`.
    fn open<'a>(&'a self, kid: &'a str, sealed: &'a [u8]) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, String>>;
}

fn aad(kid: &str) -> Vec<u8> {
    format!("airlock-identity signing key {kid}").into_bytes()
}

impl KeySealer for MasterKey {
    fn seal<'a>(&'a self, kid: &'a str, plain: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move { Ok(MasterKey::seal(self, &aad(kid), plain)) })
    }

    fn open<'a>(&'a self, kid: &'a str, sealed: &'a [u8]) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, String>> {
        Box::pin(async move {
            MasterKey::open(self, &aad(kid), sealed).map(Zeroizing::new).map_err(|()| "does not open".to_string())
        })
    }
}

/// The vault's owner name for the host's signing keys (not a tenant anyone can use: tenant
/// names have no `:`... and even if one did, it would only see its own connections).
const OWNER: &str = "airlock:identity";

impl KeySealer for Vault {
    fn seal<'a>(&'a self, kid: &'a str, plain: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move { self.seal_host_secret(OWNER, kid, plain).await.map_err(|e| e.to_string()) })
    }

    fn open<'a>(&'a self, kid: &'a str, sealed: &'a [u8]) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, String>> {
        Box::pin(async move { self.open_host_secret(OWNER, kid, sealed).await.map_err(|e| e.to_string()) })
    }
}
