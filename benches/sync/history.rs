//! What a run left in Temporal, read with the `temporal` CLI: events per run (to show
//! histories stay bounded) and the time activities of a given type spent executing.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

#[derive(Debug, Default)]
pub struct HistoryStats {
    pub runs: usize,
    pub events: u64,
    pub max_events_in_one_run: u64,
    /// Activity type → summed start-to-completion time, in seconds.
    pub activity_secs: BTreeMap<String, f64>,
}

fn temporal(address: &str, args: &[&str]) -> Result<Value, String> {
    let out = Command::new("temporal")
        .args(args)
        .args(["--address", address, "--output", "json"])
        .output()
        .map_err(|e| format!("cannot run the temporal CLI: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("temporal CLI output: {e}"))
}

/// Every run (children and continued-as-new runs included) whose id starts with `prefix`.
pub fn collect(address: &str, prefix: &str) -> Result<HistoryStats, String> {
    let query = format!("WorkflowId STARTS_WITH '{prefix}'");
    let list = temporal(
        address,
        &["workflow", "list", "--query", &query, "--limit", "100000"],
    )?;
    let mut stats = HistoryStats::default();
    for item in list.as_array().into_iter().flatten() {
        let exec = &item["execution"];
        let (Some(wf), Some(run)) = (exec["workflowId"].as_str(), exec["runId"].as_str()) else {
            continue;
        };
        let history = temporal(
            address,
            &["workflow", "show", "--workflow-id", wf, "--run-id", run],
        )?;
        let events = history["events"].as_array().cloned().unwrap_or_default();
        stats.runs += 1;
        stats.events += events.len() as u64;
        stats.max_events_in_one_run = stats.max_events_in_one_run.max(events.len() as u64);
        add_activity_times(&events, &mut stats.activity_secs);
    }
    Ok(stats)
}

fn event_id(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.parse().ok())
}

fn event_secs(e: &Value) -> Option<f64> {
    time_of(e["eventTime"].as_str()?)
}

/// RFC 3339 UTC time (as the CLI prints it) in seconds since the Unix epoch.
fn time_of(t: &str) -> Option<f64> {
    // 2026-11-28T11:15:24.880270483Z
    let (date, clock) = t.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut c = clock.split(':');
    let (h, min) = (
        c.next()?.parse::<f64>().ok()?,
        c.next()?.parse::<f64>().ok()?,
    );
    let s = c.next()?.parse::<f64>().ok()?;
    Some(days_from_civil(y, m, day) as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Sums, per activity type, started → completed of every completed attempt.
fn add_activity_times(events: &[Value], out: &mut BTreeMap<String, f64>) {
    let mut scheduled: BTreeMap<i64, String> = BTreeMap::new();
    let mut started: BTreeMap<i64, f64> = BTreeMap::new();
    for e in events {
        let Some(id) = event_id(&e["eventId"]) else {
            continue;
        };
        if let Some(a) = e.get("activityTaskScheduledEventAttributes") {
            if let Some(name) = a["activityType"]["name"].as_str() {
                scheduled.insert(id, name.to_string());
            }
        } else if e.get("activityTaskStartedEventAttributes").is_some() {
            if let Some(t) = event_secs(e) {
                started.insert(id, t);
            }
        } else if let Some(a) = e.get("activityTaskCompletedEventAttributes") {
            let (Some(sched), Some(start)) = (
                event_id(&a["scheduledEventId"]),
                event_id(&a["startedEventId"]),
            ) else {
                continue;
            };
            if let (Some(name), Some(t0), Some(t1)) =
                (scheduled.get(&sched), started.get(&start), event_secs(e))
            {
                *out.entry(name.clone()).or_default() += t1 - t0;
            }
        }
    }
}
