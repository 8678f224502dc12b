//! Signed checkpoints: the host's Ed25519 signature over a chain's head, so that the trail can
//! be verified offline, against a public key, with no database.
//!
//! The hash chain alone proves nothing to someone who can write the database: they edit a row
//! and recompute every hash after it and the head, or delete the newest rows and set the head
//! back, and [`crate::AuditLog::verify`] says "intact". A checkpoint fixes the chain at one
//! point in a way they cannot redo: it signs `(tenant, seq, hash, ts, kid)` with a key whose
//! private half the database holds only sealed by the master key. Since each event's hash
//! covers the one before it, a valid signature over event `n`'s hash fixes events `1..=n`.
//!
//! [`verify_export`] checks an export (JSON Lines of [`ExportLine`]: a header, the events
//! with their `detail` exactly as stored, the checkpoints) against the public key alone:
//! it recomputes the chain from genesis, checks every checkpoint's signature, and that the
//! event at each checkpoint's `seq` has exactly the signed hash and that the export reaches the
//! newest checkpoint. Rewriting (edit, delete, reorder, with the hashes recomputed) changes
//! the hash at every later checkpoint; truncating below a checkpoint leaves it unreached.
//! Events after the newest checkpoint are covered by the next one only. A database
//! administrator can also delete checkpoint rows: copies kept elsewhere (an earlier export,
//! or the host's append-only witness file) are checked the same way.
//!
//! The host refuses to sign a head that does not extend the last checkpoint it knows (see
//! [`crate::AuditLog::sign_head`]), so a rewrite cannot be laundered by a later signature.

use std::io::BufRead;

use airlock_store::{now_millis, sqlx, Db};
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::chain::{self, event_hash, GENESIS};
use crate::{AuditError, AuditEvent, AuditLog};

/// The domain of a checkpoint signature: the first field of every signed message.
pub const CHECKPOINT_DOMAIN: &str = "airlock-audit-checkpoint-v1";

/// The format named in an export's header line.
pub const EXPORT_FORMAT: &str = "airlock-audit-export-v1";

/// The only signature algorithm.
pub const ALGORITHM: &str = "Ed25519";

/// A signed chain head: event `seq` of `tenant`'s chain had `hash` when key `kid` signed it at
/// `ts` (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Checkpoint {
    pub tenant: String,
    pub seq: i64,
    pub hash: String,
    pub ts: i64,
    pub kid: String,
    /// Ed25519 over [`checkpoint_message`], hex.
    pub signature: String,
}

/// The bytes a checkpoint signs: the domain and each field, each prefixed by its length
/// (8 bytes, big-endian), so no two different checkpoints sign the same bytes.
pub fn checkpoint_message(tenant: &str, seq: i64, hash: &str, ts: i64, kid: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(200);
    for part in [CHECKPOINT_DOMAIN, tenant, &seq.to_string(), hash, &ts.to_string(), kid] {
        out.extend((part.len() as u64).to_be_bytes());
        out.extend(part.as_bytes());
    }
    out
}

impl Checkpoint {
    /// Whether `key` signed this checkpoint, as it stands. The reason in words when not.
    pub fn verify(&self, key: &PublicKey) -> Result<(), String> {
        if self.kid != key.kid() {
            return Err(format!(
                "the checkpoint at event {} ({}) was signed by key `{}`, not by the given key `{}`",
                self.seq,
                utc(self.ts),
                self.kid,
                key.kid()
            ));
        }
        let signature = hex::decode(&self.signature).unwrap_or_default();
        let message = checkpoint_message(&self.tenant, self.seq, &self.hash, self.ts, &self.kid);
        UnparsedPublicKey::new(&ED25519, &key.bytes).verify(&message, &signature).map_err(|_| {
            format!(
                "the checkpoint at event {} ({}) does not verify against the key: it was altered or forged",
                self.seq,
                utc(self.ts)
            )
        })
    }
}

