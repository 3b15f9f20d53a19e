//! `gradesync sync start|status|plan`: start a quarter's run (refusing a second concurrent
//! one), follow it with a progress bar, read where it stands and when it will finish, and
//! plan what the next run would send.

mod eta_text;
mod plan;

use std::time::Duration;

use clap::{Args, Subcommand};
use gradesync_activities::model::{
    Counts, Policy, Progress, ReconcileSummary, SyncInput, SyncSummary, Verdict,
    quarter_workflow_id,
};
use gradesync_activities::report::parse_db_reference;
use gradesync_govapi::Quarter;
use gradesync_workflows::QuarterlySync;
use indicatif::{ProgressBar, ProgressStyle};
use temporalio_client::{
    Client, WorkflowGetResultOptions, WorkflowIdConflictPolicy, WorkflowIdReusePolicy,
    WorkflowQueryOptions, WorkflowStartOptions, errors::WorkflowStartError,
};

use crate::errors::{CliError, CliResult};
use crate::settings::{StoreArgs, TemporalArgs};

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Start the quarterly sync of one quarter (refused while one already runs).
    Start(StartArgs),
    /// Show a quarter's progress: the running workflow's counts and ETA, and the store's.
    Status(StatusArgs),
    /// Dry run: what the next run would send and how long it takes at the configured rate
    /// (reads the store only; cuts nothing, contacts neither the API nor Temporal).
    Plan(plan::PlanArgs),
}

/// A quarter as `YYYY-Qn`, validated at the command line.
pub fn parse_quarter(text: &str) -> Result<Quarter, String> {
    text.parse::<Quarter>().map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Quarter to sync, e.g. 2026-Q4.
    #[arg(long, value_parser = parse_quarter)]
    pub quarter: Quarter,
    /// Wait for the run to finish, with a progress bar, and print its summary and verdict:
    /// exit 0 only when the quarter is `complete`, 4 when it is `incomplete` or
    /// `needs_correction` (the report lists every record not at the API), or `empty` (no
    /// grade of the quarter anywhere).
    #[arg(long)]
    pub wait: bool,
    /// Start a quarter that has not begun yet (refused without it: its grades cannot be
    /// due, and the name is most likely a typo).
    #[arg(long)]
    pub force: bool,
    /// Policy overrides as JSON, e.g. '{"backoff_ms":[500,1000,2000]}' (defaults: the seed's).
    #[arg(long, value_name = "JSON")]
    pub policy: Option<String>,
    /// Grades database, read to put the quarter's records and schools in the run's summary
    /// in the Web UI (only counted; unset: the summary names the quarter and deadline only).
    #[arg(long, env = "GRADESYNC_DATABASE_URL")]
    pub database_url: Option<String>,
    #[command(flatten)]
    pub temporal: TemporalArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Quarter to show, e.g. 2026-Q4.
    #[arg(long, value_parser = parse_quarter)]
    pub quarter: Quarter,
    #[command(flatten)]
    pub temporal: TemporalArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// The one workflow id of a quarter on a task queue: a second start for the same quarter
/// collides with it, and a run started under another id hands over to it.
pub fn workflow_id(quarter: &Quarter, task_queue: &str) -> String {
    quarter_workflow_id(&quarter.to_string(), task_queue)
}

/// Parses `--policy` and refuses one the workflow would refuse.
pub fn parse_policy(json: Option<&str>) -> Result<Policy, CliError> {
    let policy: Policy = match json {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| CliError::Usage(format!("--policy is not a valid policy: {e}")))?,
        None => Policy::default(),
    };
    match policy.problem() {
        Some(problem) => Err(CliError::Usage(format!("--policy: {problem}"))),
        None => Ok(policy),
    }
}

pub async fn run(cmd: SyncCommand) -> CliResult {
    match cmd {
        SyncCommand::Start(args) => start_command(args).await,
        SyncCommand::Status(args) => status_command(args).await,
        SyncCommand::Plan(args) => plan::plan_command(args).await,
    }
}

/// Refuses a quarter that begins after `now_secs` (unix seconds), unless forced.
pub fn refuse_a_future_quarter(quarter: Quarter, now_secs: i64, force: bool) -> CliResult {
    let begins = quarter.begins_at_unix_secs();
    if force || begins <= now_secs {
        return Ok(());
    }
    let day = gradesync_activities::utc::utc_minute(begins as u64 * 1_000);
    let day = day.split(' ').next().unwrap_or(&day);
    Err(CliError::Usage(format!(
        "quarter {quarter} has not begun (it begins {day}), so none of its grades can be due; \
         the current quarter is {} and the last one ended is {}: check the quarter's name, or \
         pass --force to start it anyway",
        Quarter::at(now_secs),
        Quarter::last_ended_before(now_secs)
    )))
}

