//! The simulator's shared state behind one lock, and the decisions taken at a request's
//! arrival (rate limit, outage, random 5xx, 403 and 400) before any handler runs. One lock keeps every
//! batch atomic and every ledger count exact; nothing awaits while holding it.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{HeaderMap, Method};
use axum::response::Response;
use rand::rngs::StdRng;
use tokio::time::Instant;

use super::SimConfig;
use super::auth::TokenStore;
use super::faults::{Faults, Roll};
use super::ledger::{KeyTable, Ledger, RecordStore};
use super::problem::{self, Refusal};
use super::rate::{ArrivalKind, ArrivalStats, Quota, RateLimiter};

pub(crate) struct SimState {
    pub client_id: String,
    pub client_secret: String,
    pub token_ttl: Duration,
    inner: Mutex<Inner>,
}

pub(crate) struct Inner {
    pub faults: Faults,
    faults_set_at: Instant,
    rng: StdRng,
    limiter: RateLimiter,
    arrivals: ArrivalStats,
    /// The wall clock when `arrivals` started, so its instants can be set beside a log.
    started_unix_ms: u64,
    pub tokens: TokenStore,
    pub keys: KeyTable,
    pub store: RecordStore,
    pub ledger: Ledger,
}

/// The outcome of the arrival checks.
pub(crate) enum Admission {
    Admitted { roll: Roll, quota: Option<Quota> },
    Refused(Response),
}

impl SimState {
    pub fn new(config: SimConfig) -> Self {
        let now = Instant::now();
        let inner = Inner {
            rng: config.faults.rng(),
            faults: config.faults,
            faults_set_at: now,
            limiter: RateLimiter::default(),
            arrivals: ArrivalStats::new(now),
            started_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            tokens: TokenStore::default(),
            keys: KeyTable::default(),
            store: RecordStore::default(),
            ledger: Ledger::default(),
        };
        Self {
            client_id: config.client_id,
            client_secret: config.client_secret,
            token_ttl: config.token_ttl,
            inner: Mutex::new(inner),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic under the lock leaves plain data behind; keep serving it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Replaces the faults, restarting the random stream and the outage clock.
    pub fn set_faults(&self, faults: Faults) {
        let mut inner = self.lock();
        inner.rng = faults.rng();
        inner.faults = faults;
        inner.faults_set_at = Instant::now();
    }

    pub fn ledger(&self) -> Ledger {
        let inner = self.lock();
        let mut ledger = inner.ledger.clone();
        ledger.max_requests_in_window = inner.arrivals.max_in_window;
        ledger.tightest_span_ms = inner
            .arrivals
            .tightest_span()
            .map(|d| d.as_secs_f64() * 1000.0);
        ledger.tightest_spans = inner.arrivals.tightest_spans();
        ledger.started_unix_ms = inner.started_unix_ms;
        ledger.arrivals_per_second = inner.arrivals.per_second.clone();
        ledger
    }

    pub fn authorize(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let inner = self.lock();
        inner
            .tokens
            .check(headers, Instant::now())
            .map_err(|f| problem::unauthorized(f).into())
    }

    /// Accounts for an API request at its arrival and decides whether it is refused
    /// before reaching its handler.
    pub fn arrive(&self, method: &Method, path: &str) -> Admission {
        let now = Instant::now();
        let mut inner = self.lock();
        let window = Duration::from_millis(inner.faults.rate_window_ms.max(1));
        inner.ledger.requests_total += 1;
        let kind = if path == "/oauth/token" {
            ArrivalKind::Token
        } else if is_batch_post(method, path) {
            inner.ledger.batch_posts += 1;
            ArrivalKind::Send
        } else {
            ArrivalKind::Read
        };
        let limit = inner.faults.rate_limit;
        inner.arrivals.arrive(now, kind, window, limit);
        tracing::trace!(%method, path, "gov-sim arrival");
        let roll = Roll::draw(&mut inner.rng);
        let quota = match inner.limiter.admit(now, limit, window) {
            Ok(quota) => quota,
            Err(quota) => return Admission::Refused(problem::too_many_requests(quota)),
        };
        if let Some(injected) = inner.injected_failure(now, method, path, &roll) {
            let mut resp = match injected {
                Injected::Status(status) => {
                    let retry_after = inner.faults.retry_after_secs.filter(|_| status == 503);
                    problem::unavailable(status, retry_after)
                }
                Injected::ForbiddenHtml => {
                    inner.ledger.posts_forbidden += 1;
                    problem::forbidden_html()
                }
                Injected::UnnamedRecord => {
                    inner.ledger.posts_unnamed_400 += 1;
                    problem::unnamed_record()
                }
            };
            quota.inspect(|q| problem::set_quota(&mut resp, *q));
            return Admission::Refused(resp);
        }
        Admission::Admitted { roll, quota }
    }

    /// Counts an answer that reached the client, or a connection closed on purpose.
    pub fn answered(&self, status: Option<u16>, batch_post: bool) {
        let mut inner = self.lock();
        match status {
            Some(status) => {
                *inner.ledger.status_counts.entry(status).or_default() += 1;
                if batch_post && status == 401 {
                    inner.ledger.posts_unauthorized += 1;
                }
            }
            None => inner.ledger.connections_dropped += 1,
        }
    }
}

/// Whether a request is a batch send, `POST /v1/grade-batches`.
pub(crate) fn is_batch_post(method: &Method, path: &str) -> bool {
    method == Method::POST && path == "/v1/grade-batches"
}

/// Whether a request asks for a batch's receipt, `GET /v1/grade-batches/{id}`.
fn is_receipt_lookup(method: &Method, path: &str) -> bool {
    method == Method::GET && path.starts_with("/v1/grade-batches/")
}

/// A failure decided at arrival, before any handler runs.
enum Injected {
    /// The outage's 503, or a random 503, 500, 502 or 504.
    Status(u16),
    /// A gateway's `403 Forbidden` HTML page.
    ForbiddenHtml,
    /// A 400 whose `errors[]` names a record the batch does not hold.
    UnnamedRecord,
}

impl Inner {
    /// The outage, the random 503 of receipt lookups, then the random 503, 5xx, 403 and
    /// 400 of batch POSTs. These are not remembered for the idempotency key: the batch was
    /// never looked at.
    fn injected_failure(
        &self,
        now: Instant,
        method: &Method,
        path: &str,
        roll: &Roll,
    ) -> Option<Injected> {
        let f = &self.faults;
        let outage = Duration::from_millis(f.outage_ms);
        if path.starts_with("/v1/") && f.outage_ms > 0 && now < self.faults_set_at + outage {
            return Some(Injected::Status(503));
        }
        if is_receipt_lookup(method, path) {
            // The same draw as a POST's 503: the roll stream stays one per request.
            return (roll.p503 < f.p_lookup_503).then_some(Injected::Status(503));
        }
        if !is_batch_post(method, path) {
            return None;
        }
        if roll.p503 < f.p_503 {
            return Some(Injected::Status(503));
        }
        if roll.p5xx < f.p_5xx {
            return Some(Injected::Status(roll.server_error()));
        }
        if roll.p403 < f.p_403_html {
            return Some(Injected::ForbiddenHtml);
        }
        (roll.p400 < f.p_400_unnamed).then_some(Injected::UnnamedRecord)
    }
}
