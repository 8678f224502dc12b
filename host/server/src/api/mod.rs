//! The HTTP API: one route table, each route declared with who may call it.
//!
//! Scopes ([`Scope`]), enforced by the one door in [`auth`]:
//! - **public**: `GET /healthz`, the OAuth and OpenID endpoints (`/oauth/token`, JWKS, CIBA's
//!   backchannel and discovery, the MCP clients' metadata, registration and consent pages, the external OP's ping, the callbacks of sign-in and of an
//!   OAuth2 connection's Connect, whose state is the authority), redeeming an invitation; each
//!   authenticates what it must itself (client credentials, a code) and refuses a malformed
//!   or unknown tenant before writing anything;
//! - **operator**: host-wide work ([`tenants`], host [`components`], publishers, keys, the
//!   host's own audit chain);
//! - **tenant**: a member's token; the handler's extractor says which role it needs (admin,
//!   admin or auditor, or any member for approvals); among them what the console reads: the
//!   agents (`GET /v1/agents`), the audit trail searched, summarized per minute and exported
//!   (`/v1/audit/search`, `/v1/audit/summary`, `/v1/audit/export`, in [`audit`]), and an
//!   approver's queue live (`GET /v1/approvals/events`, Server-Sent Events, in [`approvals`]);
//! - **agent**: an agent's token or JWT (`/v1/tools`, runs, `/mcp`).
//!
//! Errors are JSON bodies `{"code": "...", "message": "..."}` with a stable code
//! ([`ApiError`]; each domain error mapped once, in `error.rs`); internals stay in the log.
//! OpenFGA's (`/stores`) and OAuth's endpoints answer in their own error shapes. The
//! framework's own refusals (unknown route, wrong method, body too large) are rewritten into
//! the same JSON by [`rejections`]; that, each route's body cap and the request's trace span
//! are one layer, the [`front_door`].

mod agents;
mod approvals;
mod audit;
pub mod auth;
mod authz;
pub(crate) mod ciba;
mod components;
mod connections;
mod device;
mod error;
mod events;
mod front_door;
mod identity_admin;
mod marketplace;
mod mcp_oauth;
mod oauth;
pub mod openapi;
mod openfga;
mod passkeys;
mod rejections;
mod runs;
mod sso;
mod tenants;
pub(crate) mod tools;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::from_fn_with_state;
use axum::routing::{MethodFilter, MethodRouter};
use axum::{Json, Router};

pub use error::ApiError;

/// The request bodies of the API as the CLI sends them: the very types the handlers read (and
/// the OpenAPI document describes), so the CLI cannot send a shape the host does not accept.
pub(crate) mod requests {
    pub(crate) use super::agents::NewAgent;
    pub(crate) use super::approvals::Decision;
    pub(crate) use super::authz::{TupleBody, TupleJson};
    pub(crate) use super::ciba::{PutApprover, PutExternalOp, RegisterClient};
    pub(crate) use super::connections::{NewMasterKey, PutConnection, RotateSecret};
    pub(crate) use super::marketplace::{PackageRequest, TrustRequest};
    pub(crate) use super::runs::NewPolicy;
    pub(crate) use super::sso::PutSso;
    pub(crate) use super::tenants::{Accept, CreateOperatorToken, CreateToken, NewInvitation, NewTenant};
}

use crate::Airlock;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// No token (each endpoint authenticates what it must itself).
    Public,
    /// The operator: host-wide work.
    Operator,
    /// A tenant member, in its own tenant only.
    Tenant,
    /// An agent.
    Agent,
}

/// One route of the table, as tests and docs walk it.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub method: Method,
    pub path: &'static str,
    pub scope: Scope,
    /// What it does, in a line ([`Routes::doc`]); the OpenAPI document's summary.
    pub summary: &'static str,
    /// The handler's Rust path (`airlock::api::agents::create`): the operation's id and tag.
    pub handler: &'static str,
    /// The handler's extractors as Rust types: which body and query it reads ([`openapi`]).
    pub inputs: &'static str,
    /// What it answers on success ([`Routes::returns`], [`Routes::answers`]).
    pub answer: Option<Answer>,
}

/// What a route answers on success, for its OpenAPI response.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// A JSON body of the type whose schema this writes (`#/components/schemas`).
    Json(fn(&mut schemars::SchemaGenerator) -> schemars::Schema),
    /// Another media type (a Server-Sent Events stream, JSON lines), and what it carries.
    Other { media_type: &'static str, description: &'static str },
}

