//! What the generator knows about each invitation while it is in play, and
//! the verdicts once it is settled. Pure bookkeeping, no I/O: the scenario
//! feeds it answers and stream events, carries out the accepts and leaves
//! it asks for, and reads the figures at the end.
//!
//! Memory stays bounded however long a run lasts: an invitation is judged
//! into counters and histograms as soon as it is settled (its race decided
//! and announced, every alert and withdrawal in, no accept in flight) or
//! `--grace` after it was created, whichever comes first, and its data is
//! dropped. What outlives it is compact: its id's 64-bit key (so a customer
//! stream that shows it is caught), and per (session, agent) counts for the
//! masked-agent check. Customer frames are checked as they arrive.
//!
//! An accept whose answer was lost (timeout, transport failure, 503
//! `unavailable`) is no refusal: its invitation's winner is learned from `invitation_accepted`
//! on the lead's stream, from another racer's 200, from the accepting
//! agent's own `participant_joined`, or after the drain from
//! `GET /v1/sessions/{id}/invitations/{inv}`. Such outcomes are reported as
//! `learned`, or `unknown` when nothing told, apart from invariant breaks.
//!
//! A transfer's winner becomes its session's lead as soon as the ledger
//! knows it won (however it learned it): the ledger keeps each session's
//! lead, its earlier leads and whether a transfer is open, so the scenario
//! sends from the right agent and checks the sessions after the drain.
//!
//! An escalating invitation starts with its one invitee, who is asked to
//! decline at once; when it goes to the portal (the first offer naming the
//! portal, or `invitation_escalated`), its recipients are learned from the
//! offers with its id, counted against the `recipient_count` they carry, and
//! race like any portal invitation's.
//!
//! The books are kept in rooms, one per invariant they check: `races`
//! (first accept wins: who races, the accepts planned and their answers),
//! `settle` (every recipient alerted and every loser withdrawn within the
//! grace, then judged and dropped), `lost_answers` (an accept whose answer
//! was lost is learned, not refused), `leads` (one lead per session, moved
//! by a won transfer), `escalation` (an escalating invitation's invitee
//! declines, its portal recipients race), `customer` (what a customer
//! stream must never show) and `verdict` (the settled books judged into
//! the report's counts). This file keeps the ledger itself, the invitation
//! in play and the orders the scenario carries out.

mod customer;
mod escalation;
#[cfg(test)]
mod fixtures;
mod leads;
mod lost_answers;
mod races;
mod reconcile;
mod settle;
mod verdict;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use super::report::{LeakCounts, Observed};
use super::timeline::Timeline;
use super::{Delay, LoadError};

use escalation::Esc;
pub use escalation::Escalation;
use leads::Leads;
pub use leads::Transferred;
use lost_answers::Track;
pub use lost_answers::{Lookup, Source};
use races::Pending;
pub use races::{Reply, racers_of};

/// An invitation id's 64-bit key.
pub type Key = u64;

/// The key of an invitation (or session) id: FNV-1a, then the SplitMix64
/// finaliser so every bit depends on every byte. With 64 bits, two of a
/// run's ids share a key with odds below one in a billion.
pub fn key(id: &str) -> Key {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Keys are already hashes: maps keyed by them do not hash again.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;
type KeySet = HashSet<Key, BuildHasherDefault<KeyHasher>>;

/// An accept (or a decline) the scenario is to send.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptPlan {
    /// Who accepts.
    pub agent: u32,
    /// The invitation's key.
    pub key: Key,
    /// The invitation's id.
    pub id: Rc<str>,
    /// The session it invites into.
    pub session: u32,
    /// When to send it: the alert's arrival plus the sampled delay, but
    /// never before the POST answer arrived.
    pub at: Instant,
    /// A transfer: its winner stays in the session, as its lead.
    pub transfer: bool,
    /// Not an accept: the invitee of an escalating invitation declines it
    /// (at once), so it goes to the portal.
    pub decline: bool,
}

