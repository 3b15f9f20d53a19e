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

/// The raw text of a history, as a user would scan it.
pub fn text(app: &TestApp, workflow_id: &str) -> String {
    let out = app.temporal_cli(&[
        "workflow",
        "show",
        "--workflow-id",
        workflow_id,
        "--output",
        "json",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
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
