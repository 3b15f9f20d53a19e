//! Secrets from files, the convention of container platforms (Docker and Kubernetes
//! secrets are mounted as files): `VAR_FILE=/run/secrets/x` instead of `VAR=value`, so
//! the value is in no environment, no `ps` listing and no `docker inspect`. Errors name
//! the variable and the path, never what the file holds.

use std::path::Path;

use gradesync_activities::gov::Secret;

use crate::errors::CliError;

/// Why a secret could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretFileError {
    #[error(
        "both {var} and {var}_FILE are set: keep one (the file is safer: the value stays out \
         of the environment and the process list)"
    )]
    Both { var: &'static str },
    #[error(
        "{var}_FILE names {path}, which cannot be read ({reason}): fix the path or its permissions"
    )]
    Unreadable {
        var: &'static str,
        path: String,
        reason: String,
    },
    #[error("{var}_FILE names {path}, which is empty: put the secret in it")]
    Empty { var: &'static str, path: String },
    #[error("{var}_FILE names {path}, which is not UTF-8 text: put the secret in it as text")]
    NotText { var: &'static str, path: String },
}

impl From<SecretFileError> for CliError {
    fn from(e: SecretFileError) -> Self {
        CliError::Usage(e.to_string())
    }
}

/// The secret of `var`: its value (from the variable or its flag) or the content of the
/// file `var_FILE` names, with the trailing newline an editor or `echo` leaves removed.
/// Neither: `None`. An empty value counts as unset, as an unset variable does.
pub fn resolve(
    var: &'static str,
    value: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<Secret>, SecretFileError> {
    let value = value.filter(|v| !v.is_empty());
    let file = file.filter(|p| !p.as_os_str().is_empty());
    match (value, file) {
        (Some(_), Some(_)) => Err(SecretFileError::Both { var }),
        (Some(v), None) => Ok(Some(Secret::new(v))),
        (None, Some(path)) => read(var, path).map(Some),
        (None, None) => Ok(None),
    }
}

/// The file's content as a secret.
pub fn read(var: &'static str, path: &Path) -> Result<Secret, SecretFileError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| SecretFileError::Unreadable {
        var,
        path: shown.clone(),
        reason: e.kind().to_string(),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| SecretFileError::NotText {
        var,
        path: shown.clone(),
    })?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.trim().is_empty() {
        return Err(SecretFileError::Empty { var, path: shown });
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VAR: &str = "GRADESYNC_GOV_CLIENT_SECRET";

    #[test]
    fn a_file_gives_its_content_without_the_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cr3t value\r\n").unwrap();
        let s = resolve(VAR, None, Some(&path)).unwrap().unwrap();
        assert_eq!(s.expose(), "s3cr3t value");
        let s = resolve(VAR, Some("direct"), None).unwrap().unwrap();
        assert_eq!(s.expose(), "direct");
        assert!(resolve(VAR, Some(""), None).unwrap().is_none());
        assert!(resolve(VAR, None, None).unwrap().is_none());
    }

    #[test]
    fn both_or_a_bad_file_is_one_line_without_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "CANARY-in-file\n").unwrap();
        let e = resolve(VAR, Some("CANARY-value"), Some(&path)).unwrap_err();
        assert_eq!(e, SecretFileError::Both { var: VAR });
        let missing = dir.path().join("missing");
        let e = resolve(VAR, None, Some(&missing)).unwrap_err().to_string();
        assert!(
            e.contains("GRADESYNC_GOV_CLIENT_SECRET_FILE") && e.contains("missing"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = resolve(VAR, None, Some(&empty)).unwrap_err();
        assert!(matches!(e, SecretFileError::Empty { .. }), "{e}");
        let binary = dir.path().join("binary");
        std::fs::write(&binary, [0xff, 0xfe, b'C']).unwrap();
        let e = resolve(VAR, None, Some(&binary)).unwrap_err();
        assert!(matches!(e, SecretFileError::NotText { .. }), "{e}");
        assert!(!e.to_string().contains("CANARY"), "{e}");
    }
}
