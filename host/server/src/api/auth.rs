//! The one door every route passes: who is asking, and in which tenant.
//!
//! Three kinds of principal:
//! - the **operator** (the bootstrap token in `DATA_DIR/admin.token`, or an operator API
//!   token): host-wide work only. An operator token never acts inside a tenant; an operator
//!   who must, invites themself as a member (audited in that tenant).
//! - a **tenant member** (an API token: a role token `token:NAME`, or one carrying the
//!   relations of a person `user:NAME`; or a person's browser session, whose every
//!   state-changing request carries its CSRF token): what its relations on `tenant:T` allow,
//!   asked of that tenant's own authorization engine: `admin`, `auditor`, approver roles.
//! - an **agent** (its opaque token or a JWT): calls the tools its tuples allow.
//!
//! The route table (`super::Routes`) puts [`operator_door`] or [`tenant_door`] in front of
//! every host-wide or tenant route by its declared scope; the handlers' extractors
//! ([`Operator`], [`TenantAdmin`], [`TenantReader`], [`TenantMember`]) then take what the door
//! proved and check the role, failing closed when a route was registered without its door.
//! Agents are authenticated by [`agent`] with the tool they ask for, for the audit.
//!
//! A member of tenant A naming anything of tenant B (`?tenant=B`, a body's `tenant`, an id of
//! B's) gets 404, never 403: no oracle of B's names.

use std::sync::Arc;

use airlock_audit::AuditEvent;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::ApiError;
use crate::agents::Agent;
use crate::tenancy::{TokenOwner, HOST_CHAIN};
use crate::Airlock;

/// The bearer token of a request, if it has one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

/// A person or machine with an API token (agents are [`Agent`]s).
#[derive(Debug, Clone)]
pub enum Principal {
    /// Host-wide work; `name` is the token's (`bootstrap` for `admin.token`).
    Operator {
        name: String,
    },
    Member(Member),
}

/// A tenant member, as proved by its token.
#[derive(Debug, Clone)]
pub struct Member {
    pub tenant: String,
    /// `user:NAME` (relations checked live) or `token:NAME` (a role token).
    pub subject: String,
    /// A role token's fixed role; `None` for a token carrying a person's relations.
    role: Option<String>,
}

impl Member {
    /// A person of `tenant` (`user:NAME`), their relations checked live: who started something
    /// in a browser and must still hold their role when it comes back.
    pub fn person(tenant: &str, subject: &str) -> Member {
        Member { tenant: tenant.to_string(), subject: subject.to_string(), role: None }
    }

    /// Whether this member holds `relation` on `tenant:T`: a role token by its role, a person
    /// by the tenant's authorization engine (a check, so usersets and computed relations
    /// count), or a direct tuple when the tenant's model cannot answer (it has no `tenant` type
    /// or not this relation: an admin is not locked out by a model that forgot them).
    pub async fn holds(&self, host: &Airlock, relation: &str) -> bool {
        if let Some(role) = &self.role {
            return role == relation;
        }
        let object = format!("tenant:{}", self.tenant);
        if let Ok(answer) = host.rebac.check_now(&self.tenant, &self.subject, relation, &object).await {
            return answer;
        }
        // The model cannot answer (no `tenant` type, or not this relation): the tuple as written.
        match host.rebac.read(&self.tenant, Some(&object)).await {
            Ok(tuples) => tuples.iter().any(|t| t.relation == relation && t.subject == self.subject),
            Err(e) => {
                tracing::error!("membership check: {e}");
                false
            }
        }
    }

    /// Admins and auditors read everything of the tenant.
    pub async fn reads_all(&self, host: &Airlock) -> bool {
        self.holds(host, "admin").await || self.holds(host, "auditor").await
    }

    /// The tenant a request names (a body's `tenant`), which must be this member's: another
    /// tenant's name is 404, as if it did not exist.
    pub fn scope(&self, named: Option<&str>) -> Result<&str, ApiError> {
        match named {
            Some(t) if t != self.tenant => Err(not_this_tenant(t)),
            _ => Ok(&self.tenant),
        }
    }

    /// An audit event of this member's, in its tenant's trail.
    pub fn event(&self, kind: &str, outcome: &str, tool: &str, detail: Value) -> AuditEvent {
        AuditEvent {
            tenant: self.tenant.clone(),
            kind: kind.into(),
            outcome: outcome.into(),
            agent: self.subject.clone(),
            tool: tool.into(),
            detail,
        }
    }

