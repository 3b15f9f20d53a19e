//! The one place HTTP clients are built. reqwest is compiled without a bundled TLS crypto
//! provider (its default, aws-lc-rs, needs cmake to build); every client here uses ring,
//! which the Temporal client links anyway, installed once for the process.

/// A reqwest builder whose TLS (for https endpoints) works.
pub fn client_builder() -> reqwest::ClientBuilder {
    // Fails only when a provider is already installed, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}
