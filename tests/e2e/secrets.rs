//! Secrets done right, checked the way an auditor would: canary values given only through
//! `_FILE` variables (the client secret, both webhook URLs with a token in their path, a
//! Temporal API key), runs that take the error paths (a webhook that fails, a run that
//! fails with an activity failure naming the webhook), then a scan of everything a person
//! or a system could read: the workers' stderr in text and JSON, every history of the
//! quarter, failure messages, `sync status`, the report, `--help` of every subcommand.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{StatusCode, Uri};
use clap::CommandFactory;
use gradesync_activities::model::{Policy, Verdict};
use gradesync_govapi::sim::SimConfig;
use serde_json::Value;

use crate::helpers::{QUARTER, TestApp, fast_policy, outage};
use crate::history;

/// Every canary holds this, so one search finds any of them.
const CANARY: &str = "CANARY";
const CLIENT_SECRET: &str = "CANARY-client-secret-5d1e";
const WRONG_SECRET: &str = "CANARY-wrong-secret-0b3a";
const API_KEY: &str = "CANARY-temporal-key-9c04";
const ALERT_PATH: &str = "/services/T000/B000/CANARY-alert-77aa";
const COMPLIANCE_PATH: &str = "/hooks/CANARY-compliance-31bf";

/// A webhook receiver on any path: answers 500 to its first `failures` posts (all of them
/// with `usize::MAX`), 200 after; keeps the path and body of each.
struct Receiver {
    base: String,
    posts: Arc<Mutex<Vec<(String, Value, u16)>>>,
}

