//! Who may be asked (approvers) and who may ask (clients): the provider's two registries.

use airlock_store::{now_millis, sqlx};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::minter::random_token;
use super::{CibaError, CibaProvider, DeliveryMode};

/// An approver the provider can be asked about, by name or by an external identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "CibaApprover")]
pub struct Approver {
    /// The name a plain `login_hint` uses; also the approval's role, so only this approver decides.
    pub name: String,
    /// Issuer of the approver's external identity (Auth0's `iss_sub` hint); set with `sub`.
    #[serde(default)]
    pub iss: Option<String>,
    /// Subject at `iss`.
    #[serde(default)]
    pub sub: Option<String>,
    /// Where the approver's device is told of a new request (no secrets are sent).
    #[serde(default)]
    pub device_webhook: Option<String>,
}

/// A registered CIBA client (its secret is only ever stored hashed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "CibaClient")]
pub struct ClientReg {
    pub tenant: String,
    pub client_id: String,
    /// `backchannel_token_delivery_mode`.
    pub delivery_mode: DeliveryMode,
    /// `backchannel_client_notification_endpoint`, required in ping mode.
    pub notification_endpoint: Option<String>,
    /// A disabled client authenticates but is refused with `unauthorized_client`.
    pub enabled: bool,
    /// When it was registered (unix ms).
    pub created_at: i64,
}

/// What an administrator registers (or updates) a client with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewClient {
    pub client_id: String,
    pub delivery_mode: DeliveryMode,
    #[serde(default)]
    pub notification_endpoint: Option<String>,
}

const NAME_MAX: usize = 200;

fn check_name(kind: &str, name: &str) -> Result<(), CibaError> {
    if name.trim().is_empty() || name.len() > NAME_MAX || name.chars().any(char::is_control) {
        return Err(CibaError::InvalidRegistration(format!(
            "{kind} `{name}` must be 1 to {NAME_MAX} printable characters"
        )));
    }
    Ok(())
}

/// An outbound notification URL: https, or http on loopback only (tests, local agents).
pub(crate) fn check_url(what: &str, raw: &str) -> Result<(), CibaError> {
    https_or_loopback(raw).map(|_| ()).map_err(|why| CibaError::InvalidRegistration(format!("{what} `{raw}` {why}")))
}

/// A URL this host calls out to (a provider, a notification endpoint): https, or http on a
/// loopback host only (tests, a local development peer). `Err` says why, to follow the URL.
pub fn https_or_loopback(raw: &str) -> Result<url::Url, &'static str> {
    let url = url::Url::parse(raw).map_err(|_| "is not a URL")?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err("has no host"),
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err("must be https (http only on loopback)"),
    }
}

pub(crate) fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Equality in time independent of where the strings differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type ClientRow = (String, String, String, Option<String>, i64, i64);
const CLIENT_COLUMNS: &str = "tenant, client_id, delivery_mode, notification_endpoint, enabled, created_at";

fn client_from_row(r: ClientRow) -> ClientReg {
    ClientReg {
        tenant: r.0,
        client_id: r.1,
        // An unknown stored mode can only come from a newer version: treat it as poll, the mode that sends nothing.
        delivery_mode: DeliveryMode::parse(&r.2).unwrap_or(DeliveryMode::Poll),
        notification_endpoint: r.3,
        enabled: r.4 != 0,
        created_at: r.5,
    }
}

fn check_client(c: &NewClient) -> Result<(), CibaError> {
    check_name("client_id", &c.client_id)?;
    match (c.delivery_mode, &c.notification_endpoint) {
        (DeliveryMode::Ping, None) => {
            Err(CibaError::InvalidRegistration("ping mode needs a `backchannel_client_notification_endpoint`".into()))
        }
        (_, Some(url)) => check_url("backchannel_client_notification_endpoint", url),
        (DeliveryMode::Poll, None) => Ok(()),
    }
}

