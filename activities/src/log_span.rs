//! Every log line of an activity names where it belongs: the workflow and run, the
//! activity and its attempt, and the quarter, school and batch it works on (ids only). An
//! activity interceptor opens a span with those fields around each execution; the JSON
//! log format prints it on every line (`"span": {...}`), the text format as a prefix.

use futures::FutureExt;
use temporalio_sdk::interceptors::{
    ActivityInboundInterceptor, ExecuteActivityInput, ExecuteActivityOutput, Next,
};
use tracing::Instrument;
use tracing::field::Empty;

use crate::model::{
    BatchEvent, DeadlineAlert, PrepRequest, QuarterRef, ReconcileAheadRequest, ReconcileRequest,
    RedriveRequest, SendRequest,
};

/// The interceptor; register it on each worker.
#[derive(Debug, Default, Clone, Copy)]
pub struct ActivitySpans;

/// The ids an activity's input names, if it names them.
#[derive(Debug, Default, PartialEq)]
struct Ids<'a> {
    quarter: Option<&'a str>,
    school_id: Option<&'a str>,
    batch_id: Option<uuid::Uuid>,
}

fn ids_of(input: &ExecuteActivityInput) -> Ids<'_> {
    if let Some(ev) = input.args_ref::<BatchEvent>() {
        return Ids {
            quarter: Some(&ev.quarter),
            school_id: Some(&ev.school_id),
            batch_id: Some(ev.batch_id),
        };
    }
    if let Some(req) = input.args_ref::<SendRequest>() {
        return Ids {
            batch_id: Some(req.batch_id),
            ..Ids::default()
        };
    }
    if let Some(req) = input.args_ref::<PrepRequest>() {
        return Ids {
            quarter: Some(&req.quarter),
            school_id: Some(&req.school_id),
            ..Ids::default()
        };
    }
    let quarter = input
        .args_ref::<QuarterRef>()
        .map(|r| r.quarter.as_str())
        .or_else(|| {
            input
                .args_ref::<ReconcileRequest>()
                .map(|r| r.quarter.as_str())
        })
        .or_else(|| {
            input
                .args_ref::<ReconcileAheadRequest>()
                .map(|r| r.quarter.as_str())
        })
        .or_else(|| {
            input
                .args_ref::<RedriveRequest>()
                .map(|r| r.quarter.as_str())
        })
        .or_else(|| {
            input
                .args_ref::<DeadlineAlert>()
                .map(|r| r.quarter.as_str())
        });
    Ids {
        quarter,
        ..Ids::default()
    }
}

impl ActivityInboundInterceptor for ActivitySpans {
    fn execute_activity<'a>(
        &'a self,
        input: ExecuteActivityInput,
        next: Next<'a, ExecuteActivityInput, ExecuteActivityOutput<'a>>,
    ) -> ExecuteActivityOutput<'a> {
        let info = input.activity_info();
        let span = tracing::info_span!(
            "activity",
            workflow_id = info.workflow_id.as_deref().unwrap_or(""),
            run_id = info.workflow_run_id.as_deref().unwrap_or(""),
            activity = %info.activity_type,
            attempt = info.attempt,
            quarter = Empty,
            school_id = Empty,
            batch_id = Empty,
        );
        let ids = ids_of(&input);
        if let Some(q) = ids.quarter {
            span.record("quarter", q);
        }
        if let Some(s) = ids.school_id {
            span.record("school_id", s);
        }
        if let Some(b) = ids.batch_id {
            span.record("batch_id", tracing::field::display(b));
        }
        next.run(input).instrument(span).boxed()
    }
}
