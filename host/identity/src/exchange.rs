//! RFC 8693 token exchange: a user's token (the subject) and an agent's own token (the actor)
//! become a token that says "this agent, acting for this user".
//!
//! Rules, each refused with its own [`ExchangeError`]:
//! - both input tokens must verify and be addressed to this host's issuer or to the requested
//!   audience (a token meant for another service cannot be exchanged here);
//! - the subject stands for a user: a user token of this host, an external issuer's token whose
//!   subject is not mapped to an agent, or an already delegated token (then the chain grows,
//!   RFC 8693 section 4.1: `act: {sub: new actor, act: {previous}}`);
//! - the actor is an agent presenting its OWN token: a delegated token is refused as actor, so an
//!   agent cannot splice another user's delegation into this one (the chain records only agents
//!   that proved themselves directly);
//! - both belong to the same tenant; the chain stays within [`MAX_CHAIN`] actors;
//! - the result never outlives the subject token, nor the actor token.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::error::ExchangeError;
use crate::issue::{lifetime, now_secs};
use crate::{Identity, IssuedToken, MAX_CHAIN, TOKEN_TYPE_ACCESS_TOKEN};

impl Identity {
    /// Exchanges a user's `subject_token` and an agent's `actor_token` for a delegated token
    /// addressed to `audience`: `sub` is the user, `act.sub` the agent. `ttl` defaults to
    /// [`crate::DEFAULT_TTL`], is capped at [`crate::MAX_TTL`] and by both input tokens' expiry.
    pub async fn exchange(
        &self,
        subject_token: &str,
        actor_token: &str,
        audience: &str,
        ttl: Option<Duration>,
    ) -> Result<IssuedToken, ExchangeError> {
        if audience.is_empty() {
            return Err(crate::IdentityError::Empty { field: "audience" }.into());
        }
        let requested = lifetime(ttl)?;
        let accepted = [self.issuer.as_str(), audience];
        let subject = self.verify_for(subject_token, &accepted, true).await.map_err(ExchangeError::SubjectToken)?;
        let actor = self.verify_for(actor_token, &accepted, false).await.map_err(ExchangeError::ActorToken)?;
        let user = subject.user.clone().ok_or_else(|| ExchangeError::SubjectNotUser(subject.subject.clone()))?;
        if !actor.act.is_empty() {
            return Err(ExchangeError::ActorDelegated(actor.subject));
        }
        let agent = match (&actor.agent, &actor.user) {
            (Some(agent), None) => agent.clone(),
            _ => return Err(ExchangeError::ActorNotAgent(actor.subject)),
        };
        if subject.tenant != actor.tenant {
            return Err(ExchangeError::CrossTenant { subject: subject.tenant, actor: actor.tenant });
        }
        if subject.act.len() + 1 > MAX_CHAIN {
            return Err(ExchangeError::ChainTooLong(subject.act.len() + 1));
        }
        let remaining = subject.exp.min(actor.exp) - now_secs();
        if remaining < 1 {
            return Err(ExchangeError::TooShortLived);
        }
        let ttl = requested.min(Duration::from_secs(remaining as u64));
        let actor_sub = format!("agent:{agent}");
        let mut chain = vec![actor_sub.as_str()];
        chain.extend(subject.act.iter().map(String::as_str));
        let mut extra = Map::new();
        extra.insert("user".into(), Value::String(user.clone()));
        extra.insert("agent".into(), Value::String(agent));
        extra.insert("act".into(), nest(&chain));
        // A token issued under an OAuth grant stays bound to it through every exchange.
        if let Some(grant) = &subject.grant {
            extra.insert("grant".into(), Value::String(grant.clone()));
        }
        let mut issued = self.issue(&subject.tenant, &format!("user:{user}"), audience, ttl, extra).await?;
        issued.issued_token_type = Some(TOKEN_TYPE_ACCESS_TOKEN.into());
        Ok(issued)
    }
}

/// What a person consented to, for [`Identity::issue_delegated`].
#[derive(Debug, Clone, Copy)]
pub struct Delegation<'a> {
    pub tenant: &'a str,
    /// The person, without the `user:` prefix.
    pub user: &'a str,
    /// The agent the person chose for the client, without the `agent:` prefix.
    pub agent: &'a str,
    /// The resource consented to (RFC 8707): the token's `aud`.
    pub audience: &'a str,
    /// What was granted (`scope`), space-separated; empty for none.
    pub scope: &'a str,
    /// The grant the consent made: the token's `grant` claim ([`crate::Verified::grant`]).
    pub grant: &'a str,
}

impl Identity {
    /// Issues the token a person's consent gives an OAuth client (the MCP authorization code
    /// flow): `sub` is the user, `act.sub` the agent the person chose for the client, `aud`
    /// the resource they consented to (RFC 8707), `scope` what was granted, `grant` the grant
    /// it lives under. Nothing is exchanged: the person proved themself by signing in, and the
    /// agent is named by them.
    pub async fn issue_delegated(
        &self,
        d: &Delegation<'_>,
        ttl: Option<Duration>,
    ) -> Result<IssuedToken, crate::IdentityError> {
        for (field, value) in [("tenant", d.tenant), ("user", d.user), ("agent", d.agent), ("grant", d.grant)] {
            if value.is_empty() {
                return Err(crate::IdentityError::Empty { field });
            }
        }
        let actor = format!("agent:{}", d.agent);
        let mut extra = Map::new();
        extra.insert("user".into(), Value::String(d.user.to_string()));
        extra.insert("agent".into(), Value::String(d.agent.to_string()));
        extra.insert("act".into(), nest(&[actor.as_str()]));
        extra.insert("grant".into(), Value::String(d.grant.to_string()));
        if !d.scope.is_empty() {
            extra.insert("scope".into(), Value::String(d.scope.to_string()));
        }
        self.issue(d.tenant, &format!("user:{}", d.user), d.audience, lifetime(ttl)?, extra).await
    }
}

/// The nested `act` claim for a chain given outermost first.
fn nest(chain: &[&str]) -> Value {
    let mut act: Option<Value> = None;
    for sub in chain.iter().rev() {
        act = Some(match act {
            None => json!({ "sub": sub }),
            Some(inner) => json!({ "sub": sub, "act": inner }),
        });
    }
    act.unwrap_or(Value::Null)
}
