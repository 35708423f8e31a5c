//! An escalating invitation: its one invitee declines at once, and once it
//! goes to the portal its recipients are learned from the offers, counted
//! against the `recipient_count` they carry.

use tokio::time::Instant;

use super::{Inv, Ledger, bit, key, set_bit};

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

/// The one invitee of an escalating invitation, apart from the recipients
/// it has after it escalated.
#[derive(Debug, Clone, Copy)]
pub(super) struct Invitee {
    pub(super) agent: u32,
    pub(super) alerted: bool,
    pub(super) withdrawn: bool,
    /// Its decline was sent.
    pub(super) declined: bool,
    /// When the decline was planned (its alert, or the POST answer).
    pub(super) declined_at: Option<Instant>,
}

/// An escalating invitation's state.
#[derive(Debug, Clone, Copy)]
pub(super) struct Esc {
    /// `None` when it went to the portal at once.
    pub(super) invitee: Option<Invitee>,
    /// It went to the portal.
    pub(super) escalated: bool,
    /// How many agents it was offered to there, once known.
    pub(super) count: Option<u32>,
}

impl Inv {
    /// Still with its invitee, waiting to escalate.
    pub(super) fn armed(&self) -> bool {
        self.esc
            .is_some_and(|e| !e.escalated && e.invitee.is_some())
    }

    /// The invitee of an escalating invitation, when `agent` is it.
    pub(super) fn invitee(&mut self, agent: u32) -> Option<&mut Invitee> {
        self.esc
            .as_mut()
            .and_then(|e| e.invitee.as_mut())
            .filter(|i| i.agent == agent)
    }

    /// Registers `agent` as a recipient (an escalated invitation learns
    /// them from their offers) and returns its position.
    pub(super) fn add_recipient(&mut self, agent: u32) -> usize {
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
}

impl Ledger {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::fixtures::*;
    use crate::ledger::{Kind, Reply};

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
}
