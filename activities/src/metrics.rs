//! gradesync's own Prometheus series, beside the Temporal SDK's worker metrics.
//!
//! One process-wide registry: the activities, the API client and the rate gate count into
//! it where the thing happens, and the worker's `/metrics` renders it. Labels stay
//! low-cardinality: the quarter, an outcome or a status class; never a school, student,
//! record or batch id.

use std::sync::LazyLock;
use std::time::Duration;

use crate::answer_class::AnswerClass;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Every series gradesync exports, registered once.
pub struct Metrics {
    registry: Registry,
    /// Records that reached an outcome: synced, rejected, dead, requeued.
    pub records: IntCounterVec,
    /// SendBatch results and what became of batches: sent, rejected, failed, throttled,
    /// dead, split, redriven.
    pub batches: IntCounterVec,
    /// Every answer of the government API by status class, as the HTML report plots them
    /// (2xx, 4xx, 429, 5xx, other), or `timeout` when none came.
    pub api_answers: IntCounterVec,
    /// Seconds of `Retry-After` the API asked us to wait.
    pub retry_after_seconds: prometheus::Counter,
    /// How long requests waited for their rate slot.
    pub rate_gate_wait: Histogram,
    /// Slots this process was granted; `rate(..) / rate_limit` is the budget in use.
    pub rate_gate_slots: IntCounter,
    /// The API's requests per second, as configured.
    pub rate_limit: Gauge,
    /// Dead-lettered batches not yet redriven, per quarter.
    pub dead_letters_open: IntGaugeVec,
    /// Dead-lettered batches sent again, per quarter.
    pub redrives: IntCounterVec,
    /// Records of a running quarter by state: synced, rejected, dead, owed.
    pub quarter_records: IntGaugeVec,
    /// When the running quarter is projected to finish (unix seconds).
    pub projected_finish: GaugeVec,
    /// When the running quarter's deadline falls (unix seconds).
    pub deadline: GaugeVec,
    /// Records finished per second over the ETA's measuring window.
    pub records_rate: GaugeVec,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("unique name");
    c
}

