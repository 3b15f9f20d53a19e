//! TLS towards the government API: a CA of our own (many government gateways use a
//! private one) and a client certificate for mTLS. Files are read and checked here, once,
//! so a missing file, a file that is not PEM or a key that does not belong to its
//! certificate fails before any request, with a line that names the file.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM file's bytes and its path (for messages). Debug shows only the path: a key is a
/// secret.
#[derive(Clone)]
pub struct PemFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for PemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PemFile({})", self.path.display())
    }
}

/// TLS settings of the API client. With a CA, only that CA is trusted (not the system's
/// roots): the API's certificate must chain to it.
#[derive(Debug, Clone, Default)]
pub struct GovTls {
    pub ca_cert: Option<PemFile>,
    /// Client certificate (chain) and its private key.
    pub client: Option<(PemFile, PemFile)>,
}

/// Why the TLS files cannot be used; each names the file and the setting to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsFileError {
    #[error("cannot read the government API {what} {path}: {reason}; fix {setting}")]
    Unreadable {
        what: &'static str,
        setting: &'static str,
        path: String,
        reason: String,
    },
    #[error("the government API {what} {path} holds no PEM {kind}; fix {setting}")]
    NotPem {
        what: &'static str,
        setting: &'static str,
        kind: &'static str,
        path: String,
    },
    #[error(
        "--gov-client-cert was given without --gov-client-key (GRADESYNC_GOV_CLIENT_KEY): \
         give both for mTLS, or neither"
    )]
    CertWithoutKey,
    #[error(
        "--gov-client-key was given without --gov-client-cert (GRADESYNC_GOV_CLIENT_CERT): \
         give both for mTLS, or neither"
    )]
    KeyWithoutCert,
    #[error(
        "the private key {key} does not belong to the client certificate {cert}; give the \
         key the certificate was issued for"
    )]
    KeyMismatch { cert: String, key: String },
}

const CA_SETTING: &str = "--gov-ca-cert (GRADESYNC_GOV_CA_CERT)";
const CERT_SETTING: &str = "--gov-client-cert (GRADESYNC_GOV_CLIENT_CERT)";
const KEY_SETTING: &str = "--gov-client-key (GRADESYNC_GOV_CLIENT_KEY)";

impl GovTls {
    /// Reads and checks the files; `None` everywhere is plain TLS on the system's roots.
    pub fn from_files(
        ca_cert: Option<&Path>,
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
    ) -> Result<Self, TlsFileError> {
        let ca_cert = ca_cert
            .map(|p| read_certs(p, "CA certificate", CA_SETTING))
            .transpose()?;
        let client = match (client_cert, client_key) {
            (None, None) => None,
            (Some(_), None) => return Err(TlsFileError::CertWithoutKey),
            (None, Some(_)) => return Err(TlsFileError::KeyWithoutCert),
            (Some(c), Some(k)) => {
                let cert = read_certs(c, "client certificate", CERT_SETTING)?;
                let key = read_key(k)?;
                check_pair(&cert, &key)?;
                Some((cert, key))
            }
        };
        Ok(Self { ca_cert, client })
    }

    /// How the connection is secured, for `gradesync check`: paths only.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match &self.ca_cert {
            Some(ca) => parts.push(format!("CA {}", ca.path.display())),
            None => parts.push("system CAs".to_string()),
        }
        if let Some((cert, _)) = &self.client {
            parts.push(format!("client cert {}", cert.path.display()));
        }
        parts.join(", ")
    }

    /// Applies the settings to a reqwest client.
    pub(crate) fn apply(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, reqwest::Error> {
        let mut builder = builder;
        if let Some(ca) = &self.ca_cert {
            builder = builder.tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca.bytes)?);
        }
        if let Some((cert, key)) = &self.client {
            let mut pem = cert.bytes.clone();
            pem.push(b'\n');
            pem.extend_from_slice(&key.bytes);
            builder = builder.identity(reqwest::Identity::from_pem(&pem)?);
        }
        Ok(builder)
    }
}

fn read(path: &Path, what: &'static str, setting: &'static str) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|e| TlsFileError::Unreadable {
        what,
        setting,
        path: path.display().to_string(),
        reason: e.kind().to_string(),
    })
}

fn read_certs(
    path: &Path,
    what: &'static str,
    setting: &'static str,
) -> Result<PemFile, TlsFileError> {
    let bytes = read(path, what, setting)?;
    let certs = CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok(PemFile {
            path: path.to_path_buf(),
            bytes,
        }),
        _ => Err(TlsFileError::NotPem {
            what,
            setting,
            kind: "certificate (-----BEGIN CERTIFICATE-----)",
            path: path.display().to_string(),
        }),
    }
}

