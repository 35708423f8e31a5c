//! An accept whose answer was lost is no refusal: its outcome is learned
//! from another racer's answer, `invitation_accepted`, the agent's own
//! `participant_joined` (only when nothing else explains that join) or a
//! lookup after the drain, and a lost answer that won is told to leave.

use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Inv, Key, Leave, Ledger, Reply, find};

/// A win of an agent in a session explains its `participant_joined` there
/// for this long: such joins are never taken for a lost answer's.
const JOIN_WINDOW: Duration = Duration::from_secs(10);

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

/// Per agent: what attributing its own `participant_joined` to a lost
/// answer needs, kept only while it has an accept in flight or in doubt.
#[derive(Default)]
pub(super) struct Track {
    /// Sessions of its accepts planned or in flight.
    pub(super) inflight: Vec<u32>,
    /// Invitations where its answer was lost and the outcome is not known.
    pub(super) doubts: Vec<Key>,
    /// Its own joins seen meanwhile: (session, masked, at, claimed).
    pub(super) joins: Vec<(u32, bool, Instant, bool)>,
    /// Its last answered wins: (session, accept sent at).
    pub(super) wins: Vec<(u32, Instant)>,
}

impl Track {
    fn tracking(&self) -> bool {
        !self.inflight.is_empty() || !self.doubts.is_empty()
    }

    pub(super) fn tidy(&mut self) {
        if !self.tracking() {
            self.joins.clear();
        }
    }

    pub(super) fn done(&mut self, session: u32) {
        if let Some(i) = self.inflight.iter().position(|s| *s == session) {
            self.inflight.swap_remove(i);
        }
    }
}

impl Ledger {
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

    /// Takes `agent`'s own join as the outcome of its lost answer when
    /// nothing else can explain it: exactly one undecided invitation of that
    /// session is in doubt for it, no other accept of it into that session
    /// is in flight, and it has more joins there (as masked as the
    /// invitation, after the accept was sent) than recent answered wins.
    pub(super) fn attribute(&mut self, agent: u32) {
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
}

/// Once an invitation's outcome is known, every lost answer of it is
/// learned; a lost answer that won is told to leave, as answered winners do
/// — unless it won a transfer: then it stays, and the (session, winner) to
/// make lead is returned, once.
pub(super) fn resolve(
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
    use crate::ledger::fixtures::*;
    use crate::ledger::{Kind, key};

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
}