type ApproverRow = (String, Option<String>, Option<String>, Option<String>);

fn approver_from_row(r: ApproverRow) -> Approver {
    Approver { name: r.0, iss: r.1, sub: r.2, device_webhook: r.3 }
}

impl CibaProvider {
    /// Adds or replaces an approver.
    pub async fn put_approver(&self, tenant: &str, approver: &Approver) -> Result<(), CibaError> {
        check_name("approver", &approver.name)?;
        if approver.iss.is_some() != approver.sub.is_some() {
            return Err(CibaError::InvalidRegistration("`iss` and `sub` go together".into()));
        }
        if let Some(url) = &approver.device_webhook {
            check_url("device webhook", url)?;
        }
        if let (Some(iss), Some(sub)) = (&approver.iss, &approver.sub) {
            if let Some(other) = self.approver_by_subject(tenant, iss, sub).await? {
                if other.name != approver.name {
                    return Err(CibaError::InvalidRegistration(format!(
                        "`{sub}` at `{iss}` is already approver `{}`",
                        other.name
                    )));
                }
            }
        }
        sqlx::query(
            "INSERT INTO ciba_approvers (tenant, name, iss, sub, device_webhook, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant, name) DO UPDATE SET iss = excluded.iss, sub = excluded.sub, device_webhook = excluded.device_webhook",
        )
        .bind(tenant)
        .bind(&approver.name)
        .bind(&approver.iss)
        .bind(&approver.sub)
        .bind(&approver.device_webhook)
        .bind(now_millis())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// One approver by name.
    pub async fn approver(&self, tenant: &str, name: &str) -> Result<Approver, CibaError> {
        let row: Option<ApproverRow> =
            sqlx::query_as("SELECT name, iss, sub, device_webhook FROM ciba_approvers WHERE tenant = $1 AND name = $2")
                .bind(tenant)
                .bind(name)
                .fetch_optional(self.db.pool())
                .await?;
        row.map(approver_from_row).ok_or_else(|| CibaError::NotFound { kind: "approver", name: name.to_string() })
    }

    /// The approver known at `iss` as `sub`, if any.
    pub(crate) async fn approver_by_subject(
        &self,
        tenant: &str,
        iss: &str,
        sub: &str,
    ) -> Result<Option<Approver>, CibaError> {
        let row: Option<ApproverRow> = sqlx::query_as(
            "SELECT name, iss, sub, device_webhook FROM ciba_approvers WHERE tenant = $1 AND iss = $2 AND sub = $3",
        )
        .bind(tenant)
        .bind(iss)
        .bind(sub)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.map(approver_from_row))
    }

