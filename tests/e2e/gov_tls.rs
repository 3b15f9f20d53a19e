//! The government API over HTTPS, as a ministry gateway serves it: the simulator with a
//! certificate from a private CA and, for mTLS, requiring a client certificate from it
//! (`gradesync gov-sim --tls-cert --tls-key --tls-client-ca`), with certificates made by
//! the openssl CLI. A quarter syncs over it; `gradesync check` says in one line what is
//! wrong with a CA or a client certificate.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use gradesync_activities::model::Verdict;
use gradesync_govapi::sim::{Faults, SimConfig, SimTls};

use crate::helpers::{TestApp, assert_ledger_clean, fast_policy};
use crate::temporal_tls::Certs;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An app whose simulator requires mTLS with `certs`, its worker settings trusting the CA
/// and holding the client certificate.
async fn mtls_app(name: &str, certs: &Certs) -> TestApp {
    mtls_app_with(name, certs, SimConfig::default()).await
}

/// [`mtls_app`] with the simulator's whole configuration (its faults).
pub(crate) async fn mtls_app_with(name: &str, certs: &Certs, config: SimConfig) -> TestApp {
    let tls = SimTls {
        cert: certs.server.clone(),
        key: certs.server_key.clone(),
        client_ca: Some(certs.ca.clone()),
    };
    let mut app = TestApp::spawn_with_sim_tls(name, config, None, Some(tls)).await;
    assert!(app.sim.base_url().starts_with("https://127.0.0.1:"));
    app.worker_args.gov.gov_ca_cert = Some(certs.ca.clone());
    app.worker_args.gov.gov_client_cert = Some(certs.client.clone());
    app.worker_args.gov.gov_client_key = Some(certs.client_key.clone());
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarter_syncs_complete_over_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let app = mtls_app("gov-mtls", &certs).await.with_worker().await;
    let n = app.seed_grades(2, 150).await;
    let summary = app.sync_and_wait(fast_policy()).await;
    assert_eq!(summary.verdict, Verdict::Complete, "{summary:?}");
    assert_eq!(summary.totals.records_synced, n);
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    assert_eq!(
        ledger.records.len() as u64,
        n,
        "every record reached the API"
    );

    // `check` with the same settings says how TLS was set up.
    let ok = app.gradesync(&["check"]);
    let out = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(ok.status.success(), "{out}{}", stderr(&ok));
    assert!(
        out.contains("gov-api   ok  https://127.0.0.1:") && out.contains("client cert"),
        "{out}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_a_wrong_ca_and_a_missing_or_mismatched_client_cert_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let app = mtls_app("gov-mtls-check", &certs).await;
    let check = |envs: &[(&str, &std::path::Path)], removed: &[&str]| {
        let mut cmd = app.gradesync_command();
        for (k, v) in envs {
            cmd.env(k, v);
        }
        for k in removed {
            cmd.env_remove(k);
        }
        cmd.arg("check")
            .output()
            .expect("the gradesync binary runs")
    };
    // A line of base64 from each certificate and key: none may be printed.
    let pem_lines: Vec<String> = [&certs.ca, &certs.client, &certs.client_key, &certs.other_ca]
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .nth(1)
                .unwrap()
                .to_string()
        })
        .collect();
    let one_line = |out: &Output, needle: &str| {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(needle), "expected `{needle}`: {err}");
        for line in &pem_lines {
            assert!(!err.contains(line.as_str()), "PEM content printed: {err}");
        }
    };

    let wrong_ca = check(&[("GRADESYNC_GOV_CA_CERT", &certs.other_ca)], &[]);
    one_line(
        &wrong_ca,
        "presented a certificate not signed by a CA we trust",
    );
    one_line(&wrong_ca, "--gov-ca-cert");

    let system_cas = check(&[], &["GRADESYNC_GOV_CA_CERT"]);
    one_line(&system_cas, "not signed by a CA we trust");

    let no_client_cert = check(
        &[],
        &["GRADESYNC_GOV_CLIENT_CERT", "GRADESYNC_GOV_CLIENT_KEY"],
    );
    one_line(&no_client_cert, "requires a client certificate");

    // A client certificate the gateway's CA did not sign: the server's own, used as a
    // client certificate, is from the same CA; the other CA's self-signed one is not.
    let other_key = dir.path().join("other-ca.key");
    let rejected = check(
        &[
            ("GRADESYNC_GOV_CLIENT_CERT", &certs.other_ca),
            ("GRADESYNC_GOV_CLIENT_KEY", &other_key),
        ],
        &[],
    );
    one_line(&rejected, "rejected our client certificate");

    let mismatch = check(&[("GRADESYNC_GOV_CLIENT_KEY", &other_key)], &[]);
    one_line(&mismatch, "does not belong to the client certificate");

    let half = check(&[], &["GRADESYNC_GOV_CLIENT_KEY"]);
    one_line(
        &half,
        "--gov-client-cert was given without --gov-client-key",
    );

    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let not_pem = check(&[("GRADESYNC_GOV_CA_CERT", &junk)], &[]);
    one_line(&not_pem, "junk.pem holds no PEM certificate");

    // Nothing of the above reached the API's token endpoint.
    assert_eq!(app.ledger().await.tokens_issued, 0);
    app.stop().await;
}

/// `gradesync gov-sim` itself serving HTTPS from its flags, as a stack would run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_command_serves_tls_from_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let port = crate::helpers::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut sim = Command::new(env!("CARGO_BIN_EXE_gradesync"))
        .arg("gov-sim")
        .args(["--listen", &listen, "--tls-cert"])
        .arg(&certs.server)
        .arg("--tls-key")
        .arg(&certs.server_key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let app = TestApp::spawn_without_worker("gov-sim-tls", Faults::default()).await;
    let url = format!("https://{listen}");
    let mut ok = None;
    for _ in 0..100 {
        let out = app
            .gradesync_command()
            .env("GRADESYNC_GOV_API_URL", &url)
            .env("GRADESYNC_GOV_CA_CERT", &certs.ca)
            .arg("check")
            .output()
            .unwrap();
        if out.status.success() {
            ok = Some(out);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = sim.kill();
    let _ = sim.wait();
    let ok = ok.expect("check passed against gov-sim over TLS");
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(out.contains(&format!("gov-api   ok  {url}")), "{out}");

    let bad = Command::new(env!("CARGO_BIN_EXE_gradesync"))
        .args(["gov-sim", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&certs.server)
        .arg("--tls-key")
        .arg(dir.path().join("missing.key"))
        .output()
        .unwrap();
    let err = stderr(&bad);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert!(
        err.contains("missing.key") && err.contains("--tls-key"),
        "{err}"
    );
    app.stop().await;
}
