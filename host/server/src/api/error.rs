//! API errors: a status, a stable code, a human message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An error as the API returns it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra fields merged into the body (e.g. the call id and log of a failed call).
    pub extra: Option<serde_json::Value>,
    /// Seconds after which trying again makes sense: sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), extra: None, retry_after: None }
    }

    /// 429: a quota of the caller's (or its tenant's) is used up for now.
    pub fn too_many(message: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
        }
    }

    /// 503: the host is overloaded for now (not the caller's fault).
    pub fn busy(message: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError { retry_after: Some(retry_after), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message) }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// A failure of ours: logged in full, reported without internals.
    pub fn internal(context: &str, e: impl std::fmt::Display) -> ApiError {
        tracing::error!("{context}: {e}");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{context}: the host could not complete this; see its log"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code, "message": self.message });
        if let (Some(map), Some(serde_json::Value::Object(extra))) = (body.as_object_mut(), self.extra) {
            map.extend(extra);
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> ApiError {
        // The framework's status stands (413 too large, 415 not JSON): only its shape changes.
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than the host accepts: send a smaller body",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("request body: {}: send `content-type: application/json`", r.body_text()),
            ),
            _ => ApiError::bad_request(format!("request body: {}", r.body_text())),
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> ApiError {
        ApiError::bad_request(format!("query string: {}", r.body_text()))
    }
}

// ---- domain errors, each mapped once ------------------------------------------------------

impl From<airlock_rebac::RebacError> for ApiError {
    fn from(e: airlock_rebac::RebacError) -> ApiError {
        use airlock_rebac::RebacError;
        match e {
            RebacError::InvalidTuple(e) => ApiError::bad_request(e.to_string()),
            RebacError::Engine(e) => ApiError::bad_request(e.to_string()),
            RebacError::InvalidModel(e) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_model", e.to_string()),
            other => ApiError::internal("authorization store", other),
        }
    }
}

impl From<crate::agents::AgentError> for ApiError {
    fn from(e: crate::agents::AgentError) -> ApiError {
        use crate::agents::AgentError;
        match e {
            AgentError::BadName(_) => ApiError::bad_request(e.to_string()),
            AgentError::Exists(_) => ApiError::conflict(e.to_string()),
            AgentError::NotFound(_) => ApiError::not_found(e.to_string()),
            AgentError::Store(e) => ApiError::internal("agent store", e),
        }
    }
}

impl From<airlock_vault::VaultError> for ApiError {
    fn from(e: airlock_vault::VaultError) -> ApiError {
        use airlock_vault::VaultError;
        match e {
            VaultError::NotFound(_) => ApiError::not_found(e.to_string()),
            VaultError::InvalidConnection(_) | VaultError::InvalidRequest(_) => ApiError::bad_request(e.to_string()),
            VaultError::ReconnectNeeded { .. } | VaultError::NotConnected(_) => ApiError::conflict(e.to_string()),
            other => ApiError::internal("vault", other),
        }
    }
}

impl From<crate::connect::ConnectError> for ApiError {
    fn from(e: crate::connect::ConnectError) -> ApiError {
        use crate::connect::ConnectError;
        match e {
            ConnectError::Invalid(m) => ApiError::bad_request(m),
            ConnectError::UnknownState(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_state", m),
            // The provider did not answer as a token endpoint should: its words, not ours.
            ConnectError::Vault(airlock_vault::VaultError::Transport(m)) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "provider_error", format!("the provider's token endpoint: {m}"))
            }
            ConnectError::Vault(e) => e.into(),
            ConnectError::Store(e) => ApiError::internal("connect store", e),
        }
    }
}

impl From<airlock_approvals::ApprovalError> for ApiError {
    fn from(e: airlock_approvals::ApprovalError) -> ApiError {
        use airlock_approvals::ApprovalError;
        match e {
            ApprovalError::NotFound(_) => ApiError::not_found(e.to_string()),
            ApprovalError::AlreadyDecided { .. } => ApiError::conflict(e.to_string()),
            ApprovalError::Invalid(_) => ApiError::bad_request(e.to_string()),
            ApprovalError::GrantUnusable(_) => ApiError::forbidden(e.to_string()),
            ApprovalError::TooManyPending { .. } => ApiError::too_many(e.to_string(), 5),
            ApprovalError::Store(e) => ApiError::internal("approval store", e),
        }
    }
}

impl From<crate::tenancy::TenancyError> for ApiError {
    fn from(e: crate::tenancy::TenancyError) -> ApiError {
        use crate::tenancy::TenancyError;
        match e {
            TenancyError::Invalid(m) => ApiError::bad_request(m),
            TenancyError::NotFound(m) => ApiError::not_found(m),
            TenancyError::Conflict(m) => ApiError::conflict(m),
            TenancyError::Store(e) => ApiError::internal("tenant store", e),
        }
    }
}

