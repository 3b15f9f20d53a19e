//! Temporal over TLS as a production cluster or Temporal Cloud serves it: each test runs
//! its own dev server behind a real nginx that terminates TLS and proxies gRPC, one port
//! requiring a client certificate (mTLS) and one checking an API key, with certificates
//! made by the openssl CLI. `gradesync check` goes through the proxy; what it prints is
//! what a user would see.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use gradesync::devserver::{self, DevServer};
use gradesync_govapi::sim::SimConfig;

use crate::helpers::{TestApp, free_port};

const NGINX: &str = "/usr/sbin/nginx";
const API_KEY: &str = "test-api-key-5f2c";

/// A CA, a server certificate for 127.0.0.1 signed by it, a client certificate signed by
/// it, and a second CA that signed nothing the server uses.
pub(crate) struct Certs {
    pub(crate) ca: PathBuf,
    pub(crate) server: PathBuf,
    pub(crate) server_key: PathBuf,
    pub(crate) client: PathBuf,
    pub(crate) client_key: PathBuf,
    pub(crate) other_ca: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI runs (run `. scripts/ensure-tools.sh`)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    pub(crate) fn generate(dir: &Path) -> Self {
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        for (name, cn) in [("ca", "gradesync test CA"), ("other-ca", "another CA")] {
            let (key, pem, subj) = (
                format!("{name}.key"),
                format!("{name}.pem"),
                format!("/CN={cn}"),
            );
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
            openssl(dir, &args);
        }
        let leaves = [
            (
                "server",
                "/CN=127.0.0.1",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "/CN=gradesync", "extendedKeyUsage=clientAuth\n"),
        ];
        for (name, subj, ext) in leaves {
            let (key, csr, pem, extfile) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            std::fs::write(
                dir.join(&extfile),
                format!("basicConstraints=CA:FALSE\n{ext}"),
            )
            .unwrap();
            let mut args = vec!["req"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &csr, "-subj", subj]);
            openssl(dir, &args);
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "2",
                    "-extfile",
                    &extfile,
                ],
            );
        }
        Self {
            ca: dir.join("ca.pem"),
            server: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            other_ca: dir.join("other-ca.pem"),
        }
    }
}

/// nginx 1.25.1 moved HTTP/2 from a `listen` parameter to its own directive.
fn http2_syntax() -> (&'static str, &'static str) {
    let out = Command::new(NGINX).arg("-v").output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    let version: Vec<u32> = text
        .rsplit('/')
        .next()
        .unwrap_or("")
        .trim()
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    if version >= vec![1, 25, 1] {
        ("", "http2 on;")
    } else {
        (" http2", "")
    }
}

/// A dev server of this test's own, with nginx in front (one process, no workers, so
/// killing it leaves nothing behind): `mtls` requires a client
/// certificate signed by the test CA, `api_key` requires `Authorization: Bearer API_KEY`.
struct TlsProxy {
    dev: DevServer,
    nginx: Child,
    mtls: String,
    api_key: String,
    certs: Certs,
    dir: tempfile::TempDir,
}

