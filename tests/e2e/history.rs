//! Reading workflow histories the way an operator does: through `temporal workflow show`.

use base64::Engine;
use serde_json::Value;

use crate::helpers::TestApp;

/// The events of one workflow run, as JSON.
pub fn events(app: &TestApp, workflow_id: &str) -> Vec<Value> {
    let out = app.temporal_cli(&[
        "workflow",
        "show",
        "--workflow-id",
        workflow_id,
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "temporal workflow show failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("history JSON");
    v["events"].as_array().cloned().unwrap_or_default()
}

/// Everything a history holds, readable: every string of its JSON and, for each string
/// that is base64 (Temporal's payloads: inputs, results, failures, heartbeats, summaries),
/// what it decodes to. A search of the raw JSON would never see inside a payload.
pub fn decoded_text(app: &TestApp, workflow_id: &str, run_id: Option<&str>) -> String {
    let mut args = vec![
        "workflow",
        "show",
        "--workflow-id",
        workflow_id,
        "--output",
        "json",
    ];
    if let Some(run_id) = run_id {
        args.extend(["--run-id", run_id]);
    }
    let out = app.temporal_cli(&args);
    assert!(
        out.status.success(),
        "temporal workflow show failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("history JSON");
    let mut strings = Vec::new();
    strings_and_decoded(&v, &mut strings);
    strings.join("\n")
}

/// Every string in a JSON value, and what it decodes to when it is base64.
pub fn strings_and_decoded(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(s) {
                out.push(String::from_utf8_lossy(&raw).into_owned());
            }
            out.push(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|i| strings_and_decoded(i, out)),
        Value::Object(map) => map.iter().for_each(|(k, i)| {
            out.push(k.clone());
            strings_and_decoded(i, out);
        }),
        _ => {}
    }
}

/// The needles found in the decoded histories of every workflow whose id starts with
/// `prefix` (a quarter's run, its children, its continued runs), as `(workflow, needle)`.
pub fn leaks(app: &TestApp, prefix: &str, needles: &[&str]) -> Vec<(String, String)> {
    let runs = app.workflow_runs_starting_with(prefix);
    assert!(!runs.is_empty(), "no workflow starts with {prefix}");
    let mut found = Vec::new();
    for (workflow_id, run_id) in runs {
        let text = decoded_text(app, &workflow_id, Some(&run_id));
        for needle in needles {
            if text.contains(needle) {
                found.push((workflow_id.clone(), needle.to_string()));
            }
        }
    }
    found
}

/// Summaries of the timers started in a history (`Retry5s`, `Retry200ms`, ...).
pub fn timer_summaries(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["eventType"] == "EVENT_TYPE_TIMER_STARTED")
        .filter_map(|e| e["userMetadata"]["summary"]["data"].as_str())
        .filter_map(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .filter_map(|raw| serde_json::from_slice::<String>(&raw).ok())
        .collect()
}

/// Activity types scheduled in a history, in order.
pub fn activity_types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED")
        .filter_map(|e| e["activityTaskScheduledEventAttributes"]["activityType"]["name"].as_str())
        .map(str::to_string)
        .collect()
}
