//! OpenID Connect ID tokens of a tenant's single sign-on provider.
//!
//! A person signing in through the tenant's provider (Auth0, Okta, Entra ID, Keycloak, any)
//! comes back with an ID token; [`Identity::verify_id_token`] checks it against the
//! provider's JWKS (through the same cache external issuers use): signature, issuer, audience
//! (the client id), expiry, the nonce this host sent, and for a step-up that the person
//! authenticated again after the host asked (`auth_time`).

use serde_json::{Map, Value};

use crate::error::TokenError;
use crate::external::ExternalIssuer;
use crate::jwt;
use crate::Identity;

/// The facts a verified ID token gives.
#[derive(Debug, Clone)]
pub struct IdToken {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    /// When the person last authenticated at the provider (unix seconds), if said.
    pub auth_time: Option<i64>,
    pub claims: Map<String, Value>,
}

impl Identity {
    /// Verifies an ID token of `provider` (issuer, client id as `audience`, JWKS url) that
    /// must carry `nonce`. With `fresh_since` (unix seconds), the person must have
    /// authenticated at or after it (`auth_time`, as a step-up's `max_age=0` asks).
    pub async fn verify_id_token(
        &self,
        token: &str,
        provider: &ExternalIssuer,
        nonce: &str,
        fresh_since: Option<i64>,
    ) -> Result<IdToken, TokenError> {
        let header = jwt::peek_header(
            token,
            &[jsonwebtoken::Algorithm::RS256, jsonwebtoken::Algorithm::ES256, jsonwebtoken::Algorithm::EdDSA],
        )?;
        let payload = jwt::peek_payload(token)?;
        let iss = jwt::issuer_of(&payload)?;
        if iss != provider.issuer {
            return Err(TokenError::WrongIssuer(iss));
        }
        let (alg, key) = self.external.key(provider, header.kid.as_deref()).await?;
        if alg != header.alg {
            return Err(TokenError::KeyAlgMismatch {
                header: format!("{:?}", header.alg),
                kid: header.kid.clone().unwrap_or_default(),
                key: format!("{alg:?}"),
            });
        }
        let validation = jwt::validation(alg, &provider.issuer, &[provider.audience.as_str()]);
        let claims = jwt::decode(token, &key, &validation, &provider.issuer, &provider.audience)?;
        // OIDC Core 3.1.3.7: with several audiences, `azp` must be this client.
        if jwt::audiences_of(&claims).len() > 1
            && jwt::string_claim(&claims, "azp").as_deref() != Some(&provider.audience)
        {
            return Err(TokenError::WrongAudience(provider.audience.clone()));
        }
        if jwt::string_claim(&claims, "nonce").as_deref() != Some(nonce) {
            return Err(TokenError::WrongNonce);
        }
        let auth_time = claims.get("auth_time").and_then(Value::as_i64);
        if let Some(since) = fresh_since {
            match auth_time {
                Some(at) if at + jwt::LEEWAY_SECS as i64 >= since => {}
                _ => return Err(TokenError::StaleAuthentication),
            }
        }
        let subject = jwt::string_claim(&claims, &provider.subject_claim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| TokenError::MissingClaim(provider.subject_claim.clone()))?;
        Ok(IdToken {
            subject,
            email: jwt::string_claim(&claims, "email"),
            email_verified: claims.get("email_verified").and_then(Value::as_bool).unwrap_or(false),
            auth_time,
            claims,
        })
    }
}
