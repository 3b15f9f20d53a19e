//! Errors of the simulator's setup and CLI; request-level failures are HTTP answers, not
//! these.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("`{name}` is {value}: a probability must be between 0 and 1")]
    BadProbability { name: &'static str, value: f64 },
    #[error("the rate window is 0 ms: give a positive --rate-window-ms or --rate-limit 0")]
    ZeroRateWindow,
    #[error("`{0}` is not a reject rule: write FIELD=VALUE, e.g. grade=F")]
    BadRejectRule(String),
    #[error("cannot listen on {addr}: {source} (is the port free? try --listen 127.0.0.1:0)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("gov-sim TLS: {0}; fix --tls-cert, --tls-key or --tls-client-ca")]
    Tls(String),
    #[error("GRADESYNC_GOV_CLIENT_SECRET_FILE: {0}")]
    SecretFile(String),
    #[error("the simulator stopped serving: {0}")]
    Serve(#[source] std::io::Error),
}
