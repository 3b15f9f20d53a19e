//! `GovClient`: tokens, pacing and the HTTP exchanges with the government API. Every
//! request waits for the `RateGate` first, because the API counts all of them, and tells
//! the gate when it really left (or that it never did), leaving within a bound of its slot
//! or not at all. It takes its token only once it holds its slot: a token checked before a
//! wait of seconds at the gate can expire on the way, and its 401 spends a slot for
//! nothing. The token is cached and shared by all callers, so concurrent sends cost one
//! token request.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use gradesync_govapi::Quarter;
use gradesync_govapi::contract::{
    BatchReceipt, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, Problem, QuarterSummary, RecordHash,
    RecordsPage, TokenResponse,
};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{RequestBuilder, Url};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

use super::credentials::{Credentials, Secret};
use super::departure;
use super::error::GovError;
use super::excerpt::excerpt;
use super::outcome::{
    Answer, RetryReason, SendOutcome, Verdict, judge_post, parse_retry_after, problem_of,
    retry_reason,
};
use super::rate_gate::{HeldSlot, RateGate};
use super::tls::{self, GovTls, TlsProblem};

/// How long a connection attempt may take, at most (capped by the request timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A request leaves within the connect timeout of its rate slot or is abandoned unsent;
/// the gate holds its lane until a margin later still, for a connection task that took the
/// request just as it was abandoned (only a thread's scheduling separates that from the
/// write). The same bound is how long a lane waits for a worker that died holding it.
const LEAVE_MARGIN: Duration = Duration::from_secs(1);
/// How many times a read call waits out a 429/503 before giving the error to its caller.
const READ_RETRIES: u32 = 3;
/// Wait before re-asking after a 429/503 that named no `Retry-After` (doubled each time).
const DEFAULT_BUSY_WAIT: Duration = Duration::from_secs(1);
/// A read call waits out at most this long in one go; a longer `Retry-After` is handed
/// to the caller, whose retry policy (Temporal's) is better placed to sleep that long.
const MAX_HONOURED_WAIT: Duration = Duration::from_secs(60);
/// A request leaves with a token only if the token outlives its departure by this much
/// (a quarter of the lifetime for shorter-lived tokens): the time to reach the API and be
/// authorized there.
const TOKEN_MARGIN: Duration = Duration::from_secs(2);
/// A slot held longer than this while another caller fetched the token is given up for a
/// fresh one: leaving that late could crowd the gate's next start.
const STALE_SLOT: Duration = Duration::from_millis(50);
/// Token requests one departure may make before it leaves with what it got; bounds the
/// loop should the API issue tokens that expire at once.
const TOKEN_FETCHES: u32 = 2;
/// The largest answer body read from the API. The biggest the contract has is a listing
/// page of 10,000 record hashes (about 1.1 MB); anything far larger is not the API's, and
/// reading it whole would let a broken gateway exhaust the worker's memory.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Where the API is and who we are to it.
#[derive(Debug, Clone)]
pub struct GovClientConfig {
    pub base_url: String,
    pub credentials: Credentials,
    /// Whole-request timeout (connect, send, answer). The API is slow under load; too
    /// short a timeout turns slow successes into lost answers.
    pub request_timeout: Duration,
    /// Accept an `http://` URL whose host is not this machine: the client secret and
    /// every grade would cross the network in clear. Loopback `http://` is always allowed.
    pub allow_insecure_http: bool,
    /// Custom CA and client certificate (mTLS) for an `https://` API.
    pub tls: GovTls,
    /// Answers larger than this are not read (see [`MAX_ANSWER_BYTES`]).
    pub max_answer_bytes: usize,
}

impl GovClientConfig {
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

    pub fn new(base_url: impl Into<String>, credentials: Credentials) -> Self {
        Self {
            base_url: base_url.into(),
            credentials,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            allow_insecure_http: false,
            tls: GovTls::default(),
            max_answer_bytes: MAX_ANSWER_BYTES,
        }
    }
}

