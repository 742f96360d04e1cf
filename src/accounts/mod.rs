//! Delegated service accounts: the users the daemon signs in as to
//! subscribe to presence change notifications (Graph takes those with a
//! delegated token only).
//!
//! | concept | module |
//! |---|---|
//! | the refresh tokens on disk (state directory, `accounts/`) | [`vault`] |
//! | signing an account in: the device-code flow | [`device_code`] |
//! | an account's access token, refreshed and rotated; its status | [`token`] |
//! | Entra's token endpoint as the accounts use it | [`entra`] |
//! | why an account has no token, and the fix | [`error`] |
//! | `presence-sync login`, and what `check` says of the accounts | [`login`] |
//!
//! An admin signs each account in once with `presence-sync login`; the
//! daemon then refreshes its token as needed, stores the new refresh token
//! Entra hands out on every refresh, and refreshes at least every
//! [`token::KEEP_ALIVE`] even when idle, so that the refresh token never
//! reaches Entra's 90 days of inactivity.

pub mod device_code;
pub mod entra;
pub mod error;
pub mod login;
pub mod token;
pub mod vault;

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::graph::SharedClock;

pub use device_code::{DeviceCode, LoginError, PollTiming, SignedIn};
pub use entra::{AccountEndpoints, EntraClient};
pub use error::{AccountError, AccountFailure};
pub use token::{AccountState, AccountStatus, AccountTokens, KEEP_ALIVE};
pub use vault::{StoredAccount, Vault, VaultError};

/// The command that signs `upn` in, as every message about an account
/// without a usable token gives it. The config's path is made absolute
/// when it can be, so the command works from wherever an admin reads it.
pub fn login_command(config_file: &Path, upn: &str) -> String {
    let config_file =
        std::path::absolute(config_file).unwrap_or_else(|_| config_file.to_path_buf());
    format!(
        "presence-sync login --config {} --account {upn}",
        config_file.display()
    )
}

/// The tokens of every account `[subscriptions]` names, sharing one
/// Entra client, their files in the config's state directory. Each
/// status starts from its file (signed in, or not); a failed one is tried
/// again every `retry`.
pub fn accounts_for(
    config: &Config,
    clock: SharedClock,
    retry: std::time::Duration,
) -> Result<Vec<Arc<AccountTokens>>, String> {
    let entra = Arc::new(EntraClient::from_config(&config.graph)?);
    let vault = Vault::new(&config.store.state_dir);
    Ok(config
        .subscriptions
        .accounts
        .iter()
        .map(|upn| {
            Arc::new(
                AccountTokens::new(
                    upn,
                    login_command(&config.file, upn),
                    entra.clone(),
                    vault.clone(),
                    clock.clone(),
                )
                .retry_every(retry),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests;
