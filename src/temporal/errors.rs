//! Why gradesync could not talk to Temporal, each as one line that says what to change.
//! The tonic/rustls errors under a failed connection are matched by their text in one
//! place, [`classify`], since neither crate exposes them as types we can match.

use temporalio_client::errors::ClientConnectError;
use temporalio_client::tonic;

use super::config::{ConnectionConfig, one_line};

/// A failure to configure or open the Temporal connection.
#[derive(Debug, thiserror::Error)]
pub enum TemporalError {
    /// The address is not host:port or a URL: fix --temporal-address / TEMPORAL_ADDRESS.
    #[error("Temporal address `{address}` is not host:port or a URL ({reason})")]
    BadAddress { address: String, reason: String },
    /// The config file cannot be read or parsed: fix it or point TEMPORAL_CONFIG_FILE
    /// elsewhere.
    #[error("cannot read the Temporal config file {path}: {reason}")]
    ConfigFile { path: String, reason: String },
    /// TEMPORAL_API_KEY_FILE cannot be used (or is set beside TEMPORAL_API_KEY).
    #[error(transparent)]
    SecretFile(#[from] crate::secret_file::SecretFileError),
    /// Temporal's environment configuration rejected a setting.
    #[error("invalid Temporal configuration: {0}")]
    Config(String),
    /// --temporal-profile or TEMPORAL_PROFILE names a profile the file does not have.
    #[error("{}", unknown_profile(name, file.as_deref(), available))]
    UnknownProfile {
        name: String,
        file: Option<String>,
        available: Vec<String>,
    },
    /// A client certificate without its key: pass both or neither.
    #[error(
        "{source_name} was given without a client key; pass --temporal-tls-key (or set \
         TEMPORAL_TLS_CLIENT_KEY_PATH) with the certificate's private key"
    )]
    CertWithoutKey { source_name: String },
    /// A client key without its certificate: pass both or neither.
    #[error(
        "{source_name} was given without a client certificate; pass --temporal-tls-cert (or \
         set TEMPORAL_TLS_CLIENT_CERT_PATH) with the certificate of that key"
    )]
    KeyWithoutCert { source_name: String },
    /// A certificate or key file that cannot be read: fix the path or its permissions.
    #[error("cannot read the Temporal TLS {what} {path}: {reason}")]
    UnreadablePem {
        what: &'static str,
        path: String,
        reason: String,
    },
    /// A file (or variable) that holds no PEM of the expected kind.
    #[error(
        "the Temporal TLS {what} {origin} is not valid PEM; {}",
        pem_hint(what)
    )]
    InvalidPem { what: &'static str, origin: String },
    /// The server's certificate is not signed by the CA we trust: pass the right CA.
    #[error("{}", untrusted(address, ca.as_deref()))]
    UntrustedServer { address: String, ca: Option<String> },
    /// The server's certificate is for another name: pass the name it is for.
    #[error(
        "Temporal at {address} presented a certificate that is not valid for {name}; pass \
         --temporal-tls-server-name with a name the certificate is for"
    )]
    WrongServerName { address: String, name: String },
    /// mTLS required and no client certificate given.
    #[error(
        "Temporal at {address} requires a client certificate; pass --temporal-tls-cert and \
         --temporal-tls-key (or set TEMPORAL_TLS_CLIENT_CERT_PATH and \
         TEMPORAL_TLS_CLIENT_KEY_PATH)"
    )]
    ClientCertRequired { address: String },
    /// The server refused the client certificate we sent.
    #[error(
        "Temporal at {address} rejected the client certificate {cert}; use a certificate \
         signed by a CA the server trusts (and its key)"
    )]
    ClientCertRejected { address: String, cert: String },
    /// TLS to a server that speaks plaintext.
    #[error(
        "Temporal at {address} did not answer TLS (is it a plaintext server?); remove the \
         TLS settings and TEMPORAL_API_KEY, or use the server's TLS port"
    )]
    NotTls { address: String },
    /// Plaintext to a server that hung up: it may want TLS.
    #[error(
        "Temporal at {address} closed a plaintext connection without answering; if it \
         expects TLS, pass --temporal-tls-ca-cert (or set TEMPORAL_API_KEY for Temporal \
         Cloud, which turns TLS on)"
    )]
    ClosedPlaintext { address: String },
    /// The API key was refused, or the server wants one.
    #[error("{}", unauthenticated(address, *api_key_set, message))]
    Unauthenticated {
        address: String,
        api_key_set: bool,
        message: String,
    },
    /// Nothing usable answered.
    #[error(
        "cannot reach Temporal at {address} ({reason}); start one with `temporal server \
         start-dev` or set TEMPORAL_ADDRESS"
    )]
    Unreachable { address: String, reason: String },
}

impl TemporalError {
    /// Whether the fix is in gradesync's settings (exit 2) rather than a server being down
    /// (exit 3).
    pub fn is_usage(&self) -> bool {
        !matches!(self, TemporalError::Unreachable { .. })
    }
}

