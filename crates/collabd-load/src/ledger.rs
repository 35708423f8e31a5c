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

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::report::{LeakCounts, Observed};
use super::{Delay, LoadError};

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

/// How long alerts wait for their invitation's POST answer before they are
/// given up as orphans: the answer's own time limit, and a margin.
const PENDING_LIMIT: Duration = Duration::from_secs(12);
/// A win of an agent in a session explains its `participant_joined` there
/// for this long: such joins are never taken for a lost answer's.
const JOIN_WINDOW: Duration = Duration::from_secs(10);

/// The recipients who race for invitation `id`: a window of `racers`
/// consecutive entries of its recipient list (in the order of the POST
/// answer) from a position drawn from the id, so the verdict is the same
/// every time it is computed.
pub fn racers_of(id: &str, recipients: &[u32], racers: usize) -> Vec<u32> {
    let n = recipients.len();
    if n == 0 {
        return Vec::new();
    }
    let offset = (key(id) % n as u64) as usize;
    (0..racers.min(n))
        .map(|i| recipients[(offset + i) % n])
        .collect()
}

/// How an accept ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// 2xx: it joined.
    Won,
    /// 409 `invitation_taken`: someone else was first.
    Taken,
    /// Any other refusal.
    Refused,
    /// No answer (timeout, transport failure) or 503 `unavailable` (the
    /// change may or may not persist): the outcome must be learned.
    Lost,
}

/// Where a lost answer's outcome was learned from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Another racer's 2xx.
    Answer,
    /// `invitation_accepted` on the session agents' streams.
    Announcement,
    /// The accepting agent's own `participant_joined`.
    OwnJoin,
    /// `GET /v1/sessions/{id}/invitations/{inv}` after the drain.
    Lookup,
}

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

/// An invitation whose outcome only a lookup can tell.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    /// Its key.
    pub key: Key,
    /// Its id.
    pub id: Rc<str>,
    /// Its session.
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

/// Where an invitation carrying `escalate` stood when it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Escalation {
    /// It carries none.
    #[default]
    None,
    /// With its invitee (the POST answer's one recipient) for now.
    Armed,
    /// It went to the portal at once (its invitee was offline or busy): the
    /// POST answer's recipients are the portal's.
    AtSend,
}

/// A session the run transferred: what the check after the drain compares
/// the session's agent view with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transferred {
    /// The session.
    pub session: u32,
    /// Its lead as the run knows it.
    pub lead: u32,
    /// Every agent that led it before, the lead excepted.
    pub previous: Vec<u32>,
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

/// The one invitee of an escalating invitation, apart from the recipients
/// it has after it escalated.
#[derive(Debug, Clone, Copy)]
struct Invitee {
    agent: u32,
    alerted: bool,
    withdrawn: bool,
    /// Its decline was sent.
    declined: bool,
    /// When the decline was planned (its alert, or the POST answer).
    declined_at: Option<Instant>,
}

/// An escalating invitation's state.
#[derive(Debug, Clone, Copy)]
struct Esc {
    /// `None` when it went to the portal at once.
    invitee: Option<Invitee>,
    /// It went to the portal.
    escalated: bool,
    /// How many agents it was offered to there, once known.
    count: Option<u32>,
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

    /// Still with its invitee, waiting to escalate.
    fn armed(&self) -> bool {
        self.esc
            .is_some_and(|e| !e.escalated && e.invitee.is_some())
    }

    /// The invitee of an escalating invitation, when `agent` is it.
    fn invitee(&mut self, agent: u32) -> Option<&mut Invitee> {
        self.esc
            .as_mut()
            .and_then(|e| e.invitee.as_mut())
            .filter(|i| i.agent == agent)
    }

    /// Registers `agent` as a recipient (an escalated invitation learns
    /// them from their offers) and returns its position.
    fn add_recipient(&mut self, agent: u32) -> usize {
        let p = match self.recipients.binary_search(&agent) {
            Ok(p) => return p,
            Err(p) => p,
        };
        let flagged = |bits: &[u64], list: &[u32]| -> Vec<u32> {
            (0..list.len())
                .filter(|i| bit(bits, *i))
                .map(|i| list[i])
                .collect()
        };
        let alerted = flagged(&self.alerted, &self.recipients);
        let withdrawn = flagged(&self.withdrawn_bits, &self.recipients);
        self.recipients.insert(p, agent);
        let words = self.recipients.len().div_ceil(64);
        let (mut a, mut w) = (vec![0; words], vec![0; words]);
        for (flags, bits) in [(alerted, &mut a), (withdrawn, &mut w)] {
            for agent in flags {
                if let Ok(i) = self.recipients.binary_search(&agent) {
                    set_bit(bits, i);
                }
            }
        }
        (self.alerted, self.withdrawn_bits) = (a, w);
        p
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

    fn has_doubt(&self) -> bool {
        self.attempts
            .iter()
            .any(|a| a.reply == Reply::Lost && a.learned.is_none())
    }

    /// Nothing more is to be learned before the grace ends.
    fn complete(&self) -> bool {
        // Armed: it escalates (or not) within the grace; escalated: how
        // many it went to is not known before an offer or the event says.
        let unknown_count = self.esc.is_some_and(|e| e.escalated && e.count.is_none());
        if self.inflight > 0
            || self.armed()
            || unknown_count
            || self.alerts as usize != self.recipient_count()
        {
            return false;
        }
        match self.decided() {
            // Nobody raced (or every racer was refused and the refusals
            // wait for the grace): done once no accept happened at all.
            None => self.attempts.is_empty(),
            Some((None, _)) => false,
            Some((Some(w), _)) => {
                let exempt = usize::from(
                    self.position(w)
                        .is_some_and(|p| bit(&self.withdrawn_bits, p)),
                );
                let owed = self.recipient_count() - usize::from(self.position(w).is_some());
                !self.announced.is_empty() && self.withdrawn.len() - exempt == owed
            }
        }
    }
}

/// Per agent: what attributing its own `participant_joined` to a lost
/// answer needs, kept only while it has an accept in flight or in doubt.
#[derive(Default)]
struct Track {
    /// Sessions of its accepts planned or in flight.
    inflight: Vec<u32>,
    /// Invitations where its answer was lost and the outcome is not known.
    doubts: Vec<Key>,
    /// Its own joins seen meanwhile: (session, masked, at, claimed).
    joins: Vec<(u32, bool, Instant, bool)>,
    /// Its last answered wins: (session, accept sent at).
    wins: Vec<(u32, Instant)>,
}

impl Track {
    fn tracking(&self) -> bool {
        !self.inflight.is_empty() || !self.doubts.is_empty()
    }

    fn tidy(&mut self) {
        if !self.tracking() {
            self.joins.clear();
        }
    }

    fn done(&mut self, session: u32) {
        if let Some(i) = self.inflight.iter().position(|s| *s == session) {
            self.inflight.swap_remove(i);
        }
    }
}

/// Alerts whose POST answer has not arrived yet.
struct Pending {
    first_at: Instant,
    alerts: Vec<(u32, Instant)>,
}

#[derive(Deserialize)]
struct NameOnly<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
}

#[derive(Deserialize)]
struct AgentNamed<'a> {
    #[serde(borrow)]
    agent: NameOnly<'a>,
}

