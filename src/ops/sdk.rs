//! The Temporal SDK's worker metrics. The SDK keeps its Prometheus registry private and
//! serves it only from its own listener, so it listens on an ephemeral loopback port and
//! `/metrics` appends what it answers there to gradesync's series: one scrape target per
//! worker, as operators expect.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use temporalio_common::telemetry::metrics::CoreMeter;
use temporalio_common::telemetry::{PrometheusExporterOptions, start_prometheus_metric_exporter};

/// Where the SDK's series can be read, and the meter the worker runtime records into.
pub struct SdkMetrics {
    url: String,
    http: reqwest::Client,
    meter: Arc<dyn CoreMeter>,
    exporter: tokio::task::AbortHandle,
}

impl SdkMetrics {
    /// Starts the SDK's exporter on 127.0.0.1 (a port of the OS's choosing).
    pub fn start() -> anyhow::Result<Self> {
        let options = PrometheusExporterOptions::builder()
            .socket_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .counters_total_suffix(true)
            .use_seconds_for_durations(true)
            .build();
        let started = start_prometheus_metric_exporter(options)
            .context("cannot start the Temporal SDK's metrics exporter")?;
        let http = gradesync_activities::http::client_builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("cannot build the metrics HTTP client")?;
        Ok(Self {
            url: format!("http://{}/metrics", started.bound_addr),
            http,
            meter: started.meter,
            exporter: started.abort_handle,
        })
    }

    pub fn meter(&self) -> Arc<dyn CoreMeter> {
        self.meter.clone()
    }

    /// The SDK's series in Prometheus text.
    pub async fn render(&self) -> anyhow::Result<String> {
        let answer = self.http.get(&self.url).send().await?.error_for_status()?;
        Ok(answer.text().await?)
    }
}

impl Drop for SdkMetrics {
    fn drop(&mut self) {
        self.exporter.abort();
    }
}