/// A leave the scenario is to send: `agent` learned it won into `session`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leave {
    /// Who leaves.
    pub agent: u32,
    /// Which session.
    pub session: u32,
}

/// What kind of invitation was created, as far as the ledger cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kind {
    /// `kind: transfer`: its winner becomes the session's lead and stays.
    pub transfer: bool,
    /// It carries `escalate`.
    pub escalation: Escalation,
}

/// What a run is judged by.
#[derive(Debug, Clone)]
pub struct Config {
    /// The run's id: agent ids are `<prefix>-ag<i>`, comments carry `note <prefix>`.
    pub prefix: String,
    /// Agents.
    pub agents: usize,
    /// Racers per invitation.
    pub racers: usize,
    /// How long an invitation stays in play after its POST answer.
    pub grace: Duration,
    /// Alert → accept delay.
    pub accept_delay: Delay,
    /// Invitations expected in all (to size the id set once).
    pub expected_invitations: usize,
}

struct Attempt {
    agent: u32,
    sent_at: Instant,
    reply: Reply,
    /// For a lost answer: where its outcome was learned.
    learned: Option<Source>,
}

/// An invitation in play.
struct Inv {
    id: Rc<str>,
    session: u32,
    masked: bool,
    /// A transfer.
    transfer: bool,
    /// A transfer whose winner was made the session's lead.
    promoted: bool,
    /// A transfer cancelled (another transfer of its session won).
    superseded: bool,
    /// It carries `escalate`.
    esc: Option<Esc>,
    /// The POST was sent.
    sent_at: Instant,
    /// Judged by then at the latest (once no accept is in flight).
    settle_by: Instant,
    /// Agent indices, sorted, for lookups by agent.
    recipients: Vec<u32>,
    racers: Vec<u32>,
    alerted: Vec<u64>,
    alerts: u32,
    withdrawn_bits: Vec<u64>,
    /// First withdrawal per recipient.
    withdrawn: Vec<(u32, Instant)>,
    /// Recipients whose withdrawal was learned from a reopened stream's
    /// snapshot (the offer was gone from it): not timed.
    late: Vec<u32>,
    /// Accepts planned or in flight.
    inflight: u32,
    attempts: Vec<Attempt>,
    /// Distinct winners named by `invitation_accepted`.
    announced: Vec<u32>,
    /// Learned from an own join or a lookup (`Some(None)`: nobody won).
    learned: Option<(Option<u32>, Source)>,
}

