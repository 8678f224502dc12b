//! The crate's error enums, one per boundary: managing keys and configuration
//! ([`IdentityError`]), verifying a token ([`TokenError`]) and exchanging tokens
//! ([`ExchangeError`]). The HTTP layer maps each to a status without reading messages.

use airlock_store::sqlx;

/// Failures of the identity service itself: storage, sealed keys, bad configuration or issuing input.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("identity store unavailable: {0}")]
    Store(#[from] sqlx::Error),
    #[error("cannot open signing key `{0}`: the master key does not match the one it was sealed with")]
    Unseal(String),
    #[error("stored signing key `{kid}` is unusable: {reason}")]
    BadStoredKey { kid: String, reason: String },
    #[error("no active signing key after creating one: the key table is inconsistent")]
    NoActiveKey,
    #[error("cannot generate a signing key: {0}")]
    KeyGeneration(String),
    #[error("cannot sign token: {0}")]
    Signing(String),
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("requested lifetime must be at least one second")]
    ZeroLifetime,
    #[error("invalid external issuer configuration: {0}")]
    BadExternalIssuer(String),
    #[error("issuer `{issuer}` with audience `{audience}` is already configured for another tenant")]
    IssuerTaken { issuer: String, audience: String },
    #[error("cannot build the http client for external key sets: {0}")]
    HttpClient(String),
    #[error("no external issuer `{issuer}` configured in tenant `{tenant}`")]
    IssuerNotConfigured { tenant: String, issuer: String },
}

/// Why a token was refused. Each refusal has its own variant so callers (and tests) can tell them apart;
/// every variant means "401, do not trust this token".
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token algorithm `none` is refused: tokens must be signed")]
    AlgNone,
    #[error("token algorithm `{0}` is not allowed here")]
    UnsupportedAlg(String),
    #[error("token algorithm `{header}` does not match the key `{kid}`, which is for `{key}`")]
    KeyAlgMismatch { header: String, kid: String, key: String },
    #[error("no verifying key with kid `{0}` (unknown, or retired past its grace period)")]
    UnknownKid(String),
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (`nbf` is in the future)")]
    NotYetValid,
    #[error("token issuer `{0}` is neither this host nor a configured external issuer")]
    WrongIssuer(String),
    #[error("token audience does not include `{0}`")]
    WrongAudience(String),
    #[error("token has no `tenant` claim")]
    MissingTenant,
    #[error("token has no `{0}` claim")]
    MissingClaim(String),
    #[error("the ID token's nonce is not the one this sign-in sent (a replayed or injected token)")]
    WrongNonce,
    #[error("the person did not authenticate again after the step-up was asked (`auth_time` is older)")]
    StaleAuthentication,
    #[error("external subject `{subject}` of issuer `{issuer}` is not mapped to an agent")]
    UnmappedSubject { issuer: String, subject: String },
    #[error("issuer `{0}` is configured for several tenants with the token's audiences; refusing to guess")]
    AmbiguousIssuer(String),
    #[error("cannot fetch the key set of issuer `{issuer}`: {reason}")]
    JwksUnavailable { issuer: String, reason: String },
    #[error("identity store unavailable: {0}")]
    Store(#[from] sqlx::Error),
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

/// Why an RFC 8693 token exchange was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("subject token refused: {0}")]
    SubjectToken(TokenError),
    #[error("actor token refused: {0}")]
    ActorToken(TokenError),
    #[error("subject token must stand for a user, not `{0}`")]
    SubjectNotUser(String),
    #[error("actor token must stand for an agent, not `{0}`")]
    ActorNotAgent(String),
    #[error("actor token is itself delegated (acting for `{0}`): present the agent's own token as actor")]
    ActorDelegated(String),
    #[error("subject token is from tenant `{subject}` but actor token from tenant `{actor}`")]
    CrossTenant { subject: String, actor: String },
    #[error("delegation chain would be {0} actors deep, more than the allowed maximum")]
    ChainTooLong(usize),
    #[error("the subject or actor token expires too soon to issue a delegated token")]
    TooShortLived,
    #[error(transparent)]
    Issue(#[from] IdentityError),
}