fn read_key(path: &Path) -> Result<PemFile, TlsFileError> {
    let bytes = read(path, "client key", KEY_SETTING)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(_) => Ok(PemFile {
            path: path.to_path_buf(),
            bytes,
        }),
        // The parse error is not shown: it could quote a piece of the key.
        Err(_) => Err(TlsFileError::NotPem {
            what: "client key",
            setting: KEY_SETTING,
            kind: "private key (-----BEGIN PRIVATE KEY-----)",
            path: path.display().to_string(),
        }),
    }
}

/// The key must be the certificate's: rustls would otherwise accept the pair and the API
/// refuse every handshake with a message that names neither file.
fn check_pair(cert: &PemFile, key: &PemFile) -> Result<(), TlsFileError> {
    let mismatch = || TlsFileError::KeyMismatch {
        cert: cert.path.display().to_string(),
        key: key.path.display().to_string(),
    };
    let chain = CertificateDer::pem_slice_iter(&cert.bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| mismatch())?;
    let der = PrivateKeyDer::from_pem_slice(&key.bytes).map_err(|_| mismatch())?;
    let provider = rustls::crypto::ring::default_provider();
    let signer = provider
        .key_provider
        .load_private_key(der)
        .map_err(|_| mismatch())?;
    let certified = rustls::sign::CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) => Ok(()),
        // The key type cannot tell (rare): leave it to the handshake.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(_) => Err(mismatch()),
    }
}

/// What a failed TLS handshake with the API means, read from the error chain's text
/// (rustls names alerts and certificate errors, but reqwest hides its types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsProblem {
    /// The API's certificate does not chain to the CA we trust.
    UntrustedServer,
    /// The certificate is for another host name.
    WrongName,
    /// The API wants a client certificate and we sent none.
    ClientCertRequired,
    /// The API refused the client certificate we sent.
    ClientCertRejected,
    /// TLS to a plaintext port.
    NotTls,
}

pub(crate) fn classify(
    error: &(dyn std::error::Error + 'static),
    has_client_cert: bool,
) -> Option<TlsProblem> {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    let lower = text.to_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    if has(&[
        "unknownissuer",
        "unknown issuer",
        "certificate verify failed",
    ]) {
        return Some(TlsProblem::UntrustedServer);
    }
    if has(&["notvalidforname", "not valid for name"]) {
        return Some(TlsProblem::WrongName);
    }
    if !has_client_cert && has(&["certificaterequired", "handshakefailure"]) {
        return Some(TlsProblem::ClientCertRequired);
    }
    if has_client_cert
        && has(&[
            "badcertificate",
            "unknownca",
            "certificateunknown",
            "unsupportedcertificate",
            "handshakefailure",
            "certificaterequired",
            "decrypterror",
        ])
    {
        return Some(TlsProblem::ClientCertRejected);
    }
    if has(&["invalidcontenttype", "corrupt message"]) {
        return Some(TlsProblem::NotTls);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_non_pem_files_name_the_file_never_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not-a-key-SECRETVALUE").unwrap();
        let e = GovTls::from_files(Some(&dir.path().join("nope.pem")), None, None).unwrap_err();
        assert!(
            matches!(e, TlsFileError::Unreadable { .. }) && e.to_string().contains("nope.pem"),
            "{e}"
        );
        let e = GovTls::from_files(Some(&junk), None, None).unwrap_err();
        assert!(e.to_string().contains("junk.pem"), "{e}");
        assert!(e.to_string().contains("GRADESYNC_GOV_CA_CERT"), "{e}");
        let e = GovTls::from_files(None, Some(&junk), None).unwrap_err();
        assert_eq!(e, TlsFileError::CertWithoutKey);
        let e = GovTls::from_files(None, None, Some(&junk)).unwrap_err();
        assert_eq!(e, TlsFileError::KeyWithoutCert);
        assert!(!e.to_string().contains("SECRETVALUE"));
    }

    #[test]
    fn handshake_texts_are_told_apart() {
        #[derive(Debug)]
        struct E(&'static str);
        impl fmt::Display for E {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {}
        let c = |t, client| classify(&E(t), client);
        assert_eq!(
            c("invalid peer certificate: UnknownIssuer", false),
            Some(TlsProblem::UntrustedServer)
        );
        assert_eq!(
            c("received fatal alert: CertificateRequired", false),
            Some(TlsProblem::ClientCertRequired)
        );
        assert_eq!(
            c("received fatal alert: UnknownCA", true),
            Some(TlsProblem::ClientCertRejected)
        );
        assert_eq!(c("connection refused", false), None);
    }
}
