//! The thin layer over `jsonwebtoken`: a look at the header and payload before any key is
//! chosen (to route the token and to refuse `alg: none` by name), the validation settings,
//! and the mapping of the library's errors to [`TokenError`].
//!
//! The header never picks the key type: the key is chosen by issuer and kid, and the
//! validation allows exactly that key's algorithm, so a header naming another one is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use crate::error::TokenError;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// What the unverified header says; used only to route and to refuse early.
pub(crate) struct PeekedHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

/// Splits a compact JWS into its three segments.
fn segments(token: &str) -> Result<[&str; 3], TokenError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() => Ok([h, p, s]),
        _ => Err(TokenError::Malformed("a token is three base64url segments separated by `.`".into())),
    }
}

/// Decodes one segment as a JSON object.
fn json_segment(segment: &str, what: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed(format!("token {what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::Malformed(format!("token {what} is not a JSON object"))),
    }
}

/// Reads the header and checks its `alg` against `allowed`, refusing `none` by name.
pub(crate) fn peek_header(token: &str, allowed: &[Algorithm]) -> Result<PeekedHeader, TokenError> {
    let [header, _, _] = segments(token)?;
    let header = json_segment(header, "header")?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.as_str(),
        _ => return Err(TokenError::Malformed("token header has no `alg`".into())),
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(TokenError::AlgNone);
    }
    let parsed = match alg {
        "EdDSA" => Algorithm::EdDSA,
        "ES256" => Algorithm::ES256,
        "RS256" => Algorithm::RS256,
        _ => return Err(TokenError::UnsupportedAlg(alg.to_string())),
    };
    if !allowed.contains(&parsed) {
        return Err(TokenError::UnsupportedAlg(alg.to_string()));
    }
    if header.contains_key("crit") {
        return Err(TokenError::Malformed("token header has a `crit` extension this host does not understand".into()));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(TokenError::Malformed("token header `kid` is not a string".into())),
    };
    Ok(PeekedHeader { alg: parsed, kid })
}

/// Reads the unverified payload, only to find the issuer and audiences that select the key.
pub(crate) fn peek_payload(token: &str) -> Result<Map<String, Value>, TokenError> {
    let [_, payload, _] = segments(token)?;
    json_segment(payload, "payload")
}

/// The `iss` of an unverified payload.
pub(crate) fn issuer_of(payload: &Map<String, Value>) -> Result<String, TokenError> {
    match payload.get("iss") {
        Some(Value::String(iss)) => Ok(iss.clone()),
        Some(_) => Err(TokenError::Malformed("token `iss` is not a string".into())),
        None => Err(TokenError::MissingClaim("iss".into())),
    }
}

/// The `aud` of a payload as a list (a single string or an array of strings).
pub(crate) fn audiences_of(payload: &Map<String, Value>) -> Vec<String> {
    match payload.get("aud") {
        Some(Value::String(aud)) => vec![aud.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

/// Validation for one key: only its algorithm, this issuer, one of these audiences, `exp` required.
pub(crate) fn validation(alg: Algorithm, issuer: &str, audiences: &[&str]) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = LEEWAY_SECS;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = true;
    v.set_issuer(&[issuer]);
    v.set_audience(audiences);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v
}

/// Verifies `token` with `key` under `validation` and returns its claims.
pub(crate) fn decode(
    token: &str,
    key: &jsonwebtoken::DecodingKey,
    validation: &Validation,
    issuer: &str,
    expected_audience: &str,
) -> Result<Map<String, Value>, TokenError> {
    match jsonwebtoken::decode::<Map<String, Value>>(token, key, validation) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.into_kind() {
            ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => TokenError::BadSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer(issuer.to_string()),
            ErrorKind::InvalidAudience => TokenError::WrongAudience(expected_audience.to_string()),
            ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim),
            ErrorKind::InvalidAlgorithm => TokenError::UnsupportedAlg(format!("{:?}", validation.algorithms)),
            other => TokenError::Malformed(format!("{other:?}").to_lowercase()),
        }),
    }
}

/// A string claim, if present.
pub(crate) fn string_claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims.get(name).and_then(Value::as_str).map(str::to_string)
}

/// The `act` chain, outermost actor first (RFC 8693 section 4.1 nests earlier actors inside).
pub(crate) fn act_chain(claims: &Map<String, Value>) -> Result<Vec<String>, TokenError> {
    let mut chain = Vec::new();
    let mut next = claims.get("act");
    while let Some(act) = next {
        let act = act.as_object().ok_or_else(|| TokenError::Malformed("`act` is not an object".into()))?;
        let sub = string_claim(act, "sub").ok_or_else(|| TokenError::Malformed("`act` has no `sub`".into()))?;
        chain.push(sub);
        if chain.len() > crate::MAX_CHAIN {
            return Err(TokenError::Malformed("`act` chain is too deep".into()));
        }
        next = act.get("act");
    }
    Ok(chain)
}
