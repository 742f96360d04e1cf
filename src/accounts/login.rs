//! `presence-sync login`: signs a service account in with the device-code
//! flow and stores its refresh token in the state directory, for the
//! daemon to use; and what `check` says of the accounts.

use std::io::Write;
use std::path::PathBuf;

use chrono::Utc;
use thiserror::Error;

use super::device_code::{self, LoginError, PollTiming};
use super::entra::EntraClient;
use super::login_command;
use super::vault::{StoredAccount, Vault, VaultError};
use crate::config::Config;

/// Why `login` did not store a token.
#[derive(Debug, Error)]
pub enum LoginFailure {
    #[error(
        "{upn} is not one of the service accounts in [subscriptions] accounts: add it there first \
         (the accounts are {listed})"
    )]
    NotConfigured { upn: String, listed: String },
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    #[error(transparent)]
    Flow(#[from] LoginError),
    #[error(
        "signed in as {found}, not {expected}: nothing was stored. Sign in as {expected} (a private \
         browser window avoids the signed-in user), or give --account {found} if that account is meant"
    )]
    WrongAccount { expected: String, found: String },
    #[error("the token could not be stored: {0}")]
    Vault(#[from] VaultError),
}

/// Where the token went, and whether subscriptions are on.
#[derive(Debug)]
pub struct LoggedIn {
    pub upn: String,
    pub file: PathBuf,
}

/// Runs the flow for `upn`: prints Entra's message (the URL and the code)
/// to `out`, waits for the sign-in, checks it was `upn`, stores the
/// refresh token.
pub async fn login(
    config: &Config,
    upn: &str,
    out: &mut (dyn Write + Send),
    timing: PollTiming,
) -> Result<LoggedIn, LoginFailure> {
    let upn = upn.trim();
    if !config.subscriptions.has_account(upn) {
        let listed = if config.subscriptions.accounts.is_empty() {
            "none yet".to_owned()
        } else {
            config.subscriptions.accounts.join(", ")
        };
        return Err(LoginFailure::NotConfigured {
            upn: upn.to_owned(),
            listed,
        });
    }
    let entra = EntraClient::from_config(&config.graph).map_err(LoginFailure::Setup)?;
    let code = device_code::request_code(&entra).await?;
    let _ = writeln!(out, "{}", code.message);
    let _ = writeln!(
        out,
        "Sign in as {upn}. Waiting for the sign-in (the code is valid for {} minutes)...",
        code.expires_in.as_secs() / 60
    );
    let _ = out.flush();
    let signed_in = device_code::wait_for_sign_in(&entra, &code, timing).await?;
    let found = signed_in.upn.ok_or(LoginError::NoUsername)?;
    if !found.eq_ignore_ascii_case(upn) {
        return Err(LoginFailure::WrongAccount {
            expected: upn.to_owned(),
            found,
        });
    }
    let vault = Vault::new(&config.store.state_dir);
    let now = Utc::now();
    let upn = config
        .subscriptions
        .accounts
        .iter()
        .find(|a| a.eq_ignore_ascii_case(upn))
        .cloned()
        .unwrap_or_else(|| upn.to_owned());
    vault.store(&StoredAccount {
        upn: upn.clone(),
        oid: signed_in.oid,
        refresh_token: signed_in.refresh_token,
        signed_in_at: now,
        refreshed_at: now,
    })?;
    Ok(LoggedIn {
        file: vault.path_for(&upn),
        upn,
    })
}

/// What to do after signing in, in words.
pub fn next_steps(config: &Config, logged_in: &LoggedIn) -> String {
    let mut text = format!(
        "Signed in as {}; its token is in {} (readable by this user only).\n",
        logged_in.upn,
        logged_in.file.display()
    );
    if config.subscriptions.enabled {
        text.push_str(
            "The running daemon picks the new token up at its next use of the account; \
             no restart is needed. `/readyz` shows each account's state.\n",
        );
    } else {
        text.push_str(
            "Subscriptions are off: set `enabled = true` in [subscriptions] and restart the \
             daemon to use the account.\n",
        );
    }
    let missing: Vec<&String> = config
        .subscriptions
        .accounts
        .iter()
        .filter(|a| !a.eq_ignore_ascii_case(&logged_in.upn))
        .filter(|a| {
            Vault::new(&config.store.state_dir)
                .load(a)
                .ok()
                .flatten()
                .is_none()
        })
        .collect();
    for account in missing {
        text.push_str(&format!(
            "Not signed in yet: {account} (`{}`)\n",
            login_command(&config.file, account)
        ));
    }
    text
}

/// The state directory's owner, when it is not the user running `login`:
/// the daemon (its owner) could not read a token this user writes.
pub fn foreign_owner(config: &Config) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(&config.store.state_dir).ok()?.uid();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    (owner != me).then_some(owner)
}

/// What `check` says of the service accounts: a note per signed-in
/// account, a warning per account not signed in or unreadable.
pub fn check_accounts(config: &Config) -> (Vec<String>, Vec<String>) {
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    let subscriptions = &config.subscriptions;
    if !subscriptions.enabled {
        return (notes, warnings);
    }
    notes.push(format!(
        "subscriptions: on, {} service account(s), up to {} users a subscription, receiver on {}",
        subscriptions.accounts.len(),
        subscriptions.max_users_per_subscription,
        subscriptions.listen
    ));
    let vault = Vault::new(&config.store.state_dir);
    for upn in &subscriptions.accounts {
        let login = login_command(&config.file, upn);
        match vault.load(upn) {
            Ok(Some(stored)) => notes.push(format!(
                "service account {upn}: signed in {}, token last refreshed {}",
                stored.signed_in_at.format("%Y-%m-%d %H:%M UTC"),
                stored.refreshed_at.format("%Y-%m-%d %H:%M UTC")
            )),
            Ok(None) => warnings.push(format!(
                "warning: service account {upn} is not signed in: run `{login}`"
            )),
            Err(error) => warnings.push(format!(
                "warning: service account {upn}: {error} (`{login}`)"
            )),
        }
    }
    (notes, warnings)
}
