//! Cluster-wide wake-ups on PostgreSQL: a replica that commits work due now says so on a channel
//! (`NOTIFY`), and every replica listens, so that an idle replica leases the work at once instead of
//! at its next poll (`flyteNotify.worker.pollInterval`).
//!
//! The notification is a hint, never the source of truth, and that is what makes it safe:
//!
//! - It is sent only once the work is committed: by the accepting replica's announcer after the
//!   commit (`Announcer`), or inside the transaction that commits the work (a redrive, a send
//!   handed back), which PostgreSQL delivers only when it commits and never if it rolls back. A
//!   replica woken by it finds the rows visible.
//! - PostgreSQL keeps no notification for a session that was not listening when it was sent, so one
//!   can be missed while the listening connection is down or reconnecting. The worker's poll still
//!   leases every due row; a missed notification only delays its work until the next poll, as if
//!   there were no notifications at all. So a lost listener never stops the replica: it says so in
//!   the log, the replica goes on polling, and the listener reconnects by itself and then wakes the
//!   worker once, in case something was committed meanwhile.
//!
//! Timed work (retries, deadlines, digests coming due) is not announced: nothing commits when it
//! becomes due, and the poll finds it.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::watch;

use super::LedgerError;

/// The channel. Every replica on one database shares it; a database shared by two deployments
/// only costs each a spurious look at its own rows.
pub const CHANNEL: &str = "flyte_notify_work";

/// Part of a transaction (or statement) that makes work due now: delivered when it commits. Within
/// one transaction PostgreSQL folds repeated notifications into one.
pub(crate) const NOTIFY: &str = "NOTIFY flyte_notify_work";

/// The same as an UPDATE's RETURNING clause: sent only when the UPDATE changed a row.
pub(crate) const NOTIFY_RETURNING: &str = " RETURNING pg_notify('flyte_notify_work', '')";

/// Begins the announcer's own transaction: a hint needs no durability, so its commit does not wait
/// for the WAL flush, and the database-wide lock PostgreSQL holds through the commit of every
/// transaction that notifies is held for a moment only.
const ANNOUNCE_BEGIN: &str = "BEGIN; SET LOCAL synchronous_commit TO off";

/// Announces an accept's new work after its commit, on a pooled connection, off the accept's
/// path. Notifying inside the accept's own transaction made every replica's accept commit queue on
/// that database-wide lock, flush and all: after the commit-order lock went, it was what three
/// replicas' accepts waited on. Announcements asked for while one is being sent fold into one
/// more, so a busy replica has at most one in flight, however many batches it commits.
pub(crate) struct Announcer {
    wanted: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Announcer {
    /// Sends on `pool`, each announcement bounded by `budget` (one that fails or times out is only
    /// a hint lost: the other replicas' polls find the work).
    pub(crate) fn spawn(pool: sqlx::PgPool, budget: Duration) -> Self {
        let wanted = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn({
            let wanted = wanted.clone();
            async move {
                loop {
                    wanted.notified().await;
                    // A transaction sqlx knows of: one that fails part way is rolled back before
                    // its connection goes back to the pool.
                    let send = async {
                        let mut tx = pool.begin_with(ANNOUNCE_BEGIN).await?;
                        sqlx::query(NOTIFY).execute(&mut *tx).await?;
                        tx.commit().await
                    };
                    match tokio::time::timeout(budget, send).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "could not announce new work; other replicas find it at their next poll");
                        }
                        Err(_) => {
                            tracing::debug!(
                                "announcing new work timed out; other replicas find it at their next poll"
                            );
                        }
                    }
                }
            }
        });
        Self { wanted, task }
    }

    /// New work is committed: tell the other replicas soon.
    pub(crate) fn announce(&self) {
        self.wanted.notify_one();
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long connecting and subscribing may take, as the ledger's own connections.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Between attempts to reconnect: from the first to the longest, doubling.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A listening connection that hears nothing may be cut off without knowing it (a partition sends
/// no reset): after this long in silence it is asked to answer, within CHECK_TIMEOUT.
const CHECK_IDLE: Duration = Duration::from_secs(30);
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What the listener calls for each notification: makes the worker look for due work now.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// Listens on `dsn`'s database until `stopping` turns true, calling `wake` for every notification.
/// Returns once the first subscription is in place (or has failed, which is logged and retried
/// in the background): a replica that answers calls already hears the others' work.
pub async fn listen(
    dsn: &str,
    wake: Wake,
    stopping: watch::Receiver<bool>,
) -> Result<(), LedgerError> {
    let mut options = PgConnectOptions::from_str(dsn)?;
    if options.get_application_name().is_none() {
        options = options.application_name("flyte-notify");
    }
    let target = format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    );
    let first = match subscribe(&options).await {
        Ok(listener) => {
            tracing::info!(channel = CHANNEL, database = %target, "woken by other replicas' new work (LISTEN)");
            Some(listener)
        }
        Err(why) => {
            tracing::warn!(
                database = %target,
                problem = %why,
                "cannot listen for other replicas' new work; finding it by polling every \
                 flyteNotify.worker.pollInterval until a connection is back"
            );
            None
        }
    };
    tokio::spawn(run(options, target, wake, stopping, first));
    Ok(())
}

