//! The benchmark's scenarios: how many records, how slow the API is, which faults, and
//! which engine sends them (our Temporal worker, the seed's pacing, or preparation alone).

/// What a scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A full `QuarterlySync` on a `gradesync worker` process.
    Temporal,
    /// The seed's Step Functions loop: send one batch, wait for the answer, wait 0.5 s.
    SeedPacing,
    /// QueryPending + PrepBatch over the whole quarter, nothing sent.
    PrepOnly,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub engine: Engine,
    pub records: usize,
    pub schools: usize,
    pub latency_ms: u64,
    pub p_503: f64,
    /// API requests per second (the API's limit and our gate's rate). Only the compressed
    /// 1M run raises it, to fit a session; its figures are against its own limit.
    pub rate: u32,
    /// Average record size; the seed says about 8 KB.
    pub record_bytes: usize,
    /// SIGKILL the worker once the API has committed this many batches and start another
    /// at once: the stall until the next commit is the row's figure.
    pub kill_after_batches: Option<u64>,
    /// `(after, ms)`: the API answers every request 503 for `ms` once it has committed
    /// `after` batches; nobody acts, the run's redrive waves must bring the quarter home.
    pub outage: Option<(u64, u64)>,
    /// The store: the embedded SQLite file, or a database on the PostgreSQL server that
    /// `scripts/bench.sh` starts (`GRADESYNC_TEST_POSTGRES_URL`).
    pub postgres: bool,
    /// `gradesync worker` processes sharing the store and the API budget.
    pub workers: u32,
    /// The records start as pending items of the seed's DynamoDB table (moto's local
    /// server), which QueryPending reads into the store through the `sync_status` index.
    pub dynamodb: bool,
    /// Teachers correct grades while the quarter is sent: rounds of corrected records
    /// imported with `gradesync import` during the run.
    pub corrections: Option<Corrections>,
}

/// Rounds of corrections: from the first committed batch on, every `every_ms`, `per_round`
/// records picked at random get a new grade (some again), `rounds` times.
#[derive(Debug, Clone, Copy)]
pub struct Corrections {
    pub every_ms: u64,
    pub per_round: usize,
    pub rounds: u32,
}

impl Scenario {
    /// ceil(N / 100) requests at `rate` per second: no design can finish sooner.
    pub fn physical_limit_secs(&self) -> f64 {
        self.records.div_ceil(100) as f64 / f64::from(self.rate)
    }
}

const fn sync(
    name: &'static str,
    records: usize,
    schools: usize,
    latency_ms: u64,
    p_503: f64,
) -> Scenario {
    Scenario {
        name,
        engine: Engine::Temporal,
        records,
        schools,
        latency_ms,
        p_503,
        rate: 2,
        record_bytes: 8_000,
        kill_after_batches: None,
        outage: None,
        postgres: false,
        workers: 1,
        dynamodb: false,
        corrections: None,
    }
}

/// Every scenario, in the order `cargo bench --bench sync` runs them by default.
pub fn all() -> Vec<Scenario> {
    let mut v = vec![
        sync("sync-10k-200ms", 10_000, 10, 200, 0.0),
        sync("sync-10k-1s", 10_000, 10, 1_000, 0.0),
        // The same quarter while teachers correct grades: 12 rounds of 100 corrected
        // records, one every 2 s, through `gradesync import`. A correction follows its
        // batch in flight; it costs its own sending and nothing else.
        Scenario {
            corrections: Some(Corrections {
                every_ms: 2_000,
                per_round: 100,
                rounds: 12,
            }),
            ..sync("corrections-10k", 10_000, 10, 1_000, 0.0)
        },
        sync("sync-10k-200ms-503", 10_000, 10, 200, 0.10),
        // The default policy at the real rate, its only worker killed with batches in
        // flight: the heartbeat hands them to the next worker (the seed's 900 s
        // start-to-close would hold them for 15 minutes).
        Scenario {
            kill_after_batches: Some(20),
            ..sync("kill-recovery", 10_000, 10, 1_000, 0.0)
        },
        // A 30-minute outage mid-quarter with the default policy: Retry5s/15s/45s dead-
        // letter what is in flight and left, the 5, 15 and 45 min redrive waves resend it.
        Scenario {
            outage: Some((30, 30 * 60_000)),
            ..sync("outage-30m", 10_000, 10, 200, 0.0)
        },
        sync("sync-10k-1s-503", 10_000, 10, 1_000, 0.10),
        Scenario {
            engine: Engine::SeedPacing,
            ..sync("seed-10k-200ms", 10_000, 10, 200, 0.0)
        },
        Scenario {
            engine: Engine::SeedPacing,
            ..sync("seed-10k-1s", 10_000, 10, 1_000, 0.0)
        },
        sync("sync-100k-200ms", 100_000, 50, 200, 0.0),
        // Production's shape: three workers on one PostgreSQL store, one budget between
        // them, cut on the database server's clock.
        Scenario {
            postgres: true,
            workers: 3,
            ..sync("sync-100k-200ms-pg-3w", 100_000, 50, 200, 0.0)
        },
        sync("sync-100k-1s", 100_000, 50, 1_000, 0.0),
        sync("sync-100k-200ms-503", 100_000, 50, 200, 0.10),
        sync("sync-100k-1s-503", 100_000, 50, 1_000, 0.10),
        Scenario {
            engine: Engine::PrepOnly,
            ..sync("prep-1m", 1_000_000, 200, 0, 0.0)
        },
        // Preparation reads the grades rows, not the bodies (a table of their own), and
        // 1 KB records cut into the same 100-record batches as 8 KB ones: small bodies
        // only spare loading 8 GB into the server first.
        Scenario {
            engine: Engine::PrepOnly,
            postgres: true,
            record_bytes: 1_000,
            ..sync("prep-1m-pg", 1_000_000, 200, 0, 0.0)
        },
        // QueryPending + PrepBatch over 100k 1 KB records from each source: the store's
        // own rows (SQLite, PostgreSQL) and the seed's DynamoDB table read through its
        // index (moto's server on loopback; its Query rescans the table for every 1 MB
        // page, which a real table does not).
        Scenario {
            engine: Engine::PrepOnly,
            record_bytes: 1_000,
            ..sync("prep-100k", 100_000, 50, 0, 0.0)
        },
        Scenario {
            engine: Engine::PrepOnly,
            postgres: true,
            record_bytes: 1_000,
            ..sync("prep-100k-pg", 100_000, 50, 0, 0.0)
        },
        Scenario {
            engine: Engine::PrepOnly,
            dynamodb: true,
            record_bytes: 1_000,
            ..sync("prep-100k-dynamodb", 100_000, 50, 0, 0.0)
        },
        Scenario {
            rate: 20,
            ..sync("sync-1m-20ms-x10", 1_000_000, 200, 20, 0.0)
        },
        // A country's worth of schools: the parent's history would pass 10,240 events
        // (~13 per school) without continuing as new.
        Scenario {
            rate: 20,
            ..sync("sync-1m-2k-schools-x10", 1_000_000, 2_000, 20, 0.0)
        },
    ];
    // The real-rate 1M run takes the full 83 min of its physical limit.
    v.push(sync("sync-1m-20ms", 1_000_000, 200, 20, 0.0));
    v
}

/// A one-minute check of the harness itself; not in the default set.
pub fn smoke() -> Scenario {
    sync("smoke-1k", 1_000, 2, 50, 0.0)
}