async fn start_command(args: StartArgs) -> CliResult {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    refuse_a_future_quarter(args.quarter, now, args.force)?;
    let policy = parse_policy(args.policy.as_deref())?;
    let client = crate::temporal::connect(&args.temporal).await?;
    let id = workflow_id(&args.quarter, &args.temporal.task_queue);
    // The counts only dress the summary: a store that does not answer must not stop a start.
    let pending = match &args.database_url {
        Some(url) => match pending_in(url, &args.quarter).await {
            Ok(pending) => Some(pending),
            Err(e) => {
                eprintln!("gradesync: warning: {e}; the run's summary shows no counts");
                None
            }
        },
        None => None,
    };
    start_counted(
        &client,
        &args.temporal.task_queue,
        &id,
        args.quarter,
        policy,
        pending,
    )
    .await?;
    println!("started {id} on task queue {}", args.temporal.task_queue);
    if !args.wait {
        println!(
            "follow it with: gradesync sync status --quarter {}",
            args.quarter
        );
        return Ok(());
    }
    let summary = wait_with_progress(&client, &id).await?;
    print_summary(&summary);
    verdict_result(&summary)
}

/// Exit 0 only for a complete quarter; otherwise 4, naming the verdict and the report
/// that lists every record not at the API.
pub fn verdict_result(summary: &SyncSummary) -> CliResult {
    verdict_exit(
        &summary.quarter,
        summary.verdict,
        &report_csv_text(&summary.quarter, &summary.reconcile.report_csv),
    )
}

/// The exit of a command that reports a quarter's verdict: 0 for `complete`, else 4 with
/// what to do and where the records not at the API are listed (`listed`).
pub fn verdict_exit(quarter: &str, verdict: Verdict, listed: &str) -> CliResult {
    match verdict {
        Verdict::Complete => Ok(()),
        Verdict::Empty => Err(CliError::Attention(format!(
            "quarter {quarter} is empty: {}",
            verdict_hint(Verdict::Empty)
        ))),
        verdict => Err(CliError::Attention(format!(
            "quarter {quarter} is {verdict}: {}; every record not at the API is listed {listed}",
            verdict_hint(verdict),
        ))),
    }
}

/// Where a run's CSV is: its file, or the command that exports it from the database.
fn report_csv_text(quarter: &str, reference: &str) -> String {
    match parse_db_reference(reference) {
        Some(_) => format!("by `gradesync report export --quarter {quarter} --format csv`"),
        None => format!("in {reference}"),
    }
}

/// Where a run's report is, for a summary line: its files, or the command that shows it.
fn report_text(quarter: &str, json: &str, csv: &str) -> String {
    match parse_db_reference(json) {
        Some((_, stamp)) => format!(
            "{stamp} in the grades database; read it with `gradesync report show --quarter \
             {quarter}` or `gradesync report export --quarter {quarter} --format json|csv`"
        ),
        None if csv.is_empty() => json.to_string(),
        None => format!("{json} and {csv}"),
    }
}

pub fn verdict_hint(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Complete => "every valid grade is confirmed at the API",
        Verdict::NeedsCorrection => {
            "the API refused some records by name; correct them at the school and sync again"
        }
        Verdict::Incomplete => {
            "grades are dead-lettered, not sent, or not confirmed at the API; replay with \
             `gradesync dlq replay` once the API is healthy, or sync again"
        }
        Verdict::Empty => {
            "no grade of this quarter is in the store or the source; check the quarter's \
             name (YYYY-Qn), that `gradesync import` ran for it, or GRADESYNC_SOURCE"
        }
    }
}

/// Starts `QuarterlySync` for `quarter` under the id `id` (normally [`workflow_id`]), with
/// the deadline as its execution timeout and a summary for the Web UI without counts.
pub async fn start(
    client: &Client,
    task_queue: &str,
    id: &str,
    quarter: Quarter,
    policy: Policy,
) -> Result<String, CliError> {
    start_counted(client, task_queue, id, quarter, policy, None).await
}

/// Records and schools a quarter has pending, for the run's summary: counts only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub records: u64,
    pub schools: u64,
}

/// What the store holds pending for `quarter` (records not yet synced, rejected or dead).
pub async fn pending_in(database_url: &str, quarter: &Quarter) -> Result<Pending, CliError> {
    let store = crate::worker::open_store(&StoreArgs {
        database_url: database_url.to_string(),
    })
    .await?;
    let counts = store
        .pending_counts(quarter)
        .await
        .map_err(|e| CliError::Unreachable(e.to_string()))?;
    Ok(Pending {
        records: counts.iter().map(|c| c.pending + c.batched).sum(),
        schools: counts.len() as u64,
    })
}