/// A listener on a connection of its own: a pool of one, new for each subscription, so that a
/// connection given up on is never handed back to the next one.
async fn subscribe(options: &PgConnectOptions) -> Result<PgListener, String> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(CONNECT_TIMEOUT)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(options.clone());
    let subscribing = async {
        let mut listener = PgListener::connect_with(&pool).await?;
        // Reconnecting is ours to do (and to log), and the pool is this listener's alone.
        listener.eager_reconnect(false);
        listener.ignore_pool_close_event(true);
        listener.listen(CHANNEL).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, subscribing).await {
        Ok(Ok(listener)) => Ok(listener),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// Completes when the replica stops.
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    // The guard wait_for returns must not live across the select's other branches.
    let _ = stopping.wait_for(|s| *s).await.map(|_| ());
}

async fn run(
    options: PgConnectOptions,
    target: String,
    wake: Wake,
    mut stopping: watch::Receiver<bool>,
    mut listener: Option<PgListener>,
) {
    let mut retry_in = RETRY_FIRST;
    loop {
        let mut current = match listener.take() {
            Some(current) => current,
            None => {
                tokio::select! {
                    _ = tokio::time::sleep(retry_in) => {}
                    _ = stopped(&mut stopping) => return,
                }
                match subscribe(&options).await {
                    Ok(current) => {
                        tracing::info!(database = %target, "listening for other replicas' new work again");
                        retry_in = RETRY_FIRST;
                        // Whatever was committed while nobody listened was not announced here.
                        wake();
                        current
                    }
                    Err(why) => {
                        tracing::debug!(database = %target, problem = %why, "still cannot listen for new work");
                        retry_in = (retry_in * 2).min(RETRY_MAX);
                        continue;
                    }
                }
            }
        };
        let lost = loop {
            tokio::select! {
                // Cancel-safe: sqlx only takes a message out of its buffer once it is whole.
                received = current.try_recv() => match received {
                    Ok(Some(_)) => wake(),
                    Ok(None) => break "the connection was closed".to_string(),
                    Err(e) => break e.to_string(),
                },
                _ = tokio::time::sleep(CHECK_IDLE) => {
                    let check = sqlx::query("SELECT 1").execute(&mut current);
                    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => break e.to_string(),
                        Err(_) => break format!("no answer within {CHECK_TIMEOUT:?}"),
                    }
                }
                _ = stopped(&mut stopping) => return,
            }
        };
        tracing::warn!(
            database = %target,
            problem = %lost,
            "lost the connection that listens for other replicas' new work; finding it by \
             polling every flyteNotify.worker.pollInterval until it is back"
        );
        // Dropping it sends UNLISTEN on a task of sqlx's; on a dead connection that task ends when
        // the socket gives up. A new subscription does not wait for it.
        drop(current);
    }
}