fn bit(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

fn set_bit(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

impl Inv {
    fn position(&self, agent: u32) -> Option<usize> {
        self.recipients.binary_search(&agent).ok()
    }

    /// How many recipients it has: for an escalated invitation, as many as
    /// it was offered to in the portal, whether or not their offers came.
    fn recipient_count(&self) -> usize {
        match self.esc {
            Some(Esc {
                escalated: true,
                count: Some(n),
                ..
            }) => self.recipients.len().max(n as usize),
            _ => self.recipients.len(),
        }
    }

    /// The winner if anything told (`Some(None)`: nobody won), and how.
    fn decided(&self) -> Option<(Option<u32>, Source)> {
        if let Some(a) = self.attempts.iter().find(|a| a.reply == Reply::Won) {
            return Some((Some(a.agent), Source::Answer));
        }
        if let Some(w) = self.announced.first() {
            return Some((Some(*w), Source::Announcement));
        }
        self.learned
    }
}

/// The run's bookkeeping.
pub struct Ledger {
    cfg: Config,
    agent_marker: String,
    comment_marker: String,
    accept_cutoff: Option<Instant>,
    live: KeyMap<Inv>,
    pending: KeyMap<Pending>,
    /// Every invitation id seen, for the customer check and late events.
    known: KeySet,
    /// Settled with a lost answer nothing explained: waiting for a lookup.
    doubtful: KeyMap<Inv>,
    tracks: Vec<Track>,
    /// (session, agent) → agent_joined and agent_left shown to the customer.
    shown: HashMap<(u32, u32), [u32; 2]>,
    /// (session, agent) → agent_joined and agent_left the customer may see:
    /// one of each per unmasked join (and possible one: unknown outcomes),
    /// one agent_left per transfer it handed the session over by.
    allowed: HashMap<(u32, u32), [u32; 2]>,
    /// Per session: its lead, earlier leads, open transfer.
    leads: Vec<Leads>,
    /// Transfers judged without a winner: still open on the server until
    /// another transfer of their session wins and cancels them.
    unwon_transfers: KeySet,
    leaks: LeakCounts,
    plans: Vec<AcceptPlan>,
    leaves: Vec<Leave>,
    scratch: Vec<Key>,
    /// Per agent: since when its stream is down (`None`: open), and when it
    /// last came back.
    down: Vec<Down>,
    /// The run's timeline, when it keeps one: live and late alerts land there.
    timeline: Option<Rc<RefCell<Timeline>>>,
    tally: Observed,
}

/// One agent's stream, as far as judging its alerts goes.
#[derive(Debug, Clone, Copy, Default)]
struct Down {
    since: Option<Instant>,
    back_at: Option<Instant>,
}

impl Ledger {
    /// Nothing known yet.
    pub fn new(cfg: Config) -> Result<Self, LoadError> {
        let tally = Observed::new(cfg.prefix.clone())?;
        let mut known = KeySet::default();
        known.reserve(cfg.expected_invitations + cfg.expected_invitations / 8);
        Ok(Self {
            agent_marker: format!("{}-ag", cfg.prefix),
            comment_marker: format!("note {}", cfg.prefix),
            accept_cutoff: None,
            live: KeyMap::default(),
            pending: KeyMap::default(),
            known,
            doubtful: KeyMap::default(),
            tracks: (0..cfg.agents).map(|_| Track::default()).collect(),
            shown: HashMap::new(),
            allowed: HashMap::new(),
            leads: Vec::new(),
            unwon_transfers: KeySet::default(),
            leaks: LeakCounts::default(),
            plans: Vec::new(),
            leaves: Vec::new(),
            scratch: Vec::new(),
            down: vec![Down::default(); cfg.agents],
            timeline: None,
            tally,
            cfg,
        })
    }

    /// Live and late alerts are also counted per second on `timeline`.
    pub fn set_timeline(&mut self, timeline: Rc<RefCell<Timeline>>) {
        self.timeline = Some(timeline);
    }

    /// Alerts arriving from now on start no accept.
    pub fn set_accept_cutoff(&mut self, at: Instant) {
        self.accept_cutoff = Some(at);
    }

    /// Accepts to send, taken out (the vector keeps its capacity for reuse).
    pub fn take_plans(&mut self, into: &mut Vec<AcceptPlan>) {
        into.append(&mut self.plans);
    }

    /// Leaves to send, taken out.
    pub fn take_leaves(&mut self, into: &mut Vec<Leave>) {
        into.append(&mut self.leaves);
    }

    /// True when accepts or leaves wait to be taken.
    pub fn has_orders(&self) -> bool {
        !self.plans.is_empty() || !self.leaves.is_empty()
    }

    /// Invitations in play and alerts waiting for their answer.
    pub fn in_play(&self) -> (usize, usize) {
        (self.live.len(), self.pending.len())
    }

    /// Accepts planned or in flight, over all invitations.
    pub fn accepts_in_flight(&self) -> usize {
        self.tracks.iter().map(|t| t.inflight.len()).sum()
    }
}

fn find<'a>(
    live: &'a mut KeyMap<Inv>,
    doubtful: &'a mut KeyMap<Inv>,
    k: Key,
) -> Option<&'a mut Inv> {
    match live.get_mut(&k) {
        Some(inv) => Some(inv),
        None => doubtful.get_mut(&k),
    }
}