/// A checkpoint key's public half: what an auditor needs to verify offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; 32],
}

impl PublicKey {
    /// From its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, String> {
        let bytes: [u8; 32] =
            bytes.try_into().map_err(|_| format!("an Ed25519 public key is 32 bytes, this one is {}", bytes.len()))?;
        Ok(PublicKey { bytes })
    }

    /// From hex (64 digits), as [`PublicKey::to_hex`] writes it and the host publishes it.
    pub fn from_hex(text: &str) -> Result<PublicKey, String> {
        let bytes = hex::decode(text.trim())
            .map_err(|_| "the public key is not hex (64 digits, as `GET /v1/audit/checkpoint-key` gives it)")?;
        PublicKey::from_bytes(&bytes)
    }

    /// The key as hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    /// The key's id: the first 16 hex digits of its SHA-256.
    pub fn kid(&self) -> String {
        hex::encode(Sha256::digest(self.bytes))[..16].to_string()
    }

    /// What the host publishes: `{"algorithm", "kid", "public_key"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "algorithm": ALGORITHM, "kid": self.kid(), "public_key": self.to_hex() })
    }
}

/// The key that signs checkpoints (Ed25519). Its private half never leaves this value but as
/// the PKCS#8 bytes [`CheckpointKey::generate`] hands out once, for sealing.
pub struct CheckpointKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointKey").field("kid", &self.public.kid()).finish_non_exhaustive()
    }
}

impl CheckpointKey {
    /// A new key, and its PKCS#8 document (the private key: seal it, then drop it).
    pub fn generate() -> Result<(CheckpointKey, Vec<u8>), String> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| format!("cannot generate a key: {e}"))?;
        let pkcs8 = pkcs8.as_ref().to_vec();
        Ok((CheckpointKey::from_pkcs8(&pkcs8)?, pkcs8))
    }

    /// The key from its PKCS#8 document.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<CheckpointKey, String> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| format!("not an Ed25519 key: {e}"))?;
        let public = PublicKey::from_bytes(pair.public_key().as_ref())?;
        Ok(CheckpointKey { pair, public })
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key's id ([`PublicKey::kid`]).
    pub fn kid(&self) -> String {
        self.public.kid()
    }

    /// Signs event `seq` of `tenant` having `hash`, at `ts`.
    pub fn sign(&self, tenant: &str, seq: i64, hash: &str, ts: i64) -> Checkpoint {
        let kid = self.kid();
        let signature = self.pair.sign(&checkpoint_message(tenant, seq, hash, ts, &kid));
        Checkpoint {
            tenant: tenant.to_string(),
            seq,
            hash: hash.to_string(),
            ts,
            kid,
            signature: hex::encode(signature.as_ref()),
        }
    }
}

// ---- the key at rest ---------------------------------------------------------------------------

/// The stored checkpoint key: its public half in plain, its private half sealed (by the host's
/// vault, under the master key; this crate never sees the plain bytes at rest).
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub kid: String,
    /// Hex.
    pub public_key: String,
    pub sealed_private: Vec<u8>,
}

/// The active stored key, if any.
pub async fn stored_key(db: &Db) -> Result<Option<StoredKey>, AuditError> {
    let row: Option<(String, String, Vec<u8>)> =
        sqlx::query_as("SELECT kid, public_key, sealed_private FROM audit_checkpoint_keys WHERE active = 1")
            .fetch_optional(db.pool())
            .await?;
    Ok(row.map(|(kid, public_key, sealed_private)| StoredKey { kid, public_key, sealed_private }))
}

/// Stores `key` as the active key unless one is active already (hosts starting together on one
/// database: the first insert wins, the others read it back with [`stored_key`]).
pub async fn insert_key(db: &Db, key: &StoredKey) -> Result<(), AuditError> {
    sqlx::query(
        "INSERT INTO audit_checkpoint_keys (kid, public_key, sealed_private, created_at, active) \
         VALUES ($1, $2, $3, $4, 1) ON CONFLICT DO NOTHING",
    )
    .bind(&key.kid)
    .bind(&key.public_key)
    .bind(&key.sealed_private)
    .bind(now_millis())
    .execute(db.pool())
    .await?;
    Ok(())
}