fn unknown_profile(name: &str, file: Option<&str>, available: &[String]) -> String {
    let Some(file) = file else {
        return format!(
            "no Temporal profile `{name}`: there is no config file; set TEMPORAL_CONFIG_FILE \
             to the TOML file that has [profile.{name}]"
        );
    };
    if available.is_empty() {
        return format!(
            "no Temporal profile `{name}`: {file} has no profiles (or does not exist); set \
             TEMPORAL_CONFIG_FILE to the file that has [profile.{name}]"
        );
    }
    format!(
        "no Temporal profile `{name}` in {file} (it has: {}); pass --temporal-profile with \
         one of those or add [profile.{name}]",
        available.join(", ")
    )
}

fn pem_hint(what: &str) -> &'static str {
    if what == "client key" {
        "it must hold a PEM private key (-----BEGIN PRIVATE KEY-----)"
    } else {
        "it must hold a PEM certificate (-----BEGIN CERTIFICATE-----)"
    }
}

fn untrusted(address: &str, ca: Option<&str>) -> String {
    match ca {
        Some(ca) => format!(
            "Temporal at {address} presented a certificate not signed by the CA in {ca}; pass \
             --temporal-tls-ca-cert with the CA that signed the server's certificate"
        ),
        None => format!(
            "Temporal at {address} presented a certificate this system does not trust; pass \
             --temporal-tls-ca-cert with the CA that signed the server's certificate"
        ),
    }
}

fn unauthenticated(address: &str, api_key_set: bool, message: &str) -> String {
    if api_key_set {
        format!(
            "Temporal at {address} rejected the API key ({message}); set TEMPORAL_API_KEY (or \
             api_key in the profile) to a valid key for this namespace"
        )
    } else {
        format!(
            "Temporal at {address} requires authentication ({message}); set TEMPORAL_API_KEY \
             (or api_key in the profile), or use a client certificate"
        )
    }
}

/// The error under a failed connect, matched by its text.
pub fn classify(config: &ConnectionConfig, e: &ClientConnectError) -> TemporalError {
    match e {
        ClientConnectError::SystemInfoCallError(status) => classify_status(config, status),
        other => classify_text(config, &chain_text(other)),
    }
}

/// A failed RPC made on an open connection (the first one is where a rejected API key or
/// a missing client certificate shows when TLS 1.3 lets the handshake finish first).
pub fn classify_status(config: &ConnectionConfig, status: &tonic::Status) -> TemporalError {
    tracing::debug!(code = ?status.code(), message = status.message(), "Temporal call failed");
    let address = config.address.clone();
    match status.code() {
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
            TemporalError::Unauthenticated {
                address,
                api_key_set: config.api_key.is_some(),
                message: one_line(status.message()),
            }
        }
        _ => {
            let mut text = status.message().to_string();
            let mut source = std::error::Error::source(status);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            classify_text(config, &text)
        }
    }
}

/// Every message of the chain, outermost first, as one line: tonic's transport error says
/// only "transport error", the reason is at the bottom.
fn chain_text(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    one_line(&parts.join(": "))
}

/// What each library says, matched on lowercase text. rustls names alerts and certificate
/// errors in CamelCase (`UnknownIssuer`, `received fatal alert: CertificateRequired`); a
/// proxy that checks credentials over HTTP (nginx) answers a non-gRPC status, which tonic
/// reports as "... while receiving response with status: 401 Unauthorized". nginx with
/// `ssl_verify_client on` answers 400 to a request without a valid client certificate
/// rather than failing the handshake, so a 400 over TLS is read as a certificate problem.
fn classify_text(config: &ConnectionConfig, text: &str) -> TemporalError {
    tracing::debug!(error = text, "Temporal connection failed");
    let address = config.address.clone();
    let lower = text.to_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    let tls = config.tls.as_ref();
    let client_cert = tls
        .and_then(|t| t.client.as_ref())
        .map(|(c, _)| c.origin.clone());
    let http_400 = has(&["status: 400 "]);
    if has(&["status: 401 ", "status: 403 "]) {
        return TemporalError::Unauthenticated {
            address,
            api_key_set: config.api_key.is_some(),
            message: short_reason(text),
        };
    }
    if has(&[
        "unknownissuer",
        "unknown issuer",
        "certificate verify failed",
    ]) {
        return TemporalError::UntrustedServer {
            address,
            ca: tls
                .and_then(|t| t.ca_cert.as_ref())
                .map(|c| c.origin.clone()),
        };
    }
    if has(&["notvalidforname", "not valid for name"]) {
        let name = tls
            .and_then(|t| t.server_name.clone())
            .or_else(|| config.url.host_str().map(str::to_string))
            .unwrap_or_default();
        return TemporalError::WrongServerName { address, name };
    }
    if tls.is_some()
        && client_cert.is_none()
        && (http_400 || has(&["certificaterequired", "handshakefailure"]))
    {
        return TemporalError::ClientCertRequired { address };
    }
    if let Some(cert) = client_cert
        && (http_400
            || has(&[
                "badcertificate",
                "unknownca",
                "certificateunknown",
                "unsupportedcertificate",
                "handshakefailure",
            ]))
    {
        return TemporalError::ClientCertRejected { address, cert };
    }
    if tls.is_some() && has(&["invalidcontenttype", "corrupt message"]) {
        return TemporalError::NotTls { address };
    }
    if tls.is_none()
        && has(&[
            "frame with invalid size",
            "connection closed",
            "connection reset",
        ])
    {
        return TemporalError::ClosedPlaintext { address };
    }
    TemporalError::Unreachable {
        address,
        reason: short_reason(text),
    }
}