fn gauge_vec(registry: &Registry, name: &str, help: &str) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), &["quarter"]).expect("valid metric");
    registry.register(Box::new(g.clone())).expect("unique name");
    g
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let retry_after_seconds = prometheus::Counter::new(
            "gradesync_api_retry_after_seconds_total",
            "Seconds of Retry-After the government API asked for",
        )
        .expect("valid metric");
        r.register(Box::new(retry_after_seconds.clone()))
            .expect("unique name");
        let rate_gate_wait = Histogram::with_opts(
            HistogramOpts::new(
                "gradesync_rate_gate_wait_seconds",
                "Time a request waited for its slot of the shared API rate budget",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
        )
        .expect("valid metric");
        r.register(Box::new(rate_gate_wait.clone()))
            .expect("unique name");
        let rate_gate_slots = IntCounter::new(
            "gradesync_rate_gate_slots_total",
            "Request slots of the shared API rate budget this process was granted",
        )
        .expect("valid metric");
        r.register(Box::new(rate_gate_slots.clone()))
            .expect("unique name");
        let rate_limit = Gauge::new(
            "gradesync_rate_limit_per_second",
            "Requests per second the government API allows (shared by all workers)",
        )
        .expect("valid metric");
        r.register(Box::new(rate_limit.clone()))
            .expect("unique name");
        let int_gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique name");
            g
        };
        Self {
            records: counter_vec(
                r,
                "gradesync_records_total",
                "Records that reached an outcome (synced, rejected, dead, requeued)",
                &["quarter", "outcome"],
            ),
            batches: counter_vec(
                r,
                "gradesync_batches_total",
                "Batches by outcome (sent, rejected, failed, throttled, dead, split, redriven)",
                &["quarter", "outcome"],
            ),
            api_answers: counter_vec(
                r,
                "gradesync_api_answers_total",
                "Answers of the government API by class (2xx, 4xx, 429, 5xx, other; timeout: none came)",
                &["class"],
            ),
            retry_after_seconds,
            rate_gate_wait,
            rate_gate_slots,
            rate_limit,
            dead_letters_open: int_gauge(
                "gradesync_dead_letters_open",
                "Dead-lettered batches waiting for a redrive",
                &["quarter"],
            ),
            redrives: counter_vec(
                r,
                "gradesync_redrives_total",
                "Dead-lettered batches sent again",
                &["quarter"],
            ),
            quarter_records: int_gauge(
                "gradesync_quarter_records",
                "Records of a running quarter by state (synced, rejected, dead, owed)",
                &["quarter", "state"],
            ),
            projected_finish: gauge_vec(
                r,
                "gradesync_quarter_projected_finish_timestamp_seconds",
                "When the running quarter is projected to finish at its measured pace",
            ),
            deadline: gauge_vec(
                r,
                "gradesync_quarter_deadline_timestamp_seconds",
                "When the running quarter's compliance deadline falls",
            ),
            records_rate: gauge_vec(
                r,
                "gradesync_quarter_records_per_second",
                "Records finished per second over the quarter's ETA window",
            ),
            registry,
        }
    }

    /// The Prometheus text exposition of every gradesync series.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding our own well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The name of every series family gradesync exports, even those with no sample yet:
    /// what dashboards and alert rules may refer to.
    pub fn names(&self) -> Vec<String> {
        let collectors: [&dyn Collector; 13] = [
            &self.records,
            &self.batches,
            &self.api_answers,
            &self.retry_after_seconds,
            &self.rate_gate_wait,
            &self.rate_gate_slots,
            &self.rate_limit,
            &self.dead_letters_open,
            &self.redrives,
            &self.quarter_records,
            &self.projected_finish,
            &self.deadline,
            &self.records_rate,
        ];
        collectors
            .iter()
            .flat_map(|c| c.desc())
            .map(|d| d.fq_name.clone())
            .collect()
    }

    /// Counts one answer of the government API.
    pub fn api_answer(&self, status: u16, retry_after: Option<Duration>) {
        self.api_answers
            .with_label_values(&[AnswerClass::of_status(status).as_str()])
            .inc();
        if let Some(wait) = retry_after {
            self.retry_after_seconds.inc_by(wait.as_secs_f64());
        }
    }

    /// Forgets a quarter's gauges once it is no longer running, so a finished quarter
    /// cannot keep an alert firing.
    pub fn forget_quarter(&self, quarter: &str) {
        for state in QUARTER_STATES {
            let _ = self.quarter_records.remove_label_values(&[quarter, state]);
        }
        let _ = self.projected_finish.remove_label_values(&[quarter]);
        let _ = self.deadline.remove_label_values(&[quarter]);
        let _ = self.records_rate.remove_label_values(&[quarter]);
    }
}

/// The states of `gradesync_quarter_records`.
pub const QUARTER_STATES: [&str; 4] = ["synced", "rejected", "dead", "owed"];

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_render_by_class_with_retry_after_summed() {
        let m = Metrics::new();
        m.api_answer(201, None);
        m.api_answer(201, None);
        m.api_answer(429, Some(Duration::from_millis(1500)));
        let text = m.render();
        assert!(
            text.contains("gradesync_api_answers_total{class=\"2xx\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("gradesync_api_answers_total{class=\"429\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gradesync_api_retry_after_seconds_total 1.5"),
            "{text}"
        );
    }

    #[test]
    fn a_forgotten_quarter_leaves_no_gauge() {
        let m = Metrics::new();
        m.projected_finish.with_label_values(&["2026-Q4"]).set(1.0);
        m.quarter_records
            .with_label_values(&["2026-Q4", "owed"])
            .set(5);
        assert!(m.render().contains("quarter=\"2026-Q4\""));
        m.forget_quarter("2026-Q4");
        assert!(
            !m.render().contains("quarter=\"2026-Q4\""),
            "{}",
            m.render()
        );
    }
}