// ---- signing and storing --------------------------------------------------------------------

/// Why a head was not signed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Store(#[from] AuditError),
    /// The chain no longer extends the last checkpoint: it was rewritten or cut back.
    #[error("audit trail of `{tenant}` altered: {reason}; the host does not sign it")]
    Tampered { tenant: String, reason: String },
}

impl From<sqlx::Error> for CheckpointError {
    fn from(e: sqlx::Error) -> CheckpointError {
        CheckpointError::Store(e.into())
    }
}

/// What [`AuditLog::sign_head`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signed {
    /// The chain is empty: nothing to sign.
    Empty,
    /// The head had not moved since this checkpoint (no new signature).
    Unchanged(Checkpoint),
    /// A new checkpoint, stored.
    New(Checkpoint),
}

impl Signed {
    /// The checkpoint covering the head, new or not.
    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        match self {
            Signed::Empty => None,
            Signed::Unchanged(c) | Signed::New(c) => Some(c),
        }
    }
}

type CheckpointRow = (String, i64, String, i64, String, String);

fn from_checkpoint_row((tenant, seq, hash, ts, kid, signature): CheckpointRow) -> Checkpoint {
    Checkpoint { tenant, seq, hash, ts, kid, signature }
}

/// One line of an export: `{"export": {...}}`, `{"event": {...}}` or `{"checkpoint": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportLine {
    Export(ExportHeader),
    Event(ExportedEvent),
    Checkpoint(Checkpoint),
}

/// The first line of an export. Not signed: it says what the file claims to hold, and the
/// verifier holds the file to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportHeader {
    /// [`EXPORT_FORMAT`].
    pub format: String,
    pub tenant: String,
    /// The chain's head when the export began: the events run `1..=head`.
    pub head: i64,
    pub exported_at: i64,
}

/// A stored event with `detail` exactly as stored (the text its hash covers), so the chain
/// can be recomputed from the export alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportedEvent {
    pub seq: i64,
    pub ts: i64,
    pub tenant: String,
    pub kind: String,
    pub outcome: String,
    pub agent: String,
    pub tool: String,
    /// The stored JSON text, verbatim (a stored text that is not JSON, only by tampering, is
    /// written as a JSON string, and then does not hash as stored).
    pub detail: Box<RawValue>,
    pub prev_hash: String,
    pub hash: String,
}

impl ExportedEvent {
    fn from_row(tenant: &str, row: chain::Row) -> ExportedEvent {
        let (seq, ts, kind, outcome, agent, tool, detail, prev_hash, hash) = row;
        let detail = RawValue::from_string(detail).unwrap_or_else(|e| {
            // Not JSON: keep the text visible as a string.
            let text = serde_json::to_string(&e.to_string()).unwrap_or_else(|_| "null".into());
            RawValue::from_string(text).unwrap_or_else(|_| RawValue::NULL.to_owned())
        });
        ExportedEvent { seq, ts, tenant: tenant.to_string(), kind, outcome, agent, tool, detail, prev_hash, hash }
    }
}

impl ExportLine {
    /// Appends the line (with its newline) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        // Strings, numbers and JSON text always serialize.
        if serde_json::to_writer(&mut *out, self).is_ok() {
            out.push(b'\n');
        }
    }
}