/// The innermost message is the reason; the rest is "transport error: client error".
fn short_reason(text: &str) -> String {
    text.rsplit(": ")
        .find(|p| !p.trim().is_empty())
        .unwrap_or(text)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::TemporalArgs;
    use crate::temporal::config::{Pem, Tls};

    fn config(tls: Option<Tls>, api_key: bool) -> ConnectionConfig {
        let mut c =
            crate::temporal::config::resolve(&TemporalArgs::local("tmp:7233", "q")).unwrap();
        c.tls = tls;
        c.api_key = api_key.then(|| gradesync_activities::gov::Secret::new("k"));
        c
    }

    fn pem(origin: &str) -> Pem {
        Pem {
            origin: origin.into(),
            bytes: Vec::new(),
        }
    }

    fn tls(ca: bool, client: bool) -> Option<Tls> {
        Some(Tls {
            ca_cert: ca.then(|| pem("ca.pem")),
            client: client.then(|| (pem("client.pem"), pem("client.key"))),
            server_name: None,
        })
    }

    fn kind(c: &ConnectionConfig, text: &str) -> String {
        let e = classify_text(c, text);
        let text = e.to_string();
        assert_eq!(text.lines().count(), 1, "{text}");
        format!("{e:?}")
            .split([' ', '{', '('])
            .next()
            .unwrap()
            .to_string()
    }

    #[test]
    fn library_texts_map_to_what_to_change() {
        let mtls = config(tls(true, true), false);
        let server_tls = config(tls(true, false), false);
        let plain = config(None, false);
        let cases: &[(&ConnectionConfig, &str, &str)] = &[
            (
                &mtls,
                "transport error: invalid peer certificate: UnknownIssuer",
                "UntrustedServer",
            ),
            (
                &mtls,
                "invalid peer certificate: NotValidForName",
                "WrongServerName",
            ),
            (
                &server_tls,
                "received fatal alert: CertificateRequired",
                "ClientCertRequired",
            ),
            (
                &server_tls,
                "protocol error: received message with invalid compression flag: 60 (valid flags are 0 and 1) while receiving response with status: 400 Bad Request",
                "ClientCertRequired",
            ),
            (
                &mtls,
                "received fatal alert: BadCertificate",
                "ClientCertRejected",
            ),
            (
                &mtls,
                "while receiving response with status: 400 Bad Request",
                "ClientCertRejected",
            ),
            (
                &server_tls,
                "while receiving response with status: 401 Unauthorized",
                "Unauthenticated",
            ),
            (
                &server_tls,
                "received corrupt message of type InvalidContentType",
                "NotTls",
            ),
            (
                &plain,
                "operation was canceled: connection closed",
                "ClosedPlaintext",
            ),
            (
                &plain,
                "tcp connect error: Connection refused (os error 111)",
                "Unreachable",
            ),
        ];
        for (c, text, want) in cases {
            assert_eq!(&kind(c, text), want, "{text}");
        }
    }

    #[test]
    fn an_unauthenticated_status_blames_the_api_key_when_one_is_set() {
        let status = tonic::Status::unauthenticated("Request unauthorized.");
        let e = classify_status(&config(tls(false, false), true), &status).to_string();
        assert_eq!(
            e,
            "Temporal at tmp:7233 rejected the API key (Request unauthorized.); set \
             TEMPORAL_API_KEY (or api_key in the profile) to a valid key for this namespace"
        );
        let e = classify_status(&config(tls(false, false), false), &status).to_string();
        assert!(e.contains("requires authentication"), "{e}");
    }

    #[test]
    fn unreachable_keeps_only_the_innermost_reason() {
        let e = classify_text(
            &config(None, false),
            "transport error: client error (Connect): tcp connect error: Connection refused (os error 111)",
        );
        assert_eq!(
            e.to_string(),
            "cannot reach Temporal at tmp:7233 (Connection refused (os error 111)); start one \
             with `temporal server start-dev` or set TEMPORAL_ADDRESS"
        );
    }
}
