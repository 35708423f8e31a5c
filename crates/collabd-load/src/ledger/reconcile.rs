//! A stream that comes back: what its snapshot says against what the
//! ledger expected. An open offer the live stream never brought is a late
//! alert (timed from the invitation's POST); an offer the ledger saw and
//! that is gone from the snapshot was withdrawn meanwhile (a late
//! withdrawal, not timed). While an agent's stream is down, what it could
//! not receive is counted apart: missing *while down* is what a crash
//! costs the agents it cut off, not a broken invariant.

use tokio::time::Instant;

use super::{Inv, Ledger, bit, key, set_bit};

impl Ledger {
    /// Agent `agent`'s stream broke at `at`.
    pub fn stream_down(&mut self, agent: u32, at: Instant) {
        if let Some(d) = self.down.get_mut(agent as usize)
            && d.since.is_none()
        {
            d.since = Some(at);
        }
    }

    /// Agent `agent`'s stream is open again; `offers` are the open offers
    /// (id, and the recipient count when it names a portal) of its snapshot,
    /// which arrived at `at`.
    pub fn reconciled(&mut self, agent: u32, offers: &[(&str, Option<u32>)], at: Instant) {
        if let Some(d) = self.down.get_mut(agent as usize) {
            d.since = None;
            d.back_at = Some(at);
        }
        let mut shown = Vec::with_capacity(offers.len());
        for (id, to_portal) in offers {
            let k = key(id);
            shown.push(k);
            if self.live.contains_key(&k) {
                self.alert_known(k, agent, at, at, *to_portal, true);
            } else if let Some(pending) = self.pending.get_mut(&k) {
                pending.alerts.push((agent, at));
            }
        }
        let mut settle = Vec::new();
        for (k, inv) in &mut self.live {
            if shown.contains(k) || inv.invitee(agent).is_some() {
                continue;
            }
            if let Some(p) = inv.position(agent)
                && bit(&inv.alerted, p)
                && !bit(&inv.withdrawn_bits, p)
            {
                set_bit(&mut inv.withdrawn_bits, p);
                inv.withdrawn.push((agent, at));
                inv.late.push(agent);
                self.tally.late_withdrawals += 1;
                settle.push(*k);
            }
        }
        for k in settle {
            self.maybe_settle(k);
        }
    }

    /// Whether `agent`'s stream was down at some time after `since`.
    pub(super) fn was_down(&self, agent: u32, since: Instant) -> bool {
        self.down
            .get(agent as usize)
            .is_some_and(|d| d.since.is_some() || d.back_at.is_some_and(|b| b > since))
    }

    /// Alerts and withdrawals `inv` misses, each counted as missing or as
    /// missing while its recipient's stream was down; `winner` is owed no
    /// withdrawal.
    pub(super) fn count_missing(&mut self, inv: &Inv, winner: Option<u32>) {
        let mut alerts = (0, 0);
        let mut withdrawals = (0, 0);
        for (p, agent) in inv.recipients.iter().enumerate() {
            let down = self.was_down(*agent, inv.sent_at);
            if !bit(&inv.alerted, p) {
                if down { alerts.1 += 1 } else { alerts.0 += 1 }
            }
            if winner.is_some() && winner != Some(*agent) && !bit(&inv.withdrawn_bits, p) {
                if down {
                    withdrawals.1 += 1
                } else {
                    withdrawals.0 += 1
                }
            }
        }
        // An escalated invitation's portal recipients whose offer never came
        // are not known by name: missing.
        let unnamed = inv.recipient_count() - inv.recipients.len();
        let o = &mut self.tally;
        o.missing_alerts += (alerts.0 + unnamed) as u64;
        o.missing_alerts_while_down += alerts.1 as u64;
        if winner.is_some() {
            o.missing_withdrawals += (withdrawals.0 + unnamed) as u64;
            o.missing_withdrawals_while_down += withdrawals.1 as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Kind;
    use crate::ledger::Reply;
    use crate::ledger::fixtures::*;

    #[test]
    fn a_reopened_streams_snapshot_turns_missed_alerts_late_and_gone_offers_withdrawn() {
        let mut l = ledger();
        let t0 = Instant::now();
        // Agent 5's stream breaks before two invitations go out.
        l.stream_down(5, t0);
        l.invited(
            "inv-a",
            0,
            false,
            t0,
            t0 + ms(2),
            vec![1, 2, 5],
            Kind::default(),
        );
        l.invited(
            "inv-b",
            0,
            false,
            t0,
            t0 + ms(2),
            vec![1, 2, 5],
            Kind::default(),
        );
        for a in [1, 2] {
            l.alert("inv-a", a, t0 + ms(3));
            l.alert("inv-b", a, t0 + ms(3));
        }
        // It comes back 800 ms later: inv-a is still open, inv-b is not
        // in its snapshot (it was never alerted to it, so nothing to withdraw).
        l.reconciled(5, &[("inv-a", None)], t0 + ms(800));
        let o = l.tally();
        assert_eq!(o.late_alerts, 1);
        assert!(
            o.late_alert.quantiles().p50 >= 790.0,
            "{:?}",
            o.late_alert.quantiles()
        );
        // Agent 2 saw inv-a live, then its stream broke and the race was
        // decided meanwhile: its snapshot has no inv-a any more.
        let racers = plans(&mut l);
        let winner = racers
            .iter()
            .find(|p| p.agent == 1 && p.key == key("inv-a"))
            .cloned()
            .unwrap();
        l.stream_down(2, t0 + ms(900));
        l.replied(winner.key, 1, 0, t0 + ms(901), t0 + ms(905), Reply::Won);
        l.announced("inv-a", Some(1));
        l.withdrawn("inv-a", 5, t0 + ms(906));
        l.reconciled(2, &[("inv-b", None)], t0 + ms(1200));
        assert_eq!(l.tally().late_withdrawals, 1);
        let o = l.finish();
        assert_eq!(o.winners, 1);
        // inv-a: everyone alerted (5 late), every loser withdrawn (2 late).
        // inv-b: agent 5 was down for its whole life: missing while down,
        // not a broken invariant.
        assert_eq!((o.missing_alerts, o.missing_alerts_while_down), (0, 1));
        assert_eq!(o.missing_withdrawals, 0);
        // The late withdrawal is not timed.
        assert_eq!(o.withdraw.count(), 1);
    }

    #[test]
    fn an_alert_missing_from_an_agent_whose_stream_stayed_up_is_still_missing() {
        let mut l = ledger();
        let t0 = Instant::now();
        l.stream_down(3, t0);
        l.reconciled(3, &[], t0 + ms(1));
        l.invited(
            "inv-c",
            0,
            false,
            t0 + ms(5),
            t0 + ms(7),
            vec![3, 4],
            Kind::default(),
        );
        l.alert("inv-c", 4, t0 + ms(8));
        let o = l.finish();
        // Agent 3 came back before the invitation was sent.
        assert_eq!((o.missing_alerts, o.missing_alerts_while_down), (1, 0));
    }
}
