//! Passkeys: registration from a one-time invitation, and the step-up ceremony.
//!
//! No password is ever stored. A person registers a passkey by redeeming an invitation code
//! (which says which member they are); afterwards each approval they approve needs a fresh
//! assertion of that passkey, with user verification, over a challenge that commits to the
//! approval's action ([`super::proof`]). Verification is `webauthn-rs`'s, never this host's.
//!
//! Ceremonies are rows (`webauthn_ceremonies`), single use and short lived, so any host
//! sharing the database can finish what another started.

use airlock_store::sqlx::Row;
use airlock_store::{now_millis, sqlx, Db};
use rand::RngCore;
use serde_json::Value;
use webauthn_rs::prelude::{
    CredentialID, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Uuid,
};

use super::proof::{relying_party, step_up_state, ActionBinding, Proof, Registration};

/// How long a started ceremony may take.
const CEREMONY_TTL_MS: i64 = 5 * 60 * 1000;

/// Failures, each saying what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum SigninError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NoPasskey(String),
    #[error("{0}")]
    AlreadyProved(String),
    #[error("passkey store unavailable: {0}")]
    Store(#[from] sqlx::Error),
}

/// This host's relying party and its passkeys.
pub struct Passkeys {
    db: Db,
    rp_id: String,
    origin: String,
    webauthn: webauthn_rs::Webauthn,
}

/// A started ceremony: its id and the options for `navigator.credentials.create/get`.
pub struct Started {
    pub ceremony: String,
    pub options: Value,
}

impl Passkeys {
    /// The relying party of a host reached at `public_url`. A loopback IP is served as
    /// `localhost` (browsers refuse an IP address as a relying party id).
    pub fn new(db: Db, public_url: &str) -> Result<Passkeys, String> {
        let (rp_id, origin) = Self::relying_party_of(public_url)?;
        let webauthn = relying_party(&rp_id, &origin)?;
        Ok(Passkeys { db, rp_id, origin, webauthn })
    }

    /// The relying party id and origin of a host reached at `public_url`.
    fn relying_party_of(public_url: &str) -> Result<(String, String), String> {
        let url = url::Url::parse(public_url).map_err(|e| format!("public URL `{public_url}`: {e}"))?;
        let host = match url.host_str() {
            Some("127.0.0.1") | Some("[::1]") | Some("::1") | None => "localhost".to_string(),
            Some(h) => h.to_string(),
        };
        let origin = match url.port() {
            Some(p) => format!("{}://{host}:{p}", url.scheme()),
            None => format!("{}://{host}", url.scheme()),
        };
        Ok((host, origin))
    }

    /// The origin a browser (or a test's authenticator) signs for.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Starts registering a passkey for `member` of `tenant`, who proved who they are `via`
    /// (an invitation).
    pub async fn start_registration(&self, tenant: &str, member: &str, via: &str) -> Result<Started, SigninError> {
        let existing = self.of(tenant, member).await?;
        let exclude: Vec<CredentialID> = existing.iter().map(|(p, _)| p.cred_id().clone()).collect();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(Uuid::new_v4(), member, member, Some(exclude))
            .map_err(|e| SigninError::Invalid(format!("starting the registration: {e}")))?;
        let state = serde_json::to_string(&state).map_err(|e| SigninError::Invalid(e.to_string()))?;
        let ceremony = self.open(tenant, member, "register", &state, None, None, Some(via)).await?;
        Ok(Started { ceremony, options: serde_json::to_value(options).unwrap_or_default() })
    }

