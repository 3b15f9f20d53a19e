//! Activity options per seed state, derived from the run's [`Policy`]: the seed's timeouts
//! and retry rules live here and nowhere else.

use std::time::Duration;

use gradesync_activities::model::Policy;
use temporalio_common::RetryPolicy;
use temporalio_sdk::{ActivityCloseTimeouts, ActivityOptions};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Store work that must eventually happen (MarkSynced, ClientError, DeadLetter...): retried
/// with exponential backoff while the store is busy or down. The activities heartbeat, so
/// one held by a killed worker moves to another within the heartbeat timeout rather than
/// the 15 min start-to-close.
pub(crate) fn store(policy: &Policy, summary: &str) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(ms(policy.query_timeout_ms))
        .heartbeat_timeout(ms(policy.send_heartbeat_timeout_ms))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(60))
                .build(),
        )
        .summary(summary.to_string())
        .build()
}

/// QueryPending: 15 min, 3 attempts with exponential backoff (the seed's Retry on throttling).
pub(crate) fn query_pending(policy: &Policy) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(ms(policy.query_timeout_ms))
        .heartbeat_timeout(ms(policy.send_heartbeat_timeout_ms))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .backoff_coefficient(2.0)
                .maximum_attempts(3)
                .build(),
        )
        .summary("QueryPending".to_string())
        .build()
}

/// PrepBatch: heartbeats while it cuts batches; a silent worker is presumed dead after 300 s.
pub(crate) fn prep_batch(policy: &Policy, school_id: &str) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(ms(policy.query_timeout_ms))
        .heartbeat_timeout(ms(policy.heartbeat_timeout_ms))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .backoff_coefficient(2.0)
                .maximum_attempts(10)
                .build(),
        )
        .summary(format!("PrepBatch {school_id}"))
        .build()
}

/// SendBatch: its own task queue, 900 s start-to-close, 1200 s schedule-to-close, one
/// attempt: the workflow owns retries so each wait is a named timer. It heartbeats while
/// it waits for the rate gate and for the answer, so a killed worker's batch goes to
/// another worker within the heartbeat timeout instead of the 900 s.
pub(crate) fn send_batch(policy: &Policy, queue: &str, summary: String) -> ActivityOptions {
    ActivityOptions::with_close_timeouts(ActivityCloseTimeouts::ScheduleAndStartToClose {
        schedule_to_close: ms(policy.send_schedule_to_close_ms),
        start_to_close: ms(policy.send_start_to_close_ms),
    })
    .heartbeat_timeout(ms(policy.send_heartbeat_timeout_ms))
    .task_queue(queue.to_string())
    .retry_policy(RetryPolicy::builder().maximum_attempts(1).build())
    .summary(summary)
    .build()
}

/// ReconcileAhead: lives as long as the sending (up to the run's deadline), heartbeats each
/// poll; a limited number of attempts, as the final Reconcile reads whatever it leaves.
/// Each worker drain (a rolling deploy) hands it back at the cost of one, hence ten.
pub(crate) fn reconcile_ahead(policy: &Policy) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(ms(policy.deadline_ms))
        .heartbeat_timeout(ms(policy.send_heartbeat_timeout_ms))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .backoff_coefficient(2.0)
                .maximum_attempts(10)
                .build(),
        )
        .summary("ReconcileAhead".to_string())
        .build()
}
