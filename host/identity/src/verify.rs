//! Verifying a presented token: this host's own tokens against the key ring, external issuers'
//! tokens against their JWKS. The unverified header and `iss` only choose the key; everything
//! the result says comes from claims whose signature has been checked.

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::error::TokenError;
use crate::external::EXTERNAL_ALGS;
use crate::jwt::{self, PeekedHeader};
use crate::{Identity, Verified};

impl Identity {
    /// Verifies a bearer token for a call addressed to `expected_audience`.
    ///
    /// Tokens of this host must carry `expected_audience` in `aud`; tokens of an external issuer
    /// are checked against the audience configured for that issuer instead, and their subject
    /// must be mapped to an agent. A delegated token verifies with `user` set and the acting
    /// agent in `agent`.
    pub async fn verify(&self, token: &str, expected_audience: &str) -> Result<Verified, TokenError> {
        self.verify_for(token, &[expected_audience], false).await
    }

    /// [`Identity::verify`] for a call that accepts a token addressed to any of `audiences`
    /// (`/mcp`: the host's own agent tokens, and tokens minted for the MCP resource).
    pub async fn verify_any(&self, token: &str, audiences: &[&str]) -> Result<Verified, TokenError> {
        self.verify_for(token, audiences, false).await
    }

    /// Verifies `token` accepting any of `audiences`; `users_allowed` lets an unmapped external
    /// subject through as a user (for the subject token of an exchange).
    pub(crate) async fn verify_for(
        &self,
        token: &str,
        audiences: &[&str],
        users_allowed: bool,
    ) -> Result<Verified, TokenError> {
        let header = jwt::peek_header(token, &EXTERNAL_ALGS)?;
        let payload = jwt::peek_payload(token)?;
        let iss = jwt::issuer_of(&payload)?;
        if iss == self.issuer {
            self.verify_own(token, &header, audiences).await
        } else {
            self.verify_external(token, &header, &payload, &iss, users_allowed).await
        }
    }

    /// Verifies a token this host (or another host on the same database) signed.
    async fn verify_own(&self, token: &str, header: &PeekedHeader, audiences: &[&str]) -> Result<Verified, TokenError> {
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::UnsupportedAlg(format!("{:?}", header.alg)));
        }
        let kid = header.kid.as_deref().ok_or_else(|| TokenError::Malformed("token header has no `kid`".into()))?;
        // A host that only verifies still learns of retirements done by other hosts.
        self.refresh_if_stale().await.map_err(|e| TokenError::KeysUnavailable(e.to_string()))?;
        let key = match self.own_key(kid) {
            Some(key) => key,
            None => {
                // Another host may have rotated since the ring was read.
                if self.reload_for_unknown_kid().await.map_err(|e| TokenError::KeysUnavailable(e.to_string()))? {
                    self.own_key(kid).ok_or_else(|| TokenError::UnknownKid(kid.to_string()))?
                } else {
                    return Err(TokenError::UnknownKid(kid.to_string()));
                }
            }
        };
        let validation = jwt::validation(Algorithm::EdDSA, &self.issuer, audiences);
        let claims = jwt::decode(token, &key, &validation, &self.issuer, &audiences.join("` or `"))?;
        own_verified(&claims, &self.issuer)
    }

    /// The verifying key for `kid` if it verifies right now.
    fn own_key(&self, kid: &str) -> Option<jsonwebtoken::DecodingKey> {
        let now = airlock_store::now_millis();
        let ring = self.ring.read();
        ring.verifying.get(kid).filter(|k| k.verifies_at(now)).map(|k| k.key.clone())
    }
}

/// Reads a verified own token's claims into a [`Verified`].
fn own_verified(claims: &Map<String, Value>, issuer: &str) -> Result<Verified, TokenError> {
    let tenant = jwt::string_claim(claims, "tenant").filter(|t| !t.is_empty()).ok_or(TokenError::MissingTenant)?;
    let subject = jwt::string_claim(claims, "sub").ok_or_else(|| TokenError::MissingClaim("sub".into()))?;
    let jti = Some(jwt::string_claim(claims, "jti").ok_or_else(|| TokenError::MissingClaim("jti".into()))?);
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or_else(|| TokenError::MissingClaim("exp".into()))?;
    let act = jwt::act_chain(claims)?;
    let (mut agent, user) = if let Some(name) = subject.strip_prefix("agent:") {
        (Some(name.to_string()), None)
    } else if let Some(name) = subject.strip_prefix("user:") {
        (None, Some(name.to_string()))
    } else {
        return Err(TokenError::Malformed(format!("subject `{subject}` is neither `agent:NAME` nor `user:NAME`")));
    };
    if let Some(actor) = act.first() {
        agent = actor.strip_prefix("agent:").map(str::to_string);
    }
    if agent.as_deref() == Some("") || user.as_deref() == Some("") {
        return Err(TokenError::Malformed(format!("subject `{subject}` has an empty name")));
    }
    let iat = claims.get("iat").and_then(Value::as_i64);
    let iat_ms = claims.get("iat_ms").and_then(Value::as_i64);
    let grant = jwt::string_claim(claims, "grant");
    Ok(Verified { tenant, subject, agent, user, act, jti, exp, iat, iat_ms, issuer: issuer.to_string(), grant })
}