    /// Finishes a registration: stores the passkey; returns the member and tenant.
    pub async fn finish_registration(
        &self,
        ceremony: &str,
        credential: &RegisterPublicKeyCredential,
    ) -> Result<(String, String), SigninError> {
        let c = self.take(ceremony, "register").await?;
        let state: PasskeyRegistration =
            serde_json::from_str(&c.state).map_err(|e| SigninError::Invalid(format!("ceremony state: {e}")))?;
        let passkey = self
            .webauthn
            .finish_passkey_registration(credential, &state)
            .map_err(|e| SigninError::Refused(format!("the passkey's registration does not verify: {e}")))?;
        let registration = Registration { member: c.member.clone(), via: c.via.unwrap_or_default(), at: now_millis() };
        sqlx::query(
            "INSERT INTO passkeys (cred_id, tenant, member, passkey, registered_via, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(hex::encode(passkey.cred_id().as_slice()))
        .bind(&c.tenant)
        .bind(&c.member)
        .bind(serde_json::to_string(&passkey).unwrap_or_default())
        .bind(serde_json::to_string(&registration).unwrap_or_default())
        .bind(registration.at)
        .execute(self.db.pool())
        .await?;
        Ok((c.tenant, c.member))
    }

    /// Starts a step-up for `member` deciding the approval `binding` describes: an assertion
    /// of one of the member's passkeys over a challenge that commits to the action.
    pub async fn start_step_up(
        &self,
        tenant: &str,
        member: &str,
        approval_id: &str,
        binding: &ActionBinding,
    ) -> Result<Started, SigninError> {
        let passkeys: Vec<Passkey> = self.of(tenant, member).await?.into_iter().map(|(p, _)| p).collect();
        if passkeys.is_empty() {
            return Err(SigninError::NoPasskey(format!(
                "`{member}` has no passkey: approving needs one. A tenant admin invites them \
                 (`airlock user invite {} --tenant {tenant}`) and they register it from the invitation link",
                member.trim_start_matches("user:")
            )));
        }
        let mut nonce = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut nonce);
        let (options, state) =
            step_up_state(&self.webauthn, &passkeys, &binding.challenge(&nonce)).map_err(SigninError::Invalid)?;
        let state = serde_json::json!({ "state": state, "nonce": hex::encode(nonce) }).to_string();
        let binding = serde_json::to_string(binding).unwrap_or_default();
        let ceremony = self.open(tenant, member, "step-up", &state, Some(approval_id), Some(&binding), None).await?;
        Ok(Started { ceremony, options })
    }

    /// Finishes a step-up for approval `approval_id` whose action is now `now`: the assertion
    /// must be the member's passkey over the challenge for `now` (an action changed since the
    /// start, another approval, another member: refused). Returns the proof to keep.
    pub async fn finish_step_up(
        &self,
        ceremony: &str,
        tenant: &str,
        member: &str,
        approval_id: &str,
        now: &ActionBinding,
        assertion: &PublicKeyCredential,
    ) -> Result<Proof, SigninError> {
        let c = self.take(ceremony, "step-up").await?;
        if c.tenant != tenant || c.member != member || c.approval_id.as_deref() != Some(approval_id) {
            return Err(SigninError::Refused(format!(
                "step-up `{ceremony}` was started for another approval or person: start one for `{approval_id}`"
            )));
        }
        let signed: ActionBinding = serde_json::from_str(c.binding.as_deref().unwrap_or_default())
            .map_err(|e| SigninError::Invalid(format!("ceremony binding: {e}")))?;
        if &signed != now {
            return Err(SigninError::Refused(format!(
                "approval `{approval_id}` changed after the step-up started: the assertion is for another action"
            )));
        }
        let saved: Value =
            serde_json::from_str(&c.state).map_err(|e| SigninError::Invalid(format!("ceremony state: {e}")))?;
        let state: PasskeyAuthentication = serde_json::from_value(saved["state"].clone())
            .map_err(|e| SigninError::Invalid(format!("ceremony state: {e}")))?;
        let nonce = saved["nonce"].as_str().unwrap_or_default().to_string();
        // Which passkey, as it was before this assertion (the proof replays against it).
        let (before, registration) =
            self.verify_assertion(tenant, member, &state, assertion, "for this action").await?;
        Ok(Proof {
            digest: signed.digest(),
            binding: signed,
            nonce,
            rp_id: self.rp_id.clone(),
            origin: self.origin.clone(),
            passkey: before,
            registration,
            assertion: assertion.clone(),
        })
    }

