//! First accept wins: which recipients race for an invitation, the
//! accepts planned for them as their alerts arrive (never before the POST
//! answer), and what each accept's answer and `invitation_accepted` tell.
//! An escalating invitation's offers pass through here too: its invitee's
//! decline is planned, and its portal recipients join the race.

use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use super::escalation::{Esc, Invitee};
use super::lost_answers::resolve;
use super::{AcceptPlan, Attempt, Escalation, Inv, Key, Kind, Ledger, bit, find, key, set_bit};

/// How long alerts wait for their invitation's POST answer before they are
/// given up as orphans: the answer's own time limit, and a margin.
pub(super) const PENDING_LIMIT: Duration = Duration::from_secs(12);

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

/// Alerts whose POST answer has not arrived yet.
pub(super) struct Pending {
    pub(super) first_at: Instant,
    pub(super) alerts: Vec<(u32, Instant)>,
}

impl Ledger {
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
            late: Vec::new(),
            recipients: sorted,
            inflight: 0,
            attempts: Vec::new(),
            announced: Vec::new(),
            learned: None,
        };
        self.live.insert(k, inv);
        if let Some(pending) = self.pending.remove(&k) {
            for (agent, at) in pending.alerts {
                self.alert_known(k, agent, at, answered_at, None, false);
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
            self.alert_known(k, agent, at, at, to_portal, false);
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

    /// `late`: learned from a reopened stream's snapshot, not pushed live.
    pub(super) fn alert_known(
        &mut self,
        k: Key,
        agent: u32,
        at: Instant,
        now: Instant,
        to_portal: Option<u32>,
        late: bool,
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
            self.alert_timed(at, sent_at, late, true);
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
        // Timed from the POST unless it is the portal's offer of an
        // escalated invitation (timed from the decline below).
        let from_post = !matches!(
            inv.esc,
            Some(Esc {
                invitee: Some(_),
                ..
            })
        );
        // Measured from the invitee's decline: the time it took to
        // escalate, not the invitee's own delay.
        if !late
            && !from_post
            && let Some(declined) = since_decline
        {
            self.tally
                .decline_to_offer
                .record(at.saturating_duration_since(declined));
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
        if late || from_post {
            self.alert_timed(at, sent_at, late, from_post);
        }
    }

    /// Times an alert from its invitation's POST (`from_post`), live or late,
    /// and counts it on the timeline.
    fn alert_timed(&mut self, at: Instant, sent_at: Instant, late: bool, from_post: bool) {
        let latency = at.saturating_duration_since(sent_at);
        if late {
            self.tally.late_alerts += 1;
            self.tally.late_alert.record(latency);
        } else if from_post {
            self.tally.invite_to_alert.record(latency);
        }
        if let Some(t) = &self.timeline {
            let mut t = t.borrow_mut();
            if late {
                t.late_alert(at);
            } else {
                t.alert(at, latency);
            }
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::fixtures::*;

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
}
