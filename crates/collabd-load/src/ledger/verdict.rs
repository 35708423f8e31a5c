//! The settled books judged into the report's counts: one winner, or a
//! double winner, or a claim that went nowhere; alerts and withdrawals
//! missing; lost answers learned or unknown; and, at the end, the masked
//! agents shown to customers.

use super::{Inv, Key, Ledger, Reply, Source, key};
use crate::report::Observed;

impl Ledger {
    /// Judges one settled invitation into the figures and drops it.
    pub(super) fn judge(&mut self, inv: Inv) {
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
                    for (_, at) in inv
                        .withdrawn
                        .iter()
                        .filter(|(a, _)| a != w && !inv.late.contains(a))
                    {
                        o.withdraw.record(at.saturating_duration_since(closed));
                    }
                }
            }
            _ => o.double_winners += 1,
        }
        let single = match winners.as_slice() {
            [w] => Some(*w),
            _ => None,
        };
        self.count_missing(&inv, single);
        if !inv.masked {
            for w in winners {
                let allowed = self.allowed.entry((inv.session, w)).or_default();
                allowed[0] += 1;
                allowed[1] += 1;
            }
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

#[cfg(test)]
mod tests {
    use crate::ledger::Reply;
    use crate::ledger::fixtures::*;
    use tokio::time::Instant;

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
}