/// One session's leads.
#[derive(Debug, Clone, Default)]
struct Leads {
    current: u32,
    /// Agents that led it before, in order (the current one may be among
    /// them, if it led before).
    previous: Vec<u32>,
    /// A transfer of it is being sent or in play.
    transfer_open: bool,
    /// Transfers of it that were won.
    completed: u32,
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
    tally: Observed,
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
            tally,
            cfg,
        })
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

    /// Session `session` was opened, led by `lead` (sessions are numbered
    /// from 0 in the order they are opened).
    pub fn opened(&mut self, session: u32, lead: u32) {
        let s = session as usize;
        if self.leads.len() <= s {
            self.leads.resize(s + 1, Leads::default());
        }
        self.leads[s] = Leads {
            current: lead,
            ..Leads::default()
        };
    }

    /// Session `session`'s lead, as far as the run knows.
    pub fn lead(&self, session: u32) -> Option<u32> {
        self.leads.get(session as usize).map(|l| l.current)
    }

    /// True while a transfer of `session` is being sent or in play.
    pub fn transfer_open(&self, session: u32) -> bool {
        self.leads
            .get(session as usize)
            .is_some_and(|l| l.transfer_open)
    }

    /// Reserves `session` for a transfer about to be sent: false (and
    /// nothing reserved) when one is open already.
    pub fn begin_transfer(&mut self, session: u32) -> bool {
        match self.leads.get_mut(session as usize) {
            Some(l) if !l.transfer_open => {
                l.transfer_open = true;
                true
            }
            _ => false,
        }
    }

    /// The transfer reserved for `session` was not created.
    pub fn transfer_not_created(&mut self, session: u32) {
        if let Some(l) = self.leads.get_mut(session as usize) {
            l.transfer_open = false;
        }
    }

    /// The sessions that were transferred, with their lead and earlier leads.
    pub fn transferred(&self) -> Vec<Transferred> {
        self.leads
            .iter()
            .enumerate()
            .filter(|(_, l)| l.completed > 0)
            .map(|(s, l)| {
                let mut previous: Vec<u32> = l
                    .previous
                    .iter()
                    .copied()
                    .filter(|a| *a != l.current)
                    .collect();
                previous.sort_unstable();
                previous.dedup();
                Transferred {
                    session: s as u32,
                    lead: l.current,
                    previous,
                }
            })
            .collect()
    }

    /// Transfer winner `winner` now leads `session`; the lead it took over
    /// from left, which the customer sees (`agent_left`).
    fn promote(&mut self, session: u32, winner: u32) {
        let Some(l) = self.leads.get_mut(session as usize) else {
            return;
        };
        l.transfer_open = false;
        l.completed += 1;
        self.tally.transfers.completed += 1;
        if l.current != winner {
            let old = std::mem::replace(&mut l.current, winner);
            l.previous.push(old);
            self.allowed.entry((session, old)).or_default()[1] += 1;
        }
    }

    /// The invitation POST was answered 201 at `answered_at` with this id
    /// and these recipients (agent indices, in the answer's order); `kind`
    /// says whether it is a transfer and whether it escalates.
    #[allow(clippy::too_many_arguments)]
    pub fn invited(
        &mut self,
        id: &str,
        session: u32,
        masked: bool,
        sent_at: Instant,
        answered_at: Instant,
        recipients: Vec<u32>,
        kind: Kind,
    ) {
        let k = key(id);
        self.tally.invitations += 1;
        self.tally
            .invite
            .record(answered_at.saturating_duration_since(sent_at));
        self.known.insert(k);
        let esc = match kind.escalation {
            Escalation::None => None,
            // Its one recipient is the invitee: it declines, it does not race.
            Escalation::Armed => Some(Esc {
                invitee: recipients.first().map(|agent| Invitee {
                    agent: *agent,
                    alerted: false,
                    withdrawn: false,
                    declined: false,
                    declined_at: None,
                }),
                escalated: false,
                count: None,
            }),
            Escalation::AtSend => {
                self.tally.escalations.escalated += 1;
                Some(Esc {
                    invitee: None,
                    escalated: true,
                    count: Some(recipients.len() as u32),
                })
            }
        };
        let recipients = if kind.escalation == Escalation::Armed {
            Vec::new()
        } else {
            recipients
        };
        let racers = racers_of(id, &recipients, self.cfg.racers);
        let mut sorted = recipients;
        sorted.sort_unstable();
        sorted.dedup();
        let words = sorted.len().div_ceil(64);
        let inv = Inv {
            id: Rc::from(id),
            session,
            masked,
            transfer: kind.transfer,
            promoted: false,
            superseded: false,
            esc,
            sent_at,
            settle_by: answered_at + self.cfg.grace,
            racers,
            alerted: vec![0; words],
            alerts: 0,
            withdrawn_bits: vec![0; words],
            withdrawn: Vec::new(),
            recipients: sorted,
            inflight: 0,
            attempts: Vec::new(),
            announced: Vec::new(),
            learned: None,
        };
        self.live.insert(k, inv);
        if let Some(pending) = self.pending.remove(&k) {
            for (agent, at) in pending.alerts {
                self.alert_known(k, agent, at, answered_at, None);
            }
        }
        self.maybe_settle(k);
    }

    /// `invitation_offered` for `id` reached `agent` at `at`.
    pub fn alert(&mut self, id: &str, agent: u32, at: Instant) {
        self.offered(id, agent, at, None);
    }

    /// [`Ledger::alert`], with what the offer says of its target:
    /// `to_portal` is `Some(recipient_count)` when it names a portal (an
    /// escalating invitation's first such offer tells it escalated).
    pub fn offered(&mut self, id: &str, agent: u32, at: Instant, to_portal: Option<u32>) {
        let k = key(id);
        if self.live.contains_key(&k) {
            self.alert_known(k, agent, at, at, to_portal);
            self.maybe_settle(k);
        } else if let Some(pending) = self.pending.get_mut(&k) {
            pending.alerts.push((agent, at));
        } else if self.known.contains(&k) {
            self.tally.late_events += 1;
        } else {
            self.known.insert(k);
            self.pending.insert(
                k,
                Pending {
                    first_at: at,
                    alerts: vec![(agent, at)],
                },
            );
        }
    }

    /// `invitation_escalated` for `id`, which now goes to `recipient_count`
    /// agents of the portal.
    pub fn escalated(&mut self, id: &str, recipient_count: u32) {
        let k = key(id);
        let Some(inv) = self.live.get_mut(&k) else {
            return;
        };
        let Some(e) = inv.esc.as_mut() else {
            return;
        };
        if !e.escalated {
            e.escalated = true;
            self.tally.escalations.escalated += 1;
        }
        e.count.get_or_insert(recipient_count);
        self.maybe_settle(k);
    }

    fn alert_known(
        &mut self,
        k: Key,
        agent: u32,
        at: Instant,
        now: Instant,
        to_portal: Option<u32>,
    ) {
        let Some(inv) = self.live.get_mut(&k) else {
            return;
        };
        let in_time = self.accept_cutoff.is_none_or(|cutoff| at < cutoff);
        let sent_at = inv.sent_at;
        // The invitee's own offer: it declines at once, so it escalates.
        if to_portal.is_none()
            && let Some(invitee) = inv.invitee(agent)
        {
            if invitee.alerted {
                return;
            }
            invitee.alerted = true;
            self.tally
                .invite_to_alert
                .record(at.saturating_duration_since(sent_at));
            if in_time && !invitee.declined {
                invitee.declined = true;
                invitee.declined_at = Some(at.max(now));
                self.plans.push(AcceptPlan {
                    agent,
                    key: k,
                    id: Rc::clone(&inv.id),
                    session: inv.session,
                    at: at.max(now),
                    transfer: inv.transfer,
                    decline: true,
                });
            }
            return;
        }
        // Escalated from its invitee: its recipients are whoever the
        // portal's offers reach, the first `racers` of them race.
        let mut since_decline = None;
        if let Some(e) = inv.esc.as_mut()
            && let Some(invitee) = e.invitee
        {
            if invitee.agent == agent {
                return;
            }
            match to_portal {
                Some(count) if !e.escalated => {
                    e.escalated = true;
                    e.count = Some(count);
                    self.tally.escalations.escalated += 1;
                }
                Some(count) => {
                    e.count.get_or_insert(count);
                }
                None => {}
            }
            if !e.escalated {
                return;
            }
            since_decline = invitee.declined_at;
            inv.add_recipient(agent);
            if inv.racers.len() < self.cfg.racers && !inv.racers.contains(&agent) {
                inv.racers.push(agent);
            }
        }
        let Some(p) = inv.position(agent) else {
            return;
        };
        if bit(&inv.alerted, p) {
            return;
        }
        set_bit(&mut inv.alerted, p);
        inv.alerts += 1;
        match (inv.esc, since_decline) {
            // Measured from the invitee's decline: the time it took to
            // escalate, not the invitee's own delay.
            (
                Some(Esc {
                    invitee: Some(_), ..
                }),
                Some(declined),
            ) => self
                .tally
                .decline_to_offer
                .record(at.saturating_duration_since(declined)),
            (
                Some(Esc {
                    invitee: Some(_), ..
                }),
                None,
            ) => {}
            _ => self
                .tally
                .invite_to_alert
                .record(at.saturating_duration_since(sent_at)),
        }
        if in_time && inv.racers.contains(&agent) {
            let delay = self.cfg.accept_delay.sample(&mut rand::rng());
            inv.inflight += 1;
            if let Some(track) = self.tracks.get_mut(agent as usize) {
                track.inflight.push(inv.session);
            }
            self.plans.push(AcceptPlan {
                agent,
                key: k,
                id: Rc::clone(&inv.id),
                session: inv.session,
                at: (at + delay).max(now),
                transfer: inv.transfer,
                decline: false,
            });
        }
    }

    /// `invitation_withdrawn` for `id` reached `agent` at `at`.
    pub fn withdrawn(&mut self, id: &str, agent: u32, at: Instant) {
        self.withdrawn_for(id, agent, at, false);
    }

    /// [`Ledger::withdrawn`], with its reason: `cancelled` for reason
    /// `cancelled` (a transfer cancelled so is one another transfer of its
    /// session superseded).
    pub fn withdrawn_for(&mut self, id: &str, agent: u32, at: Instant, cancelled: bool) {
        let k = key(id);
        if cancelled && self.unwon_transfers.remove(&k) {
            // Judged already, without a winner; cancelled now.
            self.tally.transfers.superseded += 1;
            return;
        }
        let inv = match self.live.get_mut(&k) {
            Some(inv) => inv,
            None => match self.doubtful.get_mut(&k) {
                Some(inv) => inv,
                None => {
                    if self.known.contains(&k) && !self.pending.contains_key(&k) {
                        self.tally.late_events += 1;
                    }
                    return;
                }
            },
        };
        if cancelled && inv.transfer && !inv.superseded {
            inv.superseded = true;
            self.tally.transfers.superseded += 1;
        }
        if let Some(invitee) = inv.invitee(agent) {
            invitee.withdrawn = true;
            self.maybe_settle(k);
            return;
        }
        if inv.esc.is_some_and(|e| e.escalated && e.invitee.is_some()) {
            inv.add_recipient(agent);
        }
        if let Some(p) = inv.position(agent)
            && !bit(&inv.withdrawn_bits, p)
        {
            set_bit(&mut inv.withdrawn_bits, p);
            inv.withdrawn.push((agent, at));
        }
        self.maybe_settle(k);
    }

    /// `invitation_accepted` for `id` on the session agents' streams, naming
    /// `by` (`None`: no agent of this run).
    pub fn announced(&mut self, id: &str, by: Option<u32>) {
        let k = key(id);
        let Some(by) = by else { return };
        let Some(inv) = find(&mut self.live, &mut self.doubtful, k) else {
            return;
        };
        if !inv.announced.contains(&by) {
            inv.announced.push(by);
        }
        let promoted = resolve(k, inv, &mut self.tracks, &mut self.leaves);
        self.promote_winner(promoted);
        self.maybe_settle(k);
    }

    /// `agent`'s own stream showed it joining `session` (`masked` as shown).
    pub fn joined(&mut self, agent: u32, session: u32, masked: bool, at: Instant) {
        let Some(track) = self.tracks.get_mut(agent as usize) else {
            return;
        };
        if !track.tracking() {
            return;
        }
        track.joins.push((session, masked, at, false));
        self.attribute(agent);
    }

    /// The accept `agent` sent at `sent_at` for invitation `k` ended with
    /// `reply` at `answered_at`.
    pub fn replied(
        &mut self,
        k: Key,
        agent: u32,
        session: u32,
        sent_at: Instant,
        answered_at: Instant,
        reply: Reply,
    ) {
        if reply != Reply::Lost {
            self.tally.accepts += 1;
            self.tally
                .accept
                .record(answered_at.saturating_duration_since(sent_at));
        }
        if reply == Reply::Taken {
            self.tally.lost_races += 1;
        }
        let found = find(&mut self.live, &mut self.doubtful, k).is_some();
        if let Some(track) = self.tracks.get_mut(agent as usize) {
            track.done(session);
            if reply == Reply::Won {
                if track.wins.len() >= 4 {
                    track.wins.remove(0);
                }
                track.wins.push((session, sent_at));
            }
            if reply == Reply::Lost && found {
                track.doubts.push(k);
            }
        }
        if let Some(inv) = find(&mut self.live, &mut self.doubtful, k) {
            inv.inflight = inv.inflight.saturating_sub(1);
            inv.attempts.push(Attempt {
                agent,
                sent_at,
                reply,
                learned: None,
            });
            let promoted = resolve(k, inv, &mut self.tracks, &mut self.leaves);
            self.promote_winner(promoted);
        }
        if reply == Reply::Lost {
            self.attribute(agent);
        }
        if let Some(track) = self.tracks.get_mut(agent as usize) {
            track.tidy();
        }
        self.maybe_settle(k);
    }

    /// A planned accept was never sent (too close to the run's end).
    pub fn dropped(&mut self, k: Key, agent: u32, session: u32) {
        if let Some(track) = self.tracks.get_mut(agent as usize) {
            track.done(session);
            track.tidy();
        }
        if let Some(inv) = find(&mut self.live, &mut self.doubtful, k) {
            inv.inflight = inv.inflight.saturating_sub(1);
        }
        self.maybe_settle(k);
    }

    /// Takes `agent`'s own join as the outcome of its lost answer when
    /// nothing else can explain it: exactly one undecided invitation of that
    /// session is in doubt for it, no other accept of it into that session
    /// is in flight, and it has more joins there (as masked as the
    /// invitation, after the accept was sent) than recent answered wins.
    fn attribute(&mut self, agent: u32) {
        let Some(track) = self.tracks.get(agent as usize) else {
            return;
        };
        let mut chosen = None;
        for k in &track.doubts {
            let Some(inv) = self.live.get(k).or_else(|| self.doubtful.get(k)) else {
                continue;
            };
            if inv.decided().is_some() || track.inflight.contains(&inv.session) {
                continue;
            }
            let same_session = track
                .doubts
                .iter()
                .filter_map(|d| self.live.get(d).or_else(|| self.doubtful.get(d)))
                .filter(|other| other.session == inv.session && other.decided().is_none())
                .count();
            if same_session != 1 {
                continue;
            }
            let Some(sent) = inv
                .attempts
                .iter()
                .filter(|a| a.agent == agent && a.reply == Reply::Lost)
                .map(|a| a.sent_at)
                .min()
            else {
                continue;
            };
            let joins: Vec<usize> = track
                .joins
                .iter()
                .enumerate()
                .filter(|(_, (s, masked, at, claimed))| {
                    *s == inv.session && *masked == inv.masked && *at >= sent && !claimed
                })
                .map(|(i, _)| i)
                .collect();
            let explained = track
                .wins
                .iter()
                .filter(|(s, at)| *s == inv.session && *at + JOIN_WINDOW >= sent)
                .count();
            if joins.len() > explained {
                chosen = Some((*k, joins[0]));
                break;
            }
        }
        let Some((k, join)) = chosen else { return };
        if let Some(track) = self.tracks.get_mut(agent as usize) {
            track.joins[join].3 = true;
        }
        if let Some(inv) = find(&mut self.live, &mut self.doubtful, k) {
            inv.learned = Some((Some(agent), Source::OwnJoin));
            let promoted = resolve(k, inv, &mut self.tracks, &mut self.leaves);
            self.promote_winner(promoted);
        }
        self.maybe_settle(k);
    }

    fn promote_winner(&mut self, promoted: Option<(u32, u32)>) {
        if let Some((session, winner)) = promoted {
            self.promote(session, winner);
        }
    }

    fn maybe_settle(&mut self, k: Key) {
        if self.live.get(&k).is_some_and(Inv::complete) {
            self.settle(k);
        }
    }

    fn settle(&mut self, k: Key) {
        let Some(inv) = self.live.remove(&k) else {
            return;
        };
        if inv.has_doubt() && inv.decided().is_none() {
            self.doubtful.insert(k, inv);
        } else {
            self.judge(inv);
        }
    }

    /// Settles what is overdue and gives up alerts whose answer never came.
    pub fn sweep(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.scratch);
        due.extend(
            self.live
                .iter()
                .filter(|(_, inv)| inv.inflight == 0 && now >= inv.settle_by)
                .map(|(k, _)| *k),
        );
        for k in due.drain(..) {
            self.settle(k);
        }
        self.scratch = due;
        let orphans = &mut self.tally.orphan_alerts;
        self.pending.retain(|_, p| {
            let keep = now < p.first_at + PENDING_LIMIT;
            if !keep {
                *orphans += p.alerts.len() as u64;
            }
            keep
        });
    }

    /// The drain is over: settles everything still in play and returns the
    /// invitations whose outcome only a lookup can tell.
    pub fn finish_run(&mut self) -> Vec<Lookup> {
        let keys: Vec<Key> = self.live.keys().copied().collect();
        for k in keys {
            self.settle(k);
        }
        for p in self.pending.drain() {
            self.tally.orphan_alerts += p.1.alerts.len() as u64;
        }
        self.doubtful
            .iter()
            .map(|(k, inv)| Lookup {
                key: *k,
                id: Rc::clone(&inv.id),
                session: inv.session,
            })
            .collect()
    }

    /// What the lookup of invitation `k` told: `Some(winner)` (`None`:
    /// nobody accepted it), or `None` when the lookup failed.
    pub fn looked_up(&mut self, k: Key, outcome: Option<Option<u32>>) {
        let Some(mut inv) = self.doubtful.remove(&k) else {
            return;
        };
        if let Some(winner) = outcome
            && inv.decided().is_none()
        {
            inv.learned = Some((winner, Source::Lookup));
            let promoted = resolve(k, &mut inv, &mut self.tracks, &mut self.leaves);
            self.promote_winner(promoted);
        }
        self.judge(inv);
    }

    /// Judges one settled invitation into the figures and drops it.
    fn judge(&mut self, inv: Inv) {
        if inv.transfer && !inv.promoted {
            // Nobody took it: the session may be transferred again, and this
            // one stays open on the server until another transfer wins.
            self.transfer_not_created(inv.session);
            if !inv.superseded {
                self.unwon_transfers.insert(key(&inv.id));
            }
        }
        let o = &mut self.tally;
        o.alerts += u64::from(inv.alerts);
        o.missing_alerts += (inv.recipient_count() - inv.alerts as usize) as u64;
        let escalated = inv.esc.is_some_and(|e| e.escalated);
        if let Some(invitee) = inv.esc.and_then(|e| e.invitee) {
            o.alerts += u64::from(invitee.alerted);
            o.missing_alerts += u64::from(!invitee.alerted);
            // Escalated while it still held it: its alert is withdrawn
            // (reason `escalated`); a decline leaves nothing to withdraw.
            if escalated && invitee.alerted && !invitee.declined && !invitee.withdrawn {
                o.missing_withdrawals += 1;
            }
        }
        let mut winners: Vec<u32> = Vec::new();
        for w in inv
            .attempts
            .iter()
            .filter(|a| a.reply == Reply::Won)
            .map(|a| a.agent)
            .chain(inv.announced.iter().copied())
        {
            if !winners.contains(&w) {
                winners.push(w);
            }
        }
        if winners.is_empty()
            && let Some((Some(w), _)) = inv.learned
        {
            winners.push(w);
        }
        for a in inv.attempts.iter().filter(|a| a.reply == Reply::Lost) {
            match a.learned {
                Some(source) => {
                    o.learned += 1;
                    let by = &mut o.learned_from;
                    *match source {
                        Source::Answer => &mut by.other_answer,
                        Source::Announcement => &mut by.invitation_accepted,
                        Source::OwnJoin => &mut by.participant_joined,
                        Source::Lookup => &mut by.lookup,
                    } += 1;
                }
                None => {
                    o.unknown += 1;
                    // It may have joined: its name may reach the customer.
                    if !inv.masked {
                        let allowed = self.allowed.entry((inv.session, a.agent)).or_default();
                        allowed[0] += 1;
                        allowed[1] += 1;
                    }
                }
            }
        }
        match winners.as_slice() {
            [] => {
                // Someone accepted and every answer said it was taken, yet
                // nobody has it: the claim went nowhere.
                if !inv.attempts.is_empty() && inv.attempts.iter().all(|a| a.reply == Reply::Taken)
                {
                    o.no_winners += 1;
                }
            }
            [w] => {
                o.winners += 1;
                o.escalations.won += u64::from(escalated);
                let closed_at = inv
                    .attempts
                    .iter()
                    .filter(|a| a.agent == *w && matches!(a.reply, Reply::Won | Reply::Lost))
                    .map(|a| a.sent_at)
                    .min();
                if let Some(closed) = closed_at {
                    for (_, at) in inv.withdrawn.iter().filter(|(a, _)| a != w) {
                        o.withdraw.record(at.saturating_duration_since(closed));
                    }
                }
                let owed = inv.recipient_count() - usize::from(inv.position(*w).is_some());
                let got = inv.withdrawn.iter().filter(|(a, _)| a != w).count();
                o.missing_withdrawals += owed.saturating_sub(got) as u64;
            }
            _ => o.double_winners += 1,
        }
        if !inv.masked {
            for w in winners {
                let allowed = self.allowed.entry((inv.session, w)).or_default();
                allowed[0] += 1;
                allowed[1] += 1;
            }
        }
    }

    /// One event of session `session`'s customer stream: flags at once
    /// whatever a customer must never see (an agent id, a comment, an
    /// invitation id) and counts the agents shown joining and leaving.
    pub fn customer_frame(&mut self, session: u32, name: &str, data: &str) {
        self.tally.customer_events += 1;
        if data.contains(&self.agent_marker) {
            self.leaks.agent_id += 1;
            return;
        }
        if data.contains(&self.comment_marker) {
            self.leaks.comment += 1;
            return;
        }
        let tokens = data.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        if tokens
            .filter(|t| !t.is_empty())
            .any(|t| self.known.contains(&key(t)))
        {
            self.leaks.invitation_id += 1;
            return;
        }
        let shown = match name {
            "agent_joined" => 0,
            "agent_left" => 1,
            _ => return,
        };
        let agent = serde_json::from_str::<AgentNamed<'_>>(data)
            .ok()
            .and_then(|a| a.agent.name.strip_prefix("Agent ")?.parse::<u32>().ok())
            .filter(|a| (*a as usize) < self.cfg.agents);
        match agent {
            Some(agent) => self.shown.entry((session, agent)).or_default()[shown] += 1,
            None => self.leaks.unreadable += 1,
        }
    }

    /// The figures: judges what is left and counts the masked agents shown
    /// to customers (an agent shown joining or leaving a session more often
    /// than it joined it unmasked — or, for leaving, than it joined it
    /// unmasked plus handed it over by a transfer).
    pub fn finish(&mut self) -> Observed {
        let keys: Vec<Key> = self.live.keys().copied().collect();
        for k in keys {
            self.settle(k);
        }
        let doubtful: Vec<Inv> = self.doubtful.drain().map(|(_, inv)| inv).collect();
        for inv in doubtful {
            self.judge(inv);
        }
        for (at, [joined, left]) in &self.shown {
            let [may_join, may_leave] = self.allowed.get(at).copied().unwrap_or_default();
            self.leaks.masked_agent += u64::from(joined.saturating_sub(may_join))
                + u64::from(left.saturating_sub(may_leave));
        }
        self.shown.clear();
        self.tally.customer_leaks = self.leaks.total();
        self.tally.leaks = self.leaks;
        self.tally.clone()
    }

    /// The figures so far (for tests and progress).
    pub fn tally(&self) -> &Observed {
        &self.tally
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

/// Once an invitation's outcome is known, every lost answer of it is
/// learned; a lost answer that won is told to leave, as answered winners do
/// — unless it won a transfer: then it stays, and the (session, winner) to
/// make lead is returned, once.
fn resolve(
    k: Key,
    inv: &mut Inv,
    tracks: &mut [Track],
    leaves: &mut Vec<Leave>,
) -> Option<(u32, u32)> {
    let (winner, source) = inv.decided()?;
    for a in inv
        .attempts
        .iter_mut()
        .filter(|a| a.reply == Reply::Lost && a.learned.is_none())
    {
        a.learned = Some(source);
        if let Some(track) = tracks.get_mut(a.agent as usize) {
            if let Some(i) = track.doubts.iter().position(|d| *d == k) {
                track.doubts.swap_remove(i);
            }
            track.tidy();
        }
        if winner == Some(a.agent) && !inv.transfer {
            leaves.push(Leave {
                agent: a.agent,
                session: inv.session,
            });
        }
    }
    let winner = winner.filter(|_| inv.transfer && !inv.promoted)?;
    inv.promoted = true;
    Some((inv.session, winner))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(5);

    fn ledger() -> Ledger {
        Ledger::new(Config {
            prefix: "ldx".into(),
            agents: 20,
            racers: 3,
            grace: GRACE,
            accept_delay: Delay::Fixed(Duration::from_millis(10)),
            expected_invitations: 16,
        })
        .unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn plans(l: &mut Ledger) -> Vec<AcceptPlan> {
        let mut out = Vec::new();
        l.take_plans(&mut out);
        out
    }

    fn leaves(l: &mut Ledger) -> Vec<Leave> {
        let mut out = Vec::new();
        l.take_leaves(&mut out);
        out
    }

    /// Sends invitation `id` from session 0 to agents 1..=5 at `t0` and
    /// delivers every alert; returns the accepts it asks for.
    fn offered(l: &mut Ledger, id: &str, masked: bool, t0: Instant) -> Vec<AcceptPlan> {
        l.invited(
            id,
            0,
            masked,
            t0,
            t0 + ms(2),
            vec![1, 2, 3, 4, 5],
            Kind::default(),
        );
        for a in 1..=5 {
            l.alert(id, a, t0 + ms(3));
        }
        plans(l)
    }

    #[test]
    fn exactly_racers_recipients_race_and_all_agree() {
        let recipients: Vec<u32> = (0..10).collect();
        for inv in ["inv-1", "inv-2", "inv-xyz"] {
            let racing = racers_of(inv, &recipients, 3);
            assert_eq!(racing.len(), 3);
            assert_eq!(racing, racers_of(inv, &recipients, 3));
            assert!(racing.iter().all(|r| recipients.contains(r)));
        }
        assert_eq!(racers_of("inv-1", &[7], 3), vec![7]);
        assert!(racers_of("inv-1", &[], 3).is_empty());
    }

    #[test]
    fn an_alert_before_its_answer_waits_and_accepts_no_earlier_than_the_answer() {
        let mut l = ledger();
        let t0 = Instant::now();
        let racers = racers_of("inv-a", &[1, 2, 3, 4, 5], 3);
        // The racers' alerts arrive at +1 ms, the answer only at +50 ms.
        for r in &racers {
            l.alert("inv-a", *r, t0 + ms(1));
        }
        assert!(plans(&mut l).is_empty());
        assert_eq!(l.in_play(), (0, 1));
        l.invited(
            "inv-a",
            0,
            false,
            t0,
            t0 + ms(50),
            vec![1, 2, 3, 4, 5],
            Kind::default(),
        );
        let accepts = plans(&mut l);
        assert_eq!(accepts.len(), 3);
        assert!(accepts.iter().all(|p| p.at == t0 + ms(50)), "{accepts:?}");
        // A late alert: its own arrival plus the delay.
        let mut l = ledger();
        l.invited(
            "inv-a",
            0,
            false,
            t0,
            t0 + ms(2),
            vec![1, 2, 3, 4, 5],
            Kind::default(),
        );
        l.alert("inv-a", racers[0], t0 + ms(20));
        assert_eq!(plans(&mut l)[0].at, t0 + ms(30));
        // Alerts nobody answers for become orphans, and are dropped.
        l.alert("inv-never", 1, t0);
        l.sweep(t0 + PENDING_LIMIT + ms(1));
        assert_eq!(l.in_play().1, 0);
        assert_eq!(l.tally().orphan_alerts, 1);
    }

    #[test]
    fn a_settled_race_is_judged_at_once_and_dropped() {
        let mut l = ledger();
        let t0 = Instant::now();
        let accepts = offered(&mut l, "inv-b", false, t0);
        let (win, lose) = (&accepts[0], &accepts[1..]);
        l.replied(win.key, win.agent, 0, t0 + ms(13), t0 + ms(15), Reply::Won);
        for p in lose {
            l.replied(p.key, p.agent, 0, t0 + ms(13), t0 + ms(16), Reply::Taken);
        }
        for a in (1..=5).filter(|a| *a != win.agent) {
            l.withdrawn("inv-b", a, t0 + ms(17));
        }
        assert_eq!(l.in_play().0, 1, "waits for the announcement");
        l.announced("inv-b", Some(win.agent));
        assert_eq!(l.in_play().0, 0);
        // A withdrawal after the verdict changes nothing.
        l.withdrawn("inv-b", win.agent, t0 + ms(30));
        let o = l.finish();
        assert_eq!((o.winners, o.lost_races, o.accepts), (1, 2, 3));
        assert_eq!(
            (o.alerts, o.missing_alerts, o.missing_withdrawals),
            (5, 0, 0)
        );
        assert_eq!(o.withdraw.count(), 4);
        assert_eq!(o.late_events, 1);
        assert_eq!((o.learned, o.unknown, o.customer_leaks), (0, 0, 0));
    }

    #[test]
    fn what_does_not_arrive_within_the_grace_is_missing() {
        let mut l = ledger();
        let t0 = Instant::now();
        l.invited(
            "inv-c",
            0,
            true,
            t0,
            t0 + ms(2),
            vec![1, 2, 3, 4, 5],
            Kind::default(),
        );
        for a in 1..=4 {
            l.alert("inv-c", a, t0 + ms(3));
        }
        let accepts = plans(&mut l);
        let winner = accepts[0].agent;
        for p in &accepts {
            let reply = if p.agent == winner {
                Reply::Won
            } else {
                Reply::Taken
            };
            l.replied(p.key, p.agent, 0, t0 + ms(13), t0 + ms(15), reply);
        }
        let other = (1..=5).find(|a| *a != winner).unwrap();
        l.withdrawn("inv-c", other, t0 + ms(20));
        l.sweep(t0 + ms(2) + GRACE - ms(1));
        assert_eq!(l.in_play().0, 1);
        l.sweep(t0 + ms(2) + GRACE);
        assert_eq!(l.in_play().0, 0);
        // Agent 5's alert comes too late to count.
        l.alert("inv-c", 5, t0 + GRACE + ms(10));
        let o = l.finish();
        assert_eq!(o.missing_alerts, 1);
        assert_eq!(o.late_events, 1);
        // Of the four recipients besides the winner, one withdrew.
        assert_eq!(o.missing_withdrawals, 3);
    }

    #[test]
    fn two_winners_and_a_claim_that_went_nowhere_are_breaks() {
        let mut l = ledger();
        let t0 = Instant::now();
        for p in offered(&mut l, "inv-d", false, t0) {
            l.replied(p.key, p.agent, 0, t0 + ms(13), t0 + ms(15), Reply::Won);
        }
        for p in offered(&mut l, "inv-e", false, t0) {
            l.replied(p.key, p.agent, 0, t0 + ms(13), t0 + ms(15), Reply::Taken);
        }
        // Refused for another reason: no break.
        for p in offered(&mut l, "inv-f", false, t0) {
            l.replied(p.key, p.agent, 0, t0 + ms(13), t0 + ms(15), Reply::Refused);
        }
        let o = l.finish();
        assert_eq!((o.double_winners, o.no_winners, o.winners), (1, 1, 0));
    }

    /// A race where every accept but the winner's was answered `taken`, and
    /// the winner's answer was lost.
    fn lost_winner(l: &mut Ledger, id: &str, masked: bool, t0: Instant) -> AcceptPlan {
        let accepts = offered(l, id, masked, t0);
        let winner = accepts[0].clone();
        for p in &accepts[1..] {
            l.replied(p.key, p.agent, 0, t0 + ms(13), t0 + ms(15), Reply::Taken);
        }
        l.replied(
            winner.key,
            winner.agent,
            0,
            t0 + ms(13),
            t0 + ms(13) + ms(10_000),
            Reply::Lost,
        );
        winner
    }

    #[test]
    fn a_lost_answer_is_learned_from_the_announcement_and_the_winner_leaves() {
        let mut l = ledger();
        let t0 = Instant::now();
        let w = lost_winner(&mut l, "inv-g", false, t0);
        assert!(leaves(&mut l).is_empty());
        l.announced("inv-g", Some(w.agent));
        assert_eq!(
            leaves(&mut l),
            vec![Leave {
                agent: w.agent,
                session: 0
            }]
        );
        // The customer saw the unmasked winner come and go: no leak.
        let name = format!(r#"{{"agent":{{"name":"Agent {}"}}}}"#, w.agent);
        l.customer_frame(0, "agent_joined", &name);
        l.customer_frame(0, "agent_left", &name);
        let o = l.finish();
        assert_eq!((o.learned, o.unknown, o.winners), (1, 0, 1));
        assert_eq!(o.learned_from.invitation_accepted, 1);
        assert_eq!((o.no_winners, o.customer_leaks), (0, 0));
        // A lost answer is not an accept answered.
        assert_eq!(o.accepts, 2);
    }

    #[test]
    fn a_lost_answer_is_learned_from_the_winners_own_join() {
        let mut l = ledger();
        let t0 = Instant::now();
        let accepts = offered(&mut l, "inv-h", true, t0);
        let w = accepts[0].clone();
        // The join shows on its stream while the accept is still in flight.
        l.joined(w.agent, 0, true, t0 + ms(14));
        for p in &accepts[1..] {
            l.replied(p.key, p.agent, 0, t0 + ms(13), t0 + ms(15), Reply::Taken);
        }
        l.replied(w.key, w.agent, 0, t0 + ms(13), t0 + ms(10_013), Reply::Lost);
        assert_eq!(leaves(&mut l).len(), 1);
        let o = l.finish();
        assert_eq!((o.learned, o.unknown), (1, 0));
        assert_eq!(o.learned_from.participant_joined, 1);
        assert_eq!((o.winners, o.no_winners), (1, 0));
    }

    #[test]
    fn an_own_join_an_answered_win_explains_is_not_taken_for_a_lost_answer() {
        let mut l = ledger();
        let t0 = Instant::now();
        // The agent won a first invitation of session 0 (answered)…
        let first = offered(&mut l, "inv-i1", false, t0);
        let agent = first[0].agent;
        l.replied(first[0].key, agent, 0, t0 + ms(13), t0 + ms(15), Reply::Won);
        // …and raced for a second one of the same session, answer lost.
        l.invited(
            "inv-i2",
            0,
            false,
            t0,
            t0 + ms(20),
            vec![agent],
            Kind::default(),
        );
        l.alert("inv-i2", agent, t0 + ms(21));
        let second = plans(&mut l).pop().unwrap();
        l.replied(
            second.key,
            agent,
            0,
            t0 + ms(31),
            t0 + ms(10_031),
            Reply::Lost,
        );
        // The first win's join, late on the stream, must not decide the second.
        l.joined(agent, 0, false, t0 + ms(40));
        let lookups = l.finish_run();
        assert_eq!(lookups.len(), 1);
        assert_eq!(&*lookups[0].id, "inv-i2");
        // The lookup says nobody took it: learned, no break.
        l.looked_up(lookups[0].key, Some(None));
        let o = l.finish();
        assert_eq!((o.learned, o.unknown), (1, 0));
        assert_eq!(o.learned_from.lookup, 1);
        assert_eq!(o.no_winners, 0);
    }

    #[test]
    fn a_lookup_decides_a_lost_answer_and_a_failed_one_leaves_it_unknown() {
        let mut l = ledger();
        let t0 = Instant::now();
        let won = lost_winner(&mut l, "inv-j", false, t0);
        let unknown = lost_winner(&mut l, "inv-k", false, t0);
        let lookups = l.finish_run();
        assert_eq!(lookups.len(), 2);
        l.looked_up(key("inv-j"), Some(Some(won.agent)));
        assert_eq!(leaves(&mut l).len(), 1);
        l.looked_up(key("inv-k"), None);
        assert!(leaves(&mut l).is_empty());
        // The unknown one may have joined unmasked: its name is no leak.
        let name = format!(r#"{{"agent":{{"name":"Agent {}"}}}}"#, unknown.agent);
        l.customer_frame(0, "agent_joined", &name);
        let o = l.finish();
        assert_eq!((o.learned, o.unknown), (1, 1));
        assert_eq!(o.learned_from.lookup, 1);
        // Unknown outcomes are no breaks.
        assert_eq!(
            (o.no_winners, o.double_winners, o.customer_leaks),
            (0, 0, 0)
        );
    }

    #[test]
    fn each_kind_of_customer_leak_is_counted_as_it_arrives() {
        let mut l = ledger();
        let t0 = Instant::now();
        // Agent 9 won an unmasked invitation of session 1; a masked one of
        // session 0 was won by someone whose answer was lost, then learned.
        l.invited(
            "inv-open",
            1,
            false,
            t0,
            t0 + ms(2),
            vec![9],
            Kind::default(),
        );
        l.alert("inv-open", 9, t0 + ms(3));
        let p = plans(&mut l).pop().unwrap();
        l.replied(p.key, 9, 1, t0 + ms(13), t0 + ms(15), Reply::Won);
        let masked = lost_winner(&mut l, "inv-masked", true, t0);
        l.announced("inv-masked", Some(masked.agent));
        let named = |i: u32| format!(r#"{{"agent":{{"name":"Agent {i}"}}}}"#);
        let clean = [
            ("snapshot", r#"{"agents":[{"name":"Agent 0"}]}"#.to_owned()),
            ("agent_joined", named(9)),
            ("agent_left", named(9)),
            (
                "reconnect_required",
                r#"{"generation":2,"reshare_screen":true}"#.to_owned(),
            ),
            (
                "message",
                r#"{"message":{"text":"an inventory of things"}}"#.to_owned(),
            ),
        ];
        for (name, data) in &clean {
            l.customer_frame(1, name, data);
        }
        // Planted: a masked agent's name, a comment, an invitation id, an
        // agent id, and the unmasked agent shown twice for one join.
        l.customer_frame(0, "agent_joined", &named(masked.agent));
        l.customer_frame(1, "message", r#"{"message":{"text":"note ldx #3"}}"#);
        l.customer_frame(1, "message", r#"{"message":{"text":"see inv-open."}}"#);
        l.customer_frame(1, "message", r#"{"id":"ldx-ag7"}"#);
        l.customer_frame(1, "agent_joined", &named(9));
        l.customer_frame(0, "agent_joined", r#"{"agent":{"name":"Mallory"}}"#);
        let o = l.finish();
        let k = o.leaks;
        assert_eq!(
            (
                k.masked_agent,
                k.comment,
                k.invitation_id,
                k.agent_id,
                k.unreadable
            ),
            (2, 1, 1, 1, 1),
            "{k:?}"
        );
        assert_eq!(o.customer_leaks, 6);
        assert_eq!(o.customer_events, 11);
    }

    #[test]
    fn settled_invitations_leave_nothing_behind_but_their_key() {
        let mut l = ledger();
        let t0 = Instant::now();
        for i in 0..200 {
            let id = format!("inv-m{i}");
            let accepts = offered(&mut l, &id, false, t0);
            let w = accepts[0].agent;
            for p in &accepts {
                let reply = if p.agent == w {
                    Reply::Won
                } else {
                    Reply::Taken
                };
                l.replied(p.key, p.agent, 0, t0 + ms(13), t0 + ms(15), reply);
            }
            for a in (1..=5).filter(|a| *a != w) {
                l.withdrawn(&id, a, t0 + ms(17));
            }
            l.announced(&id, Some(w));
            assert_eq!(l.in_play(), (0, 0));
        }
        assert_eq!(l.accepts_in_flight(), 0);
        assert!(
            l.tracks
                .iter()
                .all(|t| t.joins.is_empty() && t.doubts.is_empty())
        );
        let o = l.finish();
        assert_eq!((o.winners, o.missing_withdrawals), (200, 0));
    }

    fn transfer() -> Kind {
        Kind {
            transfer: true,
            ..Kind::default()
        }
    }

    fn escalating(escalation: Escalation) -> Kind {
        Kind {
            escalation,
            ..Kind::default()
        }
    }

    #[test]
    fn an_escalated_invitation_learns_its_recipients_from_the_offers_and_has_one_winner() {
        let mut l = ledger();
        let t0 = Instant::now();
        let kind = escalating(Escalation::Armed);
        l.invited("inv-x", 0, false, t0, t0 + ms(2), vec![3], kind);
        // The invitee's own offer: it declines at once, it does not race.
        l.offered("inv-x", 3, t0 + ms(3), None);
        let declines = plans(&mut l);
        assert_eq!(declines.len(), 1);
        assert!(
            declines[0].decline && declines[0].agent == 3,
            "{declines:?}"
        );
        assert_eq!(declines[0].at, t0 + ms(3));
        assert_eq!(l.accepts_in_flight(), 0, "a decline is no accept");
        // Escalated to four portal agents: three offers come, the first
        // three race; the event says four, whenever it comes.
        for a in [7, 8, 9] {
            l.offered("inv-x", a, t0 + ms(20), Some(4));
        }
        l.escalated("inv-x", 4);
        let accepts = plans(&mut l);
        let racing: Vec<u32> = accepts.iter().map(|p| p.agent).collect();
        assert_eq!(racing, vec![7, 8, 9]);
        assert!(accepts.iter().all(|p| !p.decline && !p.transfer));
        let w = accepts[0].agent;
        l.replied(accepts[0].key, w, 0, t0 + ms(30), t0 + ms(32), Reply::Won);
        for p in &accepts[1..] {
            l.replied(p.key, p.agent, 0, t0 + ms(30), t0 + ms(33), Reply::Taken);
        }
        l.announced("inv-x", Some(w));
        for a in [8, 9] {
            l.withdrawn("inv-x", a, t0 + ms(35));
        }
        assert_eq!(l.in_play().0, 1, "the fourth recipient is still owed");
        // Its withdrawal comes without its offer: a recipient all the same.
        l.withdrawn("inv-x", 10, t0 + ms(36));
        l.sweep(t0 + ms(2) + GRACE);
        let o = l.finish();
        assert_eq!(
            (o.escalations.escalated, o.escalations.won, o.winners),
            (1, 1, 1)
        );
        assert_eq!((o.double_winners, o.no_winners), (0, 0));
        // The invitee's alert and three of four in the portal.
        assert_eq!(
            (o.alerts, o.missing_alerts, o.missing_withdrawals),
            (4, 1, 0)
        );
        assert_eq!(o.invite_to_alert.count(), 1);
        assert_eq!(o.decline_to_offer.count(), 3);
    }

    #[test]
    fn an_escalated_invitation_taken_twice_or_by_nobody_is_a_break() {
        let mut l = ledger();
        let t0 = Instant::now();
        for id in ["inv-y", "inv-z"] {
            let kind = escalating(Escalation::Armed);
            l.invited(id, 0, false, t0, t0 + ms(2), vec![3], kind);
            l.offered(id, 3, t0 + ms(3), None);
            l.escalated(id, 2);
            l.offered(id, 7, t0 + ms(20), Some(2));
            l.offered(id, 8, t0 + ms(20), Some(2));
        }
        for p in plans(&mut l).into_iter().filter(|p| !p.decline) {
            let reply = if &*p.id == "inv-y" {
                Reply::Won
            } else {
                Reply::Taken
            };
            l.replied(p.key, p.agent, 0, t0 + ms(30), t0 + ms(32), reply);
        }
        let o = l.finish();
        assert_eq!((o.double_winners, o.no_winners), (1, 1));
        assert_eq!((o.escalations.escalated, o.escalations.won), (2, 0));
    }

    #[test]
    fn an_invitation_escalated_when_sent_races_like_a_portal_one() {
        let mut l = ledger();
        let t0 = Instant::now();
        let kind = escalating(Escalation::AtSend);
        l.invited("inv-s", 0, false, t0, t0 + ms(2), vec![7, 8], kind);
        for a in [7, 8] {
            l.offered("inv-s", a, t0 + ms(3), Some(2));
        }
        let accepts = plans(&mut l);
        assert_eq!(accepts.len(), 2);
        l.replied(
            accepts[0].key,
            accepts[0].agent,
            0,
            t0,
            t0 + ms(5),
            Reply::Won,
        );
        l.replied(
            accepts[1].key,
            accepts[1].agent,
            0,
            t0,
            t0 + ms(5),
            Reply::Taken,
        );
        l.withdrawn("inv-s", accepts[1].agent, t0 + ms(6));
        l.announced("inv-s", Some(accepts[0].agent));
        assert_eq!(l.in_play().0, 0);
        let o = l.finish();
        assert_eq!((o.escalations.escalated, o.escalations.won), (1, 1));
        assert_eq!((o.missing_alerts, o.missing_withdrawals), (0, 0));
    }

    #[test]
    fn a_won_transfer_makes_its_winner_lead_and_only_the_old_lead_may_be_shown_leaving() {
        let mut l = ledger();
        let t0 = Instant::now();
        l.opened(0, 0);
        l.opened(1, 10);
        assert_eq!((l.lead(0), l.lead(1), l.lead(2)), (Some(0), Some(10), None));
        assert!(l.begin_transfer(0));
        assert!(!l.begin_transfer(0), "one transfer per session at a time");
        assert!(l.transfer_open(0) && !l.transfer_open(1));
        l.invited(
            "inv-t",
            0,
            false,
            t0,
            t0 + ms(2),
            vec![1, 2, 3, 4, 5],
            transfer(),
        );
        for a in 1..=5 {
            l.alert("inv-t", a, t0 + ms(3));
        }
        let accepts = plans(&mut l);
        assert!(accepts.iter().all(|p| p.transfer));
        let w = accepts[0].agent;
        l.replied(accepts[0].key, w, 0, t0 + ms(13), t0 + ms(15), Reply::Won);
        // Known as soon as it is answered: later invitations go out from it.
        assert_eq!(l.lead(0), Some(w));
        assert!(!l.transfer_open(0));
        assert!(leaves(&mut l).is_empty(), "a transfer's winner stays");
        assert_eq!(
            l.transferred(),
            vec![Transferred {
                session: 0,
                lead: w,
                previous: vec![0]
            }]
        );
        // The winner hands it back to agent 0 through a lost answer,
        // learned from the announcement: no leave either.
        assert!(l.begin_transfer(0));
        l.invited("inv-u", 0, false, t0, t0 + ms(40), vec![0], transfer());
        l.alert("inv-u", 0, t0 + ms(41));
        let back = plans(&mut l).pop().unwrap();
        l.replied(back.key, 0, 0, t0 + ms(51), t0 + ms(10_051), Reply::Lost);
        l.announced("inv-u", Some(0));
        assert!(leaves(&mut l).is_empty());
        assert_eq!(l.lead(0), Some(0));
        assert_eq!(
            l.transferred()[0].previous,
            vec![w],
            "the lead is not an earlier lead"
        );
        // The customer saw the winner come and go and agent 0 go and come
        // back: no leak. A loser of the race shown leaving, or agent 0 shown
        // joining once more, is one each.
        let named = |i: u32| format!(r#"{{"agent":{{"name":"Agent {i}"}}}}"#);
        l.customer_frame(0, "agent_joined", &named(w));
        l.customer_frame(0, "agent_left", &named(0));
        l.customer_frame(0, "agent_joined", &named(0));
        l.customer_frame(0, "agent_left", &named(w));
        l.customer_frame(0, "agent_left", &named(accepts[1].agent));
        l.customer_frame(0, "agent_joined", &named(0));
        let o = l.finish();
        assert_eq!(o.transfers.completed, 2);
        assert_eq!((o.leaks.masked_agent, o.customer_leaks), (2, 2));
    }

    #[test]
    fn a_transfer_nobody_took_frees_its_session_and_counts_once_if_superseded() {
        let mut l = ledger();
        let t0 = Instant::now();
        l.opened(0, 0);
        assert!(l.begin_transfer(0));
        l.transfer_not_created(0);
        assert!(l.begin_transfer(0), "a refused transfer frees its session");
        l.invited("inv-v", 0, false, t0, t0 + ms(2), vec![4], transfer());
        l.sweep(t0 + ms(2) + GRACE);
        assert!(!l.transfer_open(0), "judged without a winner");
        assert_eq!(l.lead(0), Some(0));
        // Another transfer wins later: this one is cancelled, which is
        // counted, once, and is no late event.
        l.withdrawn_for("inv-v", 4, t0 + GRACE * 2, true);
        l.withdrawn_for("inv-v", 4, t0 + GRACE * 2, true);
        let o = l.finish();
        assert_eq!(o.transfers.superseded, 1);
        assert_eq!(o.late_events, 1, "only the repeat is late");
        assert!(l.transferred().is_empty());
    }
}
