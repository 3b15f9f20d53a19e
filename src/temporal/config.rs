//! Which Temporal to connect to, and how: gradesync's flags over Temporal's environment
//! configuration (the `TEMPORAL_*` variables over a profile of the TOML config file, read
//! by temporalio-common's `envconfig` exactly as the `temporal` CLI and the other SDKs read
//! them), over the defaults. Certificates and keys are read and checked here, so a bad file
//! or a certificate without its key fails before any connection is tried.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use gradesync_activities::gov::Secret;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use temporalio_client::Url;
use temporalio_common::envconfig::{
    ClientConfig, ClientConfigFromTOMLOptions, ClientConfigProfile, ClientConfigTLS,
    DEFAULT_PROFILE, DataSource,
};

use super::errors::TemporalError;
use crate::secret_file::{self, SecretFileError};
use crate::settings::TemporalArgs;

pub const DEFAULT_ADDRESS: &str = "127.0.0.1:7233";
pub const DEFAULT_NAMESPACE: &str = "default";

/// A PEM certificate or key and where it came from (a path, or the variable or profile
/// field that held it), for messages. Debug shows only the origin: a key is a secret.
#[derive(Clone)]
pub struct Pem {
    pub origin: String,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pem({})", self.origin)
    }
}

/// TLS settings, resolved: present means TLS is on.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// CA that signed the server's certificate; the system's roots when absent.
    pub ca_cert: Option<Pem>,
    /// Client certificate and its key, for mTLS.
    pub client: Option<(Pem, Pem)>,
    /// Name to verify the server's certificate against, when not the address's host.
    pub server_name: Option<String>,
}

/// The profile of the config file that was used.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileUsed {
    pub name: String,
    pub file: PathBuf,
}

/// Everything needed to connect, with the precedence applied. Debug never shows the API
/// key or header values.
#[derive(Clone)]
pub struct ConnectionConfig {
    /// As the user wrote it, for messages.
    pub address: String,
    pub url: Url,
    pub namespace: String,
    pub tls: Option<Tls>,
    pub api_key: Option<Secret>,
    /// gRPC metadata from the profile or `TEMPORAL_GRPC_META_*`.
    pub headers: HashMap<String, String>,
    pub profile: Option<ProfileUsed>,
}

impl fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionConfig")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .field("tls", &self.tls)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("profile", &self.profile)
            .finish()
    }
}

impl ConnectionConfig {
    /// How the connection is secured, for `gradesync check`: no secret in it.
    pub fn tls_mode(&self) -> String {
        let Some(tls) = &self.tls else {
            return "plaintext".into();
        };
        let mut mode = match &tls.client {
            Some((cert, _)) => format!("mTLS (client cert {})", cert.origin),
            None => "TLS".to_string(),
        };
        match &tls.ca_cert {
            Some(ca) => mode.push_str(&format!(", CA {}", ca.origin)),
            None => mode.push_str(", system CAs"),
        }
        if let Some(name) = &tls.server_name {
            mode.push_str(&format!(", server name {name}"));
        }
        mode
    }
}

/// The process environment, or a fixed map (tests), as envconfig takes it.
type Env<'a> = Option<&'a HashMap<String, String>>;

/// Resolves `args` against the process environment and the config file.
pub fn resolve(args: &TemporalArgs) -> Result<ConnectionConfig, TemporalError> {
    if args.ignore_environment {
        return resolve_with(args, Some(&HashMap::new()), None);
    }
    let default_file = dirs::config_dir().map(|d| d.join("temporalio").join("temporal.toml"));
    resolve_with(args, None, default_file)
}

