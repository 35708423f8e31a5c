//! The places a node gives out, so that nothing queues without bound:
//! requests in flight ([`Admission`]) and event streams per token
//! ([`StreamPermits`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::lock;

/// A token has as many event streams open on this node as it may (the
/// limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamsFull(pub usize);

/// Counts open event streams per token, so one token cannot hold more than
/// `limits.streams_per_token` on this node.
pub struct StreamPermits {
    limit: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open stream's place; gives it back when dropped (the stream ended).
pub struct StreamPermit {
    key: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
    /// The open streams of its role, on `/metrics`.
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl StreamPermits {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Arc::default(),
        }
    }

    /// A place for one more stream of the token `key`, if it has one left;
    /// `gauge` counts it while it is open.
    pub fn acquire(
        &self,
        key: &str,
        gauge: prometheus_client::metrics::gauge::Gauge,
    ) -> Result<StreamPermit, StreamsFull> {
        let mut open = lock(&self.open);
        let count = open.entry(key.to_owned()).or_default();
        if *count >= self.limit {
            return Err(StreamsFull(self.limit));
        }
        *count += 1;
        gauge.inc();
        Ok(StreamPermit {
            key: key.to_owned(),
            open: self.open.clone(),
            gauge,
        })
    }

    /// Streams open on this node, all tokens together.
    pub fn open_streams(&self) -> usize {
        lock(&self.open).values().sum()
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        self.gauge.dec();
        let mut open = lock(&self.open);
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Bounds the requests a node handles at once. Under overload a node sheds
/// what it cannot take (503 with `Retry-After`) instead of queueing it:
/// queued requests hold memory and come back too late to be of use.
pub struct Admission {
    limit: usize,
    in_flight: Arc<AtomicUsize>,
}

/// One admitted request's place; given back when the request is done.
#[derive(Debug)]
pub struct Admitted(Arc<AtomicUsize>);

impl Admission {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit,
            in_flight: Arc::default(),
        }
    }

    /// A place for one more request, if the node has one.
    pub fn try_admit(&self) -> Option<Admitted> {
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok();
        admitted.then(|| Admitted(self.in_flight.clone()))
    }

    /// Requests being handled now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_gives_at_most_its_limit_of_places_and_takes_them_back() {
        let admission = Admission::new(2);
        let a = admission.try_admit();
        let b = admission.try_admit();
        assert!(a.is_some() && b.is_some());
        assert!(admission.try_admit().is_none());
        drop(a);
        assert_eq!(admission.in_flight(), 1);
        assert!(admission.try_admit().is_some());
    }
}
