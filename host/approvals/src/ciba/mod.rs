//! OpenID Connect Client-Initiated Backchannel Authentication (CIBA Core 1.0).
//!
//! Two halves, because Airlock plays both roles:
//! - [`CibaProvider`]: Airlock is the OpenID Provider of its own approvers. A client asks
//!   (backchannel authentication request) for an approver's consent; the request becomes an
//!   ordinary [`crate::Approval`] that the approver decides in the console, CLI or on a device;
//!   the client polls the token endpoint (poll mode) or is pinged (ping mode). The HTTP handlers
//!   live in the server and stay thin: every error carries its OAuth code and HTTP status.
//! - [`CibaClient`]: Airlock asks an external OP (Auth0, or any CIBA OP) to have a human
//!   approve, and waits for the decision.

mod client;
mod error;
mod minter;
mod notify;
mod provider;
mod registry;

use serde::{Deserialize, Serialize};

pub use client::{CibaClient, CibaClientError, Decision, ExternalOp, OpEndpoints, Started};
pub use error::CibaError;
pub use minter::{BoxFuture, MintRequest, MintedTokens, OpaqueMinter, Sealer, TokenMinter};
pub use provider::{AuthRequest, AuthResponse, CibaConfig, CibaProvider, BACKCHANNEL_PATH, TOKEN_PATH};
pub use registry::https_or_loopback;
pub use registry::{Approver, ClientReg, NewClient};

/// The grant type a client sends to the token endpoint to redeem an `auth_req_id`.
pub const GRANT_TYPE: &str = "urn:openid:params:grant-type:ciba";

/// How a client learns that a request was decided (CIBA Core 5). Push is not offered: it
/// would deliver tokens to an endpoint, which poll and ping avoid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "CibaDeliveryMode")]
pub enum DeliveryMode {
    /// The client polls the token endpoint.
    Poll,
    /// The provider POSTs `{"auth_req_id"}` to the client's notification endpoint, then the client polls once.
    Ping,
}

impl DeliveryMode {
    /// The registration metadata value (`backchannel_token_delivery_mode`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Poll => "poll",
            DeliveryMode::Ping => "ping",
        }
    }

    /// Parses the metadata value; `None` for anything else (push included).
    pub fn parse(s: &str) -> Option<DeliveryMode> {
        match s {
            "poll" => Some(DeliveryMode::Poll),
            "ping" => Some(DeliveryMode::Ping),
            _ => None,
        }
    }
}

/// A successful token response (CIBA Core 11), as the provider issues it and the client receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// Proof of the approver's consent, for the client to present.
    pub access_token: String,
    /// Always `Bearer` from this provider.
    pub token_type: String,
    /// Seconds the access token lives.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// Identifies the approver who consented (CIBA requires it from an OP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// Not issued by this provider; kept when an external OP sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The granted scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Deletes backchannel requests that expired before `before` (ms): a client polling one later
/// gets `invalid_grant` instead of `expired_token`, and the table no longer grows with every
/// request nobody answered. The approval and the audit trail keep the record. Returns how many.
pub async fn purge_expired(db: &airlock_store::Db, before: i64) -> Result<u64, airlock_store::sqlx::Error> {
    Ok(airlock_store::sqlx::query("DELETE FROM ciba_requests WHERE expires_at < $1")
        .bind(before)
        .execute(db.pool())
        .await?
        .rows_affected())
}