/// flag > environment variable > profile > default. `env` of `None` reads the process
/// environment; `default_file` is where the config file is when TEMPORAL_CONFIG_FILE
/// does not say.
pub fn resolve_with(
    args: &TemporalArgs,
    env: Env<'_>,
    default_file: Option<PathBuf>,
) -> Result<ConnectionConfig, TemporalError> {
    let (mut profile, used) = load_profile(args, env, default_file)?;
    profile
        .load_from_env(env)
        .map_err(|e| TemporalError::Config(one_line(&e.to_string())))?;
    apply_flags(&mut profile, args);
    // TEMPORAL_API_KEY_FILE: the key from a mounted secret file, as an environment
    // variable would give it (over the profile's).
    if let Some(path) = env_var(env, "TEMPORAL_API_KEY_FILE") {
        if env_var(env, "TEMPORAL_API_KEY").is_some() {
            return Err(SecretFileError::Both {
                var: "TEMPORAL_API_KEY",
            }
            .into());
        }
        let key = secret_file::read("TEMPORAL_API_KEY", Path::new(&path))?;
        profile.api_key = Some(key.expose().to_string());
    }

    let api_key = profile.api_key.clone().filter(|k| !k.is_empty());
    let tls_on = match &profile.tls {
        Some(t) => t.disabled != Some(true),
        None => api_key.is_some(),
    };
    let tls = match (tls_on, profile.tls.clone()) {
        (false, _) => None,
        (true, None) => Some(Tls::default()),
        (true, Some(t)) => Some(read_tls(t, args, env, used.as_ref())?),
    };
    let address = profile
        .address
        .clone()
        .unwrap_or_else(|| DEFAULT_ADDRESS.to_string());
    let url = address_url(&address, tls.is_some())?;
    Ok(ConnectionConfig {
        address,
        url,
        namespace: profile
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
        tls,
        api_key: api_key.map(Secret::new),
        headers: profile.grpc_meta.clone(),
        profile: used,
    })
}

fn env_var(env: Env<'_>, key: &str) -> Option<String> {
    match env {
        Some(map) => map.get(key).cloned(),
        None => std::env::var(key).ok(),
    }
    .filter(|v| !v.is_empty())
}

/// The profile named by the flag or TEMPORAL_PROFILE (an error if it is not in the file),
/// else `default` when the file has one, else an empty profile.
fn load_profile(
    args: &TemporalArgs,
    env: Env<'_>,
    default_file: Option<PathBuf>,
) -> Result<(ClientConfigProfile, Option<ProfileUsed>), TemporalError> {
    let named = args
        .temporal_profile
        .clone()
        .or_else(|| env_var(env, "TEMPORAL_PROFILE"));
    let file = env_var(env, "TEMPORAL_CONFIG_FILE")
        .map(PathBuf::from)
        .or(default_file);
    let config = match &file {
        Some(path) if path.exists() => read_config_file(path)?,
        _ => ClientConfig::default(),
    };
    let name = named.clone().unwrap_or_else(|| DEFAULT_PROFILE.to_string());
    match config.profiles.get(&name) {
        Some(profile) => Ok((
            profile.clone(),
            Some(ProfileUsed {
                name,
                file: file.unwrap_or_default(),
            }),
        )),
        None if named.is_some() => {
            let mut available: Vec<String> = config.profiles.keys().cloned().collect();
            available.sort();
            Err(TemporalError::UnknownProfile {
                name,
                file: file.map(|f| f.display().to_string()),
                available,
            })
        }
        None => Ok((ClientConfigProfile::default(), None)),
    }
}

