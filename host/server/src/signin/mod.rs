//! People proving who they are: passkeys (WebAuthn, through `webauthn-rs`), and the step-up
//! that binds an approval to one exact action.
//!
//! - [`passkeys`]: registering a passkey from a one-time invitation, and the step-up
//!   ceremony whose challenge commits to an approval's action.
//! - [`device`]: `airlock login`, the OAuth 2.0 device authorization grant (RFC 8628).
//! - [`sso`]: single sign-on with a tenant's OpenID Connect provider (code flow, PKCE).
//! - [`flow`]: the state, nonce and PKCE verifier of every authorization code flow the host
//!   starts (sign-in, and an OAuth2 connection's Connect), kept single use.
//! - [`sessions`]: browser sessions (cookie, CSRF token, idle and absolute expiry).
//! - [`proof`]: the action binding (what is signed) and the proof kept with a decision, which
//!   anyone can verify offline, without trusting this host's database.

pub mod device;
pub mod flow;
pub mod passkeys;
pub mod proof;
pub mod sessions;
pub mod sso;

pub use passkeys::{Passkeys, SigninError};
pub use proof::{ActionBinding, Proof};
pub use sessions::Sessions;