    /// Refuses this member for lack of a role (`needs`, in words), audited; the message says
    /// which tuple (`grant` on `tenant:T`) a tenant admin writes to allow it.
    pub fn refuse(&self, host: &Airlock, needs: &str, grant: &str) -> ApiError {
        host.audit.record(self.event("access", "denied", "", json!({ "needs": needs })));
        ApiError::forbidden(format!(
            "`{}` is not {needs} of tenant `{}`: a tenant admin grants it (`airlock tuple write {} {grant} tenant:{}`)",
            self.subject, self.tenant, self.subject, self.tenant
        ))
    }
}

/// The 404 for another tenant's name: the same whether it exists or not.
pub(crate) fn not_this_tenant(named: &str) -> ApiError {
    let shown: String = named.chars().take(64).collect();
    ApiError::not_found(format!("no tenant `{shown}` among yours: your token is bound to its own tenant"))
}

/// Who is asking: the bearer token's owner, else the browser session of the cookie. 401
/// without either, or for an unknown, revoked or expired one. A session's request that could
/// change something (anything but GET and HEAD) must carry the session's CSRF token in
/// `X-CSRF-Token`: a page of another site can make the browser send the cookie, never the token.
pub async fn principal(host: &Airlock, method: &Method, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let Some(token) = bearer(headers) else {
        if let Some(cookie) = crate::signin::sessions::cookie_secret(headers) {
            return session_member(host, method, headers, cookie).await;
        }
        return Err(ApiError::unauthenticated(
            "send `Authorization: Bearer <token>`: a tenant member's API token, or for host-wide work the operator's (DATA_DIR/admin.token); in a browser, sign in first",
        ));
    };
    if host.is_operator_bootstrap(token) {
        return Ok(Principal::Operator { name: "bootstrap".into() });
    }
    let found = host.people.tokens.authenticate(token).await.map_err(|e| ApiError::internal("token store", e))?;
    let Some(info) = found else {
        return Err(ApiError::unauthenticated(
            "this token is unknown, revoked or expired: ask a tenant admin for a new one (`airlock token create`)",
        ));
    };
    Ok(match info.owner() {
        TokenOwner::Operator => Principal::Operator { name: info.name },
        TokenOwner::Member { tenant, member, role } => Principal::Member(Member { tenant, subject: member, role }),
    })
}

/// The member of a browser session, with the CSRF check of a state-changing request.
async fn session_member(
    host: &Airlock,
    method: &Method,
    headers: &HeaderMap,
    cookie: &str,
) -> Result<Principal, ApiError> {
    let found = host.people.sessions.authenticate(cookie).await.map_err(|e| ApiError::internal("session store", e))?;
    let Some(session) = found else {
        return Err(ApiError::unauthenticated(
            "your session ended (signed out, idle too long, or expired): sign in again",
        ));
    };
    if method != Method::GET && method != Method::HEAD {
        let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let same = sent.len() == session.csrf.len()
            && sent.bytes().zip(session.csrf.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if !same {
            return Err(ApiError::forbidden(
                "this request changes something and has no valid `X-CSRF-Token` for your session: \
                 send the token your sign-in returned (the console does)",
            ));
        }
    }
    Ok(Principal::Member(Member { tenant: session.tenant, subject: session.member, role: None }))
}

/// The door of host-wide routes: the operator only.
pub(super) async fn operator_door(State(host): State<Arc<Airlock>>, mut req: Request, next: Next) -> Response {
    match principal(&host, req.method(), req.headers()).await {
        Ok(Principal::Operator { name }) => {
            req.extensions_mut().insert(Operator(name));
            next.run(req).await
        }
        Ok(Principal::Member(m)) => ApiError::forbidden(format!(
            "this is host-wide work, for the operator (DATA_DIR/admin.token); `{}` is a member of tenant `{}`",
            m.subject, m.tenant
        ))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// The door of tenant routes: a member, whose `?tenant=` (when given) is its own tenant.
pub(super) async fn tenant_door(State(host): State<Arc<Airlock>>, mut req: Request, next: Next) -> Response {
    match principal(&host, req.method(), req.headers()).await {
        Ok(Principal::Member(m)) => {
            let named = req
                .uri()
                .query()
                .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "tenant").map(|(_, v)| v));
            if let Some(named) = named.filter(|n| !n.is_empty()) {
                if named != m.tenant {
                    return not_this_tenant(&named).into_response();
                }
            }
            req.extensions_mut().insert(m);
            next.run(req).await
        }
        Ok(Principal::Operator { .. }) => ApiError::forbidden(
            "operator tokens do host-wide work only: act inside a tenant with a member's token (an operator who must, \
             invites themself: `airlock tenant invite TENANT user:NAME --role admin`)",
        )
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// The member the tenant door let in; a route registered without the door fails closed.
fn member_of(parts: &Parts) -> Result<Member, ApiError> {
    parts.extensions.get::<Member>().cloned().ok_or_else(|| {
        tracing::error!("route {} is not behind the tenant door", parts.uri.path());
        ApiError::unauthenticated("this route is not behind the authentication layer")
    })
}

/// The operator, on a host-wide route (by the name of its token).
#[derive(Clone)]
pub struct Operator(pub String);

impl Operator {
    /// An audit event of host-wide work, in the host's own chain.
    pub fn event(&self, kind: &str, outcome: &str, tool: &str, detail: Value) -> AuditEvent {
        AuditEvent {
            tenant: HOST_CHAIN.into(),
            kind: kind.into(),
            outcome: outcome.into(),
            agent: format!("operator:{}", self.0),
            tool: tool.into(),
            detail,
        }
    }
}

impl FromRequestParts<Arc<Airlock>> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<Airlock>) -> Result<Operator, ApiError> {
        parts.extensions.get::<Operator>().cloned().ok_or_else(|| {
            tracing::error!("route {} is not behind the operator door", parts.uri.path());
            ApiError::unauthenticated("this route is not behind the authentication layer")
        })
    }
}

/// Any member of the tenant (approvals: each request then checks the role it needs).
pub struct TenantMember(pub Member);

impl FromRequestParts<Arc<Airlock>> for TenantMember {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<Airlock>) -> Result<TenantMember, ApiError> {
        member_of(parts).map(TenantMember)
    }
}