/// The government API client. Cheap to clone; clones share the token and the gate.
#[derive(Clone)]
pub struct GovClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    credentials: Credentials,
    request_timeout: Duration,
    gate: Arc<dyn RateGate>,
    token: Mutex<Option<Token>>,
    /// How long after its slot a request may still leave (see [`LEAVE_MARGIN`]).
    leave_within: Duration,
    /// Whether a client certificate is configured (to tell what a handshake failure means).
    client_cert: bool,
    max_answer_bytes: usize,
}

#[derive(Debug, Clone)]
struct Token {
    access: Secret,
    /// Past this, a request leaving now might arrive with an expired token.
    good_until: Instant,
}

/// What a held gate slot turned out to be good for.
enum Slot {
    /// Leave on it with this token.
    Go(HeldSlot, Secret),
    /// It carried the token request, or went stale while another caller fetched the
    /// token: take another.
    Spent,
}

/// An exchange that did not yield the answer the caller wanted.
#[derive(Debug)]
enum Failure {
    /// No complete answer: connect error, timeout, connection broken mid-answer.
    Transport(reqwest::Error),
    /// An answer whose status is not a success.
    Status(Answer),
    /// A success whose body is not the contract's.
    Decode {
        status: u16,
        source: serde_json::Error,
        excerpt: Option<String>,
    },
    /// An answer whose body is larger than the client reads.
    TooLarge { status: u16 },
    /// Not on its way by its deadline (the connection took too long): abandoned unsent.
    NotOnTime,
}

impl fmt::Debug for GovClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GovClient")
            .field("base_url", &self.inner.base_url)
            .field("client_id", &self.inner.credentials.client_id)
            .field("request_timeout", &self.inner.request_timeout)
            .field("gate", &self.inner.gate)
            .finish_non_exhaustive()
    }
}