    /// A tenant's approvers, by name.
    pub async fn approvers(&self, tenant: &str) -> Result<Vec<Approver>, CibaError> {
        let rows: Vec<ApproverRow> = sqlx::query_as(
            "SELECT name, iss, sub, device_webhook FROM ciba_approvers WHERE tenant = $1 ORDER BY name LIMIT 1000",
        )
        .bind(tenant)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(approver_from_row).collect())
    }

    /// Removes an approver; `false` if there was none. Requests already made stay decidable.
    pub async fn delete_approver(&self, tenant: &str, name: &str) -> Result<bool, CibaError> {
        let n = sqlx::query("DELETE FROM ciba_approvers WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .execute(self.db.pool())
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Registers a client and returns it with its secret, which is shown this once only.
    pub async fn register_client(&self, tenant: &str, new: &NewClient) -> Result<(ClientReg, String), CibaError> {
        check_client(new)?;
        if self.client(tenant, &new.client_id).await.is_ok() {
            return Err(CibaError::InvalidRegistration(format!("client `{}` already exists", new.client_id)));
        }
        let secret = random_token();
        sqlx::query(
            "INSERT INTO ciba_clients (tenant, client_id, secret_hash, delivery_mode, notification_endpoint, enabled, created_at) \
             VALUES ($1, $2, $3, $4, $5, 1, $6)",
        )
        .bind(tenant)
        .bind(&new.client_id)
        .bind(hash(&secret))
        .bind(new.delivery_mode.as_str())
        .bind(&new.notification_endpoint)
        .bind(now_millis())
        .execute(self.db.pool())
        .await?;
        Ok((self.client(tenant, &new.client_id).await?, secret))
    }

    /// One client.
    pub async fn client(&self, tenant: &str, client_id: &str) -> Result<ClientReg, CibaError> {
        let row: Option<ClientRow> =
            sqlx::query_as(&format!("SELECT {CLIENT_COLUMNS} FROM ciba_clients WHERE tenant = $1 AND client_id = $2"))
                .bind(tenant)
                .bind(client_id)
                .fetch_optional(self.db.pool())
                .await?;
        row.map(client_from_row).ok_or_else(|| CibaError::NotFound { kind: "client", name: client_id.to_string() })
    }

    /// A tenant's clients, by id.
    pub async fn clients(&self, tenant: &str) -> Result<Vec<ClientReg>, CibaError> {
        let rows: Vec<ClientRow> = sqlx::query_as(&format!(
            "SELECT {CLIENT_COLUMNS} FROM ciba_clients WHERE tenant = $1 ORDER BY client_id LIMIT 1000"
        ))
        .bind(tenant)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(client_from_row).collect())
    }

    /// Changes a client's delivery mode, endpoint and whether it is enabled (the secret stays).
    pub async fn update_client(&self, tenant: &str, update: &NewClient, enabled: bool) -> Result<ClientReg, CibaError> {
        check_client(update)?;
        let n = sqlx::query(
            "UPDATE ciba_clients SET delivery_mode = $1, notification_endpoint = $2, enabled = $3 WHERE tenant = $4 AND client_id = $5",
        )
        .bind(update.delivery_mode.as_str())
        .bind(&update.notification_endpoint)
        .bind(i64::from(enabled))
        .bind(tenant)
        .bind(&update.client_id)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        if n == 0 {
            return Err(CibaError::NotFound { kind: "client", name: update.client_id.clone() });
        }
        self.client(tenant, &update.client_id).await
    }

    /// Replaces a client's secret and returns the new one (shown this once only).
    pub async fn rotate_client_secret(&self, tenant: &str, client_id: &str) -> Result<String, CibaError> {
        let secret = random_token();
        let n = sqlx::query("UPDATE ciba_clients SET secret_hash = $1 WHERE tenant = $2 AND client_id = $3")
            .bind(hash(&secret))
            .bind(tenant)
            .bind(client_id)
            .execute(self.db.pool())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(CibaError::NotFound { kind: "client", name: client_id.to_string() });
        }
        Ok(secret)
    }

    /// Removes a client; `false` if there was none. Its pending requests can no longer be redeemed.
    pub async fn delete_client(&self, tenant: &str, client_id: &str) -> Result<bool, CibaError> {
        let n = sqlx::query("DELETE FROM ciba_clients WHERE tenant = $1 AND client_id = $2")
            .bind(tenant)
            .bind(client_id)
            .execute(self.db.pool())
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Client authentication for both endpoints (`client_secret_basic` or `client_secret_post`:
    /// the handler extracts the pair). Unknown client and wrong secret look the same.
    pub async fn authenticate_client(
        &self,
        tenant: &str,
        client_id: &str,
        secret: &str,
    ) -> Result<ClientReg, CibaError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT secret_hash FROM ciba_clients WHERE tenant = $1 AND client_id = $2")
                .bind(tenant)
                .bind(client_id)
                .fetch_optional(self.db.pool())
                .await?;
        let given = hash(secret);
        match row {
            Some((stored,)) if constant_time_eq(stored.as_bytes(), given.as_bytes()) => {
                self.client(tenant, client_id).await
            }
            _ => Err(CibaError::InvalidClient),
        }
    }
}