/// The route table being built: every route goes through [`Routes::at`], which puts the door
/// of its scope in front of the handler and records it, so the table and the router cannot
/// disagree.
pub(crate) struct Routes {
    host: Arc<Airlock>,
    paths: BTreeMap<&'static str, MethodRouter<Arc<Airlock>>>,
    extra: Vec<Router<Arc<Airlock>>>,
    table: Vec<RouteInfo>,
}

fn filter(method: &Method) -> MethodFilter {
    match *method {
        Method::GET => MethodFilter::GET,
        Method::PUT => MethodFilter::PUT,
        Method::DELETE => MethodFilter::DELETE,
        Method::PATCH => MethodFilter::PATCH,
        _ => MethodFilter::POST,
    }
}

impl Routes {
    fn new(host: Arc<Airlock>) -> Routes {
        Routes { host, paths: BTreeMap::new(), extra: Vec::new(), table: Vec::new() }
    }

    /// Adds `method path` served by `handler`, behind the door of `scope`.
    pub(crate) fn at<H, T>(mut self, scope: Scope, method: Method, path: &'static str, handler: H) -> Routes
    where
        H: Handler<T, Arc<Airlock>>,
        T: 'static,
    {
        let f = filter(&method);
        let routed = self.paths.remove(path).unwrap_or_default();
        let routed = match scope {
            Scope::Operator => routed.on(f, handler.layer(from_fn_with_state(self.host.clone(), auth::operator_door))),
            Scope::Tenant => routed.on(f, handler.layer(from_fn_with_state(self.host.clone(), auth::tenant_door))),
            Scope::Public | Scope::Agent => routed.on(f, handler),
        };
        self.paths.insert(path, routed);
        let (handler, inputs) = (std::any::type_name::<H>(), std::any::type_name::<T>());
        self.table.push(RouteInfo { method, path, scope, summary: "", handler, inputs, answer: None });
        self
    }

    /// Says what the route just added does, in a line (its OpenAPI summary).
    pub(crate) fn doc(mut self, summary: &'static str) -> Routes {
        if let Some(last) = self.table.last_mut() {
            last.summary = summary;
        }
        self
    }

    /// Says that the route just added answers a JSON `T` on success (its OpenAPI response).
    pub(crate) fn returns<T: schemars::JsonSchema>(mut self) -> Routes {
        if let Some(last) = self.table.last_mut() {
            last.answer = Some(Answer::Json(|g| g.subschema_for::<T>()));
        }
        self
    }

    /// Says that the route just added answers `media_type` (not one JSON value) on success.
    pub(crate) fn answers(mut self, media_type: &'static str, description: &'static str) -> Routes {
        if let Some(last) = self.table.last_mut() {
            last.answer = Some(Answer::Other { media_type, description });
        }
        self
    }

    /// Adds a whole service (MCP) that authenticates by itself, recording its methods.
    pub(crate) fn service(
        mut self,
        scope: Scope,
        methods: &[Method],
        path: &'static str,
        router: Router<Arc<Airlock>>,
    ) -> Routes {
        self.extra.push(router);
        self.table.extend(methods.iter().map(|m| RouteInfo {
            method: m.clone(),
            path,
            scope,
            summary: "",
            handler: "",
            inputs: "",
            answer: None,
        }));
        self
    }

    fn into_router(self) -> Router {
        let mut caps = BodyCaps::new();
        for r in &self.table {
            caps.entry(r.path).or_default().push((r.method.clone(), body_limit(r.scope, &r.method, r.path)));
        }
        let caps = Arc::new(caps);
        let mut router = Router::new();
        for (path, routed) in self.paths {
            router = router.route(path, routed);
        }
        for extra in self.extra {
            router = router.merge(extra);
        }
        router
            .layer(axum::middleware::from_fn(move |req, next| front_door::front_door(caps.clone(), req, next)))
            .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(self.host)
    }
}

const EVENT_STREAM: &str = "text/event-stream";
const SIGNED_EXPORT: &str = "application/x-ndjson";
const SIGNED_EXPORT_LINES: &str = "JSON lines: `{\"export\": {format, tenant, head, exported_at}}`, then \
    `{\"event\": {...}}` per event (`detail` as stored, the text its hash covers), then `{\"checkpoint\": {...}}` lines; \
    `airlock audit verify --export FILE --key PUBKEY` checks it offline";

/// The largest request body the host buffers (a component upload is the largest there is).
const BODY_LIMIT: usize = 32 << 20;

/// Each route's body cap, by path as routed, then method ([`body_limit`]).
pub(crate) type BodyCaps = std::collections::HashMap<&'static str, Vec<(Method, usize)>>;

/// What a route buffers at most, enforced before its door authenticates anyone. Uploads (a
/// component, a package archive) get [`BODY_LIMIT`]; a route anyone may call without a token
/// gets 64 KiB (forms, passkey ceremonies, invitation codes), so an unauthenticated client
/// cannot make the host buffer megabytes; an agent's routes (tool inputs, MCP messages) 4 MiB;
/// the rest 1 MiB.
fn body_limit(scope: Scope, method: &Method, path: &str) -> usize {
    let upload = *method == Method::POST
        && matches!(path, "/v1/components/{name}" | "/v1/marketplace/install" | "/v1/marketplace/upgrade");
    match scope {
        _ if upload => BODY_LIMIT,
        Scope::Public => PUBLIC_BODY_LIMIT,
        Scope::Agent => 4 << 20,
        Scope::Tenant | Scope::Operator => 1 << 20,
    }
}

/// The cap of a route anyone may call, and of a request no route matched.
pub(crate) const PUBLIC_BODY_LIMIT: usize = 64 << 10;

/// Every route, with its scope.
fn routes(host: Arc<Airlock>) -> Routes {
    use Method as M;
    use Scope::{Agent, Operator, Public, Tenant};
    let mcp = crate::mcp::http::routes(host.clone(), &host.mcp_allowed_hosts);
    let r = Routes::new(host)
        .at(Public, M::GET, "/healthz", || async { Json(serde_json::json!({ "status": "ok" })) })
        .at(Public, M::GET, "/v1/openapi.json", openapi::serve)
        .doc("This document: every /v1 route, generated from the route table")
        .answers("application/json", "An OpenAPI 3.1 document (this one)")
        // off unless `--metrics`; its own bearer token when `--metrics-token` is set
        .at(Public, M::GET, "/metrics", crate::telemetry::metrics::serve)
        .at(Public, M::GET, "/", crate::console::home)
        .at(Public, M::GET, "/console", crate::console::page)
        .at(Public, M::GET, "/signin", crate::console::page)
        .at(Public, M::GET, "/signin/register", crate::console::page)
        .at(Public, M::GET, "/console/{page}", crate::console::named_page)
        .at(Public, M::GET, "/console/assets/{version}/{name}", crate::console::asset)
        .at(Public, M::POST, "/oauth/token", oauth::token)
        .at(Public, M::GET, "/.well-known/jwks.json", oauth::jwks)
        // MCP clients' discovery, registration and consent (`crate::oauth_server`)
        .at(Public, M::GET, "/.well-known/oauth-protected-resource", mcp_oauth::protected_resource)
        .at(Public, M::GET, "/.well-known/oauth-protected-resource/mcp", mcp_oauth::protected_resource)
        .at(Public, M::GET, "/.well-known/oauth-authorization-server", mcp_oauth::server_metadata)
        .at(Public, M::POST, "/oauth/register", mcp_oauth::register)
        .at(Public, M::GET, "/oauth/authorize", mcp_oauth::authorize)
        .at(Public, M::POST, "/oauth/authorize", mcp_oauth::authorize_post)
        .at(Tenant, M::GET, "/v1/oauth/grants", mcp_oauth::list_grants)
        .doc("List the MCP clients a person let act for them (an admin sees everyone's)")
        .returns::<mcp_oauth::OAuthGrantList>()
        .at(Tenant, M::DELETE, "/v1/oauth/grants/{id}", mcp_oauth::revoke_grant)
        .doc("Revoke an MCP client's grant: its refresh token stops working")
        .returns::<mcp_oauth::OAuthGrantRevoked>()
        // people: tenants, tokens, invitations
        .at(Operator, M::GET, "/v1/tenants", tenants::list)
        .doc("List tenants (operator)")
        .returns::<tenants::TenantList>()
        .at(Operator, M::POST, "/v1/tenants", tenants::create)
        .doc("Create a tenant (operator)")
        .returns::<tenants::TenantCreated>()
        .at(Operator, M::DELETE, "/v1/tenants/{tenant}", tenants::delete)
        .doc("Delete a tenant and everything it holds (operator)")
        .returns::<tenants::TenantDeleted>()
        .at(Operator, M::POST, "/v1/tenants/{tenant}/invitations", tenants::operator_invite)
        .doc("Invite a tenant's first member (operator)")
        .returns::<tenants::InvitationCreated>()
        .at(Operator, M::GET, "/v1/operator/tokens", tenants::list_operator_tokens)
        .doc("List operator API tokens")
        .returns::<tenants::TokenList>()
        .at(Operator, M::POST, "/v1/operator/tokens", tenants::create_operator_token)
        .doc("Create an operator API token (shown once)")
        .returns::<tenants::TokenCreated>()
        .at(Operator, M::DELETE, "/v1/operator/tokens/{name}", tenants::revoke_operator_token)
        .doc("Revoke an operator API token")
        .returns::<tenants::TokenRevoked>()
        .at(Tenant, M::GET, "/v1/tokens", tenants::list_tokens)
        .doc("List the tenant's API tokens")
        .returns::<tenants::TokenList>()
        .at(Tenant, M::POST, "/v1/tokens", tenants::create_token)
        .doc("Create a tenant API token for a role or a person (shown once)")
        .returns::<tenants::TokenCreated>()
        .at(Tenant, M::DELETE, "/v1/tokens/{name}", tenants::revoke_token)
        .doc("Revoke a tenant API token")
        .returns::<tenants::TokenRevoked>()
        .at(Tenant, M::POST, "/v1/invitations", tenants::admin_invite)
        .doc("Invite a person to the tenant with a role")
        .returns::<tenants::InvitationCreated>()
        .at(Public, M::POST, "/v1/invitations/accept", tenants::accept)
        .doc("Redeem an invitation code for an API token")
        .returns::<tenants::InvitationAccepted>()
        .at(Tenant, M::GET, "/v1/me", tenants::me)
        .doc("Who this token or session is, and its roles")
        .returns::<tenants::Me>()
        // agents' side
        .at(Agent, M::GET, "/v1/tools", tools::list_tools)
        .doc("List the tools this agent may use, with their input schemas and declared effects")
        .returns::<tools::ToolList>()
        .at(Agent, M::POST, "/v1/tools/{tool}/call", tools::call_tool)
        .doc("Call a tool: authorization, approval policy, sandbox, vault and audit")
        .returns::<tools::ToolCallResult>()
        .at(Agent, M::POST, "/v1/approvals", runs::request_approval)
        .doc("Ask ahead of a call for approval of a tool with this input")
        .returns::<airlock_approvals::Approval>()
        .at(Agent, M::GET, "/v1/approvals/{id}/wait", runs::wait_approval)
        .doc("Long-poll one of this agent's approvals until it is decided")
        .returns::<airlock_approvals::Approval>()
        .at(Agent, M::POST, "/v1/calls/{call_id}/resume", runs::resume_call)
        .doc("Re-attach to a call held by an approval policy; it runs once when approved")
        .returns::<tools::ToolCallResult>()
        .at(Agent, M::POST, "/v1/runs", runs::start_run)
        .doc("Start a run (awaits its entry approval when the agent has an entry policy)")
        .returns::<airlock_approvals::Run>()
        .at(Agent, M::GET, "/v1/runs/{id}", runs::get_run)
        .doc("Read one of this agent's runs")
        .returns::<airlock_approvals::Run>()
        .at(Agent, M::POST, "/v1/runs/{id}/finish", runs::finish_run)
        .doc("Finish a run")
        .returns::<airlock_approvals::Run>()
        // host-wide components and keys
        .at(Operator, M::GET, "/v1/components", components::list)
        .doc("List host-wide components (operator)")
        .returns::<components::ComponentList>()
        .at(Operator, M::POST, "/v1/components/{name}", components::add)
        .doc("Upload a host-wide component, compiled and checked before it is kept (operator)")
        .returns::<components::HostComponent>()
        .at(Operator, M::POST, "/v1/vault/rotate-master-key", connections::rotate_master_key)
        .doc("Rotate the vault's master key (operator)")
        .returns::<connections::MasterKeyRotated>()
        .at(Operator, M::POST, "/v1/identity/rotate-key", identity_admin::rotate_key)
        .doc("Rotate the host's token signing key (operator)")
        .returns::<identity_admin::KeyRotated>()
        .at(Operator, M::GET, "/v1/host/audit", audit::read_host)
        .doc("Read the host's own audit chain (operator)")
        .returns::<audit::AuditEvents>()
        .at(Operator, M::GET, "/v1/host/audit/verify", audit::verify_host)
        .doc("Verify the host's audit chain (operator)")
        .returns::<audit::Verification>()
        .at(Operator, M::POST, "/v1/host/audit/checkpoints", audit::checkpoint_all)
        .doc("Sign every chain's head now (operator)")
        .returns::<audit::CheckpointsSigned>()
        .at(Operator, M::GET, "/v1/host/audit/checkpoint-key", audit::host_checkpoint_key)
        .doc("The public key of the host chain's checkpoints (operator)")
        .returns::<audit::CheckpointPublicKey>()
        .at(Operator, M::GET, "/v1/host/audit/export/signed", audit::export_signed_host)
        .doc("Export the host chain with its signed checkpoints (operator)")
        .answers(SIGNED_EXPORT, SIGNED_EXPORT_LINES)
        // a tenant's administration
        .at(Tenant, M::GET, "/v1/tuples", authz::read_tuples)
        .doc("Read relationship tuples")
        .returns::<authz::TupleList>()
        .at(Tenant, M::POST, "/v1/tuples", authz::write_tuples)
        .doc("Write and delete relationship tuples")
        .returns::<authz::TuplesWritten>()
        .at(Tenant, M::GET, "/v1/authorization-model", authz::read_model)
        .doc("Read the tenant's authorization model")
        .returns::<authz::AuthorizationModel>()
        .at(Tenant, M::PUT, "/v1/authorization-model", authz::write_model)
        .doc("Replace the tenant's authorization model (OpenFGA DSL or JSON)")
        .returns::<authz::AuthorizationModelWritten>()
        .at(Tenant, M::GET, "/v1/agents", agents::list)
        .doc("List the tenant's agents, live and revoked")
        .returns::<agents::AgentList>()
        .at(Tenant, M::POST, "/v1/agents", agents::create)
        .doc("Create an agent (its token is shown once)")
        .returns::<agents::CreatedAgent>()
        .at(Tenant, M::DELETE, "/v1/agents/{name}", agents::revoke)
        .doc("Revoke an agent: its tokens, grants and pending approvals end at once")
        .returns::<agents::RevokedAgent>()
        .at(Tenant, M::GET, "/v1/connections", connections::list)
        .doc("List the tenant's vault connections (never their secrets)")
        .returns::<connections::ConnectionList>()
        .at(Tenant, M::PUT, "/v1/connections/{name}", connections::put)
        .doc("Create or replace a vault connection")
        .returns::<connections::ConnectionSaved>()
        .at(Tenant, M::DELETE, "/v1/connections/{name}", connections::delete)
        .doc("Delete a vault connection")
        .returns::<connections::ConnectionDeleted>()
        .at(Tenant, M::POST, "/v1/connections/{name}/secret", connections::rotate_secret)
        .doc("Rotate a connection's secret")
        .returns::<connections::SecretRotated>()
        .at(Tenant, M::POST, "/v1/connections/{name}/connect", connections::connect)
        .doc("Start Connect for an OAuth2 connection: the provider's authorization URL")
        .returns::<connections::ConnectStarted>()
        .at(Public, M::GET, "/oauth/connect/callback", connections::connect_callback)
        .at(Tenant, M::POST, "/v1/vault/rotate-tenant-key", connections::rotate_tenant_key)
        .doc("Rotate the tenant's data key")
        .returns::<connections::TenantKeyRotated>()
        .at(Tenant, M::GET, "/v1/approvals", approvals::list)
        .doc("List the tenant's approvals, paginated, by status")
        .returns::<approvals::ApprovalList>()
        .at(Tenant, M::GET, "/v1/approvals/events", approvals::stream)
        .doc("An approver's queue, live (Server-Sent Events)")
        .answers(EVENT_STREAM, "Server-Sent Events: `approval` events (`data` one approval, as GET /v1/approvals/{id} answers it), keep-alive comments")
        .at(Tenant, M::GET, "/v1/approvals/{id}", approvals::get)
        .doc("Read one approval")
        .returns::<airlock_approvals::Approval>()
        .at(Tenant, M::POST, "/v1/approvals/{id}/decision", approvals::decide)
        .doc("Approve or deny (approvals that need it require a passkey step-up)")
        .returns::<airlock_approvals::Approval>()
        .at(Tenant, M::POST, "/v1/approvals/{id}/step-up", passkeys::step_up)
        .doc("Start the passkey step-up bound to this approval's action")
        .returns::<passkeys::StepUpStarted>()
        .at(Tenant, M::GET, "/v1/approvals/{id}/proof", approvals::proof)
        .doc("The decision's proof, verifiable offline")
        .returns::<approvals::ApprovalProof>()
        .at(Tenant, M::POST, "/v1/approvals/{id}/verify", approvals::verify)
        .doc("Verify an approval's proof")
        .returns::<approvals::ProofVerdict>()
        .at(Public, M::POST, "/v1/passkeys/register", passkeys::register)
        .doc("Start registering a passkey from an invitation code")
        .returns::<passkeys::RegisterStarted>()
        .at(Public, M::POST, "/v1/passkeys/register/finish", passkeys::register_finish)
        .doc("Finish registering a passkey; starts a session")
        .returns::<passkeys::SessionStarted>()
        .at(Public, M::POST, "/v1/signin/passkey", passkeys::sign_in)
        .doc("Start a passkey sign-in")
        .returns::<passkeys::SignInStarted>()
        .at(Public, M::POST, "/oauth/device_authorization", device::authorize)
        .at(Public, M::GET, "/signin/sso", sso::start)
        .at(Public, M::GET, "/signin/sso/callback", sso::callback)
        .at(Tenant, M::GET, "/v1/sso", sso::get)
        .doc("Read the tenant's single sign-on provider (never its secret)")
        .returns::<sso::SsoSettings>()
        .at(Tenant, M::PUT, "/v1/sso", sso::put)
        .doc("Set the tenant's single sign-on provider")
        .returns::<sso::SsoSaved>()
        .at(Tenant, M::DELETE, "/v1/sso", sso::delete)
        .doc("Remove the tenant's single sign-on provider")
        .returns::<sso::SsoDeleted>()
        .at(Tenant, M::POST, "/v1/device/confirm", device::confirm)
        .doc("Confirm or refuse an `airlock login` (device authorization)")
        .returns::<device::DeviceLoginAnswered>()
        .at(Public, M::POST, "/v1/signin/passkey/finish", passkeys::sign_in_finish)
        .doc("Finish a passkey sign-in; starts a session")
        .returns::<passkeys::SessionStarted>()
        .at(Tenant, M::GET, "/v1/session", passkeys::session)
        .doc("The browser session: member, tenant, CSRF token")
        .returns::<passkeys::SessionInfo>()
        .at(Tenant, M::POST, "/v1/signout", passkeys::sign_out)
        .doc("End the browser session")
        .returns::<passkeys::SignedOut>()
        .at(Tenant, M::DELETE, "/v1/members/{name}", passkeys::remove_member)
        .doc("Remove a member: their passkeys, sessions, tokens and tuples")
        .returns::<passkeys::MemberRemoved>()
        .at(Tenant, M::GET, "/v1/policies", runs::list_policies)
        .doc("List approval policies")
        .returns::<runs::PolicyList>()
        .at(Tenant, M::POST, "/v1/policies", runs::put_policy)
        .doc("Create or replace an approval policy (tool, `*`, or `effect:...`)")
        .returns::<runs::TenantPolicy>()
        .at(Tenant, M::DELETE, "/v1/policies/{tool}", runs::delete_policy)
        .doc("Delete an approval policy")
        .returns::<runs::PolicyDeleted>()
        .at(Tenant, M::GET, "/v1/audit", audit::read_tenant)
        .doc("Read the tenant's audit chain")
        .returns::<audit::AuditEvents>()
        .at(Tenant, M::GET, "/v1/audit/verify", audit::verify_tenant)
        .doc("Verify the tenant's audit chain")
        .returns::<audit::Verification>()
        .at(Tenant, M::GET, "/v1/audit/search", audit::search)
        .doc("Search the audit trail (agent, tool, outcome, time), newest first")
        .returns::<audit::AuditSearch>()
        .at(Tenant, M::GET, "/v1/audit/summary", audit::summary)
        .doc("Audit outcomes per minute")
        .returns::<audit::AuditSummary>()
        .at(Tenant, M::GET, "/v1/audit/export", audit::export)
        .doc("Export the audit trail (JSON lines)")
        .answers("application/x-ndjson", "One audit event per line, oldest first, as /v1/audit/search lists them")
        .at(Tenant, M::GET, "/v1/audit/export/signed", audit::export_signed)
        .doc("Export the audit trail with its signed checkpoints, for offline verification")
        .answers(SIGNED_EXPORT, SIGNED_EXPORT_LINES)
        .at(Tenant, M::GET, "/v1/audit/checkpoints", audit::list_checkpoints)
        .doc("List the tenant chain's signed checkpoints")
        .returns::<audit::CheckpointList>()
        .at(Tenant, M::POST, "/v1/audit/checkpoints", audit::checkpoint_tenant)
        .doc("Sign the tenant chain's head now")
        .returns::<audit::Checkpoint>()
        .at(Tenant, M::GET, "/v1/audit/checkpoint-key", audit::checkpoint_key)
        .doc("The public key checkpoints verify with")
        .returns::<audit::CheckpointPublicKey>()
        .at(Tenant, M::GET, "/v1/events", events::stream_events)
        .doc("The tenant's decisions, live (Server-Sent Events)")
        .answers(EVENT_STREAM, "Server-Sent Events: one audit event each (`event` its kind, `id` its sequence number, `data` the event as /v1/audit/search lists it), keep-alive comments")
        .at(Tenant, M::GET, "/v1/identity/issuers", identity_admin::list_issuers)
        .doc("List the tenant's external token issuers")
        .returns::<identity_admin::IssuerList>()
        .at(Tenant, M::PUT, "/v1/identity/issuers", identity_admin::put_issuer)
        .doc("Trust an external token issuer (its JWKS and audience)")
        .returns::<identity_admin::IssuerSaved>()
        .at(Tenant, M::DELETE, "/v1/identity/issuers", identity_admin::delete_issuer)
        .doc("Stop trusting an external token issuer")
        .returns::<identity_admin::IssuerDeleted>()
        .at(Tenant, M::PUT, "/v1/identity/subjects", identity_admin::map_subject)
        .doc("Map an external issuer's subject to an agent")
        .returns::<identity_admin::SubjectMapped>()
        // the marketplace
        .at(Tenant, M::GET, "/v1/marketplace/catalog", marketplace::catalog_list)
        .doc("The marketplace catalog, each package's permissions and tool effects")
        .returns::<marketplace::MarketplaceCatalog>()
        .at(Tenant, M::GET, "/v1/marketplace/installed", marketplace::installed)
        .doc("List installed agents")
        .returns::<marketplace::InstalledAgents>()
        .at(Tenant, M::DELETE, "/v1/marketplace/installed/{agent}", marketplace::uninstall)
        .doc("Uninstall an agent: identity, tuples, connections and policies revoked at once")
        .returns::<marketplace::UninstallReport>()
        .at(Tenant, M::POST, "/v1/marketplace/install", marketplace::install)
        .doc("Install a package (signed): agent, tuples, connections, policies, all or nothing")
        .returns::<marketplace::InstallReport>()
        .at(Tenant, M::POST, "/v1/marketplace/upgrade", marketplace::upgrade)
        .doc("Upgrade an installed agent (widening needs consent)")
        .returns::<marketplace::UpgradeReport>()
        .at(Operator, M::GET, "/v1/marketplace/publishers", marketplace::publishers)
        .doc("List trusted publishers (operator)")
        .returns::<marketplace::PublisherList>()
        .at(Operator, M::POST, "/v1/marketplace/publishers", marketplace::trust_publisher)
        .doc("Trust a publisher's key (operator)")
        .returns::<marketplace::PublisherTrusted>()
        .at(Operator, M::DELETE, "/v1/marketplace/publishers/{publisher}/{key_id}", marketplace::distrust_publisher)
        .returns::<marketplace::PublisherDistrusted>()
        .doc("Distrust a publisher's key (operator)");
    let r = openfga::routes(r);
    let r = ciba::routes(r);
    r.service(Agent, &[M::GET, M::POST, M::DELETE], "/mcp", mcp)
}

/// The router over a host.
pub fn router(host: Arc<Airlock>) -> Router {
    routes(host).into_router()
}

/// The route table the router is built from: method, path and scope of every route.
pub fn route_table(host: Arc<Airlock>) -> Vec<RouteInfo> {
    routes(host).table
}