impl AuditLog {
    /// The head of a tenant's chain: `(seq, hash)`, `(0, GENESIS)` when empty.
    pub async fn head_hash(&self, tenant: &str) -> Result<(i64, String), AuditError> {
        let row: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit_heads WHERE tenant = $1")
            .bind(tenant)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.unwrap_or_else(|| (0, GENESIS.to_string())))
    }

    /// Signs the tenant's head with `key` and stores the checkpoint, unless the newest
    /// checkpoint already covers it. `known` is the newest checkpoint the caller saw itself
    /// (a host keeps the ones it signed), in case the database lost its rows.
    ///
    /// Before signing, the chain from the newest checkpoint (stored or known; from genesis
    /// when none) to the head is recomputed: the event at the checkpoint must still have the
    /// signed hash and every event after it must chain to the head. When not, nothing is
    /// signed ([`CheckpointError::Tampered`]): a rewrite is not laundered by a fresh signature.
    pub async fn sign_head(
        &self,
        key: &CheckpointKey,
        tenant: &str,
        known: Option<&Checkpoint>,
    ) -> Result<Signed, CheckpointError> {
        let (seq, hash) = self.head_hash(tenant).await?;
        let stored = self.newest_checkpoint(tenant).await?;
        let tampered = |reason: String| CheckpointError::Tampered { tenant: tenant.to_string(), reason };
        let base = match (stored, known) {
            (Some(s), Some(k)) if k.seq > s.seq => {
                return Err(tampered(format!(
                    "the checkpoint this host signed at event {} ({}) is missing from the database",
                    k.seq,
                    utc(k.ts)
                )))
            }
            (Some(s), Some(k)) if k.seq == s.seq && k.hash != s.hash => {
                return Err(tampered(format!("the stored checkpoint at event {} was replaced", k.seq)))
            }
            (Some(s), _) => {
                // A forged row must not become the base a rewrite is signed on.
                s.verify(key.public_key()).map_err(|reason| tampered(format!("stored checkpoint: {reason}")))?;
                Some(s)
            }
            (None, Some(k)) => {
                return Err(tampered(format!(
                    "the checkpoint this host signed at event {} ({}) is missing from the database",
                    k.seq,
                    utc(k.ts)
                )))
            }
            (None, None) => None,
        };
        if seq == 0 && base.is_none() {
            return Ok(Signed::Empty);
        }
        if let Some(base) = &base {
            if base.seq > seq {
                return Err(tampered(format!(
                    "the chain's head is event {seq}, but event {} was signed ({}): events were removed",
                    base.seq,
                    utc(base.ts)
                )));
            }
            if base.seq == seq {
                if base.hash != hash {
                    return Err(tampered(format!("the head's hash differs from the one signed at event {seq}")));
                }
                if self.check_signed_event(tenant, base).await?.is_none() {
                    return Ok(Signed::Unchanged(base.clone()));
                }
            }
        }
        if let Some(reason) = self.check_segment(tenant, base.as_ref(), seq, &hash).await? {
            return Err(tampered(reason));
        }
        let checkpoint = key.sign(tenant, seq, &hash, now_millis());
        sqlx::query(
            "INSERT INTO audit_checkpoints (tenant, seq, hash, ts, kid, signature) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant, seq) DO NOTHING",
        )
        .bind(tenant)
        .bind(checkpoint.seq)
        .bind(&checkpoint.hash)
        .bind(checkpoint.ts)
        .bind(&checkpoint.kid)
        .bind(&checkpoint.signature)
        .execute(self.db.pool())
        .await?;
        // Another host may have signed the same head first: its checkpoint stands.
        let row: Option<CheckpointRow> = sqlx::query_as(
            "SELECT tenant, seq, hash, ts, kid, signature FROM audit_checkpoints WHERE tenant = $1 AND seq = $2",
        )
        .bind(tenant)
        .bind(seq)
        .fetch_optional(self.db.pool())
        .await?;
        match row.map(from_checkpoint_row) {
            Some(stored) if stored == checkpoint => Ok(Signed::New(checkpoint)),
            Some(stored) if stored.hash == checkpoint.hash => Ok(Signed::Unchanged(stored)),
            _ => Err(tampered(format!("the checkpoint at event {seq} could not be stored as signed"))),
        }
    }

    /// The event at a checkpoint still has the signed hash and content: `None`, or what differs.
    async fn check_signed_event(&self, tenant: &str, base: &Checkpoint) -> Result<Option<String>, AuditError> {
        let rows = chain::raw_page(&self.db, tenant, base.seq - 1, 1).await?;
        let Some((seq, ts, kind, outcome, agent, tool, detail, prev_hash, hash)) = rows.into_iter().next() else {
            return Ok(Some(format!("event {} (signed {}) is missing", base.seq, utc(base.ts))));
        };
        if seq != base.seq {
            return Ok(Some(format!("event {} (signed {}) is missing", base.seq, utc(base.ts))));
        }
        let event =
            AuditEvent { tenant: tenant.to_string(), kind, outcome, agent, tool, detail: serde_json::Value::Null };
        if hash != base.hash || event_hash(&prev_hash, seq, ts, &event, &detail) != base.hash {
            return Ok(Some(format!("event {seq} is not the one signed {}", utc(base.ts))));
        }
        Ok(None)
    }

    /// Recomputes the chain from `base` (genesis when `None`) to `(head, head_hash)`: `None`
    /// when it holds, else the first break in words.
    async fn check_segment(
        &self,
        tenant: &str,
        base: Option<&Checkpoint>,
        head: i64,
        head_hash: &str,
    ) -> Result<Option<String>, AuditError> {
        const PAGE: i64 = 5000;
        let (mut at, mut prev) = match base {
            Some(b) => {
                if let Some(reason) = self.check_signed_event(tenant, b).await? {
                    return Ok(Some(reason));
                }
                (b.seq, b.hash.clone())
            }
            None => (0, GENESIS.to_string()),
        };
        while at < head {
            let page = chain::raw_page(&self.db, tenant, at, PAGE.min(head - at)).await?;
            if page.is_empty() {
                break;
            }
            for (seq, ts, kind, outcome, agent, tool, detail, prev_hash, hash) in page {
                if seq != at + 1 {
                    return Ok(Some(format!("event {} is missing", at + 1)));
                }
                if prev_hash != prev {
                    return Ok(Some(format!("event {seq}'s link to the previous event does not match")));
                }
                let event = AuditEvent {
                    tenant: tenant.to_string(),
                    kind,
                    outcome,
                    agent,
                    tool,
                    detail: serde_json::Value::Null,
                };
                if event_hash(&prev, seq, ts, &event, &detail) != hash {
                    return Ok(Some(format!("event {seq}'s content does not match its hash")));
                }
                prev = hash;
                at = seq;
            }
        }
        if at != head || prev != head_hash {
            return Ok(Some(format!("the chain ends at event {at}, but its head says {head}")));
        }
        Ok(None)
    }

    /// The newest stored checkpoint of a tenant.
    pub async fn newest_checkpoint(&self, tenant: &str) -> Result<Option<Checkpoint>, AuditError> {
        let row: Option<CheckpointRow> = sqlx::query_as(
            "SELECT tenant, seq, hash, ts, kid, signature FROM audit_checkpoints WHERE tenant = $1 \
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(tenant)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.map(from_checkpoint_row))
    }

    /// Every stored checkpoint of a tenant, oldest first.
    pub async fn checkpoints(&self, tenant: &str) -> Result<Vec<Checkpoint>, AuditError> {
        let rows: Vec<CheckpointRow> = sqlx::query_as(
            "SELECT tenant, seq, hash, ts, kid, signature FROM audit_checkpoints WHERE tenant = $1 ORDER BY seq",
        )
        .bind(tenant)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(from_checkpoint_row).collect())
    }

    /// The chains whose head is not their newest checkpoint's: moved on (or never signed),
    /// or (only by tampering) behind it.
    pub async fn unsigned_chains(&self) -> Result<Vec<String>, AuditError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT h.tenant FROM audit_heads h WHERE h.seq <> \
             COALESCE((SELECT MAX(c.seq) FROM audit_checkpoints c WHERE c.tenant = h.tenant), 0) ORDER BY h.tenant",
        )
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(|(t,)| t).collect())
    }

    /// Events of a tenant with `seq > after`, oldest first, at most `limit`, as an export
    /// holds them.
    pub async fn export_page(&self, tenant: &str, after: i64, limit: i64) -> Result<Vec<ExportedEvent>, AuditError> {
        let rows = chain::raw_page(&self.db, tenant, after, limit).await?;
        Ok(rows.into_iter().map(|r| ExportedEvent::from_row(tenant, r)).collect())
    }

    /// A whole export of a tenant's trail in memory (the server streams the same lines): the
    /// header, events `1..=head`, and the checkpoints, which are read before the head so that
    /// every one of them is within the events.
    pub async fn export(&self, tenant: &str) -> Result<Vec<u8>, AuditError> {
        let checkpoints = self.checkpoints(tenant).await?;
        let (head, _) = self.head_hash(tenant).await?;
        let mut out = Vec::new();
        export_header(tenant, head).write_to(&mut out);
        let mut after = 0;
        while after < head {
            let page = self.export_page(tenant, after, (head - after).min(1000)).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for event in page {
                ExportLine::Event(event).write_to(&mut out);
            }
        }
        for c in checkpoints {
            ExportLine::Checkpoint(c).write_to(&mut out);
        }
        Ok(out)
    }
}