/// A tenant admin: manages agents, tuples, connections, policies, installs, tokens.
pub struct TenantAdmin(pub Member);

impl FromRequestParts<Arc<Airlock>> for TenantAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, host: &Arc<Airlock>) -> Result<TenantAdmin, ApiError> {
        let m = member_of(parts)?;
        if m.holds(host, "admin").await {
            Ok(TenantAdmin(m))
        } else {
            Err(m.refuse(host, "an admin", "admin"))
        }
    }
}

/// A tenant admin or auditor: reads everything of the tenant, changes nothing.
pub struct TenantReader(pub Member);

impl FromRequestParts<Arc<Airlock>> for TenantReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, host: &Arc<Airlock>) -> Result<TenantReader, ApiError> {
        let m = member_of(parts)?;
        if m.reads_all(host).await {
            Ok(TenantReader(m))
        } else {
            Err(m.refuse(host, "an admin or auditor", "auditor"))
        }
    }
}

// ---- agents --------------------------------------------------------------------------

/// The agent behind the bearer token; refusals are audited with their reason.
///
/// Two kinds of token are accepted: an agent's opaque token (`airlock agent create`) and a
/// signed JWT (from `/oauth/token`, a token exchange, or a tenant's external issuer). A JWT
/// names an agent that must still be live: revoking it refuses its tokens at once.
pub(crate) async fn agent(host: &Airlock, headers: &HeaderMap, tool: &str) -> Result<Agent, ApiError> {
    agent_for(host, headers, tool, &[host.identity.issuer()]).await
}

/// [`agent`] where a JWT addressed to any of `audiences` is accepted: `/mcp` takes the
/// host's own tokens and those minted for the MCP resource (RFC 8707), and no other route
/// takes the latter.
pub(crate) async fn agent_for(
    host: &Airlock,
    headers: &HeaderMap,
    tool: &str,
    audiences: &[&str],
) -> Result<Agent, ApiError> {
    use tracing::Instrument;
    authenticate_agent(host, headers, tool, audiences).instrument(crate::stage!("auth")).await
}