impl GovClient {
    pub fn new(config: GovClientConfig, gate: Arc<dyn RateGate>) -> Result<Self, GovError> {
        let base_url = check_base_url(&config.base_url, config.allow_insecure_http)?;
        let builder = config
            .tls
            .apply(crate::http::client_builder())
            .map_err(GovError::Client)?;
        let connect_timeout = config.request_timeout.min(CONNECT_TIMEOUT);
        let http = builder
            .timeout(config.request_timeout)
            .connect_timeout(connect_timeout)
            // A redirected POST would silently turn into a GET; surface it instead.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gradesync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(GovError::Client)?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url,
                credentials: config.credentials,
                request_timeout: config.request_timeout,
                gate,
                token: Mutex::new(None),
                leave_within: connect_timeout + LEAVE_MARGIN,
                client_cert: config.tls.client.is_some(),
                max_answer_bytes: config.max_answer_bytes,
            }),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// Sends one batch: `body` are the exact stored bytes, `batch_id` its idempotency
    /// key; retries must pass the same pair. One call makes one POST, plus at most one
    /// token refresh and resend on 401, plus at most one receipt lookup when the answer
    /// was lost (the API may have committed the batch anyway).
    pub async fn send_batch(&self, batch_id: Uuid, body: Bytes) -> SendOutcome {
        let outcome = self.try_send(batch_id, &body).await;
        log_outcome(batch_id, body.len(), &outcome);
        outcome
    }

    /// The receipt of a batch the API holds, `None` if it has never committed it.
    pub async fn receipt(&self, batch_id: Uuid) -> Result<Option<BatchReceipt>, GovError> {
        match self
            .get_json(self.batch_url(batch_id), "a batch lookup", READ_RETRIES)
            .await
        {
            Ok(receipt) => Ok(Some(receipt)),
            Err(GovError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Asks for a fresh token and sends nothing else: proves the API answers and accepts
    /// our credentials (for `gradesync check` and the worker's start-up probe).
    pub async fn check(&self) -> Result<(), GovError> {
        let slot = self.hold().await;
        self.fetch_token(slot)
            .await
            .map(|_| ())
            .map_err(|f| self.gov_error(f, "a token request"))
    }

    /// Caches a token unless a fresh one is already there, so a run's first sends do not
    /// wait a token round trip at the API's latency. A failure is left for the sends to
    /// meet, retry and report.
    pub async fn warm_up(&self) {
        if let Err(e) = self.token_ready().await {
            tracing::debug!(error = %e, "token warm-up failed");
        }
    }

    /// Proves a request could leave now: a fresh token is cached, or one is fetched (on a
    /// rate slot) and cached. The worker's readiness probe asks this, so probing costs at
    /// most one token request per token lifetime.
    pub async fn token_ready(&self) -> Result<(), GovError> {
        if self.cached_token(Instant::now()).await.is_some() {
            return Ok(());
        }
        let slot = self.hold().await;
        let mut cache = self.inner.token.lock().await;
        if usable(cache.as_ref(), Instant::now()).is_some() {
            return Ok(());
        }
        let token = self
            .fetch_token(slot)
            .await
            .map_err(|f| self.gov_error(f, "a token request"))?;
        *cache = Some(token);
        Ok(())
    }

    /// How many records the API holds for the quarter, per school.
    pub async fn summary(&self, quarter: &Quarter) -> Result<QuarterSummary, GovError> {
        let url = self.url(&format!("/v1/quarters/{quarter}/summary"), &[])?;
        self.get_json(url, "a quarter summary request", READ_RETRIES)
            .await
    }

    /// Every record hash the API holds for the quarter (optionally one school), all pages.
    pub async fn record_hashes(
        &self,
        quarter: &Quarter,
        school_id: Option<&str>,
        page_size: usize,
    ) -> Result<Vec<RecordHash>, GovError> {
        let mut hashes = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let page = self
                .records_page(quarter, school_id, page_size, page_token.as_deref())
                .await?;
            hashes.extend(page.records);
            match page.next_page_token {
                Some(next) if !next.is_empty() => page_token = Some(next),
                _ => break,
            }
        }
        tracing::debug!(%quarter, records = hashes.len(), "record hashes fetched");
        Ok(hashes)
    }

    /// One page of the quarter's record hashes, sorted by record id; `page_token` is the
    /// previous page's `next_page_token`. A token handed back unchanged is an error: the
    /// listing would never end.
    pub async fn records_page(
        &self,
        quarter: &Quarter,
        school_id: Option<&str>,
        page_size: usize,
        page_token: Option<&str>,
    ) -> Result<RecordsPage, GovError> {
        let path = format!("/v1/quarters/{quarter}/records");
        let size = page_size.to_string();
        let mut query = vec![("page_size", size.as_str())];
        query.extend(school_id.map(|s| ("school_id", s)));
        query.extend(page_token.map(|t| ("page_token", t)));
        let url = self.url(&path, &query)?;
        let page: RecordsPage = self.get_json(url, "a records page", READ_RETRIES).await?;
        match (&page.next_page_token, page_token) {
            (Some(next), Some(asked)) if next == asked => Err(stuck_paging()),
            _ => Ok(page),
        }
    }

    async fn try_send(&self, batch_id: Uuid, body: &Bytes) -> SendOutcome {
        let mut refreshed = false;
        loop {
            let (slot, token) = match self.depart().await {
                Ok(departure) => departure,
                Err(failure) => return token_failure_outcome(failure),
            };
            let request = self
                .inner
                .http
                .post(self.batches_url())
                .bearer_auth(token.expose())
                .header(IDEMPOTENCY_KEY, batch_id.to_string())
                .header(CONTENT_TYPE, "application/json");
            let answer = match self.exchange(slot, request, Some(body.clone())).await {
                Ok(answer) => answer,
                // Abandoned before it left: no commit to look for.
                Err(Failure::NotOnTime) => {
                    return retry(RetryReason::ConnectionLost, None, None);
                }
                // Nothing reached the server: no commit to look for.
                Err(Failure::Transport(e)) if e.is_connect() => {
                    if let Some(problem) = self.tls_problem(&e) {
                        tracing::error!(%batch_id, error = %self.tls_error(problem), "TLS with the government API failed");
                    }
                    return retry(RetryReason::ConnectionLost, None, None);
                }
                Err(Failure::Transport(e)) => {
                    return self.look_up(batch_id, transport_reason(&e), None).await;
                }
                // The answer is unreadable, so whether the batch was applied is unknown.
                Err(Failure::TooLarge { status }) => {
                    let note = format!(
                        "an answer larger than {} bytes",
                        self.inner.max_answer_bytes
                    );
                    return self
                        .look_up(batch_id, RetryReason::BadAnswer(status), Some(note))
                        .await;
                }
                Err(other) => return token_failure_outcome(other),
            };
            match judge_post(&answer) {
                Verdict::Done(outcome) => return outcome,
                Verdict::Lookup(reason) => {
                    return self.look_up(batch_id, reason, excerpt(&answer.body)).await;
                }
                Verdict::RefreshToken(_) if !refreshed => {
                    tracing::debug!(%batch_id, "token refused; fetching a new one");
                    self.invalidate(&token).await;
                    refreshed = true;
                }
                Verdict::RefreshToken(problem) => return SendOutcome::AuthFailed { problem },
            }
        }
    }

    /// The answer to our POST was lost; the API may have committed the batch all the
    /// same, and then a receipt settles it without another POST.
    async fn look_up(
        &self,
        batch_id: Uuid,
        reason: RetryReason,
        excerpt: Option<String>,
    ) -> SendOutcome {
        tracing::debug!(%batch_id, %reason, "answer lost; looking the batch up");
        match self
            .get_json(self.batch_url(batch_id), "a batch lookup", 0)
            .await
        {
            Ok(receipt) => SendOutcome::Sent {
                receipt,
                replayed: true,
                resolved: true,
            },
            Err(e) => retry(reason, e.retry_after(), excerpt),
        }
    }

    /// GET with the shared token; refreshes the token once on 401 and waits out up to
    /// `busy_retries` 429/503 answers.
    async fn get_json<T: DeserializeOwned>(
        &self,
        url: Url,
        what: &'static str,
        busy_retries: u32,
    ) -> Result<T, GovError> {
        let mut refreshed = false;
        let mut waits = 0;
        loop {
            let (slot, token) = self
                .depart()
                .await
                .map_err(|f| self.gov_error(f, "a token request"))?;
            let request = self.inner.http.get(url.clone()).bearer_auth(token.expose());
            let answer = self
                .exchange(slot, request, None)
                .await
                .map_err(|f| self.gov_error(f, what))?;
            match answer.status {
                200..=299 => {
                    return serde_json::from_slice(&answer.body)
                        .map_err(|source| GovError::BadResponse { what, source });
                }
                401 if !refreshed => {
                    self.invalidate(&token).await;
                    refreshed = true;
                }
                429 | 503 if waits < busy_retries && worth_waiting(answer.retry_after) => {
                    let wait = answer
                        .retry_after
                        .unwrap_or(DEFAULT_BUSY_WAIT * 2u32.pow(waits));
                    tracing::debug!(
                        status = answer.status,
                        wait_ms = wait.as_millis() as u64,
                        "{what} refused; waiting"
                    );
                    tokio::time::sleep(wait).await;
                    waits += 1;
                }
                _ => return Err(self.gov_error(Failure::Status(answer), what)),
            }
        }
    }

    /// A gate slot and a token that outlives leaving on it. The token is taken once the
    /// slot is held, never before the wait; a cached token too close to its expiry makes
    /// this slot carry the token request, and the request itself waits for the next one.
    async fn depart(&self) -> Result<(HeldSlot, Secret), Failure> {
        let mut fetches = 0;
        loop {
            let slot = self.hold().await;
            match self.use_slot(slot, fetches >= TOKEN_FETCHES).await? {
                (Slot::Go(slot, token), _) => return Ok((slot, token)),
                (Slot::Spent, fetched) => fetches += u32::from(fetched),
            }
        }
    }

    /// A start slot from the gate, for a request that leaves within `leave_within` of it.
    async fn hold(&self) -> HeldSlot {
        HeldSlot::acquire(&self.inner.gate, self.inner.leave_within).await
    }

    /// With a slot held: the cached token when it is good to leave on now, else a token
    /// request on this slot. The lock is held while fetching, so that concurrent callers
    /// wait for one token instead of each asking for their own. `any`: leave with any
    /// cached token (the fetch budget is spent). Also says whether it fetched.
    async fn use_slot(&self, slot: HeldSlot, any: bool) -> Result<(Slot, bool), Failure> {
        let held = Instant::now();
        let mut cache = self.inner.token.lock().await;
        let now = Instant::now();
        let cached = if any {
            cache.as_ref().map(|t| t.access.clone())
        } else {
            usable(cache.as_ref(), now)
        };
        if let Some(token) = cached {
            if now - held > STALE_SLOT {
                return Ok((Slot::Spent, false));
            }
            return Ok((Slot::Go(slot, token), false));
        }
        *cache = Some(self.fetch_token(slot).await?);
        Ok((Slot::Spent, true))
    }

    /// The cached token, if a request could leave on it at `now`.
    async fn cached_token(&self, now: Instant) -> Option<Secret> {
        usable(self.inner.token.lock().await.as_ref(), now)
    }

    /// One token request, on a gate slot the caller holds.
    async fn fetch_token(&self, slot: HeldSlot) -> Result<Token, Failure> {
        let asked_at = Instant::now();
        let creds = &self.inner.credentials;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", creds.client_id.as_str()),
            ("client_secret", creds.client_secret.expose()),
        ];
        let request = self.inner.http.post(self.token_url()).form(&form);
        let answer = self.exchange(slot, request, None).await?;
        if !(200..300).contains(&answer.status) {
            return Err(Failure::Status(answer));
        }
        let issued: TokenResponse =
            serde_json::from_slice(&answer.body).map_err(|source| Failure::Decode {
                status: answer.status,
                source,
                excerpt: excerpt(&answer.body),
            })?;
        let ttl = Duration::from_secs(issued.expires_in);
        tracing::debug!(expires_in = issued.expires_in, "access token issued");
        Ok(Token {
            access: Secret::new(issued.access_token),
            // From when it was asked for: the API's clock for it started later.
            good_until: asked_at + ttl - (ttl / 4).min(TOKEN_MARGIN),
        })
    }

    /// Forgets the token the API just refused, unless another caller already replaced it.
    async fn invalidate(&self, refused: &Secret) {
        let mut slot = self.inner.token.lock().await;
        if slot.as_ref().is_some_and(|t| &t.access == refused) {
            *slot = None;
        }
    }

    /// One request on the gate slot the caller holds, with its whole answer read. `body`
    /// is sent as given, or else the request's own (a form), or none; in each case
    /// stamped, so that the gate hears when the request really left. A request still not
    /// on its way at its deadline is abandoned unsent.
    async fn exchange(
        &self,
        slot: HeldSlot,
        request: RequestBuilder,
        body: Option<Bytes>,
    ) -> Result<Answer, Failure> {
        let mut request = request.build().map_err(Failure::Transport)?;
        let bytes = body
            .or_else(|| {
                request
                    .body()
                    .and_then(|b| b.as_bytes())
                    .map(Bytes::copy_from_slice)
            })
            .unwrap_or_default();
        let (body, stamp) = departure::stamped(bytes);
        *request.body_mut() = Some(body);
        let (gate, granted) = slot.into_parts();
        // On a task of its own, so that a caller cancelled mid-request still reports.
        let report = granted.map(|g| tokio::spawn(departure::report(gate, g, stamp.clone())));
        let abandon_at = granted.and_then(|g| g.leave_by.checked_sub(LEAVE_MARGIN));
        let answer = self.answer(request, stamp, abandon_at).await;
        if let Some(report) = report {
            // Heard while the answer was awaited: the gate's report is in long before.
            let _ = report.await;
        }
        answer
    }

    /// Sends `request` and reads its whole answer, unless it has not left by `abandon_at`.
    async fn answer(
        &self,
        request: reqwest::Request,
        mut stamp: departure::Stamp,
        abandon_at: Option<Instant>,
    ) -> Result<Answer, Failure> {
        let mut send = std::pin::pin!(self.inner.http.execute(request));
        let sent = match abandon_at {
            None => send.await,
            Some(at) => tokio::select! {
                biased;
                sent = &mut send => sent,
                taken = stamp.taken_by(at) => {
                    if !taken {
                        tracing::warn!("a request did not leave by its deadline; abandoned unsent");
                        return Err(Failure::NotOnTime);
                    }
                    send.await
                }
            },
        };
        // Whatever came back, a request that was on its way left by now.
        stamp.answered();
        let mut response = sent.map_err(|e| {
            crate::metrics::get()
                .api_answers
                .with_label_values(&[crate::answer_class::AnswerClass::NoAnswer.as_str()])
                .inc();
            Failure::Transport(e)
        })?;
        let status = response.status().as_u16();
        let headers = response.headers();
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        crate::metrics::get().api_answer(status, retry_after);
        let replayed = headers
            .get(IDEMPOTENT_REPLAYED)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let body = read_capped(&mut response, self.inner.max_answer_bytes).await?;
        tracing::trace!(status, bytes = body.len(), "government API answered");
        Ok(Answer {
            status,
            retry_after,
            replayed,
            body,
        })
    }

    fn gov_error(&self, failure: Failure, what: &'static str) -> GovError {
        let url = self.inner.base_url.clone();
        match failure {
            Failure::Transport(e) if e.is_timeout() => GovError::Timeout {
                url,
                what,
                timeout: self.inner.request_timeout,
            },
            Failure::Transport(e) if self.tls_problem(&e).is_some() => {
                self.tls_error(self.tls_problem(&e).expect("checked"))
            }
            Failure::Transport(e) if e.is_connect() => GovError::Unreachable { url, source: e },
            Failure::Transport(e) => GovError::ConnectionLost {
                url,
                what,
                source: e,
            },
            Failure::Decode { source, .. } => GovError::BadResponse { what, source },
            Failure::Status(answer) => status_error(answer, what),
            Failure::TooLarge { status } => GovError::AnswerTooLarge {
                url,
                what,
                status,
                limit: self.inner.max_answer_bytes,
            },
            Failure::NotOnTime => GovError::NotOnTime {
                url,
                what,
                within: self.inner.leave_within - LEAVE_MARGIN,
            },
        }
    }

    /// What a failed TLS handshake means, if that is what `e` is.
    fn tls_problem(&self, e: &reqwest::Error) -> Option<TlsProblem> {
        if !self.inner.base_url.starts_with("https:") {
            return None;
        }
        tls::classify(e, self.inner.client_cert)
    }

    fn tls_error(&self, problem: TlsProblem) -> GovError {
        GovError::Tls {
            url: self.inner.base_url.clone(),
            problem,
        }
    }

    fn token_url(&self) -> String {
        format!("{}/oauth/token", self.inner.base_url)
    }

    fn batches_url(&self) -> String {
        format!("{}/v1/grade-batches", self.inner.base_url)
    }

    fn batch_url(&self, batch_id: Uuid) -> Url {
        // A checked base URL plus a UUID segment always parses.
        Url::parse(&format!("{}/{batch_id}", self.batches_url()))
            .expect("checked base URL with a UUID path is a valid URL")
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, GovError> {
        let raw = format!("{}{path}", self.inner.base_url);
        Url::parse_with_params(&raw, query).map_err(|e| GovError::BadBaseUrl {
            url: self.inner.base_url.clone(),
            reason: e.to_string(),
        })
    }
}

fn status_error(answer: Answer, what: &'static str) -> GovError {
    let status = answer.status;
    let problem = Box::new(problem_of(status, &answer.body));
    match status {
        401 | 403 => GovError::BadCredentials { status, problem },
        429 | 503 => GovError::Busy {
            status,
            what,
            retry_after: answer.retry_after,
        },
        _ => GovError::Status {
            status,
            what,
            problem,
        },
    }
}

/// The token request failed, so the batch never left: nothing to look up.
fn token_failure_outcome(failure: Failure) -> SendOutcome {
    match failure {
        Failure::Transport(e) => retry(transport_reason(&e), None, None),
        Failure::NotOnTime => retry(RetryReason::ConnectionLost, None, None),
        Failure::TooLarge { status } => retry(
            RetryReason::BadAnswer(status),
            None,
            Some("an answer too large to read".to_string()),
        ),
        Failure::Decode {
            status, excerpt, ..
        } => retry(RetryReason::BadAnswer(status), None, excerpt),
        Failure::Status(answer) => {
            let excerpt = excerpt(&answer.body);
            match answer.status {
                // Our client credentials, not load: no retry can help.
                status @ (400 | 401 | 403) => SendOutcome::TokenRefused { status, excerpt },
                status => retry(retry_reason(status), answer.retry_after, excerpt),
            }
        }
    }
}

/// The token's secret, when a request leaving at `now` can still use it.
fn usable(token: Option<&Token>, now: Instant) -> Option<Secret> {
    token
        .filter(|t| now < t.good_until)
        .map(|t| t.access.clone())
}

fn transport_reason(e: &reqwest::Error) -> RetryReason {
    if e.is_timeout() {
        RetryReason::Timeout
    } else {
        RetryReason::ConnectionLost
    }
}

fn retry(reason: RetryReason, after: Option<Duration>, excerpt: Option<String>) -> SendOutcome {
    SendOutcome::Retry {
        reason,
        after,
        excerpt,
    }
}

fn worth_waiting(retry_after: Option<Duration>) -> bool {
    retry_after.is_none_or(|d| d <= MAX_HONOURED_WAIT)
}

fn stuck_paging() -> GovError {
    GovError::Status {
        status: 200,
        what: "a records page",
        problem: Box::new(Problem::new(
            200,
            "Paging loop",
            "next_page_token repeated the current token",
        )),
    }
}

/// Reads an answer's body up to `limit` bytes; a larger one is not read further.
async fn read_capped(response: &mut reqwest::Response, limit: usize) -> Result<Bytes, Failure> {
    let status = response.status().as_u16();
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(Failure::TooLarge { status });
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(Failure::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(Failure::TooLarge { status });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Whether `host` is this machine: `http://` there never crosses a network.
fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let host = host.to_ascii_lowercase();
            host == "localhost" || host.ends_with(".localhost")
        }
    }
}

