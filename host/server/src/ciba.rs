//! Approvals over OpenID CIBA, as the server wires them: a tenant's external OpenID Provider.
//!
//! Airlock is the OP of its own approvers through [`airlock_approvals::ciba::CibaProvider`]
//! (served in `api/ciba.rs`). This module is the other direction: a tenant that keeps its
//! approvers at an external OP (Auth0, or any CIBA OP) configures it once, and every approval
//! request created in that tenant is also sent there as a backchannel authentication request
//! for the OP user its role names (`login_hints`, e.g. `{"cfo": "carol@acme.example"}`). The
//! OP's answer is recorded as the approval's decision, exactly as if the approver had decided
//! in the console; the console and CLI stay able to decide first.
//!
//! The hook is [`Approvals::subscribe_created`]: the component's `approval.request` import
//! creates the request and waits on it, knowing nothing of OPs, so the server routes created
//! requests here in a background task instead of changing the runtime.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};

use airlock_approvals::ciba::{CibaClient, CibaClientError, Decision, DeliveryMode, ExternalOp};
use airlock_approvals::{Approval, ApprovalError, Approvals, Status};
use airlock_audit::{AuditEvent, AuditLog};
use airlock_store::{now_millis, sqlx, Db};
use airlock_vault::MasterKey;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use zeroize::Zeroizing;

use crate::Airlock;

/// The `login_hints` key that applies to every role without its own entry (and to role-less requests).
pub const ANY_ROLE: &str = "*";
/// The CIBA provider's own approvals (tool `ciba`) are never forwarded: they already have an approver.
const OWN_CIBA_TOOL: &str = "ciba";
/// OPs limit binding messages (256 characters at most commonly); stay well inside.
const BINDING_MESSAGE_MAX: usize = 200;

/// A tenant's external OP, as an administrator configures it (the client secret apart: it is
/// write-only and sealed at rest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "CibaExternalOpConfig")]
pub struct ExternalOpConfig {
    /// `https://op.example/.well-known/openid-configuration`.
    pub discovery_url: String,
    /// Airlock's client id at the OP.
    pub client_id: String,
    /// How Airlock was registered at the OP: `poll`, or `ping` with
    /// `BASE/ciba/callback/TENANT` as its notification endpoint.
    pub delivery_mode: DeliveryMode,
    /// Space-separated, with `openid`.
    pub scope: String,
    /// Role (or `*`) to the OP's `login_hint` for the person who decides that role's requests.
    pub login_hints: BTreeMap<String, String>,
    /// Seconds the OP should let the approver take; by default the approval's remaining lifetime.
    #[serde(default)]
    pub requested_expiry: Option<u64>,
}