/// The header line of an export of `tenant` up to `head`, made now.
pub fn export_header(tenant: &str, head: i64) -> ExportLine {
    ExportLine::Export(ExportHeader {
        format: EXPORT_FORMAT.to_string(),
        tenant: tenant.to_string(),
        head,
        exported_at: now_millis(),
    })
}

// ---- offline verification ------------------------------------------------------------------

/// What an export proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub tenant: String,
    /// Events in the export, all recomputed.
    pub events: i64,
    /// Checkpoints checked (the export's and the witness's), all valid.
    pub checkpoints: usize,
    /// The newest checkpoint: events up to its `seq` are fixed by the key.
    pub newest: Checkpoint,
    /// Events after the newest checkpoint: chained, but not signed yet.
    pub unsigned: i64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VERIFIED: {} events of `{}`, every hash recomputed; events 1..{} are fixed by the checkpoint signed {} \
             by key `{}` ({} checkpoint(s) checked)",
            self.events,
            self.tenant,
            self.newest.seq,
            utc(self.newest.ts),
            self.newest.kid,
            self.checkpoints
        )?;
        if self.unsigned > 0 {
            write!(
                f,
                "; the last {} event(s) come after it and are not signed yet (a later checkpoint covers them)",
                self.unsigned
            )?;
        }
        Ok(())
    }
}