/// [`agent_for`], outside its stage span.
async fn authenticate_agent(
    host: &Airlock,
    headers: &HeaderMap,
    tool: &str,
    audiences: &[&str],
) -> Result<Agent, ApiError> {
    let refuse = |tenant: &str, who: &str, reason: String| {
        host.audit.record(AuditEvent {
            tenant: tenant.into(),
            kind: "auth".into(),
            outcome: "denied".into(),
            agent: who.into(),
            tool: tool.into(),
            detail: json!({ "reason": reason }),
        });
        ApiError::unauthenticated(format!("{reason}: send `Authorization: Bearer <agent token>`"))
    };
    let default = crate::config::DEFAULT_TENANT;
    let Some(token) = bearer(headers) else {
        return Err(refuse(default, "unknown", "missing bearer token".into()));
    };
    if !looks_like_jwt(token) {
        return match host.agents.authenticate(token).await.map_err(|e| ApiError::internal("agent store", e))? {
            Some(agent) => Ok(agent),
            None => Err(refuse(default, "unknown", "unknown or revoked agent token".into())),
        };
    }
    let verified = match host.identity.verify_any(token, audiences).await {
        Ok(v) => v,
        Err(e) => return Err(refuse(default, "unknown", format!("token refused: {e}"))),
    };
    if !host.people.tenants.exists(&verified.tenant).await.map_err(|e| ApiError::internal("tenant store", e))? {
        return Err(refuse(default, &verified.subject, "the token's tenant does not exist (deleted)".into()));
    }
    let Some(name) = verified.agent.clone() else {
        let reason = format!("token of `{}` names no agent: tools are called by agents", verified.subject);
        return Err(refuse(&verified.tenant, &verified.subject, reason));
    };
    if let Err(reason) = agents_live(host, &verified).await? {
        return Err(refuse(&verified.tenant, &format!("agent:{name}"), reason));
    }
    if let Some(grant) = &verified.grant {
        let live = crate::oauth_server::grants::is_live(&host.db, &verified.tenant, grant)
            .await
            .map_err(|e| ApiError::internal("grant store", e))?;
        if !live {
            let reason = "the application's access was revoked (its OAuth grant ended): authorize it again".into();
            return Err(refuse(&verified.tenant, &format!("agent:{name}"), reason));
        }
    }
    // Outermost first: the user, then each agent that delegated further, up to the acting one.
    let mut on_behalf_of = Vec::new();
    if verified.user.is_some() {
        on_behalf_of.push(verified.subject.clone());
        on_behalf_of.extend(verified.act.iter().skip(1).rev().cloned());
    }
    Ok(Agent { tenant: verified.tenant, name, on_behalf_of })
}

/// Whether every agent a verified token names (the acting one and each earlier actor) is live,
/// and was so when the token was issued: revoking an agent ends all its tokens, and re-creating
/// the name does not revive them. `Err(reason)` inside `Ok` is a refusal.
pub(crate) async fn agents_live(
    host: &Airlock,
    verified: &airlock_identity::Verified,
) -> Result<Result<(), String>, ApiError> {
    let mut names: Vec<&str> = verified.act.iter().filter_map(|a| a.strip_prefix("agent:")).collect();
    if let Some(own) = verified.subject.strip_prefix("agent:") {
        names.push(own);
    }
    for name in names {
        let since =
            host.agents.live_since(&verified.tenant, name).await.map_err(|e| ApiError::internal("agent store", e))?;
        match since {
            None => return Ok(Err(format!("agent `{name}` is revoked or unknown in tenant `{}`", verified.tenant))),
            Some(created) if issued_before(verified, created) => {
                return Ok(Err(format!("the token predates agent `{name}`'s current identity (it was revoked)")))
            }
            Some(_) => {}
        }
    }
    Ok(Ok(()))
}

/// Whether `verified` was issued before `created` (ms): by `iat_ms` in the tokens this host
/// signs; by the second of `iat` in a token without it (signed before `iat_ms` existed, or by
/// an external issuer), which cannot tell apart tokens within the creation's second.
fn issued_before(verified: &airlock_identity::Verified, created: i64) -> bool {
    match verified.iat_ms {
        Some(ms) => ms < created,
        None => verified.iat.is_some_and(|iat| iat < created / 1000),
    }
}

/// A compact JWS has three base64url parts; agent tokens are hex.
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// Refuses a tenant an unauthenticated endpoint names (`/oauth/token`, `/ciba/backchannel`)
/// unless it is well-formed and exists: 400 before anything is written or audited, so no
/// request can start an audit chain for a tenant that does not exist.
pub(crate) async fn known_tenant(host: &Airlock, tenant: &str) -> Result<(), String> {
    match host.people.tenants.check(tenant).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("tenant check: {e}");
            Err("the tenant store is unavailable; try again".into())
        }
    }
}
