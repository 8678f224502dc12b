//! The change feed between hosts sharing one PostgreSQL, so that each host answers its hot
//! reads (agent tokens, tuples, approval policies, installed components) from memory and
//! still never answers from a state another host has already changed.
//!
//! A transaction that changes such state also sends, inside itself, a `NOTIFY` on
//! [`CHANNEL`] naming the topic and the tenant ([`Changes::notify_in`]): PostgreSQL delivers it
//! to every listening host when, and only if, the transaction commits, in commit order. Each
//! host keeps one `LISTEN` connection; a change it hears drops what its caches hold of that
//! tenant ([`Changes::subscribe`]) and is acknowledged to its sender.
//!
//! **Why memory may be trusted, and for how long.** Every host also sends itself a heartbeat
//! every [`HEARTBEAT`]. Notifications arrive in commit order, so when a host hears its own
//! heartbeat sent at time `s`, it has applied every change committed before `s`. A host answers
//! from memory only while the newest heartbeat it heard back was sent less than [`LEASE`] ago
//! ([`Changes::fresh`]); otherwise (listener down, host stalled, database unreachable) it reads
//! the database, as a host without the feed does. So a change committed at `T` is applied by
//! every host that answers from memory after `T + LEASE`.
//!
//! **A revoke is refused everywhere once it returns.** The writer then calls
//! [`Changes::settle`]: it waits until it heard its own change back (so it has heard every peer
//! alive before the commit) and every such peer acknowledged it, at most [`LEASE`]. A peer that
//! does not acknowledge in time has stopped answering from memory by then. Acknowledgements make
//! the usual wait one round trip through the database (a few milliseconds).
//!
//! SQLite serves one host (or several processes without signals, which keep reading the
//! database): there nothing is sent, nobody listens and [`Changes::fresh`] is `false`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;

