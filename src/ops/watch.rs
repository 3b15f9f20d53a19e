//! Turns the running quarters into gauges: records by state, the projected finish and the
//! deadline (as the workflow's own ETA projects them, read with its `progress` query), and
//! the dead letters waiting for a redrive (from the store). Every worker watches, so any
//! one scrape target tells; alert rules take the max.

use std::collections::BTreeSet;
use std::time::Duration;

use gradesync_activities::metrics::{self, Metrics};
use gradesync_activities::model::Progress;
use gradesync_activities::store::Store;
use gradesync_workflows::QuarterlySync;
use temporalio_client::{Client, WorkflowQueryOptions};

/// How often the gauges are refreshed; Prometheus scrapes every 15-60 s.
const EVERY: Duration = Duration::from_secs(15);
/// A query the worker cannot answer soon (Temporal busy) waits for the next round.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Refreshes the gauges until the process ends.
pub async fn watch_quarters(store: Store, temporal: Client) {
    // Quarters seen running: their dead letters stay watched after they finish, as an
    // incomplete quarter's dead letters still need a redrive.
    let mut seen = BTreeSet::new();
    loop {
        refresh(&store, &temporal, &mut seen).await;
        tokio::time::sleep(EVERY).await;
    }
}

async fn refresh(store: &Store, temporal: &Client, seen: &mut BTreeSet<String>) {
    let m = metrics::get();
    let running = match store.running_runs().await {
        Ok(running) => running,
        Err(e) => {
            tracing::debug!(error = %e, "cannot list running quarters for the metrics");
            return;
        }
    };
    let mut now_running = BTreeSet::new();
    for (quarter, workflow_id) in &running {
        let name = quarter.to_string();
        now_running.insert(name.clone());
        seen.insert(name.clone());
        let handle = temporal.get_workflow_handle::<QuarterlySync>(workflow_id.clone());
        let query = handle.query(QuarterlySync::progress, (), WorkflowQueryOptions::default());
        match tokio::time::timeout(QUERY_TIMEOUT, query).await {
            Ok(Ok(progress)) => record(m, &name, &progress),
            Ok(Err(e)) => tracing::debug!(quarter = %name, error = %e, "progress query failed"),
            Err(_) => tracing::debug!(quarter = %name, "progress query timed out"),
        }
    }
    for name in seen.iter() {
        if !now_running.contains(name) {
            m.forget_quarter(name);
        }
        let Ok(quarter) = name.parse() else { continue };
        if let Ok(open) = store.open_dead_letters(&quarter).await {
            m.dead_letters_open
                .with_label_values(&[name.as_str()])
                .set(open as i64);
        }
    }
}

/// Sets one quarter's gauges from its workflow's progress.
fn record(m: &Metrics, quarter: &str, p: &Progress) {
    let owed = p.pending_at_start.saturating_sub(p.done());
    let t = &p.totals;
    for (state, n) in [
        ("synced", t.records_synced),
        ("rejected", t.records_rejected),
        ("dead", t.records_dead),
        ("owed", owed),
    ] {
        m.quarter_records
            .with_label_values(&[quarter, state])
            .set(n as i64);
    }
    if p.deadline_at_ms > 0 {
        m.deadline
            .with_label_values(&[quarter])
            .set(p.deadline_at_ms as f64 / 1000.0);
    }
    match p.eta {
        Some(eta) => {
            m.records_rate
                .with_label_values(&[quarter])
                .set(eta.rate_per_sec);
            match eta.projected_finish_ms {
                Some(at) => m
                    .projected_finish
                    .with_label_values(&[quarter])
                    .set(at as f64 / 1000.0),
                // Nothing finishing: the run would never end, which must alert too.
                None if owed > 0 => m
                    .projected_finish
                    .with_label_values(&[quarter])
                    .set(f64::INFINITY),
                None => {}
            }
        }
        None => {
            let _ = m.projected_finish.remove_label_values(&[quarter]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradesync_activities::model::{Counts, Eta};

    fn progress(eta: Option<Eta>) -> Progress {
        Progress {
            quarter: "2031-Q1".into(),
            phase: "sending".into(),
            pending_at_start: 100,
            totals: Counts {
                records_synced: 60,
                records_rejected: 5,
                records_dead: 5,
                ..Counts::default()
            },
            schools: Vec::new(),
            started_ms: 1_000,
            deadline_at_ms: 2_000_000,
            eta,
        }
    }

    #[test]
    fn progress_becomes_records_by_state_and_the_eta_beside_the_deadline() {
        let m = metrics::get();
        let eta = Eta {
            at_ms: 10_000,
            rate_per_sec: 2.5,
            projected_finish_ms: Some(3_000_000),
            on_track: Some(false),
        };
        record(m, "2031-Q1", &progress(Some(eta)));
        let text = m.render();
        for line in [
            "gradesync_quarter_records{quarter=\"2031-Q1\",state=\"owed\"} 30",
            "gradesync_quarter_records{quarter=\"2031-Q1\",state=\"synced\"} 60",
            "gradesync_quarter_deadline_timestamp_seconds{quarter=\"2031-Q1\"} 2000",
            "gradesync_quarter_projected_finish_timestamp_seconds{quarter=\"2031-Q1\"} 3000",
            "gradesync_quarter_records_per_second{quarter=\"2031-Q1\"} 2.5",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn a_stalled_quarter_projects_no_finish_at_all() {
        let m = metrics::get();
        let stalled = Eta {
            at_ms: 10_000,
            rate_per_sec: 0.0,
            projected_finish_ms: None,
            on_track: Some(false),
        };
        record(m, "2031-Q2", &progress(Some(stalled)));
        let text = m.render();
        let series = "gradesync_quarter_projected_finish_timestamp_seconds{quarter=\"2031-Q2\"} ";
        let value: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .expect("a number");
        assert!(value.is_infinite() && value > 0.0, "{value}");
    }
}
