//! What an approver signs, and the proof of it kept with the decision.
//!
//! An approval's action is reduced to an [`ActionBinding`]: tenant, approval id, agent, tool,
//! action, the digest of the canonical arguments, the role asked for, who asked and the
//! expiry. Its digest, with a fresh nonce, is the WebAuthn challenge of the step-up
//! (`sha256("airlock-approval-v1" || nonce || digest)`), so the authenticator's signature
//! covers exactly this action: an assertion made for approval A fails for B, and for A once
//! A's arguments changed.
//!
//! A [`Proof`] holds the binding, the nonce, the relying party, the passkey as registered
//! (public key, and how its holder proved who they were to register it) and the assertion as
//! the browser sent it. [`Proof::verify`] re-runs `webauthn-rs`'s own verification over those
//! bytes alone, so `airlock approvals verify` can check a decision offline.

use airlock_approvals::{canonical_json, Approval};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use url::Url;
use webauthn_rs::prelude::{Passkey, PasskeyAuthentication, PublicKeyCredential};

/// Domain separation of the step-up challenge.
const CHALLENGE_DOMAIN: &[u8] = b"airlock-approval-v1";

/// The exact action an approver approves, as canonical JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionBinding(pub Value);

impl ActionBinding {
    /// The binding of a stored approval: everything the approver decides on.
    pub fn of(a: &Approval) -> ActionBinding {
        ActionBinding(json!({
            "v": 1,
            "tenant": a.tenant,
            "approval": a.id,
            "agent": a.agent,
            "tool": a.tool,
            "action": a.action,
            "args_digest": airlock_approvals::canonical::args_digest_of_text(&a.details).unwrap_or_default(),
            "role": a.role,
            "call": a.call_id,
            "run": a.run_id,
            "expires_at": a.expires_at,
        }))
    }

    /// Hex sha256 of the canonical text.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(canonical_json(&self.0).as_bytes()))
    }

    /// The step-up challenge for this action and `nonce`.
    pub fn challenge(&self, nonce: &[u8]) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(CHALLENGE_DOMAIN);
        h.update(nonce);
        h.update(self.digest().as_bytes());
        h.finalize().to_vec()
    }
}

/// How a passkey came to be registered: who proved what to register it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub member: String,
    /// `invitation created by user:admin` (and the invitation's digest prefix).
    pub via: String,
    pub at: i64,
}

/// A decision's proof: verifiable offline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proof {
    pub binding: ActionBinding,
    /// Hex sha256 of the binding (also in the decision's audit event).
    pub digest: String,
    /// Hex of the nonce the challenge was derived with.
    pub nonce: String,
    pub rp_id: String,
    pub origin: String,
    /// The passkey as it was before this assertion (webauthn-rs JSON: id, public key, counter).
    pub passkey: Passkey,
    pub registration: Registration,
    /// The assertion as the browser sent it: credential id, authenticator data, client data, signature.
    pub assertion: PublicKeyCredential,
}

impl Proof {
    /// Checks the proof on its own bytes: the digest is the binding's, and the passkey signed
    /// the challenge derived from it with user verification, for this relying party. With
    /// `approval`, also that the binding is that approval's action as stored now.
    pub fn verify(&self, approval: Option<&Approval>) -> Result<(), String> {
        if self.binding.digest() != self.digest {
            return Err("the action does not match the digest that was signed".into());
        }
        if let Some(a) = approval {
            if ActionBinding::of(a) != self.binding {
                return Err(format!("approval `{}` as stored is not the action that was signed", a.id));
            }
            // What the approver read is the host's text of that action, nothing else.
            if a.summary != airlock_approvals::text::summary(&a.agent, &a.tool, &a.action, &a.details) {
                return Err(format!("the text shown for approval `{}` is not the host's text of its action", a.id));
            }
        }
        let nonce = hex::decode(&self.nonce).map_err(|_| "the nonce is not hex".to_string())?;
        let challenge = self.binding.challenge(&nonce);
        let webauthn = relying_party(&self.rp_id, &self.origin)?;
        let state = step_up_state(&webauthn, std::slice::from_ref(&self.passkey), &challenge)?.1;
        let result = webauthn
            .finish_passkey_authentication(&self.assertion, &state)
            .map_err(|e| format!("the signature does not verify: {e}"))?;
        if !result.user_verified() {
            return Err("the authenticator did not verify the user".into());
        }
        Ok(())
    }
}

/// The relying party for `rp_id` at `origin`. A loopback origin's port is not pinned (a
/// development host on any port).
pub(crate) fn relying_party(rp_id: &str, origin: &str) -> Result<webauthn_rs::Webauthn, String> {
    let url = Url::parse(origin).map_err(|e| format!("origin `{origin}`: {e}"))?;
    webauthn_rs::WebauthnBuilder::new(rp_id, &url)
        .map_err(|e| format!("relying party `{rp_id}` at `{origin}`: {e}"))?
        .rp_name("Airlock")
        .allow_any_port(rp_id == "localhost")
        .build()
        .map_err(|e| format!("relying party `{rp_id}`: {e}"))
}

/// A passkey authentication whose challenge is `challenge` (webauthn-rs picks a random one;
/// its state is serialisable, so the chosen challenge is put in both the state and the
/// options the browser gets, and the library's own verifier checks it).
pub(crate) fn step_up_state(
    webauthn: &webauthn_rs::Webauthn,
    passkeys: &[Passkey],
    challenge: &[u8],
) -> Result<(Value, PasskeyAuthentication), String> {
    use base64::Engine;
    let (options, state) =
        webauthn.start_passkey_authentication(passkeys).map_err(|e| format!("starting the step-up: {e}"))?;
    let chosen = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(challenge);
    let mut options = serde_json::to_value(options).map_err(|e| e.to_string())?;
    let mut state = serde_json::to_value(state).map_err(|e| e.to_string())?;
    match (options.pointer_mut("/publicKey/challenge"), state.pointer_mut("/ast/challenge")) {
        (Some(o), Some(s)) => {
            *o = Value::String(chosen.clone());
            *s = Value::String(chosen);
        }
        _ => return Err("webauthn-rs's state no longer has the shape this host sets the challenge in".into()),
    }
    let state: PasskeyAuthentication = serde_json::from_value(state).map_err(|e| e.to_string())?;
    Ok((options, state))
}
