//! The storage contract's conformance suite: every test here runs against
//! every backend, so what one backend does the others do too.
//!
//! A test is an `async fn(Fixture<S>)` generic over [`facteur_store::Store`];
//! the `conformance!` list below runs each one against each backend's
//! fresh fixture (see `fixture.rs`).

mod admin;
mod cluster;
mod concurrency;
mod directory;
mod fixture;
mod incidents;
mod mailstore;
mod spool;

macro_rules! conformance {
    ($backend:ident: $($module:ident::$test:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    crate::$module::$test(crate::fixture::$backend().await).await
                }
            )*
        }
    };
}

macro_rules! every_test {
    ($backend:ident) => {
        conformance!($backend:
            directory::users_domains_and_errors,
            directory::sender_grants_belong_to_a_user,
            directory::aliases_and_secrets,
            directory::quotas_count_every_mailbox,
            mailstore::a_new_user_gets_the_special_use_mailboxes_subscribed,
            mailstore::create_delete_rename_keep_the_hierarchy_and_uidvalidity_rules,
            mailstore::flags_modseq_expunge_and_the_uid_floor,
            mailstore::copy_and_move_give_new_uids_in_order,
            mailstore::recent_messages_are_claimed_once,
            mailstore::several_messages_append_together_or_not_at_all,
            mailstore::expunged_uids_are_remembered_with_their_modseq,
            mailstore::header_reads_stop_at_the_empty_line,
            mailstore::uidvalidity_comes_from_the_clock_and_never_goes_back,
            mailstore::names_that_are_not_ascii_are_listed,
            spool::one_body_many_mailboxes_and_the_queue,
            spool::several_messages_commit_together_into_named_mailboxes,
            spool::claim_groups_by_domain_and_leases,
            spool::a_held_message_waits_unclaimed_until_released,
            spool::outcomes_and_notices_commit_together,
            spool::operator_controls_are_audited,
            spool::delivered_is_the_truth_even_after_an_operator_delete,
            spool::claims_filter_by_class_and_skip_paused_pairs,
            spool::parking_a_destination_postpones_only_what_may_wait,
            spool::queue_depth_follows_every_move,
            spool::bodies_go_when_unneeded_and_records_after_their_time,
            admin::a_broken_uid_counter_is_reported_repaired_and_never_reused,
            admin::controls_are_kept_and_audited,
            admin::the_write_probe_writes,
            concurrency::two_writers_allocate_distinct_increasing_uids,
            concurrency::two_claimers_never_lease_one_recipient_twice,
            concurrency::many_acceptances_at_once_are_each_stored_once,
            cluster::nodes_join_beat_and_leave,
            cluster::a_node_releases_only_its_own_leases,
            cluster::leases_of_a_stopped_node_are_reported_and_released,
            incidents::nodes_share_one_incident_per_component,
            incidents::operators_update_rename_and_resolve,
            incidents::two_nodes_opening_at_once_make_one_incident,
        );
    };
}

every_test!(sqlite);
every_test!(postgres);
