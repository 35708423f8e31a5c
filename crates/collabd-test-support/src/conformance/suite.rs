//! The suite: [`backplane_conformance_suite!`](crate::backplane_conformance_suite)
//! expands to one test per rule, in the order of its `@list` arm.

/// Expands to one `#[tokio::test]` per backplane rule. `$make` is evaluated
/// once per test and must produce something that derefs to a
/// [`Backplane`](collabd::backplane::Backplane) (`Arc<dyn Backplane>`,
/// `Arc<MyBackplane>`, a fixture holding one). Every rule uses fresh random
/// ids; the timer rules need the backplane's due stream, so `$make` must
/// build a new backplane each time (see the documentation of
/// [`conformance`](crate::conformance)).
///
/// `backplane_conformance_suite!(sequential NAME)` instead defines
/// `async fn NAME(make)` that runs every rule in turn, each on a backplane
/// `make()` builds: for a store too costly to start once per rule (a Redis
/// Cluster), started once by the calling test.
#[doc(hidden)]
#[macro_export]
macro_rules! backplane_conformance_suite {
    (sequential $name:ident) => {
        $crate::backplane_conformance_suite!(@list @sequential $name);
    };
    (@rules $make:expr; $($rule:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "current_thread")]
            async fn $rule() {
                let bp = $make;
                let bp: &dyn ::collabd::backplane::Backplane = &*bp;
                $crate::conformance::$rule(bp).await;
            }
        )*
    };
    (@sequential $name:ident; $($rule:ident),* $(,)?) => {
        async fn $name<F, Fut, B>(make: F)
        where
            F: Fn() -> Fut,
            Fut: ::std::future::Future<Output = B>,
            B: ::std::ops::Deref<Target = dyn ::collabd::backplane::Backplane>,
        {
            $(
                eprintln!("conformance rule: {}", stringify!($rule));
                let bp = make().await;
                $crate::conformance::$rule(&*bp).await;
            )*
        }
    };
    (@list $($head:tt)*) => {
        $crate::backplane_conformance_suite!($($head)*;
            directory_accounts_put_reports_creation_and_keeps_latest,
            directory_portals_are_scoped_by_account_and_listed_sorted,
            directory_agents_are_scoped_by_account,
            directory_account_and_agent_reads_both,
            directory_revocation_marks_refuse_older_tokens,
            rate_buckets_allow_a_burst_then_refill,
            rate_customers_of_an_account_share_its_bucket,
            directory_lists_in_pages_and_deletes,
            sessions_are_listed_by_status_in_pages,
            presence_login_returns_previous_and_logout_clears,
            presence_is_scoped_by_account,
            presence_online_in_lists_only_that_portals_logged_in_agents,
            presence_a_portal_with_thousands_online_is_read_whole,
            presence_window_lists_online_agents_with_portal_and_active_sessions,
            sessions_commit_is_versioned_and_scoped_by_account,
            sessions_a_conflict_changes_nothing,
            sessions_a_refused_guard_changes_nothing,
            sessions_the_delta_updates_agent_sessions_open_invitations_and_active_counts,
            sessions_messages_page_newest_first,
            sessions_closed_invitations_go_to_history_and_their_claims_go,
            sessions_refresh_says_current_changed_or_gone,
            sessions_accept_context_reads_what_an_accept_needs,
            sessions_an_ended_session_is_gone_after_its_retention,
            bus_published_messages_reach_only_the_topics_subscribers,
            bus_a_late_subscriber_sees_only_later_messages,
            claim_first_wins_and_is_idempotent_for_the_winner,
            claims_are_scoped_by_account,
            claim_fences_strictly_increase,
            claim_release_by_holder_lets_another_win_with_larger_fence,
            claim_release_by_non_holder_does_nothing,
            claim_expires_after_its_ttl,
            claim_concurrent_claims_have_exactly_one_winner,
            timers_the_due_stream_is_handed_out_once,
            timers_schedule_delivers_a_timer_once_when_due,
            timers_scheduling_again_moves_the_timer,
            timers_a_committed_arm_is_delivered_once_when_due,
            timers_a_disarmed_timer_is_never_delivered,
            timers_a_timer_armed_again_after_its_delivery_survives_completing_it,
            timers_completing_a_delivery_removes_the_timer,
            health_ping_is_ok,
            idempotency_the_first_reserve_holds_and_records_lapse,
            idempotency_racing_reserves_have_one_holder,
            durability_confirm_without_replicas_asked_is_immediate,
            audit_a_commit_stores_its_entries_and_a_refused_one_none,
            sessions_a_moved_invitation_drops_its_claim_and_changes_index,
            audit_a_put_replaces_only_what_its_entries_were_made_from,
            audit_directory_changes_store_their_entries,
            plan_every_effect_of_a_commit_reads_back,
        );
    };
    ($make:expr) => {
        $crate::backplane_conformance_suite!(@list @rules $make);
    };
}