/// The first problem [`verify_export`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The first event concerned, when one is.
    pub seq: Option<i64>,
    pub reason: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

fn broken(seq: Option<i64>, reason: impl Into<String>) -> Broken {
    Broken { seq, reason: reason.into() }
}

/// Reads checkpoints from JSON Lines (a witness file, or saved checkpoints): each line a
/// [`Checkpoint`] (or `{"checkpoint": {...}}`); blank lines are skipped.
pub fn read_checkpoints(input: impl BufRead) -> Result<Vec<Checkpoint>, String> {
    let mut out = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read line {}: {e}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let checkpoint = match serde_json::from_str::<Checkpoint>(&line) {
            Ok(c) => c,
            Err(e) => match serde_json::from_str::<ExportLine>(&line) {
                Ok(ExportLine::Checkpoint(c)) => c,
                _ => return Err(format!("line {} is not a checkpoint: {e}", n + 1)),
            },
        };
        out.push(checkpoint);
    }
    Ok(out)
}

/// Verifies an export offline against `key`: recomputes the chain from genesis, checks every
/// checkpoint (the export's, and `witness`'s of the same tenant) is signed by `key`, that the
/// event at its `seq` has exactly its hash, and that the export reaches it. The first problem
/// is reported in words. An export with no checkpoint at all proves nothing and fails.
pub fn verify_export(input: impl BufRead, key: &PublicKey, witness: &[Checkpoint]) -> Result<Report, Broken> {
    let mut header: Option<ExportHeader> = None;
    let mut tenant: Option<String> = None;
    let mut hashes: Vec<String> = Vec::new();
    let mut prev = GENESIS.to_string();
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    let same_tenant = |tenant: &mut Option<String>, name: &str, what: &str| -> Result<(), Broken> {
        match tenant {
            Some(t) if t != name => {
                Err(broken(None, format!("{what} is of tenant `{name}`, but the export is of `{t}`: not one trail")))
            }
            Some(_) => Ok(()),
            None => {
                *tenant = Some(name.to_string());
                Ok(())
            }
        }
    };
    for (n, line) in input.lines().enumerate() {
        let n = n + 1;
        let line = line.map_err(|e| broken(None, format!("cannot read line {n} of the export: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: ExportLine = serde_json::from_str(&line).map_err(|e| {
            broken(
                None,
                format!(
                    "line {n} is not a line of a signed audit export ({e}); export with `airlock audit export`, \
                     or `GET /v1/audit/export/signed`"
                ),
            )
        })?;
        match parsed {
            ExportLine::Export(h) => {
                if h.format != EXPORT_FORMAT {
                    return Err(broken(None, format!("line {n}: unknown export format `{}`", h.format)));
                }
                if header.is_some() || !hashes.is_empty() {
                    return Err(broken(None, format!("line {n}: a second export header: files were joined")));
                }
                same_tenant(&mut tenant, &h.tenant, "the header")?;
                header = Some(h);
            }
            ExportLine::Event(e) => {
                same_tenant(&mut tenant, &e.tenant, &format!("event {} (line {n})", e.seq))?;
                let expected = hashes.len() as i64 + 1;
                if e.seq != expected {
                    let reason = if e.seq > expected {
                        format!(
                            "event {expected} is missing or out of place: after event {} comes event {}",
                            expected - 1,
                            e.seq
                        )
                    } else {
                        format!(
                            "event {} comes again after event {}: the events are out of order or repeated",
                            e.seq,
                            expected - 1
                        )
                    };
                    return Err(broken(Some(expected), reason));
                }
                if e.prev_hash != prev {
                    return Err(broken(
                        Some(e.seq),
                        format!("event {}'s link to the previous event does not match: an event before it was changed or removed", e.seq),
                    ));
                }
                let event = AuditEvent {
                    tenant: e.tenant.clone(),
                    kind: e.kind,
                    outcome: e.outcome,
                    agent: e.agent,
                    tool: e.tool,
                    detail: serde_json::Value::Null,
                };
                if event_hash(&prev, e.seq, e.ts, &event, e.detail.get()) != e.hash {
                    return Err(broken(
                        Some(e.seq),
                        format!("event {}'s content does not match its hash: it was changed", e.seq),
                    ));
                }
                prev = e.hash.clone();
                hashes.push(e.hash);
            }
            ExportLine::Checkpoint(c) => {
                same_tenant(&mut tenant, &c.tenant, &format!("the checkpoint at event {} (line {n})", c.seq))?;
                checkpoints.push(c);
            }
        }
    }
    let Some(tenant) = tenant else {
        return Err(broken(None, "the export is empty: no header, no event, no checkpoint"));
    };
    let events = hashes.len() as i64;
    if let Some(h) = &header {
        if h.head != events {
            return Err(broken(
                Some(events + 1),
                format!(
                    "the export's header says the chain's head is event {}, but its events end at {events}: \
                     the file is incomplete",
                    h.head
                ),
            ));
        }
    }
    checkpoints.extend(witness.iter().filter(|c| c.tenant == tenant).cloned());
    if checkpoints.is_empty() {
        return Err(broken(
            None,
            format!(
                "no signed checkpoint of `{tenant}` in the export{}: nothing ties these {events} events to the key \
                 (have the host sign one: `airlock audit checkpoint`)",
                if witness.is_empty() { "" } else { " or the witness" }
            ),
        ));
    }
    for c in &checkpoints {
        c.verify(key).map_err(|reason| broken(Some(c.seq), reason))?;
    }
    checkpoints.sort_by_key(|c| (c.seq, c.ts));
    for c in &checkpoints {
        if c.seq < 1 {
            return Err(broken(None, format!("a checkpoint names event {}, which cannot exist", c.seq)));
        }
        if c.seq > events {
            return Err(broken(
                Some(events + 1),
                format!(
                    "the trail ends at event {events}, but the checkpoint signed {} covers events up to {}: \
                     events {}..{} were removed (truncated)",
                    utc(c.ts),
                    c.seq,
                    events + 1,
                    c.seq
                ),
            ));
        }
        let found = &hashes[(c.seq - 1) as usize];
        if *found != c.hash {
            return Err(broken(
                Some(c.seq),
                format!(
                    "event {} is not the event signed {}: its hash is {}, the signed hash is {}: the trail was \
                     rewritten at or before event {} (edited, removed or reordered events, hashes recomputed)",
                    c.seq,
                    utc(c.ts),
                    short(found),
                    short(&c.hash),
                    c.seq
                ),
            ));
        }
    }
    let newest = checkpoints.iter().max_by_key(|c| c.seq).cloned();
    let Some(newest) = newest else {
        return Err(broken(None, "no signed checkpoint"));
    };
    Ok(Report { tenant, events, checkpoints: checkpoints.len(), unsigned: events - newest.seq, newest })
}

fn short(hash: &str) -> String {
    format!("{}...", &hash[..hash.len().min(12)])
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn a_checkpoint_verifies_only_as_signed_and_only_with_its_key() {
        let (key, _) = CheckpointKey::generate().unwrap();
        let (other, _) = CheckpointKey::generate().unwrap();
        let c = key.sign("acme", 7, &"ab".repeat(32), 1_700_000_000_000);
        c.verify(key.public_key()).unwrap();
        assert!(c.verify(other.public_key()).unwrap_err().contains("not by the given key"));
        for altered in [
            Checkpoint { seq: 8, ..c.clone() },
            Checkpoint { hash: "cd".repeat(32), ..c.clone() },
            Checkpoint { tenant: "globex".into(), ..c.clone() },
            Checkpoint { ts: c.ts + 1, ..c.clone() },
        ] {
            assert!(altered.verify(key.public_key()).unwrap_err().contains("altered or forged"));
        }
        // The public key round-trips through its hex form, and so does the key through PKCS#8.
        assert_eq!(&PublicKey::from_hex(&key.public_key().to_hex()).unwrap(), key.public_key());
        let (k, pkcs8) = CheckpointKey::generate().unwrap();
        assert_eq!(CheckpointKey::from_pkcs8(&pkcs8).unwrap().public_key(), k.public_key());
    }

    #[test]
    fn detail_is_exported_verbatim() {
        let text = r#"{"a":1.1000000000000001,"b":"x\u0000y","c":[1,2]}"#;
        let e = ExportedEvent::from_row(
            "t",
            (1, 2, "k".into(), "o".into(), "a".into(), "t".into(), text.into(), GENESIS.into(), "h".into()),
        );
        let mut out = Vec::new();
        ExportLine::Event(e).write_to(&mut out);
        let back: ExportLine = serde_json::from_slice(&out).unwrap();
        let ExportLine::Event(back) = back else { panic!("an event line") };
        assert_eq!(back.detail.get(), text);
    }
}