/// The one line the Web UI shows above the run: quarter, counts, deadline.
pub fn static_summary(
    quarter: &Quarter,
    pending: Option<Pending>,
    started_ms: u64,
    policy: &Policy,
) -> String {
    let counts = match pending {
        Some(p) => format!(
            "{} records of {} school{}, ",
            p.records,
            p.schools,
            if p.schools == 1 { "" } else { "s" }
        ),
        None => String::new(),
    };
    format!(
        "quarter {quarter}: {counts}deadline {} ({} h)",
        gradesync_activities::utc::utc_minute(started_ms.saturating_add(policy.deadline_ms)),
        policy.deadline_ms / 3_600_000
    )
}

/// [`start`], with the quarter's pending records and schools in the Web UI's summary.
pub async fn start_counted(
    client: &Client,
    task_queue: &str,
    id: &str,
    quarter: Quarter,
    policy: Policy,
    pending: Option<Pending>,
) -> Result<String, CliError> {
    let id = id.to_string();
    let timeout = Duration::from_millis(policy.deadline_ms);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let summary = static_summary(&quarter, pending, now_ms, &policy);
    let input = SyncInput {
        quarter: Some(quarter.to_string()),
        policy,
        carried: None,
        search_attributes: crate::commands::setup::registered(client).await,
    };
    let options = WorkflowStartOptions::new(task_queue.to_string(), id.clone())
        .execution_timeout(timeout)
        .id_conflict_policy(WorkflowIdConflictPolicy::Fail)
        .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicate)
        .static_summary(summary)
        .build();
    match client
        .start_workflow(QuarterlySync::run, input, options)
        .await
    {
        Ok(_) => Ok(id),
        Err(WorkflowStartError::AlreadyStarted { .. }) => Err(CliError::Attention(format!(
            "a sync of {quarter} is already running as workflow {id}; follow it with \
             `gradesync sync status --quarter {quarter}` instead of starting another"
        ))),
        Err(e) => Err(CliError::Unreachable(format!(
            "cannot start the sync of {quarter}: {e}"
        ))),
    }
}

