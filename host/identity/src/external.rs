//! Tokens from external issuers (Auth0 machine-to-machine, any OIDC provider): per-tenant
//! configuration, the mapping of external subjects to agents, and a cache of each issuer's JWKS.
//!
//! The JWKS is fetched on first use and again after [`JWKS_TTL`]; a token whose kid is not in
//! the cached set triggers one refetch (the issuer may have rotated), but at most one such
//! refetch per [`REFETCH_MIN_INTERVAL`] per key set, so made-up kids cannot make the host
//! hammer the provider.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_store::{now_millis, sqlx};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{IdentityError, TokenError};
use crate::jwt::{self, PeekedHeader};
use crate::{Identity, Verified};

/// How long a fetched key set is used before it is fetched again.
pub const JWKS_TTL: Duration = Duration::from_secs(10 * 60);
/// The least time between two refetches caused by an unknown kid.
pub const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(30);
/// How long a stale key set may still be used while the issuer cannot be reached.
const STALE_MAX: Duration = Duration::from_secs(24 * 60 * 60);
/// Time allowed for one JWKS request.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Algorithms accepted from external issuers.
pub(crate) const EXTERNAL_ALGS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// An external issuer whose tokens a tenant accepts: tokens with this `iss` and `audience` are
/// verified against the keys at `jwks_url`, and their `subject_claim` names the external subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExternalIssuer {
    pub tenant: String,
    /// The exact `iss` of the provider's tokens (Auth0: `https://TENANT.auth0.com/`, trailing slash included).
    pub issuer: String,
    /// The `aud` the provider puts in tokens meant for this host (Auth0: the API identifier).
    pub audience: String,
    /// Where the provider publishes its keys (`http` or `https`).
    pub jwks_url: String,
    /// The claim holding the external subject; `sub` unless the provider puts it elsewhere.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
}

/// `sub`, the default subject claim.
fn default_subject_claim() -> String {
    "sub".into()
}

impl ExternalIssuer {
    /// A configuration with the default subject claim `sub`.
    pub fn new(tenant: &str, issuer: &str, audience: &str, jwks_url: &str) -> ExternalIssuer {
        ExternalIssuer {
            tenant: tenant.into(),
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url: jwks_url.into(),
            subject_claim: default_subject_claim(),
        }
    }
}

/// An external subject (an M2M client, say) that stands for one of the tenant's agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectMapping {
    pub tenant: String,
    pub issuer: String,
    pub external_subject: String,
    pub agent: String,
}

/// One usable key from an external JWKS.
struct ExternalKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// A fetched key set and when it was fetched.
struct Entry {
    keys: Arc<Vec<ExternalKey>>,
    fetched: Instant,
    last_forced: Option<Instant>,
}

/// Cached key sets by JWKS URL, shared by every tenant using the same provider.
pub(crate) struct JwksCache {
    http: reqwest::Client,
    sets: Mutex<HashMap<String, Entry>>,
}

