//! The service accounts' refresh tokens on disk: `{state_dir}/accounts/`,
//! one file per account, readable by the daemon's user only (0600 in a
//! 0700 directory), each written atomically (a temporary file, fsync,
//! rename, fsync of the directory) so that a crash leaves the old token or
//! the new one, never half of either.
//!
//! The token is never logged: [`StoredAccount`]'s `Debug` shows
//! `<redacted>` for it.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::Secret;

/// The directory under the state directory.
pub const ACCOUNTS_DIR: &str = "accounts";

/// Version of the file's shape.
const FORMAT: u32 = 1;

/// An account's stored sign-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAccount {
    pub upn: String,
    /// The account's object id, from its id token.
    pub oid: Option<String>,
    pub refresh_token: Secret,
    /// When `presence-sync login` signed it in.
    pub signed_in_at: DateTime<Utc>,
    /// When its token was last refreshed (the refresh token stored then).
    pub refreshed_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    format: u32,
    upn: String,
    #[serde(default)]
    oid: Option<String>,
    refresh_token: String,
    signed_in_at: DateTime<Utc>,
    refreshed_at: DateTime<Utc>,
}

#[derive(Debug, Error)]
pub enum VaultError {
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("`{}` is not a token file this version reads: {message}; sign the account in again", path.display())]
    Unreadable { path: PathBuf, message: String },
    #[error("`{}` holds the token of {found}, not {expected}; sign {expected} in again", path.display())]
    WrongAccount {
        path: PathBuf,
        expected: String,
        found: String,
    },
}

/// The accounts' token files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vault {
    dir: PathBuf,
}

impl Vault {
    /// The vault of the state directory `state_dir`.
    pub fn new(state_dir: &Path) -> Vault {
        Vault {
            dir: state_dir.join(ACCOUNTS_DIR),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `upn`: a readable part of the UPN and a hash of all of
    /// it (so that no two UPNs share a file and no UPN leaves the
    /// directory).
    pub fn path_for(&self, upn: &str) -> PathBuf {
        self.dir.join(file_name(upn))
    }

    /// The stored sign-in of `upn`; `None` when it never signed in.
    pub fn load(&self, upn: &str) -> Result<Option<StoredAccount>, VaultError> {
        let path = self.path_for(upn);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(VaultError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        let disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| VaultError::Unreadable {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if disk.format != FORMAT {
            return Err(VaultError::Unreadable {
                path,
                message: format!("format {} (this version reads {FORMAT})", disk.format),
            });
        }
        if !disk.upn.eq_ignore_ascii_case(upn.trim()) {
            return Err(VaultError::WrongAccount {
                path,
                expected: upn.to_owned(),
                found: disk.upn,
            });
        }
        Ok(Some(StoredAccount {
            upn: disk.upn,
            oid: disk.oid,
            refresh_token: Secret::new(disk.refresh_token),
            signed_in_at: disk.signed_in_at,
            refreshed_at: disk.refreshed_at,
        }))
    }

    /// Stores `account`, replacing its previous file atomically.
    pub fn store(&self, account: &StoredAccount) -> Result<(), VaultError> {
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| VaultError::Io {
                action,
                path,
                source,
            }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io("create the directory", &self.dir))?;
        let path = self.path_for(&account.upn);
        let disk = OnDisk {
            format: FORMAT,
            upn: account.upn.clone(),
            oid: account.oid.clone(),
            refresh_token: account.refresh_token.expose().to_owned(),
            signed_in_at: account.signed_in_at,
            refreshed_at: account.refreshed_at,
        };
        let mut bytes = serde_json::to_vec_pretty(&disk).map_err(|e| VaultError::Unreadable {
            path: path.clone(),
            message: e.to_string(),
        })?;
        bytes.push(b'\n');
        let temp = self.dir.join(format!(
            ".{}.tmp-{}-{}",
            file_name(&account.upn),
            std::process::id(),
            crate::graph::throttle::new_request_id()
        ));
        let written = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
                .map_err(io("create", &temp))?;
            file.write_all(&bytes).map_err(io("write", &temp))?;
            file.sync_all().map_err(io("flush", &temp))?;
            fs::rename(&temp, &path).map_err(io("replace", &path))
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written?;
        // The rename itself survives a crash once the directory is synced.
        fs::File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io("flush the directory", &self.dir))
    }

    /// Forgets `upn`'s sign-in; false when there was none.
    pub fn remove(&self, upn: &str) -> Result<bool, VaultError> {
        let path = self.path_for(upn);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(VaultError::Io {
                action: "remove",
                path,
                source,
            }),
        }
    }
}

/// `svc-presence@contoso.com` → `svc-presence@contoso.com-1a2b3c4d5e6f7a8b.json`:
/// lower case, every character but letters, digits, `.`, `-`, `_`, `@`
/// made `_`, at most 64 of them, a leading dot made `_`; then 16 hex digits
/// of the SHA-256 of the lower-cased UPN.
pub fn file_name(upn: &str) -> String {
    let folded = upn.trim().to_lowercase();
    let mut readable: String = folded
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if readable.starts_with('.') || readable.is_empty() {
        readable.insert(0, '_');
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, folded.as_bytes());
    let hash: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{readable}-{hash}.json")
}