    /// Starts a passkey sign-in for `member` of `tenant`: an assertion of one of their
    /// passkeys, with user verification, over a random challenge.
    pub async fn start_sign_in(&self, tenant: &str, member: &str) -> Result<Started, SigninError> {
        let passkeys: Vec<Passkey> = self.of(tenant, member).await?.into_iter().map(|(p, _)| p).collect();
        if passkeys.is_empty() {
            return Err(SigninError::NoPasskey(format!(
                "no passkey sign-in for `{member}` in tenant `{tenant}`: register one from an invitation first"
            )));
        }
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|e| SigninError::Invalid(format!("starting the sign-in: {e}")))?;
        let state = serde_json::to_string(&state).map_err(|e| SigninError::Invalid(e.to_string()))?;
        let options = serde_json::to_value(options).map_err(|e| SigninError::Invalid(e.to_string()))?;
        let ceremony = self.open(tenant, member, "sign-in", &state, None, None, None).await?;
        Ok(Started { ceremony, options })
    }

    /// Finishes a passkey sign-in: `(tenant, member)` when the assertion verifies.
    pub async fn finish_sign_in(
        &self,
        ceremony: &str,
        assertion: &PublicKeyCredential,
    ) -> Result<(String, String), SigninError> {
        let c = self.take(ceremony, "sign-in").await?;
        let state: PasskeyAuthentication =
            serde_json::from_str(&c.state).map_err(|e| SigninError::Invalid(format!("ceremony state: {e}")))?;
        self.verify_assertion(&c.tenant, &c.member, &state, assertion, "").await?;
        Ok((c.tenant, c.member))
    }

    /// Removes every passkey of a member (they were removed from the tenant).
    pub async fn forget_member(&self, tenant: &str, member: &str) -> Result<u64, SigninError> {
        Ok(sqlx::query("DELETE FROM passkeys WHERE tenant = $1 AND member = $2")
            .bind(tenant)
            .bind(member)
            .execute(self.db.pool())
            .await?
            .rows_affected())
    }

    /// Keeps the proof of a decision. An approval has one proof: a second approval racing
    /// the first is `AlreadyProved` (and the first's proof stays).
    pub async fn keep_proof(&self, tenant: &str, approval_id: &str, proof: &Proof) -> Result<(), SigninError> {
        let kept = sqlx::query(
            "INSERT INTO approval_proofs (tenant, approval_id, proof, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant, approval_id) DO NOTHING",
        )
        .bind(tenant)
        .bind(approval_id)
        .bind(serde_json::to_string(proof).unwrap_or_default())
        .bind(now_millis())
        .execute(self.db.pool())
        .await?;
        if kept.rows_affected() == 0 {
            return Err(SigninError::AlreadyProved(format!(
                "approval `{approval_id}` was already approved with a passkey"
            )));
        }
        Ok(())
    }

    /// Drops a kept proof whose decision did not go through.
    pub async fn drop_proof(&self, tenant: &str, approval_id: &str) -> Result<(), SigninError> {
        sqlx::query("DELETE FROM approval_proofs WHERE tenant = $1 AND approval_id = $2")
            .bind(tenant)
            .bind(approval_id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// The proof kept for an approval, as stored (JSON text), if any.
    pub async fn proof_text(&self, tenant: &str, approval_id: &str) -> Result<Option<String>, SigninError> {
        Ok(sqlx::query("SELECT proof FROM approval_proofs WHERE tenant = $1 AND approval_id = $2")
            .bind(tenant)
            .bind(approval_id)
            .fetch_optional(self.db.pool())
            .await?
            .map(|r| r.get::<String, _>(0)))
    }

    /// Verifies `assertion` (webauthn-rs, user verification required) as one of `member`'s
    /// passkeys answering `state`, and records its use (the signature counter). Returns the
    /// passkey as it was before, and how it was registered.
    async fn verify_assertion(
        &self,
        tenant: &str,
        member: &str,
        state: &PasskeyAuthentication,
        assertion: &PublicKeyCredential,
        what: &str,
    ) -> Result<(Passkey, Registration), SigninError> {
        let cred_id = hex::encode(assertion.raw_id.as_slice());
        let row = sqlx::query(
            "SELECT passkey, registered_via FROM passkeys WHERE cred_id = $1 AND tenant = $2 AND member = $3",
        )
        .bind(&cred_id)
        .bind(tenant)
        .bind(member)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| SigninError::Refused(format!("the assertion is not by a passkey of `{member}`")))?;
        let mut passkey: Passkey = serde_json::from_str(&row.get::<String, _>(0))
            .map_err(|e| SigninError::Invalid(format!("stored passkey: {e}")))?;
        let registration: Registration = serde_json::from_str(&row.get::<String, _>(1))
            .map_err(|e| SigninError::Invalid(format!("stored registration: {e}")))?;
        let before = passkey.clone();
        let result = self
            .webauthn
            .finish_passkey_authentication(assertion, state)
            .map_err(|e| SigninError::Refused(format!("the passkey assertion does not verify {what}: {e}")))?;
        if !result.user_verified() {
            return Err(SigninError::Refused(
                "the authenticator did not verify the user: user verification is required".into(),
            ));
        }
        passkey.update_credential(&result);
        sqlx::query("UPDATE passkeys SET passkey = $1, last_used_at = $2 WHERE cred_id = $3")
            .bind(serde_json::to_string(&passkey).unwrap_or_default())
            .bind(now_millis())
            .bind(&cred_id)
            .execute(self.db.pool())
            .await?;
        Ok((before, registration))
    }

    /// A member's passkeys with their registration.
    async fn of(&self, tenant: &str, member: &str) -> Result<Vec<(Passkey, String)>, SigninError> {
        let rows = sqlx::query(
            "SELECT passkey, registered_via FROM passkeys WHERE tenant = $1 AND member = $2 ORDER BY created_at",
        )
        .bind(tenant)
        .bind(member)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((serde_json::from_str(&r.get::<String, _>(0)).ok()?, r.get::<String, _>(1))))
            .collect())
    }

    #[allow(clippy::too_many_arguments)]
    async fn open(
        &self,
        tenant: &str,
        member: &str,
        kind: &str,
        state: &str,
        approval_id: Option<&str>,
        binding: Option<&str>,
        via: Option<&str>,
    ) -> Result<String, SigninError> {
        let id = crate::tenancy::secret("cer_");
        let now = now_millis();
        sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_at < $1").bind(now).execute(self.db.pool()).await?;
        sqlx::query(
            "INSERT INTO webauthn_ceremonies (id, tenant, member, kind, state, approval_id, binding, via, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(tenant)
        .bind(member)
        .bind(kind)
        .bind(state)
        .bind(approval_id)
        .bind(binding)
        .bind(via)
        .bind(now + CEREMONY_TTL_MS)
        .execute(self.db.pool())
        .await?;
        Ok(id)
    }

    /// Takes (deletes and returns) a live ceremony of `kind`: each is used once.
    async fn take(&self, id: &str, kind: &str) -> Result<Ceremony, SigninError> {
        let row = sqlx::query(
            "DELETE FROM webauthn_ceremonies WHERE id = $1 AND kind = $2 AND expires_at > $3 \
             RETURNING tenant, member, state, approval_id, binding, via",
        )
        .bind(id)
        .bind(kind)
        .bind(now_millis())
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| {
            SigninError::Refused(format!(
                "no {kind} ceremony `{id}` in progress (used, expired or unknown): start again"
            ))
        })?;
        Ok(Ceremony {
            tenant: row.get(0),
            member: row.get(1),
            state: row.get(2),
            approval_id: row.get(3),
            binding: row.get(4),
            via: row.get(5),
        })
    }
}

struct Ceremony {
    tenant: String,
    member: String,
    state: String,
    approval_id: Option<String>,
    binding: Option<String>,
    via: Option<String>,
}