impl From<airlock_identity::IdentityError> for ApiError {
    fn from(e: airlock_identity::IdentityError) -> ApiError {
        use airlock_identity::IdentityError as E;
        match e {
            E::BadExternalIssuer(_) | E::IssuerTaken { .. } | E::Empty { .. } | E::IssuerNotConfigured { .. } => {
                ApiError::bad_request(e.to_string())
            }
            other => ApiError::internal("identity", other),
        }
    }
}

impl From<crate::marketplace::InstallError> for ApiError {
    fn from(e: crate::marketplace::InstallError) -> ApiError {
        use crate::marketplace::InstallError;
        let status = match &e {
            InstallError::NotInCatalog(_) | InstallError::NotInstalled(_) => StatusCode::NOT_FOUND,
            InstallError::UpgradeNeeded { .. }
            | InstallError::AgentExists(_)
            | InstallError::Revoked(_)
            | InstallError::ComponentTaken { .. }
            | InstallError::Model(_)
            | InstallError::ConsentRequired(_) => StatusCode::CONFLICT,
            InstallError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            InstallError::Io(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let mut err = ApiError::new(status, e.code(), e.to_string());
        if let InstallError::ConsentRequired(diff) = &e {
            err.extra = Some(json!({ "diff": diff }));
        }
        if let InstallError::Store(inner) = &e {
            tracing::error!("marketplace: {inner}");
            err.message = "the database failed; nothing was written: retry, and see the host's log".into();
        }
        err
    }
}

impl From<crate::marketplace::trust::TrustError> for ApiError {
    fn from(e: crate::marketplace::trust::TrustError) -> ApiError {
        use crate::marketplace::trust::TrustError;
        match e {
            TrustError::Key(k) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_key", k.to_string()),
            TrustError::Shipped(_) => ApiError::conflict(e.to_string()),
            TrustError::Store(s) => ApiError::internal("trusted publishers", s),
        }
    }
}

impl From<airlock_approvals::ciba::CibaError> for ApiError {
    fn from(e: airlock_approvals::ciba::CibaError) -> ApiError {
        use airlock_approvals::ciba::CibaError;
        if e.status() >= 500 {
            return ApiError::internal("CIBA store", e);
        }
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let code = match &e {
            CibaError::Approval(airlock_approvals::ApprovalError::AlreadyDecided { .. }) => "conflict",
            CibaError::Approval(airlock_approvals::ApprovalError::NotFound(_)) => "not_found",
            CibaError::Approval(_) | CibaError::InvalidRegistration(_) => "invalid_request",
            other => other.code(),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<crate::ciba::ExternalOpError> for ApiError {
    fn from(e: crate::ciba::ExternalOpError) -> ApiError {
        use crate::ciba::ExternalOpError;
        match e {
            ExternalOpError::Invalid(_) => ApiError::bad_request(e.to_string()),
            ExternalOpError::NotConfigured(_) => ApiError::not_found(e.to_string()),
            other => ApiError::internal("external OP", other),
        }
    }
}

impl From<crate::policy_gate::AuthorityError> for ApiError {
    fn from(e: crate::policy_gate::AuthorityError) -> ApiError {
        use crate::policy_gate::AuthorityError;
        let status = match &e {
            AuthorityError::UnknownCall(_) => StatusCode::NOT_FOUND,
            AuthorityError::BadInput => StatusCode::BAD_REQUEST,
            AuthorityError::Unavailable(m) => return ApiError::internal("approvals", m),
            AuthorityError::TooManyPending(m) => return ApiError::too_many(m, 5),
            _ => StatusCode::FORBIDDEN,
        };
        let mut err = ApiError::new(status, e.code(), e.to_string());
        if let Some(reason) = e.ledger_reason() {
            err.extra = Some(json!({ "ledger_reason": reason }));
        }
        err
    }
}

impl From<airlock_approvals::LedgerError> for ApiError {
    fn from(e: airlock_approvals::LedgerError) -> ApiError {
        use airlock_approvals::LedgerError;
        match e {
            LedgerError::Store(e) => ApiError::internal("ledger", e),
            LedgerError::NotFound(_) => ApiError::not_found(e.to_string()),
            LedgerError::Invalid(_) => ApiError::bad_request(e.to_string()),
            LedgerError::Replayed(_) => ApiError::conflict(e.to_string()),
            other => ApiError::forbidden(other.to_string()),
        }
    }
}
