//! Open, authenticated connections kept between sends, so that a burst of notifications pays for
//! TCP, TLS and AUTH once rather than once per message.
//!
//! A connection is in the pool only while no send uses it: a send takes one out and puts it back
//! after a clean 250. One that failed, or whose send was cancelled (the worker's timeout drops
//! the future), is never put back, so a connection in an unknown state is never reused.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::transport::smtp::client::AsyncSmtpConnection;

/// Idle connections kept at most. Sends beyond that run on connections of their own, closed
/// after use: the pool saves handshakes, it does not limit concurrency (the worker does).
const MAX_IDLE: usize = 4;

/// How long a connection may sit unused before it is closed rather than reused. Servers close
/// idle sessions after a few minutes (RFC 5321 suggests 5); closing ours first spares most sends
/// the round trip that finds a connection dead.
const IDLE_LIMIT: Duration = Duration::from_secs(30);

/// Messages sent over one connection before it is closed. Some servers limit messages per
/// session; a bound also spreads long bursts over a load balancer's backends.
const MAX_MESSAGES: u32 = 100;

/// How long a QUIT may take on a connection being retired; no send waits for it.
const QUIT_WAIT: Duration = Duration::from_secs(5);

pub(super) struct Pooled {
    pub(super) conn: AsyncSmtpConnection,
    sent: u32,
    idle_since: Instant,
}

impl Pooled {
    pub(super) fn new(conn: AsyncSmtpConnection) -> Self {
        Self {
            conn,
            sent: 0,
            idle_since: Instant::now(),
        }
    }
}

#[derive(Default)]
pub(super) struct Pool {
    idle: Mutex<Vec<Pooled>>,
}

impl Pool {
    /// The most recently used idle connection (the least likely to have been dropped by the
    /// server), if any. Connections idle for too long are closed on the way.
    pub(super) fn take(&self) -> Option<Pooled> {
        let (fresh, expired) = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let (expired, kept): (Vec<_>, Vec<_>) = idle
                .drain(..)
                .partition(|c| c.idle_since.elapsed() >= IDLE_LIMIT);
            *idle = kept;
            (idle.pop(), expired)
        };
        expired.into_iter().for_each(retire);
        fresh
    }

    /// Returns `conn` after a message it carried was accepted, or closes it when the pool is
    /// full or the connection has carried enough.
    pub(super) fn put(&self, mut conn: Pooled) {
        conn.sent += 1;
        conn.idle_since = Instant::now();
        if conn.sent >= MAX_MESSAGES {
            retire(conn);
            return;
        }
        let overflow = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(conn);
                None
            } else {
                Some(conn)
            }
        };
        overflow.into_iter().for_each(retire);
    }

    /// Forgets every idle connection: after one was found dead, the others (opened to the same
    /// server, likely before the same restart) probably are too.
    pub(super) fn clear(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        // Dropped, not retired: a QUIT to a server that is gone only waits.
        drop(idle);
    }
}

/// Says QUIT in the background, so that the server logs a clean end rather than a dropped
/// client; nothing waits for it, and a server that does not answer costs one task for a while.
pub(super) fn retire(mut conn: Pooled) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = tokio::time::timeout(QUIT_WAIT, conn.conn.quit()).await;
        });
    }
}