impl JwksCache {
    /// An empty cache with an HTTP client that follows no redirects and gives up after [`FETCH_TIMEOUT`].
    pub fn new() -> Result<JwksCache, IdentityError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| IdentityError::HttpClient(e.to_string()))?;
        Ok(JwksCache { http, sets: Mutex::new(HashMap::new()) })
    }

    /// The key for `kid` from the issuer's set, fetching or refetching as the policy allows.
    pub(crate) async fn key(
        &self,
        cfg: &ExternalIssuer,
        kid: Option<&str>,
    ) -> Result<(Algorithm, DecodingKey), TokenError> {
        let cached = {
            let sets = self.sets.lock();
            sets.get(&cfg.jwks_url).map(|e| (e.keys.clone(), e.fetched.elapsed()))
        };
        let keys = match cached {
            Some((keys, age)) if age < JWKS_TTL => keys,
            Some((keys, age)) => match self.fetch(cfg, false).await {
                Ok(fresh) => fresh,
                Err(e) if age < STALE_MAX => {
                    tracing::warn!(issuer = %cfg.issuer, error = %e, "jwks refetch failed; using the cached set");
                    keys
                }
                Err(e) => return Err(e),
            },
            None => self.fetch(cfg, false).await?,
        };
        if let Some(found) = find(&keys, kid)? {
            return Ok(found);
        }
        let may_refetch = {
            let mut sets = self.sets.lock();
            match sets.get_mut(&cfg.jwks_url) {
                Some(entry) if entry.last_forced.is_none_or(|at| at.elapsed() >= REFETCH_MIN_INTERVAL) => {
                    entry.last_forced = Some(Instant::now());
                    true
                }
                _ => false,
            }
        };
        if may_refetch {
            let keys = self.fetch(cfg, true).await?;
            if let Some(found) = find(&keys, kid)? {
                return Ok(found);
            }
        }
        Err(TokenError::UnknownKid(kid.unwrap_or("").to_string()))
    }

    /// Fetches and parses the key set, replacing the cached one.
    async fn fetch(&self, cfg: &ExternalIssuer, forced: bool) -> Result<Arc<Vec<ExternalKey>>, TokenError> {
        let unavailable = |reason: String| TokenError::JwksUnavailable { issuer: cfg.issuer.clone(), reason };
        let mut resp = self.http.get(&cfg.jwks_url).send().await.map_err(|e| unavailable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("`{}` answered {}", cfg.jwks_url, resp.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| unavailable(e.to_string()))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(unavailable(format!("key set is larger than {MAX_JWKS_BYTES} bytes")));
            }
        }
        let keys = Arc::new(parse_jwks(&body).map_err(unavailable)?);
        let mut sets = self.sets.lock();
        let last_forced = sets.get(&cfg.jwks_url).and_then(|e| e.last_forced);
        let last_forced = if forced { Some(Instant::now()) } else { last_forced };
        sets.insert(cfg.jwks_url.clone(), Entry { keys: keys.clone(), fetched: Instant::now(), last_forced });
        Ok(keys)
    }
}

/// The key for `kid`; without a kid, the only key of a one-key set.
fn find(keys: &[ExternalKey], kid: Option<&str>) -> Result<Option<(Algorithm, DecodingKey)>, TokenError> {
    match kid {
        Some(kid) => Ok(keys.iter().find(|k| k.kid.as_deref() == Some(kid)).map(|k| (k.alg, k.key.clone()))),
        None if keys.len() == 1 => Ok(keys.first().map(|k| (k.alg, k.key.clone()))),
        None => Err(TokenError::Malformed("token has no `kid` and the issuer publishes several keys".into())),
    }
}

/// The usable signing keys of a JWKS document; keys for encryption or other algorithms are skipped.
fn parse_jwks(body: &[u8]) -> Result<Vec<ExternalKey>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("key set is not JSON: {e}"))?;
    let entries = doc.get("keys").and_then(Value::as_array).ok_or("key set has no `keys` array")?;
    let mut keys = Vec::new();
    for entry in entries {
        let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else { continue };
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let Some(alg) = key_alg(&jwk) else { continue };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else { continue };
        keys.push(ExternalKey { kid: jwk.common.key_id.clone(), alg, key });
    }
    Ok(keys)
}

/// Reads a JWKS document the way a fetched key set is read: the `(kid, algorithm)` of each usable
/// signing key, in document order (keys for encryption, other algorithms or unreadable entries
/// left out). Public for the fuzz targets (`fuzz/`), since the fetch that normally feeds this
/// parser needs a live issuer.
#[doc(hidden)]
pub fn jwks_signing_keys(body: &[u8]) -> Result<Vec<(Option<String>, String)>, String> {
    Ok(parse_jwks(body)?.into_iter().map(|k| (k.kid, alg_name(k.alg))).collect())
}

/// The algorithm a key is for: its `alg` when given, else what its type and curve imply.
/// Only RS256, ES256 and EdDSA; anything else is not used.
fn key_alg(jwk: &Jwk) -> Option<Algorithm> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(implied),
        Some(KeyAlgorithm::RS256) if implied == Algorithm::RS256 => Some(implied),
        Some(KeyAlgorithm::ES256) if implied == Algorithm::ES256 => Some(implied),
        Some(KeyAlgorithm::EdDSA) if implied == Algorithm::EdDSA => Some(implied),
        Some(_) => None,
    }
}

/// The name of an algorithm as JOSE writes it.
fn alg_name(alg: Algorithm) -> String {
    format!("{alg:?}")
}

/// One configuration row.
type IssuerRow = (String, String, String, String, String);