/// Validates the base URL once, so that request URLs built from it cannot fail later.
fn check_base_url(raw: &str, allow_insecure_http: bool) -> Result<String, GovError> {
    let bad = |url: &str, reason: &str| GovError::BadBaseUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let url = Url::parse(raw).map_err(|e| bad(raw, &e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        // Never echo credentials embedded in the URL.
        return Err(bad(
            &format!("{}://…@{}", url.scheme(), url.host_str().unwrap_or("")),
            "credentials do not belong in the URL: use GRADESYNC_GOV_CLIENT_ID and GRADESYNC_GOV_CLIENT_SECRET",
        ));
    }
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(bad(raw, &format!("scheme `{other}` is not http or https"))),
    }
    if url.scheme() == "http" && !allow_insecure_http && !is_loopback(&url) {
        return Err(GovError::InsecureHttp {
            url: url.as_str().trim_end_matches('/').to_string(),
        });
    }
    if url.query().is_some() || url.fragment().is_some() || url.cannot_be_a_base() {
        return Err(bad(
            raw,
            "it must be a plain base URL without query or fragment",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

fn log_outcome(batch_id: Uuid, bytes: usize, outcome: &SendOutcome) {
    match outcome {
        SendOutcome::Sent {
            receipt,
            replayed,
            resolved,
        } => tracing::info!(
            %batch_id, receipt_id = %receipt.receipt_id, accepted = receipt.accepted,
            replayed, resolved, "batch accepted by the government API"
        ),
        SendOutcome::Retry {
            reason,
            after,
            excerpt,
        } => tracing::warn!(
            %batch_id, %reason, retry_after_ms = after.map(|d| d.as_millis() as u64),
            answer = excerpt.as_deref().unwrap_or(""),
            "batch not accepted yet; it will be retried"
        ),
        SendOutcome::Rejected {
            status, record_ids, ..
        } => tracing::warn!(
            %batch_id, status, invalid_records = record_ids.len(),
            "batch rejected by the government API"
        ),
        SendOutcome::TooLarge { .. } => {
            tracing::warn!(%batch_id, bytes, "batch too large for the government API")
        }
        SendOutcome::AuthFailed { problem } => tracing::error!(
            %batch_id, status = problem.status, title = %problem.title,
            "government API refused our credentials: check GRADESYNC_GOV_CLIENT_ID and GRADESYNC_GOV_CLIENT_SECRET"
        ),
        SendOutcome::TokenRefused { status, excerpt } => tracing::error!(
            %batch_id, status, answer = excerpt.as_deref().unwrap_or(""),
            "the token endpoint refused our client credentials: check GRADESYNC_GOV_CLIENT_ID and GRADESYNC_GOV_CLIENT_SECRET"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_answer(status: u16, body: &'static [u8]) -> Failure {
        Failure::Status(Answer {
            status,
            retry_after: None,
            replayed: false,
            body: Bytes::from_static(body),
        })
    }

    #[test]
    fn the_token_endpoint_refusing_our_credentials_is_final_and_load_is_not() {
        let invalid_client = br#"{"title":"Unauthorized","status":401,"error":"invalid_client",
            "detail":"unknown client_id or wrong client_secret"}"#;
        for status in [400, 401, 403] {
            match token_failure_outcome(token_answer(status, invalid_client)) {
                SendOutcome::TokenRefused { status: s, excerpt } => {
                    assert_eq!(s, status);
                    assert_eq!(
                        excerpt.as_deref(),
                        Some("Unauthorized: unknown client_id or wrong client_secret")
                    );
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        for (status, reason) in [
            (429, RetryReason::RateLimited),
            (503, RetryReason::Unavailable),
            (502, RetryReason::ServerError(502)),
            (404, RetryReason::Refused(404)),
        ] {
            match token_failure_outcome(token_answer(status, b"<title>down</title>")) {
                SendOutcome::Retry {
                    reason: r, excerpt, ..
                } => {
                    assert_eq!(r, reason);
                    assert_eq!(excerpt.as_deref(), Some("down"));
                }
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    #[test]
    fn base_url_must_be_plain_http() {
        assert_eq!(
            check_base_url("http://127.0.0.1:8080/", false).unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            check_base_url("http://gov.local/api/", true).unwrap(),
            "http://gov.local/api"
        );
        assert_eq!(
            check_base_url("https://api.gov.example/", false).unwrap(),
            "https://api.gov.example"
        );
        for bad in ["gov.local", "ftp://gov.local", "http://gov.local/?a=1"] {
            assert!(check_base_url(bad, true).is_err(), "{bad}");
        }
        let e = check_base_url("http://user:pw-secret@gov.local", true).unwrap_err();
        assert!(!e.to_string().contains("pw-secret"), "{e}");
    }

    #[test]
    fn plain_http_is_refused_off_this_machine_unless_allowed() {
        for local in [
            "http://127.0.0.1:8080",
            "http://127.5.0.1",
            "http://[::1]:80",
            "http://localhost:9",
            "http://api.localhost",
        ] {
            assert!(check_base_url(local, false).is_ok(), "{local}");
        }
        for remote in [
            "http://gov.local/api",
            "http://10.0.0.5:8080",
            "http://[2001:db8::1]",
        ] {
            let e = check_base_url(remote, false).unwrap_err();
            assert!(matches!(e, GovError::InsecureHttp { .. }), "{remote}: {e}");
            assert!(e.to_string().contains("--allow-insecure-http"), "{e}");
            assert!(check_base_url(remote, true).is_ok(), "{remote}");
        }
    }
}
