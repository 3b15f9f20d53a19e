//! The process is stopping: work that would last beyond any grace period (ReconcileAhead
//! follows the whole sending) hands itself back at once instead of holding the stop up;
//! short work (a SendBatch awaiting its answer) keeps its grace period.

use std::sync::LazyLock;

use tokio::sync::watch;

static DRAINING: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::Sender::new(false));

/// Says the process is draining (SIGTERM or Ctrl-C on `gradesync worker`).
pub fn start() {
    DRAINING.send_replace(true);
}

/// Resolves once the process drains.
pub async fn started() {
    let mut rx = DRAINING.subscribe();
    let _ = rx.wait_for(|draining| *draining).await;
}