/// Polls the `progress` query into a progress bar until the run ends, then returns its result.
pub async fn wait_with_progress(client: &Client, id: &str) -> Result<SyncSummary, CliError> {
    let handle = client.get_workflow_handle::<QuarterlySync>(id.to_string());
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix:12} [{bar:40}] {pos}/{len} records ({per_sec}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let result = {
        let poll = async {
            loop {
                if let Ok(p) = handle
                    .query(QuarterlySync::progress, (), WorkflowQueryOptions::default())
                    .await
                {
                    show(&bar, &p);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        };
        tokio::select! {
            r = handle.get_result(WorkflowGetResultOptions::default()) => r,
            _ = poll => unreachable!("the progress poll never ends"),
        }
    };
    bar.finish_and_clear();
    result.map_err(|e| CliError::Attention(format!("the sync workflow {id} did not complete: {e}")))
}

fn show(bar: &ProgressBar, p: &Progress) {
    bar.set_length(p.pending_at_start);
    let done = p.totals.records_synced + p.totals.records_rejected + p.totals.records_dead;
    bar.set_position(done.min(p.pending_at_start));
    bar.set_prefix(p.phase.clone());
    bar.set_message(eta_text::bar_message(p));
}

/// The run's totals and Reconcile's comparison, as `sync start --wait` and `report show`
/// print them.
pub fn print_counts(t: &Counts, r: &ReconcileSummary) {
    println!(
        "  synced {} records in {} batches; rejected {}; dead-lettered {} ({} batches); {} retries, {} throttled waits",
        t.records_synced,
        t.batches_sent,
        t.records_rejected,
        t.records_dead,
        t.batches_dead,
        t.retries,
        t.throttled
    );
    println!(
        "  reconcile: {} synced in store, {} at the API, {} missing, {} mismatched, {} unexpected",
        r.synced_in_store,
        r.received_by_api,
        r.missing_at_api,
        r.hash_mismatches,
        r.unexpected_at_api
    );
}

pub fn print_summary(s: &SyncSummary) {
    let t = &s.totals;
    let r = &s.reconcile;
    println!("quarter {}: {}", s.quarter, s.verdict);
    print_counts(t, r);
    println!(
        "  not at the API: {} rejected, {} dead-lettered, {} not sent, {} unverified; {} redrive waves",
        r.rejected, r.dead_lettered, r.unsent, r.unverified, s.redrives
    );
    if r.webhook_failures > 0 {
        println!(
            "  {} webhook posts failed (alerts or the compliance report); see the report",
            r.webhook_failures
        );
    }
    println!(
        "  report: {}",
        report_text(&s.quarter, &r.report_json, &r.report_csv)
    );
}

async fn status_command(args: StatusArgs) -> CliResult {
    let store = crate::worker::open_store(&args.store).await?;
    let q = args.quarter;
    let rows = store
        .status_counts(&q)
        .await
        .map_err(|e| CliError::Unreachable(e.to_string()))?;
    let run = store
        .run(&q)
        .await
        .map_err(|e| CliError::Unreachable(e.to_string()))?;
    if rows.is_empty() && run.is_none() {
        return Err(CliError::Usage(format!(
            "no grades and no runs for quarter {q} in this database; import grades with \
             `gradesync import FILE.jsonl` or check GRADESYNC_DATABASE_URL"
        )));
    }
    match crate::temporal::connect(&args.temporal).await {
        Ok(client) => {
            let id = workflow_id(&q, &args.temporal.task_queue);
            let handle = client.get_workflow_handle::<QuarterlySync>(id.clone());
            match handle
                .query(QuarterlySync::progress, (), WorkflowQueryOptions::default())
                .await
            {
                Ok(p) => {
                    println!(
                        "workflow {id}: phase {}, {} of {} records synced",
                        p.phase, p.totals.records_synced, p.pending_at_start
                    );
                    // An ended run has no ETA left to give: say how long it took.
                    let ended = run
                        .as_ref()
                        .filter(|r| r.workflow_id == id && r.status != "running")
                        .and_then(|r| Some((r.started_at, r.finished_at?)));
                    let line = match ended {
                        Some((started, finished)) => {
                            Some(eta_text::finished_line(started, finished, p.deadline_at_ms))
                        }
                        None => eta_text::status_line(&p),
                    };
                    if let Some(line) = line {
                        println!("  {line}");
                    }
                }
                Err(_) => println!("workflow {id}: not running"),
            }
        }
        Err(e) => println!("(Temporal not reachable: {e})"),
    }
    if let Some(run) = &run {
        let verdict = match run.status.as_str() {
            "running" => "running".to_string(),
            status => format!("verdict {status}"),
        };
        let report = match run.report_path.as_deref() {
            Some(path) => report_text(&q.to_string(), path, ""),
            None => "-".to_string(),
        };
        println!(
            "last run: {verdict} (workflow {}), report {report}",
            run.workflow_id
        );
    }
    let failures = store
        .webhook_failures(&q)
        .await
        .map_err(|e| CliError::Unreachable(e.to_string()))?;
    if let Some(last) = failures.last() {
        println!(
            "webhooks: {} posts failed (last: {} webhook: {}); the sync went on without them",
            failures.len(),
            last.hook,
            last.error
        );
    }
    println!(
        "{:<20} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "school", "pending", "batched", "synced", "rejected", "dead"
    );
    for r in rows {
        println!(
            "{:<20} {:>9} {:>9} {:>9} {:>9} {:>9}",
            r.school_id, r.pending, r.batched, r.synced, r.rejected, r.dead
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarter_that_has_not_begun_is_refused_unless_forced() {
        // 2026-12-08 03:00 UTC.
        let now = 1_796_698_800;
        let q = |text: &str| text.parse::<Quarter>().unwrap();
        assert!(refuse_a_future_quarter(q("2026-Q4"), now, false).is_ok());
        assert!(refuse_a_future_quarter(q("2026-Q3"), now, false).is_ok());
        let Err(CliError::Usage(why)) = refuse_a_future_quarter(q("2027-Q1"), now, false) else {
            panic!("2027-Q1 was not refused");
        };
        assert!(
            why.contains("2027-Q1 has not begun (it begins 2027-01-01)")
                && why.contains("current quarter is 2026-Q4")
                && why.contains("last one ended is 2026-Q3")
                && why.contains("--force"),
            "{why}"
        );
        assert!(refuse_a_future_quarter(q("2027-Q1"), now, true).is_ok());
        // The instant it begins, it may start.
        assert!(refuse_a_future_quarter(q("2027-Q1"), 1_798_761_600, false).is_ok());
    }

    #[test]
    fn static_summary_reads_quarter_counts_and_deadline() {
        let quarter: Quarter = "2026-Q4".parse().unwrap();
        let policy = Policy::default();
        // 2027-01-01 02:00 UTC, the schedule's start; 47 h later.
        let start_ms = 1_798_768_800_000;
        let pending = Pending {
            records: 250_000,
            schools: 50,
        };
        assert_eq!(
            static_summary(&quarter, Some(pending), start_ms, &policy),
            "quarter 2026-Q4: 250000 records of 50 schools, deadline 2027-01-03 01:00 UTC (47 h)"
        );
        assert_eq!(
            static_summary(&quarter, None, start_ms, &policy),
            "quarter 2026-Q4: deadline 2027-01-03 01:00 UTC (47 h)"
        );
    }
}
