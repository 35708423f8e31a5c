//! When an invitation is settled: its race decided and announced, every
//! recipient alerted, every loser withdrawn, no accept in flight — or the
//! grace ran out. Then it is judged and dropped, so memory stays bounded;
//! one with a lost answer nothing explained waits for a lookup instead.

use tokio::time::Instant;

use super::races::PENDING_LIMIT;
use super::{Inv, Key, Ledger, Reply, bit, key, set_bit};

impl Inv {
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

impl Ledger {
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

    pub(super) fn maybe_settle(&mut self, k: Key) {
        if self.live.get(&k).is_some_and(Inv::complete) {
            self.settle(k);
        }
    }

    pub(super) fn settle(&mut self, k: Key) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::fixtures::*;
    use crate::ledger::{Kind, Reply};

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
}
