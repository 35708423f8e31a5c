//! The participant view of recent events, shared by a node's agent actors.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::lock;
use super::outbox::Prepared;
use crate::backplane::Route;
use crate::domain::{AccountId, SessionId};

/// How many recently viewed participant events a node remembers.
const VIEW_CACHE: usize = 256;

/// The participant view of recent events, by (session, version, index): a
/// session event reaches a node once per participant topic (each agent has
/// its own), and the first agent actor to see it views and serializes it
/// for all the others — what a participant sees does not depend on which
/// participant looks (`visibility.rs` checks this).
#[derive(Default)]
pub struct ViewCache {
    recent: Mutex<VecDeque<(ViewKey, Option<Arc<Prepared>>)>>,
}

type ViewKey = (AccountId, SessionId, u64, u32, Route);

impl ViewCache {
    /// The prepared view of an event, made by `make` the first time.
    pub fn get_or_make(
        &self,
        key: (&AccountId, &SessionId, u64, u32, Route),
        make: impl FnOnce() -> Option<Prepared>,
    ) -> Option<Arc<Prepared>> {
        let (account, session, version, index, route) = key;
        let mut recent = lock(&self.recent);
        if let Some((_, prepared)) = recent.iter().rev().find(|((a, s, v, i, r), _)| {
            *v == version && *i == index && *r == route && s == session && a == account
        }) {
            return prepared.clone();
        }
        let prepared = make().map(Arc::new);
        if recent.len() >= VIEW_CACHE {
            recent.pop_front();
        }
        let key = (account.clone(), session.clone(), version, index, route);
        recent.push_back((key, prepared.clone()));
        prepared
    }
}
