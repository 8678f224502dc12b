//! Signals between hosts sharing one PostgreSQL: after a commit that someone on another host
//! may be waiting for (an approval decided, an agent's requests cancelled), the host sends a
//! `NOTIFY` on a channel, and every host keeps one `LISTEN` connection that wakes its own
//! waiters at once, instead of leaving them to their next poll.
//!
//! A signal is a hint, never the truth: the waiter re-reads the database when woken, so a
//! duplicate or stray signal costs one read. A lost one (the listening connection dropped)
//! is reported to the listener as [`Signal::Lost`], which should then re-check everything it
//! waits for; waiters keep a slow poll as the last resort. SQLite serves a single host, whose
//! waiters are woken in memory: there signals are not sent and nobody listens.

use std::time::Duration;

use sqlx::postgres::PgListener;

use crate::{Backend, Db};

/// What a listener hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal<'a> {
    /// A host sent this payload on the channel.
    Sent(&'a str),
    /// The listening connection was (re)opened: signals sent meanwhile may be lost.
    Lost,
}

/// How long a listener waits before reconnecting after the database refused it.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

impl Db {
    /// Sends `payload` on `channel` to every host listening (PostgreSQL); does nothing on SQLite.
    pub async fn signal(&self, channel: &str, payload: &str) -> Result<(), sqlx::Error> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(&self.pool).await?;
        Ok(())
    }

    /// Listens on `channel` (PostgreSQL) and calls `on_signal` for every signal, from any host
    /// including this one, until it returns `false`. `None` on SQLite, or when there is no
    /// tokio runtime to run the listener on. The first call is [`Signal::Lost`], once listening.
    pub fn listen<F>(&self, channel: &'static str, mut on_signal: F) -> Option<tokio::task::JoinHandle<()>>
    where
        F: FnMut(Signal<'_>) -> bool + Send + 'static,
    {
        if self.backend != Backend::Postgres {
            return None;
        }
        let url = self.url.clone();
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(runtime.spawn(async move {
            loop {
                let mut listener = match PgListener::connect(&url).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!("cannot listen for `{channel}` signals, retrying: {e}");
                        tokio::time::sleep(RECONNECT_AFTER).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen(channel).await {
                    tracing::warn!("cannot listen for `{channel}` signals, retrying: {e}");
                    tokio::time::sleep(RECONNECT_AFTER).await;
                    continue;
                }
                if !on_signal(Signal::Lost) {
                    return;
                }
                loop {
                    let keep_going = match listener.try_recv().await {
                        Ok(Some(n)) => on_signal(Signal::Sent(n.payload())),
                        // The connection dropped and is reopened on the next call.
                        Ok(None) => on_signal(Signal::Lost),
                        Err(e) => {
                            tracing::warn!("listening for `{channel}` signals failed, reconnecting: {e}");
                            break;
                        }
                    };
                    if !keep_going {
                        return;
                    }
                }
                tokio::time::sleep(RECONNECT_AFTER).await;
            }
        }))
    }
}
