//! `airlock login`: the OAuth 2.0 device authorization grant (RFC 8628).
//!
//! The CLI asks for a device code and shows the person a short user code and a URL; the
//! person, signed in in their browser, confirms that code; the CLI, polling the token
//! endpoint, then gets a short-lived token carrying that person's relations. The device code
//! is stored hashed; the user code is short (8 letters from RFC 8628's unambiguous set) and
//! lives [`TTL_MS`]; each grant yields one token.

use airlock_store::{now_millis, sqlx, Db};
use rand::Rng;

use crate::tenancy::{digest, secret};

/// How long a device code waits for its person.
pub const TTL_MS: i64 = 10 * 60 * 1000;
/// Seconds between polls (RFC 8628 `interval`); faster polls are told `slow_down`.
pub const INTERVAL_S: i64 = 2;
/// RFC 8628 6.1: letters without vowels or look-alikes.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

/// A started device authorization.
pub struct Started {
    pub device_code: String,
    pub user_code: String,
}

/// Where a device code stands when the CLI polls.
#[derive(Debug, PartialEq)]
pub enum Poll {
    Pending,
    SlowDown,
    Denied,
    Expired,
    /// Confirmed by `member` of `tenant`: the grant is spent by this answer.
    Confirmed {
        tenant: String,
        member: String,
    },
}

/// The device logins of a host.
pub struct DeviceLogins {
    db: Db,
}

/// `ABCDEFGH` or `abcd-efgh` as typed: upper case, no separator.
fn normalize(user_code: &str) -> String {
    user_code.chars().filter(|c| c.is_ascii_alphabetic()).map(|c| c.to_ascii_uppercase()).collect()
}

impl DeviceLogins {
    pub fn new(db: Db) -> DeviceLogins {
        DeviceLogins { db }
    }

    /// Starts a device authorization for a member of `tenant`.
    pub async fn start(&self, tenant: &str) -> Result<Started, sqlx::Error> {
        let device_code = secret("dev_");
        // The thread's generator is not `Send`: it must not live across an await.
        let user_code: String = {
            let mut rng = rand::thread_rng();
            (0..8).map(|_| USER_CODE_ALPHABET[rng.gen_range(0..USER_CODE_ALPHABET.len())] as char).collect()
        };
        let now = now_millis();
        sqlx::query("DELETE FROM device_logins WHERE expires_at < $1").bind(now).execute(self.db.pool()).await?;
        sqlx::query(
            "INSERT INTO device_logins (device_hash, user_code, tenant, status, created_at, expires_at) \
             VALUES ($1, $2, $3, 'pending', $4, $5)",
        )
        .bind(digest(&device_code))
        .bind(&user_code)
        .bind(tenant)
        .bind(now)
        .bind(now + TTL_MS)
        .execute(self.db.pool())
        .await?;
        Ok(Started { device_code, user_code: format!("{}-{}", &user_code[..4], &user_code[4..]) })
    }

    /// The signed-in `member` of `tenant` confirms (or refuses) the login showing `user_code`.
    /// False when no such live, unanswered code exists for that tenant.
    pub async fn answer(
        &self,
        user_code: &str,
        tenant: &str,
        member: &str,
        confirm: bool,
    ) -> Result<bool, sqlx::Error> {
        let status = if confirm { "confirmed" } else { "denied" };
        let n = sqlx::query(
            "UPDATE device_logins SET status = $1, member = $2 \
             WHERE user_code = $3 AND tenant = $4 AND status = 'pending' AND expires_at > $5",
        )
        .bind(status)
        .bind(member)
        .bind(normalize(user_code))
        .bind(tenant)
        .bind(now_millis())
        .execute(self.db.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// The CLI's poll. `None`: no such device code (unknown, or its grant was already spent).
    pub async fn poll(&self, device_code: &str) -> Result<Option<Poll>, sqlx::Error> {
        let now = now_millis();
        let hash = digest(device_code);
        let row: Option<(String, Option<String>, Option<String>, i64, Option<i64>)> = sqlx::query_as(
            "SELECT status, tenant, member, expires_at, last_poll_at FROM device_logins WHERE device_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(self.db.pool())
        .await?;
        let Some((status, tenant, member, expires_at, last_poll)) = row else { return Ok(None) };
        sqlx::query("UPDATE device_logins SET last_poll_at = $1 WHERE device_hash = $2")
            .bind(now)
            .bind(&hash)
            .execute(self.db.pool())
            .await?;
        if expires_at <= now {
            return Ok(Some(Poll::Expired));
        }
        match status.as_str() {
            "denied" => Ok(Some(Poll::Denied)),
            // Spent by whichever poll deletes it first: one token per grant.
            "confirmed" => {
                let spent = sqlx::query("DELETE FROM device_logins WHERE device_hash = $1 AND status = 'confirmed'")
                    .bind(&hash)
                    .execute(self.db.pool())
                    .await?
                    .rows_affected();
                Ok(match (spent, tenant, member) {
                    (1, Some(tenant), Some(member)) => Some(Poll::Confirmed { tenant, member }),
                    _ => None,
                })
            }
            _ if last_poll.is_some_and(|t| now - t < INTERVAL_S * 1000 / 2) => Ok(Some(Poll::SlowDown)),
            _ => Ok(Some(Poll::Pending)),
        }
    }
}