impl TlsProxy {
    async fn start() -> Self {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: run `. scripts/ensure-tools.sh` (it installs Debian's nginx)"
        );
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::generate(dir.path());
        let dev = devserver::start(free_port(), None, &dir.path().join("temporal.db"))
            .await
            .expect("the dev server starts");
        let (mtls_port, key_port) = (free_port(), free_port());
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            nginx_conf(dir.path(), &certs, &dev.address, mtls_port, key_port),
        )
        .unwrap();
        let nginx = Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .args(["-e", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("nginx.stderr")).unwrap())
            .spawn()
            .expect("nginx starts");
        let proxy = Self {
            dev,
            nginx,
            mtls: format!("127.0.0.1:{mtls_port}"),
            api_key: format!("127.0.0.1:{key_port}"),
            certs,
            dir,
        };
        proxy.wait_listening();
        proxy
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for address in [&self.mtls, &self.api_key] {
            while TcpStream::connect(address).is_err() {
                let log = std::fs::read_to_string(self.dir.path().join("nginx.stderr"));
                assert!(
                    Instant::now() < deadline,
                    "nginx did not listen on {address}: {}",
                    log.unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.nginx.kill();
        let _ = self.nginx.wait();
    }
}

fn nginx_conf(dir: &Path, certs: &Certs, upstream: &str, mtls: u16, api_key: u16) -> String {
    let d = dir.display();
    let (listen_http2, http2_on) = http2_syntax();
    let tls = format!(
        "ssl_certificate {};\n    ssl_certificate_key {};\n    {http2_on}",
        certs.server.display(),
        certs.server_key.display()
    );
    format!(
        r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  map $http_authorization $api_key_ok {{
    default 0;
    "Bearer {API_KEY}" 1;
  }}
  server {{
    listen 127.0.0.1:{mtls} ssl{listen_http2};
    {tls}
    ssl_client_certificate {ca};
    ssl_verify_client on;
    location / {{ grpc_pass grpc://{upstream}; }}
  }}
  server {{
    listen 127.0.0.1:{api_key} ssl{listen_http2};
    {tls}
    location / {{
      if ($api_key_ok = 0) {{ return 401; }}
      grpc_pass grpc://{upstream};
    }}
  }}
}}
"#,
        ca = certs.ca.display()
    )
}

/// A store and a simulator for `check`'s other two lines, on the proxy's dev server.
async fn app(name: &str, proxy: &TlsProxy) -> TestApp {
    TestApp::spawn_with(name, SimConfig::default(), Some(proxy.dev.address.clone())).await
}

/// `gradesync check` with the app's store and API, then `env` and `args`.
fn check(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = app.gradesync_command();
    without_temporal_settings(&mut cmd, app.dir.path())
        .envs(env.iter().copied())
        .arg("check")
        .args(args)
        .output()
        .expect("the gradesync binary runs")
}

/// No Temporal setting from the test's own environment or home directory.
fn without_temporal_settings<'a>(cmd: &'a mut Command, dir: &Path) -> &'a mut Command {
    for var in [
        "TEMPORAL_ADDRESS",
        "TEMPORAL_NAMESPACE",
        "TEMPORAL_API_KEY",
        "TEMPORAL_PROFILE",
        "TEMPORAL_TLS",
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
        "TEMPORAL_TLS_CLIENT_CERT_PATH",
        "TEMPORAL_TLS_CLIENT_KEY_PATH",
        "TEMPORAL_TLS_SERVER_NAME",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("TEMPORAL_CONFIG_FILE", dir.join("no-temporal.toml"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The one line the user sees, asserting that it is one line, with no Debug dump in it.
fn one_line_error(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert!(!o.status.success(), "expected a failure: {}", stdout(o));
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    for dump in ["Status {", "tonic::", "Error(", "Some(", "source:"] {
        assert!(!err.contains(dump), "no Debug dump: {err}");
    }
    err.strip_prefix("gradesync: ")
        .unwrap_or_else(|| panic!("prefixed: {err}"))
        .to_string()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The flags of an mTLS connection through the proxy's client-certificate port.
fn mtls_args<'a>(proxy: &'a TlsProxy, ca: &'a Path, cert: &'a Path, key: &'a Path) -> [&'a str; 8] {
    [
        "--temporal-address",
        &proxy.mtls,
        "--temporal-tls-ca-cert",
        path(ca),
        "--temporal-tls-cert",
        path(cert),
        "--temporal-tls-key",
        path(key),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_tls_mtls_with_ca_cert_and_key_checks_ok() {
    let proxy = TlsProxy::start().await;
    let app = app("temporal_tls_mtls", &proxy).await;
    let c = &proxy.certs;
    let out = check(
        &app,
        &mtls_args(&proxy, &c.ca, &c.client, &c.client_key),
        &[],
    );
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text.lines().find(|l| l.starts_with("temporal")).unwrap();
    assert_eq!(
        line,
        format!(
            "temporal  ok  {} (namespace default, mTLS (client cert {}), CA {}, no profile)",
            proxy.mtls,
            c.client.display(),
            c.ca.display()
        )
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_tls_api_key_right_is_accepted_wrong_is_refused_in_one_line() {
    let proxy = TlsProxy::start().await;
    let app = app("temporal_tls_api_key", &proxy).await;
    let ca = path(&proxy.certs.ca);
    let env = |key| {
        [
            ("TEMPORAL_ADDRESS", proxy.api_key.as_str()),
            ("TEMPORAL_TLS_SERVER_CA_CERT_PATH", ca),
            ("TEMPORAL_API_KEY", key),
        ]
    };

    let ok = check(&app, &[], &env(API_KEY));
    let text = stdout(&ok);
    assert!(
        ok.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(text.contains("api key: set"), "{text}");
    assert!(!text.contains(API_KEY), "the key is never printed: {text}");

    let wrong = check(&app, &[], &env("not-the-key"));
    assert_eq!(wrong.status.code(), Some(2));
    assert_eq!(
        one_line_error(&wrong),
        format!(
            "Temporal at {} rejected the API key (401 Unauthorized); set TEMPORAL_API_KEY (or \
             api_key in the profile) to a valid key for this namespace",
            proxy.api_key
        )
    );
    assert!(!stdout(&wrong).contains("not-the-key"));

    let none = check(
        &app,
        &[
            "--temporal-address",
            &proxy.api_key,
            "--temporal-tls-ca-cert",
            ca,
        ],
        &[],
    );
    assert!(
        one_line_error(&none)
            .contains("requires authentication (401 Unauthorized); set TEMPORAL_API_KEY"),
        "{}",
        one_line_error(&none)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_tls_wrong_ca_is_one_line_naming_the_ca_file() {
    let proxy = TlsProxy::start().await;
    let app = app("temporal_tls_wrong_ca", &proxy).await;
    let c = &proxy.certs;
    let out = check(
        &app,
        &mtls_args(&proxy, &c.other_ca, &c.client, &c.client_key),
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        one_line_error(&out),
        format!(
            "Temporal at {} presented a certificate not signed by the CA in {}; pass \
             --temporal-tls-ca-cert with the CA that signed the server's certificate",
            proxy.mtls,
            c.other_ca.display()
        )
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_tls_missing_client_cert_is_one_line() {
    let proxy = TlsProxy::start().await;
    let app = app("temporal_tls_no_client_cert", &proxy).await;
    let out = check(
        &app,
        &[
            "--temporal-address",
            &proxy.mtls,
            "--temporal-tls-ca-cert",
            path(&proxy.certs.ca),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        one_line_error(&out),
        format!(
            "Temporal at {} requires a client certificate; pass --temporal-tls-cert and \
             --temporal-tls-key (or set TEMPORAL_TLS_CLIENT_CERT_PATH and \
             TEMPORAL_TLS_CLIENT_KEY_PATH)",
            proxy.mtls
        )
    );

    // A certificate from a CA the proxy does not trust is a rejected one, not a missing one.
    let c = &proxy.certs;
    let other_key = c.other_ca.with_extension("key");
    let out = check(
        &app,
        &[
            "--temporal-address",
            &proxy.mtls,
            "--temporal-tls-ca-cert",
            path(&c.ca),
            "--temporal-tls-cert",
            path(&c.other_ca),
            "--temporal-tls-key",
            path(&other_key),
        ],
        &[],
    );
    assert!(
        one_line_error(&out).contains(&format!(
            "rejected the client certificate {}",
            c.other_ca.display()
        )),
        "{}",
        one_line_error(&out)
    );
    app.stop().await;
}

/// No server, and a command other than `check`: these fail on the settings alone, before
/// any connection (the closed port would otherwise say "cannot reach").
#[test]
fn temporal_tls_cert_without_key_and_bad_pem_fail_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let cert = dir.join("client.pem");
    let describe = |flags: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gradesync"));
        without_temporal_settings(&mut cmd, dir)
            .args(["schedule", "describe", "--schedule-id", "none"])
            .args(["--temporal-address", "127.0.0.1:9"])
            .args(flags)
            .output()
            .expect("the gradesync binary runs")
    };

    let out = describe(&["--temporal-tls-cert", path(&cert)]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        one_line_error(&out),
        "--temporal-tls-cert was given without a client key; pass --temporal-tls-key (or set \
         TEMPORAL_TLS_CLIENT_KEY_PATH) with the certificate's private key"
    );

    let out = describe(&["--temporal-tls-key", path(&cert)]);
    assert_eq!(
        one_line_error(&out),
        "--temporal-tls-key was given without a client certificate; pass --temporal-tls-cert \
         (or set TEMPORAL_TLS_CLIENT_CERT_PATH) with the certificate of that key"
    );

    let missing = dir.join("missing-ca.pem");
    let out = describe(&["--temporal-tls-ca-cert", path(&missing)]);
    assert!(
        one_line_error(&out).starts_with(&format!(
            "cannot read the Temporal TLS CA certificate {}: No such file",
            missing.display()
        )),
        "{}",
        one_line_error(&out)
    );

    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    let out = describe(&["--temporal-tls-ca-cert", path(&junk)]);
    assert_eq!(
        one_line_error(&out),
        format!(
            "the Temporal TLS CA certificate {} is not valid PEM; it must hold a PEM \
             certificate (-----BEGIN CERTIFICATE-----)",
            junk.display()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_tls_profile_file_selects_address_and_tls() {
    let proxy = TlsProxy::start().await;
    let app = app("temporal_tls_profile", &proxy).await;
    let c = &proxy.certs;
    let file = proxy.dir.path().join("temporal.toml");
    std::fs::write(
        &file,
        format!(
            r#"# The default profile points nowhere: only a selected profile can succeed.
[profile.default]
address = "127.0.0.1:9"

[profile.mtls]
address = "{mtls}"
namespace = "default"
[profile.mtls.tls]
server_ca_cert_path = "{ca}"
client_cert_path = "{cert}"
client_key_path = "{key}"

[profile.cloud]
address = "{api}"
api_key = "{API_KEY}"
[profile.cloud.tls]
server_ca_cert_path = "{ca}"
"#,
            mtls = proxy.mtls,
            api = proxy.api_key,
            ca = c.ca.display(),
            cert = c.client.display(),
            key = c.client_key.display(),
        ),
    )
    .unwrap();
    let config = [("TEMPORAL_CONFIG_FILE", path(&file))];

    let out = check(&app, &["--temporal-profile", "mtls"], &config);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "temporal  ok  {} (namespace default, mTLS",
            proxy.mtls
        )) && text.contains(&format!("profile `mtls` of {}", file.display())),
        "{text}"
    );

    // TEMPORAL_PROFILE selects too; the key comes from the profile and is never printed.
    let out = check(&app, &[], &[config[0], ("TEMPORAL_PROFILE", "cloud")]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("api key: set") && text.contains("profile `cloud`"),
        "{text}"
    );
    assert!(!text.contains(API_KEY), "{text}");

    // ...and the flag beats it.
    let out = check(
        &app,
        &["--temporal-profile", "mtls"],
        &[config[0], ("TEMPORAL_PROFILE", "cloud")],
    );
    assert!(stdout(&out).contains("profile `mtls`"), "{}", stdout(&out));

    let out = check(&app, &["--temporal-profile", "prod"], &config);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        one_line_error(&out),
        format!(
            "no Temporal profile `prod` in {} (it has: cloud, default, mtls); pass \
             --temporal-profile with one of those or add [profile.prod]",
            file.display()
        )
    );
    app.stop().await;
}