fn read_config_file(path: &Path) -> Result<ClientConfig, TemporalError> {
    let bad = |reason: String| TemporalError::ConfigFile {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    ClientConfig::from_toml(&bytes, ClientConfigFromTOMLOptions::default())
        .map_err(|e| bad(one_line(&e.to_string())))
}

/// Flags win over everything; any TLS flag turns TLS on even where the environment or
/// the profile turned it off.
fn apply_flags(profile: &mut ClientConfigProfile, args: &TemporalArgs) {
    if let Some(a) = &args.temporal_address {
        profile.address = Some(a.clone());
    }
    if let Some(n) = &args.namespace {
        profile.namespace = Some(n.clone());
    }
    let path = |p: &PathBuf| DataSource::Path(p.display().to_string());
    let any_tls_flag = args.temporal_tls_ca_cert.is_some()
        || args.temporal_tls_cert.is_some()
        || args.temporal_tls_key.is_some()
        || args.temporal_tls_server_name.is_some();
    if !any_tls_flag {
        return;
    }
    let tls = profile.tls.get_or_insert_with(ClientConfigTLS::default);
    tls.disabled = Some(false);
    if let Some(p) = &args.temporal_tls_ca_cert {
        tls.server_ca_cert = Some(path(p));
    }
    if let Some(p) = &args.temporal_tls_cert {
        tls.client_cert = Some(path(p));
    }
    if let Some(p) = &args.temporal_tls_key {
        tls.client_key = Some(path(p));
    }
    if let Some(n) = &args.temporal_tls_server_name {
        tls.server_name = Some(n.clone());
    }
}

/// One TLS setting: its flag, its environment variables (path, data) and its profile key.
struct Setting {
    what: &'static str,
    flag: &'static str,
    path_var: &'static str,
    data_var: &'static str,
    profile_key: &'static str,
}

const CA_CERT: Setting = Setting {
    what: "CA certificate",
    flag: "--temporal-tls-ca-cert",
    path_var: "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    data_var: "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
    profile_key: "server_ca_cert",
};
const CLIENT_CERT: Setting = Setting {
    what: "client certificate",
    flag: "--temporal-tls-cert",
    path_var: "TEMPORAL_TLS_CLIENT_CERT_PATH",
    data_var: "TEMPORAL_TLS_CLIENT_CERT_DATA",
    profile_key: "client_cert",
};
const CLIENT_KEY: Setting = Setting {
    what: "client key",
    flag: "--temporal-tls-key",
    path_var: "TEMPORAL_TLS_CLIENT_KEY_PATH",
    data_var: "TEMPORAL_TLS_CLIENT_KEY_DATA",
    profile_key: "client_key",
};

impl Setting {
    /// Who set it, for messages: the flag, the variable, or the profile's key.
    fn source(&self, flag_set: bool, env: Env<'_>, profile: Option<&ProfileUsed>) -> String {
        if flag_set {
            return self.flag.to_string();
        }
        for var in [self.path_var, self.data_var] {
            if env_var(env, var).is_some() {
                return var.to_string();
            }
        }
        match profile {
            Some(p) => format!("{}_path/_data in profile `{}`", self.profile_key, p.name),
            None => self.profile_key.to_string(),
        }
    }

    fn read(
        &self,
        source: DataSource,
        env: Env<'_>,
        profile: Option<&ProfileUsed>,
    ) -> Result<Pem, TemporalError> {
        let pem = match source {
            DataSource::Path(path) => {
                let bytes = std::fs::read(&path).map_err(|e| TemporalError::UnreadablePem {
                    what: self.what,
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                Pem {
                    origin: path,
                    bytes,
                }
            }
            DataSource::Data(bytes) => Pem {
                origin: self.source(false, env, profile),
                bytes,
            },
            _ => {
                return Err(TemporalError::Config(format!(
                    "unsupported source for the Temporal TLS {}",
                    self.what
                )));
            }
        };
        let valid = if self.what == CLIENT_KEY.what {
            PrivateKeyDer::from_pem_slice(&pem.bytes).is_ok()
        } else {
            let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem.bytes).collect();
            certs.is_ok_and(|c| !c.is_empty())
        };
        if !valid {
            return Err(TemporalError::InvalidPem {
                what: self.what,
                origin: pem.origin,
            });
        }
        Ok(pem)
    }
}

fn read_tls(
    t: ClientConfigTLS,
    args: &TemporalArgs,
    env: Env<'_>,
    profile: Option<&ProfileUsed>,
) -> Result<Tls, TemporalError> {
    if t.disable_host_verification {
        tracing::warn!(
            "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION is not supported by the Rust SDK; the \
             server's name is verified"
        );
    }
    let client = match (t.client_cert, t.client_key) {
        (Some(cert), Some(key)) => Some((
            CLIENT_CERT.read(cert, env, profile)?,
            CLIENT_KEY.read(key, env, profile)?,
        )),
        (Some(_), None) => {
            return Err(TemporalError::CertWithoutKey {
                source_name: CLIENT_CERT.source(args.temporal_tls_cert.is_some(), env, profile),
            });
        }
        (None, Some(_)) => {
            return Err(TemporalError::KeyWithoutCert {
                source_name: CLIENT_KEY.source(args.temporal_tls_key.is_some(), env, profile),
            });
        }
        (None, None) => None,
    };
    let ca_cert = t
        .server_ca_cert
        .map(|s| CA_CERT.read(s, env, profile))
        .transpose()?;
    Ok(Tls {
        ca_cert,
        client,
        server_name: t.server_name.filter(|n| !n.is_empty()),
    })
}

/// `localhost:7233` and `http://localhost:7233` both work, as with the `temporal` CLI; a
/// bare host:port gets `https` when TLS is on.
pub fn address_url(address: &str, tls: bool) -> Result<Url, TemporalError> {
    let text = if address.contains("://") {
        address.to_string()
    } else {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://{address}")
    };
    match Url::parse(&text) {
        Ok(url) if url.host().is_some() => Ok(url),
        Ok(_) => Err(TemporalError::BadAddress {
            address: address.to_string(),
            reason: "no host".into(),
        }),
        Err(e) => Err(TemporalError::BadAddress {
            address: address.to_string(),
            reason: e.to_string(),
        }),
    }
}

/// Multi-line library messages (TOML errors quote the file) as one line.
pub(crate) fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('|') && !l.chars().all(|c| c == '^'))
        .collect();
    lines.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No flag set.
    fn args() -> TemporalArgs {
        TemporalArgs {
            temporal_address: None,
            namespace: None,
            ignore_environment: false,
            ..TemporalArgs::local("", "q")
        }
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const PROFILES: &str = r#"
[profile.default]
address = "profile-default:7233"
namespace = "ns-default"

[profile.cloud]
address = "cloud:7233"
namespace = "ns-cloud"
api_key = "profile-key"

[profile.staging]
address = "staging:7233"
"#;

    /// A config file in a temp dir, found as the default file (no TEMPORAL_CONFIG_FILE).
    fn config_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("temporal.toml");
        std::fs::write(&path, PROFILES).unwrap();
        (dir, path)
    }

    fn resolve_in(
        args: &TemporalArgs,
        env: &HashMap<String, String>,
        file: Option<&Path>,
    ) -> Result<ConnectionConfig, TemporalError> {
        resolve_with(args, Some(env), file.map(Path::to_path_buf))
    }

    #[test]
    fn defaults_without_flags_environment_or_file() {
        let c = resolve_in(&args(), &env(&[]), None).unwrap();
        assert_eq!(c.address, "127.0.0.1:7233");
        assert_eq!(c.url.as_str(), "http://127.0.0.1:7233/");
        assert_eq!(c.namespace, "default");
        assert!(c.tls.is_none() && c.api_key.is_none() && c.profile.is_none());
        assert_eq!(c.tls_mode(), "plaintext");
    }

    #[test]
    fn the_default_profile_beats_the_defaults() {
        let (_dir, file) = config_file();
        let c = resolve_in(&args(), &env(&[]), Some(&file)).unwrap();
        assert_eq!(c.address, "profile-default:7233");
        assert_eq!(c.namespace, "ns-default");
        assert_eq!(c.profile.unwrap().name, "default");
    }

    #[test]
    fn environment_beats_the_profile_and_flags_beat_the_environment() {
        let (_dir, file) = config_file();
        let vars = env(&[("TEMPORAL_ADDRESS", "from-env:1")]);
        let c = resolve_in(&args(), &vars, Some(&file)).unwrap();
        assert_eq!(c.address, "from-env:1");
        assert_eq!(
            c.namespace, "ns-default",
            "namespace still from the profile"
        );

        let vars = env(&[
            ("TEMPORAL_ADDRESS", "from-env:1"),
            ("TEMPORAL_NAMESPACE", "ns-env"),
        ]);
        let mut flags = args();
        flags.temporal_address = Some("from-flag:2".into());
        let c = resolve_in(&flags, &vars, Some(&file)).unwrap();
        assert_eq!(c.address, "from-flag:2");
        assert_eq!(c.namespace, "ns-env");

        flags.namespace = Some("ns-flag".into());
        let c = resolve_in(&flags, &vars, Some(&file)).unwrap();
        assert_eq!(c.namespace, "ns-flag");
    }

    #[test]
    fn the_profile_flag_beats_temporal_profile() {
        let (_dir, file) = config_file();
        let vars = env(&[("TEMPORAL_PROFILE", "staging")]);
        let c = resolve_in(&args(), &vars, Some(&file)).unwrap();
        assert_eq!(c.address, "staging:7233");
        assert_eq!(c.namespace, "default", "staging sets no namespace");

        let mut flags = args();
        flags.temporal_profile = Some("cloud".into());
        let c = resolve_in(&flags, &vars, Some(&file)).unwrap();
        assert_eq!(c.address, "cloud:7233");
        assert_eq!(c.profile.as_ref().unwrap().name, "cloud");
    }

    #[test]
    fn temporal_config_file_beats_the_default_file() {
        let (_dir, file) = config_file();
        let other = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(other.path(), "[profile.default]\naddress = \"other:1\"\n").unwrap();
        let vars = env(&[("TEMPORAL_CONFIG_FILE", other.path().to_str().unwrap())]);
        let c = resolve_in(&args(), &vars, Some(&file)).unwrap();
        assert_eq!(c.address, "other:1");
        assert_eq!(c.profile.unwrap().file, other.path());
    }

    #[test]
    fn an_unknown_profile_lists_the_file_and_its_profiles() {
        let (_dir, file) = config_file();
        let mut flags = args();
        flags.temporal_profile = Some("prod".into());
        let e = resolve_in(&flags, &env(&[]), Some(&file)).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("no Temporal profile `prod` in "), "{text}");
        assert!(text.contains("cloud, default, staging"), "{text}");

        let e = resolve_in(&flags, &env(&[]), None).unwrap_err();
        assert!(e.to_string().contains("TEMPORAL_CONFIG_FILE"), "{e}");
    }

    #[test]
    fn an_api_key_turns_tls_on_and_never_prints() {
        let vars = env(&[
            ("TEMPORAL_ADDRESS", "ns.acct.tmprl.cloud:7233"),
            ("TEMPORAL_API_KEY", "sekrit-key"),
        ]);
        let c = resolve_in(&args(), &vars, None).unwrap();
        assert_eq!(c.url.as_str(), "https://ns.acct.tmprl.cloud:7233/");
        assert_eq!(c.tls_mode(), "TLS, system CAs");
        assert_eq!(c.api_key.as_ref().unwrap().expose(), "sekrit-key");
        assert!(!format!("{c:?}").contains("sekrit"), "{c:?}");
    }

    #[test]
    fn the_environment_api_key_beats_the_profiles() {
        let (_dir, file) = config_file();
        let mut flags = args();
        flags.temporal_profile = Some("cloud".into());
        let c = resolve_in(&flags, &env(&[]), Some(&file)).unwrap();
        assert_eq!(c.api_key.unwrap().expose(), "profile-key");
        let vars = env(&[("TEMPORAL_API_KEY", "env-key")]);
        let c = resolve_in(&flags, &vars, Some(&file)).unwrap();
        assert_eq!(c.api_key.unwrap().expose(), "env-key");
    }

    #[test]
    fn the_api_key_can_come_from_a_file_but_not_beside_the_variable() {
        let (_dir, file) = config_file();
        let key = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(key.path(), "file-key-CANARY\n").unwrap();
        let path = key.path().to_str().unwrap();
        let mut flags = args();
        flags.temporal_profile = Some("cloud".into());
        let c = resolve_in(
            &flags,
            &env(&[("TEMPORAL_API_KEY_FILE", path)]),
            Some(&file),
        )
        .unwrap();
        assert_eq!(c.api_key.unwrap().expose(), "file-key-CANARY");
        let both = env(&[
            ("TEMPORAL_API_KEY_FILE", path),
            ("TEMPORAL_API_KEY", "env-key"),
        ]);
        let e = resolve_in(&flags, &both, Some(&file)).unwrap_err();
        assert!(
            e.is_usage()
                && e.to_string()
                    .starts_with("both TEMPORAL_API_KEY and TEMPORAL_API_KEY_FILE"),
            "{e}"
        );
        let gone = env(&[("TEMPORAL_API_KEY_FILE", "/nonexistent/key")]);
        let e = resolve_in(&flags, &gone, Some(&file))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("TEMPORAL_API_KEY_FILE names /nonexistent/key"),
            "{e}"
        );
        assert!(!e.contains("CANARY"), "{e}");
    }

    #[test]
    fn a_tls_flag_turns_tls_on_even_where_the_environment_turned_it_off() {
        let vars = env(&[("TEMPORAL_TLS", "false")]);
        assert!(resolve_in(&args(), &vars, None).unwrap().tls.is_none());
        let mut flags = args();
        flags.temporal_tls_server_name = Some("temporal.internal".into());
        let c = resolve_in(&flags, &vars, None).unwrap();
        assert_eq!(
            c.tls.unwrap().server_name.as_deref(),
            Some("temporal.internal")
        );
        assert_eq!(c.url.scheme(), "https");
    }

    #[test]
    fn a_certificate_without_its_key_fails_before_any_file_is_read() {
        let mut flags = args();
        flags.temporal_tls_cert = Some("/no/such/cert.pem".into());
        let e = resolve_in(&flags, &env(&[]), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--temporal-tls-cert was given without a client key; pass --temporal-tls-key (or \
             set TEMPORAL_TLS_CLIENT_KEY_PATH) with the certificate's private key"
        );
        let vars = env(&[("TEMPORAL_TLS_CLIENT_KEY_PATH", "/no/such/key.pem")]);
        let e = resolve_in(&args(), &vars, None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("TEMPORAL_TLS_CLIENT_KEY_PATH was given without a client certificate"),
            "{e}"
        );
    }

    #[test]
    fn unreadable_and_invalid_pem_files_are_named() {
        let mut flags = args();
        flags.temporal_tls_ca_cert = Some("/no/such/ca.pem".into());
        let e = resolve_in(&flags, &env(&[]), None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read the Temporal TLS CA certificate /no/such/ca.pem: "),
            "{e}"
        );
        let junk = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(junk.path(), "not a certificate").unwrap();
        flags.temporal_tls_ca_cert = Some(junk.path().to_path_buf());
        let e = resolve_in(&flags, &env(&[]), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "the Temporal TLS CA certificate {} is not valid PEM; it must hold a PEM \
                 certificate (-----BEGIN CERTIFICATE-----)",
                junk.path().display()
            )
        );
    }

    #[test]
    fn a_broken_config_file_is_one_line_naming_the_file() {
        let bad = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(bad.path(), "[profile.default\naddress = 1\n").unwrap();
        let vars = env(&[("TEMPORAL_CONFIG_FILE", bad.path().to_str().unwrap())]);
        let e = resolve_in(&args(), &vars, None).unwrap_err().to_string();
        assert!(e.contains(&bad.path().display().to_string()), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }

    #[test]
    fn local_reads_no_environment_and_no_file() {
        let c = resolve(&TemporalArgs::local("127.0.0.1:7999", "q")).unwrap();
        assert_eq!(c.address, "127.0.0.1:7999");
        assert!(c.tls.is_none() && c.api_key.is_none());
    }
}
