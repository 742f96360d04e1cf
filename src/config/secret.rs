//! Secrets: read from a file or a systemd credential, never from the config
//! itself, and never printed.
//!
//! Loading the config only records where each secret lives; [`SecretSource::read`]
//! reads it. That split lets `check` report an unreadable secret as an error
//! on the key that names it, and lets the daemon read secrets once at start.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::diagnostics::Diagnostic;

use super::Origin;

/// The environment variable systemd sets to the directory of the unit's
/// credentials (`LoadCredential=`).
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// A secret value. `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that sends it (a token request, a header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a secret is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretLocation {
    /// A file the config names (`*_file` keys).
    File(PathBuf),
    /// A systemd credential: `$CREDENTIALS_DIRECTORY/<name>`. `directory` is
    /// `None` when the variable was not set at load time.
    Credential {
        name: &'static str,
        directory: Option<PathBuf>,
    },
}

/// A secret the config refers to, not yet read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretSource {
    /// What the secret is for, in words (`the Graph client secret`).
    pub purpose: &'static str,
    pub location: SecretLocation,
    /// The config key that chose the location, for error messages.
    pub origin: Origin,
}

#[derive(Debug, Error)]
pub enum SecretError {
    #[error("cannot read {purpose} from `{}`: {source}", path.display())]
    Unreadable {
        purpose: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{purpose} in `{}` is empty", path.display())]
    Empty {
        purpose: &'static str,
        path: PathBuf,
    },
    #[error(
        "{purpose} comes from the systemd credential `{name}`, but ${CREDENTIALS_DIRECTORY} is not set: \
         run under systemd with LoadCredential={name}:<file>, or set the `*_file` key"
    )]
    NoCredentialsDirectory {
        purpose: &'static str,
        name: &'static str,
    },
    #[error(
        "{purpose}: the systemd credential `{name}` is not in ${CREDENTIALS_DIRECTORY} (`{}`): \
         add LoadCredential={name}:<file> to the unit",
        directory.display()
    )]
    CredentialMissing {
        purpose: &'static str,
        name: &'static str,
        directory: PathBuf,
    },
    #[error(
        "{purpose} is the same as {other}: give it a value of its own, or anyone holding it could \
         do what {other} allows"
    )]
    SameAs {
        purpose: &'static str,
        other: &'static str,
    },
}

impl SecretSource {
    /// Reads the secret. One trailing newline is dropped: files written with
    /// `echo` or an editor end with one, and it is never part of a secret.
    pub fn read(&self) -> Result<Secret, SecretError> {
        let path = match &self.location {
            SecretLocation::File(path) => path.clone(),
            SecretLocation::Credential {
                name,
                directory: None,
            } => {
                return Err(SecretError::NoCredentialsDirectory {
                    purpose: self.purpose,
                    name,
                });
            }
            SecretLocation::Credential {
                name,
                directory: Some(directory),
            } => {
                let path = directory.join(name);
                if !path.exists() {
                    return Err(SecretError::CredentialMissing {
                        purpose: self.purpose,
                        name,
                        directory: directory.clone(),
                    });
                }
                path
            }
        };
        read_secret_file(self.purpose, &path)
    }

    /// The error of [`read`](Self::read) located on the key that chose this
    /// source.
    pub fn diagnostic(&self, error: &SecretError) -> Diagnostic {
        self.origin.diagnostic(error.to_string())
    }
}

fn read_secret_file(purpose: &'static str, path: &Path) -> Result<Secret, SecretError> {
    let mut text = std::fs::read_to_string(path).map_err(|source| SecretError::Unreadable {
        purpose,
        path: path.to_path_buf(),
        source,
    })?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.trim().is_empty() {
        return Err(SecretError::Empty {
            purpose,
            path: path.to_path_buf(),
        });
    }
    Ok(Secret(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(location: SecretLocation) -> SecretSource {
        SecretSource {
            purpose: "the API token",
            location,
            origin: Origin::whole_file(Path::new("c.toml")),
        }
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "<redacted> <redacted>");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn reads_credentials_and_drops_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api-token"), "tok en\n\n").unwrap();
        let secret = source(SecretLocation::Credential {
            name: "api-token",
            directory: Some(dir.path().to_path_buf()),
        })
        .read()
        .unwrap();
        assert_eq!(secret.expose(), "tok en\n");
    }

    #[test]
    fn explains_missing_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let missing = source(SecretLocation::Credential {
            name: "api-token",
            directory: Some(dir.path().to_path_buf()),
        });
        assert!(matches!(
            missing.read(),
            Err(SecretError::CredentialMissing { .. })
        ));
        let unset = source(SecretLocation::Credential {
            name: "api-token",
            directory: None,
        });
        let error = unset.read().unwrap_err();
        assert_eq!(
            unset.diagnostic(&error).to_string(),
            "c.toml: the API token comes from the systemd credential `api-token`, but $CREDENTIALS_DIRECTORY \
             is not set: run under systemd with LoadCredential=api-token:<file>, or set the `*_file` key"
        );
    }

    #[test]
    fn empty_and_unreadable_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert!(matches!(
            source(SecretLocation::File(empty)).read(),
            Err(SecretError::Empty { .. })
        ));
        assert!(matches!(
            source(SecretLocation::File(dir.path().join("nope"))).read(),
            Err(SecretError::Unreadable { .. })
        ));
    }
}