/// Checks a configuration before it is stored.
fn validate(cfg: &ExternalIssuer, own_issuer: &str) -> Result<(), IdentityError> {
    let bad = |m: String| Err(IdentityError::BadExternalIssuer(m));
    for (field, value) in [
        ("tenant", &cfg.tenant),
        ("issuer", &cfg.issuer),
        ("audience", &cfg.audience),
        ("subject_claim", &cfg.subject_claim),
    ] {
        if value.is_empty() {
            return bad(format!("`{field}` must not be empty"));
        }
    }
    if cfg.issuer == own_issuer {
        return bad(format!("`{}` is this host's own issuer", cfg.issuer));
    }
    match url::Url::parse(&cfg.jwks_url) {
        Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some() => Ok(()),
        _ => bad(format!("jwks url `{}` must be an absolute http or https url", cfg.jwks_url)),
    }
}

/// Whether a database error is a unique-constraint violation.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Identity {
    /// Adds or replaces a tenant's external issuer. One (issuer, audience) pair belongs to one
    /// tenant, so a token routes to exactly one tenant.
    pub async fn put_external_issuer(&self, cfg: &ExternalIssuer) -> Result<(), IdentityError> {
        validate(cfg, &self.issuer)?;
        let res = sqlx::query(
            "INSERT INTO identity_external_issuers (tenant, issuer, audience, jwks_url, subject_claim, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, issuer) DO UPDATE SET \
             audience = excluded.audience, jwks_url = excluded.jwks_url, subject_claim = excluded.subject_claim",
        )
        .bind(&cfg.tenant)
        .bind(&cfg.issuer)
        .bind(&cfg.audience)
        .bind(&cfg.jwks_url)
        .bind(&cfg.subject_claim)
        .bind(now_millis())
        .execute(self.db.pool())
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(IdentityError::IssuerTaken { issuer: cfg.issuer.clone(), audience: cfg.audience.clone() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One external issuer of a tenant.
    pub async fn get_external_issuer(
        &self,
        tenant: &str,
        issuer: &str,
    ) -> Result<Option<ExternalIssuer>, IdentityError> {
        let row: Option<IssuerRow> = sqlx::query_as(
            "SELECT tenant, issuer, audience, jwks_url, subject_claim FROM identity_external_issuers \
             WHERE tenant = $1 AND issuer = $2",
        )
        .bind(tenant)
        .bind(issuer)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.map(to_issuer))
    }

    /// Every external issuer of a tenant, by issuer.
    pub async fn list_external_issuers(&self, tenant: &str) -> Result<Vec<ExternalIssuer>, IdentityError> {
        let rows: Vec<IssuerRow> = sqlx::query_as(
            "SELECT tenant, issuer, audience, jwks_url, subject_claim FROM identity_external_issuers \
             WHERE tenant = $1 ORDER BY issuer",
        )
        .bind(tenant)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(to_issuer).collect())
    }

    /// Removes an external issuer and its subject mappings; `false` when it was not configured.
    pub async fn delete_external_issuer(&self, tenant: &str, issuer: &str) -> Result<bool, IdentityError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query("DELETE FROM identity_external_subjects WHERE tenant = $1 AND issuer = $2")
            .bind(tenant)
            .bind(issuer)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM identity_external_issuers WHERE tenant = $1 AND issuer = $2")
            .bind(tenant)
            .bind(issuer)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted > 0)
    }

    /// Makes an external subject stand for `agent` (replacing an earlier mapping of that subject).
    /// The issuer must be configured for the tenant.
    pub async fn map_external_subject(
        &self,
        tenant: &str,
        issuer: &str,
        external_subject: &str,
        agent: &str,
    ) -> Result<(), IdentityError> {
        if external_subject.is_empty() {
            return Err(IdentityError::Empty { field: "external_subject" });
        }
        if agent.is_empty() {
            return Err(IdentityError::Empty { field: "agent" });
        }
        if self.get_external_issuer(tenant, issuer).await?.is_none() {
            return Err(IdentityError::IssuerNotConfigured { tenant: tenant.into(), issuer: issuer.into() });
        }
        sqlx::query(
            "INSERT INTO identity_external_subjects (tenant, issuer, external_subject, agent, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, issuer, external_subject) DO UPDATE SET agent = excluded.agent",
        )
        .bind(tenant)
        .bind(issuer)
        .bind(external_subject)
        .bind(agent)
        .bind(now_millis())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Removes a subject mapping; `false` when there was none. Tokens of that subject are refused from then on.
    pub async fn unmap_external_subject(
        &self,
        tenant: &str,
        issuer: &str,
        external_subject: &str,
    ) -> Result<bool, IdentityError> {
        let n = sqlx::query(
            "DELETE FROM identity_external_subjects WHERE tenant = $1 AND issuer = $2 AND external_subject = $3",
        )
        .bind(tenant)
        .bind(issuer)
        .bind(external_subject)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// The subject mappings of one issuer in a tenant.
    pub async fn list_external_subjects(
        &self,
        tenant: &str,
        issuer: &str,
    ) -> Result<Vec<SubjectMapping>, IdentityError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT external_subject, agent FROM identity_external_subjects WHERE tenant = $1 AND issuer = $2 \
             ORDER BY external_subject",
        )
        .bind(tenant)
        .bind(issuer)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(external_subject, agent)| SubjectMapping {
                tenant: tenant.into(),
                issuer: issuer.into(),
                external_subject,
                agent,
            })
            .collect())
    }

    /// Verifies a token of an external issuer. With `users_allowed`, an unmapped subject is a
    /// user (the subject of a delegation); otherwise it must be mapped to an agent.
    pub(crate) async fn verify_external(
        &self,
        token: &str,
        header: &PeekedHeader,
        payload: &Map<String, Value>,
        iss: &str,
        users_allowed: bool,
    ) -> Result<Verified, TokenError> {
        let rows: Vec<IssuerRow> = sqlx::query_as(
            "SELECT tenant, issuer, audience, jwks_url, subject_claim FROM identity_external_issuers WHERE issuer = $1",
        )
        .bind(iss)
        .fetch_all(self.db.pool())
        .await?;
        if rows.is_empty() {
            return Err(TokenError::WrongIssuer(iss.to_string()));
        }
        let token_auds = jwt::audiences_of(payload);
        let mut matching: Vec<ExternalIssuer> =
            rows.into_iter().map(to_issuer).filter(|c| token_auds.contains(&c.audience)).collect();
        let cfg = match matching.len() {
            0 => return Err(TokenError::WrongAudience(token_auds.join(", "))),
            1 => matching.remove(0),
            _ => return Err(TokenError::AmbiguousIssuer(iss.to_string())),
        };
        let (alg, key) = self.external.key(&cfg, header.kid.as_deref()).await?;
        if alg != header.alg {
            return Err(TokenError::KeyAlgMismatch {
                header: alg_name(header.alg),
                kid: header.kid.clone().unwrap_or_default(),
                key: alg_name(alg),
            });
        }
        let validation = jwt::validation(alg, &cfg.issuer, &[cfg.audience.as_str()]);
        let claims = jwt::decode(token, &key, &validation, &cfg.issuer, &cfg.audience)?;
        let subject = jwt::string_claim(&claims, &cfg.subject_claim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| TokenError::MissingClaim(cfg.subject_claim.clone()))?;
        let exp = claims.get("exp").and_then(Value::as_i64).ok_or_else(|| TokenError::MissingClaim("exp".into()))?;
        let jti = jwt::string_claim(&claims, "jti");
        let agent: Option<(String,)> = sqlx::query_as(
            "SELECT agent FROM identity_external_subjects WHERE tenant = $1 AND issuer = $2 AND external_subject = $3",
        )
        .bind(&cfg.tenant)
        .bind(&cfg.issuer)
        .bind(&subject)
        .fetch_optional(self.db.pool())
        .await?;
        let (subject, agent, user) = match agent {
            Some((agent,)) => (format!("agent:{agent}"), Some(agent), None),
            None if users_allowed => (format!("user:{subject}"), None, Some(subject)),
            None => return Err(TokenError::UnmappedSubject { issuer: cfg.issuer, subject }),
        };
        let iat = claims.get("iat").and_then(Value::as_i64);
        Ok(Verified {
            tenant: cfg.tenant,
            subject,
            agent,
            user,
            act: Vec::new(),
            jti,
            exp,
            iat,
            iat_ms: None,
            issuer: cfg.issuer,
            grant: None,
        })
    }
}

/// A row as a configuration.
fn to_issuer((tenant, issuer, audience, jwks_url, subject_claim): IssuerRow) -> ExternalIssuer {
    ExternalIssuer { tenant, issuer, audience, jwks_url, subject_claim }
}