/// Why configuring or asking an external OP failed.
#[derive(Debug, thiserror::Error)]
pub enum ExternalOpError {
    #[error("tenant `{0}` has no external OpenID Provider configured")]
    NotConfigured(String),
    #[error("invalid external OP configuration: {0}")]
    Invalid(String),
    #[error("the sealed client secret of tenant `{0}` does not open (was the master key replaced? set the external OP again)")]
    Sealed(String),
    #[error(transparent)]
    Client(#[from] CibaClientError),
    #[error("external OP store unavailable: {0}")]
    Store(#[from] sqlx::Error),
}

type ConfigRow = (String, String, Vec<u8>, String, String, String, Option<i64>);

fn secret_aad(tenant: &str) -> Vec<u8> {
    format!("airlock ciba external-op secret {tenant}").into_bytes()
}

/// `https`, or `http` on loopback (tests, an OP beside the host).
fn check_discovery_url(raw: &str) -> Result<(), ExternalOpError> {
    airlock_approvals::ciba::https_or_loopback(raw)
        .map(|_| ())
        .map_err(|why| ExternalOpError::Invalid(format!("`discovery_url` `{raw}` {why}")))
}

/// The tenants' external OPs: configuration (secret sealed with the master key) and one live
/// [`CibaClient`] per tenant, kept so that a ping reaches the client whose request waits.
pub struct ExternalOps {
    db: Db,
    sealer: Arc<MasterKey>,
    clients: Mutex<HashMap<String, Arc<CibaClient>>>,
}

impl ExternalOps {
    pub fn new(db: Db, sealer: Arc<MasterKey>) -> ExternalOps {
        ExternalOps { db, sealer, clients: Mutex::new(HashMap::new()) }
    }

    /// Sets (or replaces) a tenant's external OP. The OP is not contacted here: discovery runs
    /// on first use, so an OP that is down does not block configuration.
    pub async fn put(
        &self,
        tenant: &str,
        config: &ExternalOpConfig,
        client_secret: Zeroizing<String>,
    ) -> Result<(), ExternalOpError> {
        check_discovery_url(&config.discovery_url)?;
        if config.client_id.trim().is_empty() {
            return Err(ExternalOpError::Invalid("`client_id` is empty".into()));
        }
        if client_secret.is_empty() {
            return Err(ExternalOpError::Invalid("`client_secret` is empty".into()));
        }
        if !config.scope.split_whitespace().any(|s| s == "openid") {
            return Err(ExternalOpError::Invalid(format!("`scope` `{}` must contain `openid`", config.scope)));
        }
        if config.login_hints.is_empty() {
            return Err(ExternalOpError::Invalid(
                "`login_hints` is empty: map a role (or `*`) to the OP user who decides it".into(),
            ));
        }
        if let Some((role, _)) = config.login_hints.iter().find(|(_, hint)| hint.trim().is_empty()) {
            return Err(ExternalOpError::Invalid(format!("the login hint of role `{role}` is empty")));
        }
        if config.requested_expiry == Some(0) {
            return Err(ExternalOpError::Invalid("`requested_expiry` must be at least 1 second".into()));
        }
        let hints = serde_json::to_string(&config.login_hints).map_err(|e| ExternalOpError::Invalid(e.to_string()))?;
        sqlx::query(
            "INSERT INTO ciba_external_ops (tenant, discovery_url, client_id, secret_sealed, delivery_mode, scope, \
             login_hints, requested_expiry, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (tenant) DO UPDATE SET discovery_url = excluded.discovery_url, client_id = excluded.client_id, \
             secret_sealed = excluded.secret_sealed, delivery_mode = excluded.delivery_mode, scope = excluded.scope, \
             login_hints = excluded.login_hints, requested_expiry = excluded.requested_expiry, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(&config.discovery_url)
        .bind(&config.client_id)
        .bind(self.sealer.seal(&secret_aad(tenant), client_secret.as_bytes()))
        .bind(config.delivery_mode.as_str())
        .bind(&config.scope)
        .bind(hints)
        .bind(config.requested_expiry.map(|n| n as i64))
        .bind(now_millis())
        .execute(self.db.pool())
        .await?;
        // Requests already waiting keep their client (and its pings); new ones use the new settings.
        self.clients.lock().remove(tenant);
        Ok(())
    }

    async fn row(&self, tenant: &str) -> Result<Option<ConfigRow>, ExternalOpError> {
        Ok(sqlx::query_as(
            "SELECT discovery_url, client_id, secret_sealed, delivery_mode, scope, login_hints, requested_expiry \
             FROM ciba_external_ops WHERE tenant = $1",
        )
        .bind(tenant)
        .fetch_optional(self.db.pool())
        .await?)
    }

    fn config_of(row: &ConfigRow) -> ExternalOpConfig {
        ExternalOpConfig {
            discovery_url: row.0.clone(),
            client_id: row.1.clone(),
            // An unknown stored mode can only come from a newer version: poll needs no callback.
            delivery_mode: DeliveryMode::parse(&row.3).unwrap_or(DeliveryMode::Poll),
            scope: row.4.clone(),
            login_hints: serde_json::from_str(&row.5).unwrap_or_default(),
            requested_expiry: row.6.and_then(|n| u64::try_from(n).ok()),
        }
    }

    /// A tenant's external OP, if it has one.
    pub async fn get(&self, tenant: &str) -> Result<Option<ExternalOpConfig>, ExternalOpError> {
        Ok(self.row(tenant).await?.as_ref().map(Self::config_of))
    }

    /// Removes a tenant's external OP; `false` if there was none.
    pub async fn delete(&self, tenant: &str) -> Result<bool, ExternalOpError> {
        let n = sqlx::query("DELETE FROM ciba_external_ops WHERE tenant = $1")
            .bind(tenant)
            .execute(self.db.pool())
            .await?
            .rows_affected();
        self.clients.lock().remove(tenant);
        Ok(n > 0)
    }

    /// The tenant's live client, discovering the OP on first use.
    async fn client(&self, tenant: &str) -> Result<Arc<CibaClient>, ExternalOpError> {
        if let Some(c) = self.clients.lock().get(tenant) {
            return Ok(c.clone());
        }
        let row = self.row(tenant).await?.ok_or_else(|| ExternalOpError::NotConfigured(tenant.to_string()))?;
        let config = Self::config_of(&row);
        let secret = self
            .sealer
            .open(&secret_aad(tenant), &row.2)
            .ok()
            .and_then(|plain| String::from_utf8(plain).ok())
            .map(Zeroizing::new)
            .ok_or_else(|| ExternalOpError::Sealed(tenant.to_string()))?;
        let client = CibaClient::discover(ExternalOp {
            discovery_url: Some(config.discovery_url),
            endpoints: None,
            client_id: config.client_id,
            client_secret: secret.to_string(),
            delivery_mode: config.delivery_mode,
            scope: config.scope,
        })
        .await?;
        // Two first uses at once: keep the one already cached, so every waiter is pinged through it.
        Ok(self.clients.lock().entry(tenant.to_string()).or_insert_with(|| Arc::new(client)).clone())
    }

    /// Starts a CIBA request at the tenant's OP for `login_hint` and waits for the decision
    /// (polling, or on the OP's ping in ping mode).
    pub async fn ask(
        &self,
        tenant: &str,
        login_hint: &str,
        binding_message: Option<&str>,
        expiry: Option<u64>,
    ) -> Result<Decision, ExternalOpError> {
        let client = self.client(tenant).await?;
        let message = binding_message.map(binding_message_for_op);
        let started = client.start(login_hint, message.as_deref().filter(|m| !m.is_empty()), expiry).await?;
        Ok(client.poll_until_decided(&started).await?)
    }

    /// The OP's ping (CIBA Core 10.2) for a request of this tenant: wakes its waiter.
    pub fn ping(&self, tenant: &str, auth_req_id: &str, bearer: &str) -> Result<(), CibaClientError> {
        let client = self.clients.lock().get(tenant).cloned();
        match client {
            Some(c) => c.ping_received(auth_req_id, bearer),
            None => Err(CibaClientError::UnknownRequest(auth_req_id.to_string())),
        }
    }
}

/// One line, no control characters, short enough for any OP's screen.
fn binding_message_for_op(summary: &str) -> String {
    let clean: String = summary.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let clean = clean.trim();
    if clean.chars().count() <= BINDING_MESSAGE_MAX {
        return clean.to_string();
    }
    let cut: String = clean.chars().take(BINDING_MESSAGE_MAX - 3).collect();
    format!("{cut}...")
}

impl Airlock {
    /// Asks `tenant`'s external OP to have the user `login_hint` names approve what
    /// `binding_message` says, within `expiry` seconds (the OP's default when `None`), and
    /// waits for the answer.
    pub async fn ask_external_op(
        &self,
        tenant: &str,
        login_hint: &str,
        binding_message: Option<&str>,
        expiry: Option<u64>,
    ) -> Result<Decision, ExternalOpError> {
        self.external_ops.ask(tenant, login_hint, binding_message, expiry).await
    }
}

fn op_event(tenant: &str, kind: &str, outcome: &str, approval: &Approval, detail: serde_json::Value) -> AuditEvent {
    AuditEvent {
        tenant: tenant.into(),
        kind: kind.into(),
        outcome: outcome.into(),
        agent: "ciba-op".into(),
        tool: approval.tool.clone(),
        detail,
    }
}

/// Forwards every approval created in this process to its tenant's external OP, if it has one.
/// Holds the engines weakly, so it ends with the host.
pub(crate) fn spawn_router(approvals: &Arc<Approvals>, ops: &Arc<ExternalOps>, audit: AuditLog) {
    let mut created = approvals.subscribe_created();
    let (approvals, ops): (Weak<Approvals>, Weak<ExternalOps>) = (Arc::downgrade(approvals), Arc::downgrade(ops));
    tokio::spawn(async move {
        loop {
            let approval = match created.recv().await {
                Ok(a) => a,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "approval requests not forwarded to external OPs: they wait in the console"
                    );
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let (Some(approvals), Some(ops)) = (approvals.upgrade(), ops.upgrade()) else { return };
            if approval.tool == OWN_CIBA_TOOL || approval.status != Status::Pending {
                continue;
            }
            let audit = audit.clone();
            tokio::spawn(async move { forward(approvals, ops, audit, approval).await });
        }
    });
}

/// Asks the OP about one approval and records its answer, unless someone decides first.
async fn forward(approvals: Arc<Approvals>, ops: Arc<ExternalOps>, audit: AuditLog, approval: Approval) {
    let tenant = approval.tenant.clone();
    let config = match ops.get(&tenant).await {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, approval = %approval.id, "cannot read the tenant's external OP");
            return;
        }
    };
    let role = approval.role.as_deref().unwrap_or(ANY_ROLE);
    let Some(hint) = config.login_hints.get(role).or_else(|| config.login_hints.get(ANY_ROLE)).cloned() else {
        return;
    };
    let remaining = ((approval.expires_at - now_millis()) / 1000).max(1) as u64;
    let expiry = config.requested_expiry.unwrap_or(remaining).min(remaining);
    let base =
        json!({ "approval_id": approval.id, "login_hint": hint, "role": approval.role, "op": config.discovery_url });
    audit.record(op_event(&tenant, "ciba.external", "started", &approval, base.clone()));
    let asked = tokio::select! {
        d = ops.ask(&tenant, &hint, Some(&approval.summary), Some(expiry)) => d,
        // Decided in the console (or expired) first: the OP's answer no longer matters.
        _ = approvals.wait(&tenant, &approval.id) => return,
    };
    let approve = match asked {
        Ok(Decision::Approved(_)) => true,
        Ok(Decision::Denied) => false,
        Ok(Decision::Expired) => {
            audit.record(op_event(&tenant, "ciba.external", "expired", &approval, base));
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, approval = %approval.id, "the external OP could not be asked");
            let mut detail = base;
            detail["error"] = json!(e.to_string());
            audit.record(op_event(&tenant, "ciba.external", "error", &approval, detail));
            return;
        }
    };
    let approver = format!("ciba:{hint}");
    let reason =
        if approve { "approved at the external OpenID Provider" } else { "denied at the external OpenID Provider" };
    match approvals.decide(&tenant, &approval.id, &approver, approve, Some(reason)).await {
        Ok(decided) => {
            let mut detail = base;
            detail["approver"] = json!(approver);
            detail["agent"] = json!(decided.agent);
            detail["reason"] = json!(reason);
            let outcome = if approve { "approved" } else { "denied" };
            audit.record(op_event(&tenant, "approval.decision", outcome, &approval, detail));
        }
        Err(ApprovalError::AlreadyDecided { .. }) => {}
        Err(e) => tracing::error!(error = %e, approval = %approval.id, "cannot record the external OP's decision"),
    }
}
