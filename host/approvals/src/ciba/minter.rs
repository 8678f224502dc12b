//! Extension points the provider needs from other crates: who issues tokens, and who seals
//! the few secrets it must keep.

use std::future::Future;
use std::pin::Pin;

use base64::Engine as _;
use rand::RngCore;

/// A boxed future, so the traits below stay object-safe (`Arc<dyn TokenMinter>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the provider knows when it issues tokens for an approved request.
#[derive(Debug, Clone)]
pub struct MintRequest<'a> {
    pub tenant: &'a str,
    /// The approver who consented (the `sub` of the ID token).
    pub approver: &'a str,
    /// The client the tokens are for (the `aud`).
    pub client_id: &'a str,
    /// The approval the consent was recorded as, for audit and for binding the token to it.
    pub approval_id: &'a str,
    /// The scope the client asked for.
    pub scope: &'a str,
}

/// Tokens for one approved request.
#[derive(Debug, Clone)]
pub struct MintedTokens {
    pub access_token: String,
    pub id_token: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
}

/// Issues the tokens of an approved request. The identity crate implements it with signed
/// JWTs; [`OpaqueMinter`] stands in until then (and in tests).
pub trait TokenMinter: Send + Sync {
    /// Mints tokens; `Err` carries a reason for the log (the client sees `server_error`).
    fn mint<'a>(&'a self, req: MintRequest<'a>) -> BoxFuture<'a, Result<MintedTokens, String>>;

    /// The approver an `id_token_hint` names, if this minter issued it and it is valid.
    /// Tokens are the minter's to verify; the default recognises none.
    fn approver_of_id_token<'a>(&'a self, _tenant: &'a str, _id_token: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async { None })
    }
}

/// Random opaque tokens: enough to prove consent to a client that asks the provider back,
/// but no claims anyone can verify offline.
#[derive(Debug, Clone)]
pub struct OpaqueMinter {
    /// Seconds the tokens live.
    pub lifetime: u64,
}

impl Default for OpaqueMinter {
    fn default() -> Self {
        OpaqueMinter { lifetime: 300 }
    }
}

/// 32 random bytes, base64url without padding: an unguessable identifier.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl TokenMinter for OpaqueMinter {
    fn mint<'a>(&'a self, _req: MintRequest<'a>) -> BoxFuture<'a, Result<MintedTokens, String>> {
        let lifetime = self.lifetime;
        Box::pin(async move {
            Ok(MintedTokens { access_token: random_token(), id_token: random_token(), expires_in: lifetime })
        })
    }
}

/// Authenticated encryption for the secrets a ping needs later (the `auth_req_id` and the
/// client's notification token), so the database alone does not reveal them.
pub trait Sealer: Send + Sync {
    /// Seals `plaintext`, bound to `aad`.
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8>;
    /// Opens what `seal` sealed with the same `aad`; `None` if anything differs.
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>>;
}

impl Sealer for airlock_vault::MasterKey {
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        airlock_vault::MasterKey::seal(self, aad, plaintext)
    }

    fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        airlock_vault::MasterKey::open(self, aad, sealed).ok()
    }
}