impl Receiver {
    async fn spawn(failures: usize) -> Self {
        let posts = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&posts);
        let count = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new().fallback(move |uri: Uri, body: String| {
            let (seen, count) = (Arc::clone(&seen), Arc::clone(&count));
            async move {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let status = if n < failures { 500 } else { 200 };
                let json = serde_json::from_str(&body).unwrap_or(Value::Null);
                seen.lock()
                    .unwrap()
                    .push((uri.path().to_string(), json, status));
                StatusCode::from_u16(status).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, posts }
    }

    fn posts(&self) -> Vec<(String, Value, u16)> {
        self.posts.lock().unwrap().clone()
    }

    /// `http://127.0.0.1:PORT/…`, as the redacted URL reads.
    fn redacted(&self) -> String {
        format!("{}/…", self.base)
    }
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{content}\n")).unwrap();
    path
}

/// `gradesync worker` with every secret from a file and none in its environment.
fn worker_from_files(
    app: &TestApp,
    secret: &Path,
    alert: &Path,
    compliance: &Path,
    api_key: &Path,
    format: &str,
    log: &Path,
) -> std::process::Child {
    let file = std::fs::File::create(log).unwrap();
    app.worker_command()
        .env_remove("GRADESYNC_GOV_CLIENT_SECRET")
        .env_remove("GRADESYNC_ALERT_WEBHOOK_URL")
        .env_remove("GRADESYNC_COMPLIANCE_WEBHOOK_URL")
        .env_remove("TEMPORAL_API_KEY")
        .env("GRADESYNC_GOV_CLIENT_SECRET_FILE", secret)
        .env("GRADESYNC_ALERT_WEBHOOK_URL_FILE", alert)
        .env("GRADESYNC_COMPLIANCE_WEBHOOK_URL_FILE", compliance)
        // The dev server ignores the key; TLS stays off for it.
        .env("TEMPORAL_API_KEY_FILE", api_key)
        .env("TEMPORAL_TLS", "false")
        .env("GRADESYNC_LOG", "debug")
        .env("GRADESYNC_LOG_FORMAT", format)
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("the gradesync binary starts")
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `--help` of the binary and of every subcommand, recursively, as argument paths.
fn help_paths(cmd: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    for sub in cmd.get_subcommands() {
        let mut path = prefix.clone();
        path.push(sub.get_name().to_string());
        help_paths(sub, path, out);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_files_never_reach_logs_histories_failures_or_help() {
    let config = SimConfig {
        client_secret: CLIENT_SECRET.into(),
        faults: outage(),
        ..SimConfig::default()
    };
    let app = TestApp::spawn_with("canary-secrets", config, None).await;
    let dir = app.dir.path().to_path_buf();
    // The alert webhook fails once (the retry's warning runs), the compliance one always
    // (its failure is recorded, shown by `sync status` and the report).
    let alerts = Receiver::spawn(1).await;
    let compliance = Receiver::spawn(usize::MAX).await;
    let secret = write(&dir, "client-secret", CLIENT_SECRET);
    let alert_url = write(&dir, "alert-url", &format!("{}{ALERT_PATH}", alerts.base));
    let compliance_url = write(
        &dir,
        "compliance-url",
        &format!("{}{COMPLIANCE_PATH}", compliance.base),
    );
    let api_key = write(&dir, "temporal-api-key", API_KEY);
    let (text_log, json_log) = (dir.join("worker-text.log"), dir.join("worker-json.log"));
    let files = [&secret, &alert_url, &compliance_url, &api_key];
    let _w1 = Killed(worker_from_files(
        &app, files[0], files[1], files[2], files[3], "text", &text_log,
    ));
    let _w2 = Killed(worker_from_files(
        &app, files[0], files[1], files[2], files[3], "json", &json_log,
    ));
    app.seed_grades(2, 150).await;
    // Redrive waves far enough apart for the outage to end once the dead letters alerted.
    let policy = Policy {
        redrive_waves_ms: vec![4_000, 8_000],
        ..fast_policy()
    };
    let id = app.start_sync(policy).await;
    wait_until("a dead-letter alert delivered after a failed try", || {
        alerts.posts().iter().any(|(_, _, status)| *status == 200)
    })
    .await;
    app.sim.set_faults(Default::default()).await;
    let summary = app.result(&id).await;
    assert_eq!(summary.verdict, Verdict::Complete, "{summary:?}");
    drop((_w1, _w2));

    // A run that fails at once: the token endpoint refuses the secret from the file, and
    // the alert about it cannot be delivered either; the activity failure says so.
    let refused = SimConfig {
        client_secret: "the-right-one".into(),
        ..SimConfig::default()
    };
    let other = TestApp::spawn_with("canary-refused", refused, None).await;
    let dead_hook = Receiver::spawn(usize::MAX).await;
    let wrong = write(&dir, "wrong-secret", WRONG_SECRET);
    let dead_url = write(&dir, "dead-url", &format!("{}{ALERT_PATH}", dead_hook.base));
    let refused_log = dir.join("worker-refused.log");
    let w3 = Killed(worker_from_files(
        &other,
        &wrong,
        &dead_url,
        &dead_url,
        &api_key,
        "text",
        &refused_log,
    ));
    // One batch, so the SendBatch that alerted is the one whose failure ends the run.
    other.seed_grades(1, 50).await;
    let other_id = other.start_sync(fast_policy()).await;
    let failed = tokio::time::timeout(
        Duration::from_secs(60),
        other
            .client
            .get_workflow_handle::<gradesync_workflows::QuarterlySync>(other_id.clone())
            .get_result(Default::default()),
    )
    .await
    .expect("the run ends at once");
    let failure = format!(
        "{:?}",
        failed.expect_err("refused credentials fail the run")
    );
    drop(w3);

    // Real data was scanned: the files were used (the posts reached the canary paths, the
    // token was issued against the secret), the error paths ran and were logged.
    let alert_posts = alerts.posts();
    assert!(alert_posts.len() >= 2, "{alert_posts:?}");
    assert!(alert_posts.iter().all(|(path, _, _)| path == ALERT_PATH));
    assert!(
        compliance
            .posts()
            .iter()
            .any(|(p, _, _)| p == COMPLIANCE_PATH)
    );
    assert_eq!(dead_hook.posts().len(), 3, "the alert was tried 3 times");
    assert!(app.ledger().await.tokens_issued >= 1);
    assert!(
        failure.contains("the alert about it was not delivered")
            && failure.contains(&dead_hook.redacted()),
        "{failure}"
    );
    let logs: Vec<(PathBuf, String)> = [&text_log, &json_log, &refused_log]
        .iter()
        .map(|p| (p.to_path_buf(), std::fs::read_to_string(p).unwrap()))
        .collect();
    let all_logs: String = logs.iter().map(|(_, t)| t.as_str()).collect();
    assert!(
        logs[0].1.contains("gradesync worker started"),
        "{}",
        logs[0].1
    );
    assert!(
        logs[1]
            .1
            .contains(r#""message":"gradesync worker started""#),
        "{}",
        logs[1].1
    );
    assert!(
        all_logs.contains("webhook POST failed; trying again")
            && all_logs.contains(&alerts.redacted()),
        "the failed alert try is logged with the redacted URL"
    );
    assert!(
        all_logs.contains(&compliance.redacted()),
        "the compliance failure is logged"
    );
    for (path, log) in &logs {
        assert!(!log.contains(CANARY), "a canary in {}", path.display());
    }

    let mut histories = String::new();
    for (app, id) in [(&app, app.workflow_id()), (&other, other.workflow_id())] {
        for (workflow, run) in app.workflow_runs_starting_with(&id) {
            histories.push_str(&history::decoded_text(app, &workflow, Some(&run)));
        }
    }
    assert!(histories.contains("SendBatch") && histories.contains("DeadLetter"));
    assert!(histories.contains("the alert about it was not delivered"));
    assert!(
        !histories.contains(CANARY),
        "a canary in a workflow history"
    );
    assert!(
        !failure.contains(CANARY),
        "a canary in the failure: {failure}"
    );

    // What the team reads: status (with the recorded webhook failure), the report.
    let status = text(&app.gradesync(&["sync", "status", "--quarter", QUARTER]));
    assert!(status.contains("verdict complete"), "{status}");
    let report =
        text(&app.gradesync(&["report", "export", "--quarter", QUARTER, "--format", "json"]));
    assert!(status.contains(&compliance.redacted()), "{status}");
    assert!(report.contains(r#""verdict": "complete""#), "{report}");
    for shown in [&status, &report] {
        assert!(!shown.contains(CANARY), "a canary in: {shown}");
    }

    // `--help` of every subcommand, with every secret set as a value and as a file.
    let mut paths = Vec::new();
    help_paths(&gradesync::cli::Cli::command(), Vec::new(), &mut paths);
    assert!(paths.len() > 10, "{paths:?}");
    let mut helps = 0;
    for path in paths {
        let out = app
            .gradesync_command()
            .env("GRADESYNC_GOV_CLIENT_SECRET", CLIENT_SECRET)
            .env(
                "GRADESYNC_ALERT_WEBHOOK_URL",
                format!("{}{ALERT_PATH}", alerts.base),
            )
            .env(
                "GRADESYNC_COMPLIANCE_WEBHOOK_URL",
                format!("{}{COMPLIANCE_PATH}", compliance.base),
            )
            .env("TEMPORAL_API_KEY", API_KEY)
            .env("GRADESYNC_GOV_CLIENT_SECRET_FILE", &secret)
            .args(&path)
            .arg("--help")
            .output()
            .unwrap();
        let help = text(&out);
        assert!(out.status.success(), "{path:?}: {help}");
        assert!(
            !help.contains(CANARY),
            "a canary in `{path:?} --help`: {help}"
        );
        helps += 1;
    }
    let worker_help = text(&app.gradesync(&["worker", "--help"]));
    assert!(
        worker_help.contains("GRADESYNC_GOV_CLIENT_SECRET_FILE"),
        "{worker_help}"
    );

    // A secret given as a flag works, and is warned about by name, never by value.
    let flagged = app
        .gradesync_command()
        .env_remove("GRADESYNC_GOV_CLIENT_SECRET")
        .args(["check", "--gov-client-secret", CLIENT_SECRET])
        .output()
        .unwrap();
    let shown = text(&flagged);
    assert!(flagged.status.success(), "{shown}");
    assert!(
        shown.contains("--gov-client-secret was given on the command line")
            && shown.contains("GRADESYNC_GOV_CLIENT_SECRET_FILE"),
        "{shown}"
    );
    assert!(!shown.contains(CANARY), "{shown}");
    eprintln!(
        "scanned {} bytes of logs, {} bytes of histories, {helps} --help pages",
        all_logs.len(),
        histories.len()
    );
    other.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_files_and_plain_http_are_checked_before_anything_runs() {
    let app = TestApp::spawn_without_worker("secret-files", Default::default()).await;
    let dir = app.dir.path();
    let secret = write(dir, "secret", "sim-secret");
    let run = |args: &[&str], set: &[(&str, &str)], unset: &[&str]| {
        let mut cmd = app.gradesync_command();
        for k in unset {
            cmd.env_remove(k);
        }
        for (k, v) in set {
            cmd.env(k, v);
        }
        let out = cmd.args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let usage = |(code, err): (Option<i32>, String), needle: &str| {
        assert_eq!(code, Some(2), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(needle), "expected `{needle}`: {err}");
        assert!(!err.contains(CANARY), "{err}");
    };
    let secret_path = secret.to_str().unwrap();

    // From a file only: check passes.
    let (code, err) = run(
        &["check"],
        &[("GRADESYNC_GOV_CLIENT_SECRET_FILE", secret_path)],
        &["GRADESYNC_GOV_CLIENT_SECRET"],
    );
    assert_eq!(code, Some(0), "{err}");

    usage(
        run(
            &["check"],
            &[("GRADESYNC_GOV_CLIENT_SECRET_FILE", secret_path)],
            &[],
        ),
        "both GRADESYNC_GOV_CLIENT_SECRET and GRADESYNC_GOV_CLIENT_SECRET_FILE are set",
    );
    let unreadable = dir.join("no-such-secret");
    for cmd in ["check", "worker"] {
        usage(
            run(
                &[cmd],
                &[(
                    "GRADESYNC_GOV_CLIENT_SECRET_FILE",
                    unreadable.to_str().unwrap(),
                )],
                &["GRADESYNC_GOV_CLIENT_SECRET"],
            ),
            &format!(
                "GRADESYNC_GOV_CLIENT_SECRET_FILE names {}",
                unreadable.display()
            ),
        );
        usage(
            run(&[cmd], &[], &["GRADESYNC_GOV_CLIENT_SECRET"]),
            "no client secret for the government API: put it in a file and set GRADESYNC_GOV_CLIENT_SECRET_FILE",
        );
    }
    let empty = write(dir, "empty", "");
    usage(
        run(
            &["worker"],
            &[("GRADESYNC_ALERT_WEBHOOK_URL_FILE", empty.to_str().unwrap())],
            &["GRADESYNC_ALERT_WEBHOOK_URL"],
        ),
        "GRADESYNC_ALERT_WEBHOOK_URL_FILE names",
    );
    let not_a_url = write(dir, "hook", "CANARY-not-a-url");
    usage(
        run(
            &["worker"],
            &[(
                "GRADESYNC_COMPLIANCE_WEBHOOK_URL_FILE",
                not_a_url.to_str().unwrap(),
            )],
            &["GRADESYNC_COMPLIANCE_WEBHOOK_URL"],
        ),
        "GRADESYNC_COMPLIANCE_WEBHOOK_URL is not an http:// or https:// URL",
    );
    let key = write(dir, "key", "CANARY-key");
    usage(
        run(
            &["check"],
            &[
                ("TEMPORAL_API_KEY_FILE", key.to_str().unwrap()),
                ("TEMPORAL_API_KEY", "CANARY-key"),
            ],
            &[],
        ),
        "both TEMPORAL_API_KEY and TEMPORAL_API_KEY_FILE are set",
    );

    // Plain http to another host is refused, unless allowed (then it is merely
    // unreachable); loopback http (the simulator here) needs nothing.
    let remote = "http://10.255.255.1:9";
    usage(
        run(&["check"], &[("GRADESYNC_GOV_API_URL", remote)], &[]),
        "is plain http to another host",
    );
    usage(
        run(&["worker"], &[("GRADESYNC_GOV_API_URL", remote)], &[]),
        "--allow-insecure-http",
    );
    for allowed in [
        run(
            &["check", "--allow-insecure-http"],
            &[("GRADESYNC_GOV_API_URL", remote)],
            &[],
        ),
        run(
            &["check"],
            &[
                ("GRADESYNC_GOV_API_URL", remote),
                ("GRADESYNC_ALLOW_INSECURE_HTTP", "true"),
            ],
            &[],
        ),
    ] {
        // What answers there (if anything) depends on the network; only the refusal matters.
        assert_ne!(allowed.0, Some(2), "allowed: {}", allowed.1);
        assert!(!allowed.1.contains("plain http"), "{}", allowed.1);
    }
    app.stop().await;
}