/// The channel changes, heartbeats and acknowledgements travel on.
pub const CHANNEL: &str = "airlock_changes";
/// How long after sending its newest heard-back heartbeat a host still answers from memory.
pub const LEASE: Duration = Duration::from_millis(1000);
/// How often a host sends itself (and tells its peers of) a heartbeat.
pub const HEARTBEAT: Duration = Duration::from_millis(200);
/// A peer heard within this long is waited for by [`Changes::settle`] (3 leases: see `settle`).
const PEER_TTL: Duration = Duration::from_millis(3000);
/// How long the listener waits before reconnecting after the database refused it.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// What changed, as a subscriber hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// The subscriber's topic changed for this tenant.
    Tenant(&'a str),
    /// The tenant was deleted: everything of it is gone.
    TenantGone(&'a str),
    /// Anything may have changed (the listener started, or reconnected and may have missed some).
    Everything,
}

type Subscriber = Box<dyn Fn(Change<'_>) + Send + Sync>;

/// One host's end of the change feed. Cheap to clone; every clone of a [`crate::Db`] shares it.
#[derive(Clone)]
pub struct Changes {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes").field("host", &self.inner.host).field("fresh", &self.fresh()).finish()
    }
}

struct Inner {
    /// `None` on SQLite: nothing is sent and nobody listens.
    postgres: Option<Postgres>,
    /// This host's name on the channel: unique per process and per [`crate::Db::connect`].
    host: String,
    /// When this value was made; instants below are kept as nanoseconds since then.
    epoch: Instant,
    /// Nanoseconds after `epoch` at which the newest heard-back heartbeat was sent; 0: none yet.
    echoed_ns: AtomicU64,
    /// The sequence number of this host's newest change.
    seq: AtomicU64,
    state: Mutex<State>,
    subscribers: RwLock<Vec<(&'static str, Subscriber)>>,
    /// Whether the listening connection is listening now.
    listening: std::sync::atomic::AtomicBool,
    /// Rung on every acknowledgement, own heartbeat heard back and start of listening.
    progress: tokio::sync::Notify,
    started: std::sync::Once,
    /// Rung when the last clone goes: the listener closes its connection.
    gone: Arc<tokio::sync::Notify>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.gone.notify_one();
    }
}

struct Postgres {
    url: Arc<str>,
    pool: sqlx::AnyPool,
}

#[derive(Default)]
struct State {
    /// Heartbeats sent and not heard back yet: number -> when sent.
    heartbeats: HashMap<u64, Instant>,
    next_heartbeat: u64,
    peers: HashMap<String, Peer>,
}

struct Peer {
    heard: Instant,
    /// The newest of this host's changes the peer acknowledged.
    acked: u64,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Changes {
    pub(crate) fn new(postgres: Option<(Arc<str>, sqlx::AnyPool)>) -> Changes {
        static HOSTS: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let host = format!("{:x}.{:x}.{}", std::process::id(), nanos, HOSTS.fetch_add(1, Ordering::Relaxed));
        Changes {
            inner: Arc::new(Inner {
                postgres: postgres.map(|(url, pool)| Postgres { url, pool }),
                host,
                epoch: Instant::now(),
                echoed_ns: AtomicU64::new(0),
                seq: AtomicU64::new(0),
                state: Mutex::new(State::default()),
                subscribers: RwLock::new(Vec::new()),
                listening: std::sync::atomic::AtomicBool::new(false),
                progress: tokio::sync::Notify::new(),
                started: std::sync::Once::new(),
                gone: Arc::new(tokio::sync::Notify::new()),
            }),
        }
    }

    /// Whether this host's memory reflects every change committed more than [`LEASE`] ago
    /// and every change [`Changes::settle`]d since: its caches may answer. Always `false` on
    /// SQLite (its single host keeps its caches by its own writes) and before the first
    /// heartbeat comes back.
    pub fn fresh(&self) -> bool {
        let echoed = self.inner.echoed_ns.load(Ordering::Acquire);
        echoed != 0 && (self.inner.epoch.elapsed().as_nanos() as u64).saturating_sub(echoed) < LEASE.as_nanos() as u64
    }

    /// Calls `on_change` for every change of `topic` (and every deleted tenant, and
    /// [`Change::Everything`]) heard from any host, this one included. Starts listening (PostgreSQL).
    pub fn subscribe<F>(&self, topic: &'static str, on_change: F)
    where
        F: Fn(Change<'_>) + Send + Sync + 'static,
    {
        self.inner.subscribers.write().unwrap_or_else(|p| p.into_inner()).push((topic, Box::new(on_change)));
        self.start();
    }

    /// Inside the transaction that changes `topic` for `tenant`: tells every host once it
    /// commits. `topic` `*` means the whole tenant was deleted. Call [`Changes::settle`] after
    /// the commit. Nothing on SQLite.
    pub async fn notify_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        topic: &str,
        tenant: &str,
    ) -> Result<(), sqlx::Error> {
        if self.inner.postgres.is_none() {
            return Ok(());
        }
        self.start();
        let seq = self.inner.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let payload = format!("c {} {seq} {topic} {tenant}", self.inner.host);
        sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(&mut **tx).await?;
        Ok(())
    }

    /// Returns once every change this host committed so far is applied by every host that
    /// may answer from memory: acknowledged by every peer heard alive since before the
    /// commit, or [`LEASE`] passed (a silent peer has stopped trusting its memory by then).
    /// Returns at once on SQLite.
    ///
    /// Which peers to wait for: after the commit this host sends itself a marker heartbeat and
    /// waits to hear it back; it has then heard every heartbeat committed before the change, so
    /// it knows every peer that could answer from memory without having applied the change (a
    /// peer fresh after the commit heard one of its own heartbeats sent less than a lease
    /// before, and one sent before the commit reached this host before the marker did). A peer
    /// silent for [`PEER_TTL`] (three leases) cannot be such a peer.
    pub async fn settle(&self) {
        if self.inner.postgres.is_none() {
            return;
        }
        let target = self.inner.seq.load(Ordering::SeqCst);
        // Measured from after the commit, so it covers the lease of any peer alive at the commit.
        let deadline = Instant::now() + LEASE + HEARTBEAT;
        let (mut marker, mut marked): (Option<u64>, bool) = (None, false);
        loop {
            let progress = self.inner.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if !marked && self.inner.listening.load(Ordering::Acquire) {
                // Sent once: a database that refuses it leaves the wait to the deadline.
                (marker, marked) = (self.inner.send_heartbeat().await, true);
                continue;
            }
            if marker.is_some_and(|sent| self.settled(sent, target)) {
                return;
            }
            if tokio::time::timeout_at(deadline.into(), progress).await.is_err() {
                tracing::warn!(
                    "a change was not acknowledged by every host within {LEASE:?}: the silent hosts read the database until their listener catches up"
                );
                return;
            }
        }
    }

    /// Whether the marker sent at `sent_ns` came back and every peer alive since acknowledged change `target`.
    fn settled(&self, sent_ns: u64, target: u64) -> bool {
        self.inner.echoed_ns.load(Ordering::Acquire) >= sent_ns && {
            let state = lock(&self.inner.state);
            state.peers.values().all(|p| p.acked >= target || p.heard.elapsed() >= PEER_TTL)
        }
    }

    fn start(&self) {
        let Some(pg) = &self.inner.postgres else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if self.inner.started.is_completed() {
            return;
        }
        let url = pg.url.clone();
        let (weak, gone) = (Arc::downgrade(&self.inner), self.inner.gone.clone());
        self.inner.started.call_once(|| {
            runtime.spawn(listen(weak.clone(), url, gone));
            runtime.spawn(beat(weak));
        });
    }
}

/// Sends this host's heartbeat every [`HEARTBEAT`] while the host exists.
async fn beat(inner: Weak<Inner>) {
    let mut every = tokio::time::interval(HEARTBEAT);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        inner.send_heartbeat().await;
    }
}

/// Keeps one `LISTEN` connection and applies what it hears, while the host exists.
async fn listen(inner: Weak<Inner>, url: Arc<str>, gone: Arc<tokio::sync::Notify>) {
    loop {
        let mut listener = match PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("cannot listen for changes from other hosts, retrying: {e}");
                tokio::time::sleep(RECONNECT_AFTER).await;
                if inner.strong_count() == 0 {
                    return;
                }
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!("cannot listen for changes from other hosts, retrying: {e}");
            tokio::time::sleep(RECONNECT_AFTER).await;
            continue;
        }
        // Whatever happened before listening began is only in the database.
        match inner.upgrade() {
            Some(i) => {
                i.everything_changed();
                i.listening.store(true, Ordering::Release);
                i.progress.notify_waiters();
            }
            None => return,
        }
        loop {
            let heard = tokio::select! {
                heard = listener.try_recv() => heard,
                () = gone.notified() => return,
            };
            let Some(inner) = inner.upgrade() else { return };
            match heard {
                Ok(Some(n)) => inner.heard(n.payload()),
                // The connection dropped; sqlx reconnects on the next call, and what was sent
                // meanwhile is lost.
                Ok(None) => inner.everything_changed(),
                Err(e) => {
                    tracing::warn!("listening for changes from other hosts failed, reconnecting: {e}");
                    inner.everything_changed();
                    break;
                }
            }
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

impl Inner {
    /// Sends a heartbeat to this host (and its peers); the nanoseconds after `epoch` at which
    /// it was sent, `None` if it could not be sent.
    async fn send_heartbeat(&self) -> Option<u64> {
        let pg = self.postgres.as_ref()?;
        let (payload, sent) = {
            let mut state = lock(&self.state);
            let n = state.next_heartbeat;
            state.next_heartbeat += 1;
            // Recorded before it is sent: the send time is never later than the commit.
            let sent = Instant::now();
            state.heartbeats.insert(n, sent);
            (format!("h {} {n}", self.host), sent)
        };
        match sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(&pg.pool).await {
            Ok(_) => Some((sent.saturating_duration_since(self.epoch).as_nanos() as u64).max(1)),
            Err(e) => {
                tracing::debug!("heartbeat not sent: {e}");
                None
            }
        }
    }

    /// Stops trusting memory until a heartbeat sent from now on comes back, and tells every subscriber.
    fn everything_changed(&self) {
        self.listening.store(false, Ordering::Release);
        self.echoed_ns.store(0, Ordering::Release);
        lock(&self.state).heartbeats.clear();
        self.tell(None, Change::Everything);
    }

    fn tell(&self, topic: Option<&str>, change: Change<'_>) {
        let subscribers = self.subscribers.read().unwrap_or_else(|p| p.into_inner());
        for (t, on_change) in subscribers.iter() {
            if topic.is_none_or(|topic| topic == *t) {
                on_change(change);
            }
        }
    }

    /// One notification: `h HOST N` (heartbeat), `c HOST SEQ TOPIC TENANT` (change),
    /// `a HOST SEQ ACKER` (ACKER applied HOST's change SEQ).
    fn heard(self: &Arc<Self>, payload: &str) {
        let mut words = payload.splitn(5, ' ');
        let (kind, from, n) = (words.next(), words.next().unwrap_or(""), words.next().and_then(|n| n.parse().ok()));
        let Some(n) = n else {
            tracing::warn!("ignored a malformed change notification `{payload}`");
            return;
        };
        let own = from == self.host;
        match kind {
            Some("h") if own => self.heartbeat_heard(n),
            Some("h") => self.peer_heard(from, None),
            Some("c") => {
                let (topic, tenant) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                // Own changes too: the writing engine updated its own memory, but other engines
                // sharing this handle (two `Rebac`s over one pool, say) learn of it only here,
                // before the writer's `settle` returns (its marker comes back after this).
                if topic == "*" {
                    self.tell(None, Change::TenantGone(tenant));
                } else {
                    self.tell(Some(topic), Change::Tenant(tenant));
                }
                if own {
                    return;
                }
                self.peer_heard(from, None);
                self.acknowledge(from, n);
            }
            Some("a") if own => {
                let acker = words.next().unwrap_or("");
                self.peer_heard(acker, Some(n));
                self.progress.notify_waiters();
            }
            Some("a") => {}
            _ => tracing::warn!("ignored a malformed change notification `{payload}`"),
        }
    }

    fn heartbeat_heard(&self, n: u64) {
        let mut state = lock(&self.state);
        let Some(sent) = state.heartbeats.remove(&n) else { return };
        // Older ones still missing will not come back before this one did.
        state.heartbeats.retain(|&k, _| k > n);
        drop(state);
        let at = (sent.saturating_duration_since(self.epoch).as_nanos() as u64).max(1);
        self.echoed_ns.fetch_max(at, Ordering::AcqRel);
        self.progress.notify_waiters();
    }

    fn peer_heard(&self, peer: &str, acked: Option<u64>) {
        if peer.is_empty() || peer == self.host {
            return;
        }
        let mut state = lock(&self.state);
        let entry = state.peers.entry(peer.to_string()).or_insert(Peer { heard: Instant::now(), acked: 0 });
        entry.heard = Instant::now();
        if let Some(n) = acked {
            entry.acked = entry.acked.max(n);
        }
        let now = Instant::now();
        state.peers.retain(|_, p| now.saturating_duration_since(p.heard) < PEER_TTL * 2);
    }

    /// Tells `to` that its change `seq` is applied here (subscribers ran before this).
    fn acknowledge(self: &Arc<Self>, to: &str, seq: u64) {
        let Some(pg) = &self.postgres else { return };
        let (pool, payload) = (pg.pool.clone(), format!("a {to} {seq} {}", self.host));
        tokio::spawn(async move {
            if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(&pool).await {
                tracing::debug!("acknowledgement not sent: {e}");
            }
        });
    }
}

/// The tenants whose state of one topic this host may answer from memory: a tenant is
/// forgotten when a change of the topic (or its deletion) is heard, all of them when
/// listening (re)starts. Never fresh on SQLite.
#[derive(Clone)]
pub struct FreshTenants {
    changes: Changes,
    known: Arc<Mutex<std::collections::HashSet<String>>>,
}

impl std::fmt::Debug for FreshTenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreshTenants").field("changes", &self.changes).finish_non_exhaustive()
    }
}

impl FreshTenants {
    /// Follows `topic` on `changes`.
    pub fn new(changes: &Changes, topic: &'static str) -> FreshTenants {
        let known: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
        let held = Arc::downgrade(&known);
        changes.subscribe(topic, move |change| {
            let Some(known) = held.upgrade() else { return };
            let mut known = known.lock().unwrap_or_else(|p| p.into_inner());
            match change {
                Change::Tenant(t) | Change::TenantGone(t) => {
                    known.remove(t);
                }
                Change::Everything => known.clear(),
            }
        });
        FreshTenants { changes: changes.clone(), known }
    }

    /// Whether memory holds every change of `tenant` (see [`Changes::fresh`]).
    pub fn is_fresh(&self, tenant: &str) -> bool {
        self.changes.fresh() && self.known.lock().unwrap_or_else(|p| p.into_inner()).contains(tenant)
    }

    /// Call just before reading `tenant`'s state from the database: a change heard from now
    /// on forgets it again, so none committed after the read is missed.
    pub fn reading(&self, tenant: &str) {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).insert(tenant.to_string());
    }

    /// After a failed read: the tenant is read from the database again next time.
    pub fn forget(&self, tenant: &str) {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).remove(tenant);
    }
}
