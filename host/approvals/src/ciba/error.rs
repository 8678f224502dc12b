//! Errors of the provider, each with its OAuth error code and HTTP status.

use crate::ApprovalError;
use airlock_store::sqlx;

/// Why a backchannel authentication or token request was refused (CIBA Core 11 and 13).
///
/// The server's handlers turn one into `{"error": code(), "error_description": description()}`
/// with status `status()`; the description never contains internals.
#[derive(Debug, thiserror::Error)]
pub enum CibaError {
    /// A parameter is missing, repeated, malformed, or not supported here.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The scope does not contain `openid`.
    #[error("invalid scope: {0}")]
    InvalidScope(String),
    /// The hint names no approver of this tenant.
    #[error("unknown user: {0}")]
    UnknownUserId(String),
    /// The binding message is empty, too long, or not displayable.
    #[error("invalid binding message: {0}")]
    InvalidBindingMessage(String),
    /// Client authentication failed (unknown client or wrong secret).
    #[error("client authentication failed")]
    InvalidClient,
    /// The client exists but may not use CIBA (it is disabled).
    #[error("client `{0}` is not authorized to use CIBA")]
    UnauthorizedClient(String),
    /// The token endpoint was called with another grant type.
    #[error("unsupported grant type `{0}`")]
    UnsupportedGrantType(String),
    /// The approver has not decided yet.
    #[error("the authorization request is still pending")]
    AuthorizationPending,
    /// The client polls faster than its interval, which is now `interval` seconds.
    #[error("polling too fast: wait {interval} seconds between token requests")]
    SlowDown { interval: u64 },
    /// The request expired before the approver decided.
    #[error("the authorization request expired")]
    ExpiredToken,
    /// The approver denied the request.
    #[error("the approver denied the request")]
    AccessDenied,
    /// The `auth_req_id` is unknown, belongs to another client, or was already redeemed.
    #[error("the auth_req_id is invalid, belongs to another client, or was already redeemed")]
    InvalidGrant,
    /// A client registration or approver entry is not acceptable (administration, not OAuth).
    #[error("invalid registration: {0}")]
    InvalidRegistration(String),
    /// No such client or approver (administration).
    #[error("no {kind} `{name}` in this tenant")]
    NotFound { kind: &'static str, name: String },
    /// Someone other than the approver a CIBA request names tried to decide it.
    #[error("`{0}` is not the approver of this request")]
    NotTheApprover(String),
    /// Minting tokens failed (the minter's reason is logged, not sent).
    #[error("cannot issue tokens: {0}")]
    Mint(String),
    /// A notification (ping or device webhook) could not be delivered.
    #[error("notification to `{url}` failed: {reason}")]
    Notify { url: String, reason: String },
    /// The approvals engine refused or failed.
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    /// The database failed.
    #[error("ciba store unavailable: {0}")]
    Store(#[from] sqlx::Error),
}

impl CibaError {
    /// The OAuth `error` code to send.
    pub fn code(&self) -> &'static str {
        match self {
            CibaError::InvalidRequest(_) => "invalid_request",
            CibaError::InvalidScope(_) => "invalid_scope",
            CibaError::UnknownUserId(_) => "unknown_user_id",
            CibaError::InvalidBindingMessage(_) => "invalid_binding_message",
            CibaError::InvalidClient => "invalid_client",
            CibaError::UnauthorizedClient(_) => "unauthorized_client",
            CibaError::UnsupportedGrantType(_) => "unsupported_grant_type",
            CibaError::AuthorizationPending => "authorization_pending",
            CibaError::SlowDown { .. } => "slow_down",
            CibaError::ExpiredToken => "expired_token",
            CibaError::AccessDenied => "access_denied",
            CibaError::InvalidGrant => "invalid_grant",
            CibaError::InvalidRegistration(_) => "invalid_client_metadata",
            CibaError::NotFound { .. } => "not_found",
            CibaError::NotTheApprover(_) => "forbidden",
            CibaError::Mint(_) | CibaError::Notify { .. } | CibaError::Approval(_) | CibaError::Store(_) => {
                "server_error"
            }
        }
    }

    /// The HTTP status to answer with. Token endpoint errors are 400 (RFC 6749 5.2),
    /// `invalid_client` 401; `access_denied` is only ever a token-endpoint error here.
    pub fn status(&self) -> u16 {
        match self {
            CibaError::InvalidClient => 401,
            CibaError::NotFound { .. } => 404,
            CibaError::NotTheApprover(_) => 403,
            CibaError::Mint(_) | CibaError::Notify { .. } | CibaError::Store(_) => 500,
            CibaError::Approval(e) => match e {
                ApprovalError::Invalid(_) => 400,
                ApprovalError::NotFound(_) => 404,
                ApprovalError::AlreadyDecided { .. } | ApprovalError::GrantUnusable(_) => 409,
                ApprovalError::TooManyPending { .. } => 429,
                ApprovalError::Store(_) => 500,
            },
            _ => 400,
        }
    }

    /// The `error_description` to send: the message, except for server faults.
    pub fn description(&self) -> String {
        if self.status() >= 500 {
            "internal error".into()
        } else {
            self.to_string()
        }
    }

    /// The OAuth error body.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.code(), "error_description": self.description() })
    }

    /// Whether the client should answer with `WWW-Authenticate: Basic` (RFC 6749 5.2).
    pub fn wants_authenticate_header(&self) -> bool {
        matches!(self, CibaError::InvalidClient)
    }
}
