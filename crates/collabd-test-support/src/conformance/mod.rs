//! The backplane contract, written against the role traits alone so that
//! every implementation runs the same suite.
//!
//! Each rule is a `pub async fn` taking `&dyn Backplane`. Every rule makes its
//! own random account, agent, portal, session and invitation ids, so the rules
//! may run concurrently against one shared store (e.g. one Redis). Run them all
//! against an implementation with
//! [`backplane_conformance_suite!`](crate::backplane_conformance_suite):
//!
//! ```ignore
//! collabd_test_support::backplane_conformance_suite!(
//!     std::sync::Arc::new(MyBackplane::connect()) as std::sync::Arc<dyn collabd::backplane::Backplane>
//! );
//! ```
//!
//! Session changes are built the way a session actor builds them: a session
//! is created with `Session::create`, commands are applied with
//! `Session::apply`, and the resulting `Outcome` is committed. Where a rule
//! needs a change no single command makes (a conflicting commit carrying
//! everything at once, a timer due in 200 ms), it edits the outcome by hand.
//!
//! The rules wait for pub/sub deliveries, timers and retention with generous
//! timeouts and never rely on something *not* arriving within a fixed delay:
//! absence is shown by a later sentinel (a message on the same topic, a timer
//! due later) arriving first.
//!
//! The timer rules (and the two "changes nothing" rules, which also check
//! timers) take the backplane's due stream with `take_due`: they need a
//! backplane of their own, whose due timers no other instance takes — the
//! suite's `$make` must build a fresh backplane per test (the fixtures in
//! `tests/` do). A rule that cannot take the due stream fails loudly.
//!
//! The rules are kept by the part of the contract they check, one file
//! each: `directory`, `presence`, `sessions` (the versioned commit),
//! `invitations` (the indexes a commit keeps), `transcript`, `fanout`,
//! `claims`, `timers`, `health` and `audit`; `fixtures` holds what they
//! share and `suite` the macro that runs them.

use std::time::Duration;

use collabd::backplane::Rate;

/// A rate no rule reaches.
const LOOSE: Rate = Rate {
    per_sec: 1_000_000,
    burst: 1_000_000,
};

/// How long a rule waits for something that must arrive (pub/sub, timers).
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(5);
/// A claim ttl long enough never to run out during a rule.
const LONG_TTL: Duration = Duration::from_secs(60);
/// The retention of sessions whose end a rule does not watch.
const KEEP: Duration = Duration::from_secs(3600);
/// The retention of the session a rule watches disappear.
const SHORT_RETENTION: Duration = Duration::from_secs(1);
/// How long a rule waits for a 1 s retention to end.
const RETENTION_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a rule waits for a delivered but uncompleted timer to be
/// delivered again (both backplanes lease a delivery for 15 s).
const REDELIVERY_TIMEOUT: Duration = Duration::from_secs(45);
/// Clock granularity allowed when checking that a timer did not fire early.
const EARLY_TOLERANCE_MS: i64 = 5;

mod fixtures;
mod suite;

mod audit;
mod claims;
mod directory;
mod fanout;
mod health;
mod invitations;
mod plan;
mod presence;
mod sessions;
mod timers;
mod transcript;

// Every rule stays at `conformance::<rule>`, where the suite calls it.
pub use audit::{
    audit_a_commit_stores_its_entries_and_a_refused_one_none,
    audit_a_put_replaces_only_what_its_entries_were_made_from,
    audit_directory_changes_store_their_entries,
};
pub use claims::{
    claim_concurrent_claims_have_exactly_one_winner, claim_expires_after_its_ttl,
    claim_fences_strictly_increase, claim_first_wins_and_is_idempotent_for_the_winner,
    claim_release_by_holder_lets_another_win_with_larger_fence,
    claim_release_by_non_holder_does_nothing, claims_are_scoped_by_account,
};
pub use directory::{
    directory_account_and_agent_reads_both,
    directory_accounts_put_reports_creation_and_keeps_latest,
    directory_agents_are_scoped_by_account, directory_lists_in_pages_and_deletes,
    directory_portals_are_scoped_by_account_and_listed_sorted,
    directory_revocation_marks_refuse_older_tokens, rate_buckets_allow_a_burst_then_refill,
    rate_customers_of_an_account_share_its_bucket,
};
pub use fanout::{
    bus_a_late_subscriber_sees_only_later_messages,
    bus_published_messages_reach_only_the_topics_subscribers,
};
pub use health::{
    durability_confirm_without_replicas_asked_is_immediate, health_ping_is_ok,
    idempotency_racing_reserves_have_one_holder,
    idempotency_the_first_reserve_holds_and_records_lapse,
};
pub use invitations::{
    sessions_a_moved_invitation_drops_its_claim_and_changes_index,
    sessions_accept_context_reads_what_an_accept_needs,
    sessions_closed_invitations_go_to_history_and_their_claims_go,
    sessions_the_delta_updates_agent_sessions_open_invitations_and_active_counts,
};
pub use plan::plan_every_effect_of_a_commit_reads_back;
pub use presence::{
    presence_a_portal_with_thousands_online_is_read_whole, presence_is_scoped_by_account,
    presence_login_returns_previous_and_logout_clears,
    presence_online_in_lists_only_that_portals_logged_in_agents,
    presence_window_lists_online_agents_with_portal_and_active_sessions,
};
pub use sessions::{
    sessions_a_conflict_changes_nothing, sessions_a_refused_guard_changes_nothing,
    sessions_an_ended_session_is_gone_after_its_retention, sessions_are_listed_by_status_in_pages,
    sessions_commit_is_versioned_and_scoped_by_account,
    sessions_refresh_says_current_changed_or_gone,
};
pub use timers::{
    timers_a_committed_arm_is_delivered_once_when_due, timers_a_disarmed_timer_is_never_delivered,
    timers_a_timer_armed_again_after_its_delivery_survives_completing_it,
    timers_completing_a_delivery_removes_the_timer, timers_schedule_delivers_a_timer_once_when_due,
    timers_scheduling_again_moves_the_timer, timers_the_due_stream_is_handed_out_once,
};
pub use transcript::sessions_messages_page_newest_first;
