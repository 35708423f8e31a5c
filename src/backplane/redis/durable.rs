//! Durable acknowledgements (`backplane.wait_replicas`): a change is
//! acknowledged only once `WAIT` says enough replicas have it.
//!
//! `WAIT` counts the writes of the connection that sends it and blocks that
//! connection until the replicas catch up. Sent on the shared multiplexed
//! connection it would hold every other request behind it, so it goes on a
//! small pool of connections of its own, one request at a time each. A
//! pooled connection has written nothing, so it first writes a marker on
//! the account's hash tag: a master replicates in order, so a replica that
//! has the marker has every change this node made on that master before it
//! (the change was answered before the marker was sent). On a cluster the
//! marker routes the pipeline to the account's master; `WAIT` has no key
//! and follows it there.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;

use super::{COMMAND_DEADLINE, Conn, Timed, unavailable};
use crate::backplane::{BackplaneError, Result};

/// Connections kept for `WAIT`: how many confirmations run at once (each
/// takes a round trip to a replica, well under a millisecond on a LAN).
pub(super) const POOL: usize = 8;
/// How long a marker lives: long enough for any `WAIT`, short enough that
/// markers never pile up (one per account and node at most).
const MARKER_TTL_MS: u64 = 60_000;

/// The pool and what it waits for.
pub(super) struct Durable {
    replicas: u32,
    timeout: Duration,
    pool: Vec<Mutex<Conn>>,
    next: AtomicUsize,
}

impl Durable {
    /// `replicas` = 0 keeps no connections and waits for nothing.
    /// `connect` makes one connection of its own (not a clone of another).
    pub(super) fn new(
        replicas: u32,
        timeout: Duration,
        connect: impl Fn() -> Result<Conn>,
    ) -> Result<Self> {
        let pool = if replicas == 0 {
            Vec::new()
        } else {
            (0..POOL)
                .map(|_| connect().map(Mutex::new))
                .collect::<Result<_>>()?
        };
        Ok(Self {
            replicas,
            timeout,
            pool,
            next: AtomicUsize::new(0),
        })
    }

    /// Writes `marker` (a key on the account's hash tag) and waits for the
    /// replicas to have it.
    pub(super) async fn confirm(&self, marker: &str) -> Result<()> {
        if self.pool.is_empty() {
            return Ok(());
        }
        let timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        // A free connection if there is one, else the next in turn, waited
        // for no longer than a confirmation may take: when replicas stall,
        // requests are answered 503 in bounded time instead of queueing
        // behind the pool without end.
        let conn = match self.pool.iter().find_map(|c| c.try_lock().ok()) {
            Some(conn) => conn,
            None => {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
                tokio::time::timeout(self.timeout, self.pool[i].lock())
                    .await
                    .map_err(|_| {
                        BackplaneError::Unconfirmed(format!(
                            "every connection for WAIT was busy for {timeout_ms} ms"
                        ))
                    })?
            }
        };
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(marker)
            .arg(1)
            .arg("PX")
            .arg(MARKER_TTL_MS)
            .ignore()
            .cmd("WAIT")
            .arg(self.replicas)
            .arg(timeout_ms);
        // The WAIT may take its whole timeout on top of any command's time.
        let mut timed = Timed::within(conn.clone(), self.timeout + COMMAND_DEADLINE);
        let (acknowledged,): (u32,) = pipe.query_async(&mut timed).await.map_err(unavailable)?;
        drop(conn);
        if acknowledged >= self.replicas {
            Ok(())
        } else {
            Err(BackplaneError::Unconfirmed(format!(
                "{acknowledged} of {} replicas confirmed within {timeout_ms} ms",
                self.replicas
            )))
        }
    }
}
