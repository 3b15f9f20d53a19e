//! A durable timer with a name: the name is what the Web UI shows for the wait
//! (Retry15s, RateLimited, DeadlineWarning, EtaCheck), so a history reads like the design.

use std::time::Duration;

use temporalio_sdk::{TimerOptions, WorkflowContext};

pub(crate) async fn wait_named<W>(
    ctx: &WorkflowContext<W>,
    wait: Duration,
    name: impl Into<String>,
) {
    ctx.timer(TimerOptions::builder(wait).summary(name.into()).build())
        .await;
}
