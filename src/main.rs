use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use clap::{Args, Parser, Subcommand};

use presence_sync::check;
use presence_sync::config::{Config, Environment, LogFormat};
use presence_sync::daemon::{self, DaemonError, DaemonOptions, Exit};
use presence_sync::demo::{self, DemoError, DemoOptions};
use presence_sync::sim::{self, SimOptions};
use presence_sync::store::{self, SledStore};

mod allocator;

/// Keeps Microsoft Teams presence and contact-center agent statuses in sync.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config and every mapping file it names (exit 78 on any
    /// error), and/or check every record of a stopped daemon's store (exit
    /// 74 when refused); `--online` asks Entra and Graph whether the app has
    /// the permissions the config needs (exit 77 when not).
    Check(CheckArgs),
    /// Run the embedded Microsoft Graph simulator (a fake tenant) until Ctrl-C.
    Sim(SimArgs),
    /// Run the daemon: store, sync, Graph poller and writer, HTTP API.
    Run(RunArgs),
    /// Simulator, daemon and a simulated contact center together on loopback.
    Demo(DemoArgs),
    /// Write every record of a state directory to stdout as JSON lines.
    Export(StateDirArgs),
    /// Fill an empty state directory from JSON lines on stdin (an export).
    Import(StateDirArgs),
    /// Print the Graph application permissions this config needs, what
    /// each is for, and the tenant's admin-consent URL.
    Permissions(RunArgs),
    /// Sign a service account in (device code: a URL and a code to enter
    /// in any browser) and store its token in the state directory, for
    /// presence subscriptions (`[subscriptions]`).
    Login(LoginArgs),
}

#[derive(Debug, Args)]
struct LoginArgs {
    /// The daemon's config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The service account's UPN, one of `[subscriptions] accounts`.
    #[arg(long, value_name = "UPN")]
    account: String,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The daemon's config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Simulated agents (and Teams users).
    #[arg(long, value_name = "N", default_value_t = 25)]
    users: usize,
    /// Where the demo keeps its config, credentials and store.
    #[arg(long, value_name = "DIR", default_value = "presence-sync-demo")]
    state_dir: PathBuf,
    /// Stop after this many seconds instead of waiting for Ctrl-C.
    #[arg(long, value_name = "SECS")]
    seconds: Option<u64>,
}

#[derive(Debug, Args)]
struct StateDirArgs {
    /// The daemon's state directory (`[store] state_dir`).
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
}

#[derive(Debug, Args)]
struct SimArgs {
    /// Address to listen on, e.g. 127.0.0.1:8400.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Users to generate.
    #[arg(long, value_name = "N", default_value_t = 25)]
    users: usize,
    /// Graph calls allowed per 30 s before 429s (0: unlimited).
    #[arg(long, value_name = "REQUESTS_PER_30S", default_value_t = 1500)]
    budget: u32,
    /// Seed for users, credentials and the script.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Let users drift through Teams states on their own.
    #[arg(long)]
    script: bool,
    /// Scripted changes per user per hour.
    #[arg(long, value_name = "PER_USER_PER_HOUR", default_value_t = 6.0)]
    script_rate: f64,
    /// The application roles granted to the app, comma-separated (an empty
    /// value grants none); default: every role the daemon uses. Change them
    /// later with `POST /_sim/roles`.
    #[arg(long, value_name = "ROLES", value_delimiter = ',')]
    grant: Option<Vec<String>>,
    /// Approve device codes by themselves after a few seconds, signed in
    /// as a user whose UPN starts with `svc-` (one not signed in yet, in
    /// turn); without such a user codes wait for `POST
    /// /_sim/devicecode/approve`.
    #[arg(long)]
    auto_approve: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["config", "store"])))]
struct CheckArgs {
    /// The daemon's config file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A state directory (`[store] state_dir`) whose store to check record
    /// by record, on a scratch copy; the daemon must be stopped.
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// With --config: get a token from Entra and make one minimal read per
    /// permission the config needs; granted or missing, each on a line.
    #[arg(long, requires = "config")]
    online: bool,
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => Ok(run_check(&args)),
        Command::Sim(args) => run_sim(&args),
        Command::Run(args) => run_daemon(&args),
        Command::Demo(args) => run_demo(&args),
        Command::Export(args) => run_export(&args),
        Command::Import(args) => run_import(&args),
        Command::Permissions(args) => Ok(run_permissions(&args)),
        Command::Login(args) => run_login(&args),
    }
}

/// Exit codes, so a service manager and scripts can tell failures apart
/// (documented in README.md).
///
/// sysexits(3) codes, which `systemctl status` shows by their meaning, the
/// same from `check` and `run` for the same error; the unit's
/// `RestartPreventExitStatus=` lists those a restart cannot fix.
mod exit {
    /// The input is not what it must be (`import` of a malformed backup):
    /// `EX_DATAERR`.
    pub const DATA: u8 = 65;
    /// Entra or Graph cannot be reached (`check --online`): `EX_UNAVAILABLE`.
    pub const UNAVAILABLE: u8 = 69;
    /// The listen address cannot be bound (in use, not allowed): `EX_OSERR`.
    pub const LISTEN: u8 = 71;
    /// The store was refused: newer schema, failed check, or in use; or a
    /// service account's token could not be stored: `EX_IOERR`.
    pub const STORE: u8 = 74;
    /// Try again (`login`: the code expired before the sign-in):
    /// `EX_TEMPFAIL`.
    pub const TEMPFAIL: u8 = 75;
    /// Entra refused the credentials, or a permission the config needs is
    /// not granted (`check --online`); `login` was declined, refused, or
    /// signed in another account: `EX_NOPERM`.
    pub const NOPERM: u8 = 77;
    /// The config, a mapping file, a secret or the Graph credential cannot
    /// be used: `EX_CONFIG`.
    pub const CONFIG: u8 = 78;
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter: Targets = level.parse().unwrap_or_else(|e| {
        eprintln!("log level `{level}` not understood ({e}); using info");
        Targets::new().with_default(tracing::Level::INFO)
    });
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging not set up: {e}");
    }
}

fn startup_code(error: &DaemonError) -> u8 {
    match error {
        DaemonError::Mappings(_) => exit::CONFIG,
        DaemonError::Store(_) => exit::STORE,
        DaemonError::Secret(_) | DaemonError::Credential(_) | DaemonError::Graph(_) => exit::CONFIG,
        DaemonError::Bind { .. } => exit::LISTEN,
        DaemonError::Engine(_) | DaemonError::Task(_) => 1,
    }
}

fn run_daemon(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let config = match Config::load_with(&args.config, &Environment::from_process()) {
        Ok(config) => config,
        Err(error) => {
            for d in &error.diagnostics {
                eprintln!("{d}");
            }
            eprintln!("presence-sync: the config has errors; not starting");
            return Ok(ExitCode::from(exit::CONFIG));
        }
    };
    init_logging(config.log.format, &config.log.level);
    let result = runtime()?.block_on(daemon::lifecycle::run(config, DaemonOptions::default()));
    match result {
        Ok(Exit::Stopped) => Ok(ExitCode::SUCCESS),
        Ok(Exit::Failed(why)) => {
            eprintln!("presence-sync: stopped after a failure: {why}");
            Ok(ExitCode::FAILURE)
        }
        Err(error) => {
            tracing::error!(%error, "presence-sync could not start");
            eprintln!("presence-sync: {error}");
            Ok(ExitCode::from(startup_code(&error)))
        }
    }
}

fn run_demo(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        (1..=MAX_SIM_USERS).contains(&args.users),
        "--users must be between 1 and {MAX_SIM_USERS}"
    );
    init_logging(LogFormat::Text, "warn");
    let options = DemoOptions {
        users: args.users,
        state_dir: args.state_dir.clone(),
        seed: 1,
        run_for: args.seconds.map(std::time::Duration::from_secs),
    };
    match runtime()?.block_on(demo::run(options)) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(DemoError::Daemon(error)) => {
            eprintln!("presence-sync demo: {error}");
            Ok(ExitCode::from(startup_code(&error)))
        }
        Err(error) => Err(error.into()),
    }
}

fn run_export(args: &StateDirArgs) -> anyhow::Result<ExitCode> {
    let store = match SledStore::open(&args.state_dir) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("presence-sync export: {error}");
            return Ok(ExitCode::from(exit::STORE));
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let stats = store::export::export(&store, &mut out).context("export failed")?;
    std::io::Write::flush(&mut out).context("cannot write the export")?;
    // Read only: the daemon's next start need not check it again.
    store::Store::mark_clean_shutdown(&store).context("closing the store")?;
    eprintln!("presence-sync export: exported {stats}");
    Ok(ExitCode::SUCCESS)
}

fn run_import(args: &StateDirArgs) -> anyhow::Result<ExitCode> {
    let stdin = std::io::stdin();
    match store::export::import(&args.state_dir, stdin.lock()) {
        Ok(stats) => {
            eprintln!(
                "presence-sync import: imported {stats} into {}",
                args.state_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("presence-sync import: {error}");
            let code = match error {
                // The backup itself is wrong: nothing about the store.
                store::StoreError::Import { .. } => exit::DATA,
                _ => exit::STORE,
            };
            Ok(ExitCode::from(code))
        }
    }
}

/// Each user costs a few hundred bytes; beyond this the simulator is not
/// the tool (and a typo must not eat the machine's memory).
const MAX_SIM_USERS: usize = 1_000_000;

fn run_sim(args: &SimArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.users <= MAX_SIM_USERS,
        "--users {} is more than the simulator takes ({MAX_SIM_USERS})",
        args.users
    );
    runtime()?.block_on(async {
        let options = SimOptions {
            listen: args.listen,
            users: args.users,
            budget: (args.budget > 0).then_some(args.budget),
            seed: args.seed,
            scripted: args.script,
            script_rate: args.script_rate,
            roles: match &args.grant {
                Some(roles) => roles.clone(),
                None => SimOptions::default().roles,
            },
            auto_approve: args.auto_approve,
            ..SimOptions::default()
        };
        let handle = sim::spawn(options).await?;
        println!("Microsoft Graph simulator listening");
        println!("  base URL (login and Graph host): {}", handle.base_url);
        println!("  Graph:          {}", handle.graph_url());
        println!("  token endpoint: {}", handle.token_url());
        println!("  tenant id:      {}", handle.tenant_id);
        println!("  tenant domain:  {}", handle.tenant_domain);
        println!("  client id:      {}", handle.client_id);
        println!("  client secret:  {}", handle.client_secret);
        println!(
            "  users: {}, budget: {}, scripted: {}",
            args.users,
            if args.budget == 0 {
                "unlimited".to_string()
            } else {
                format!("{} per 30 s", args.budget)
            },
            args.script
        );
        let roles = handle.roles();
        println!(
            "  granted roles:  {}",
            if roles.is_empty() {
                "none".to_string()
            } else {
                roles.join(", ")
            }
        );
        println!("Ctrl-C stops it.");
        tokio::signal::ctrl_c()
            .await
            .context("cannot wait for Ctrl-C")?;
        handle.shutdown().await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn run_check(args: &CheckArgs) -> ExitCode {
    let config_ok = args.config.as_deref().is_none_or(run_check_config);
    let store = args.store.as_deref().map(run_check_store);
    // The config's failure first, as `check --config` alone reports it.
    let code = match store {
        _ if !config_ok => ExitCode::from(exit::CONFIG),
        Some(code) => code,
        None => ExitCode::SUCCESS,
    };
    match (&args.config, args.online) {
        (Some(path), true) if config_ok => run_check_online(path),
        _ => code,
    }
}

/// The config and its mappings, or the exit code after printing why not.
fn load_config_and_profiles(
    path: &std::path::Path,
) -> Result<(Config, daemon::mappings::MappingSet), ExitCode> {
    let config = Config::load_with(path, &Environment::from_process()).map_err(|error| {
        for d in &error.diagnostics {
            eprintln!("{d}");
        }
        eprintln!("presence-sync: the config has errors");
        ExitCode::from(exit::CONFIG)
    })?;
    let set = daemon::mappings::load_for(&config).map_err(|errors| {
        for d in &errors {
            eprintln!("{d}");
        }
        eprintln!("presence-sync: the mapping files have errors");
        ExitCode::from(exit::CONFIG)
    })?;
    Ok((config, set))
}

fn run_permissions(args: &RunArgs) -> ExitCode {
    match load_config_and_profiles(&args.config) {
        Ok((config, set)) => {
            print!(
                "{}",
                presence_sync::consent::explain(&config, &set.profiles)
            );
            print!(
                "{}",
                presence_sync::graph::permissions::explain_delegated(
                    &presence_sync::graph::permissions::delegated_needed(
                        config.subscriptions.enabled
                    ),
                    &config.file,
                    &config.subscriptions.accounts,
                )
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `login`: the device-code sign-in of one service account.
fn run_login(args: &LoginArgs) -> anyhow::Result<ExitCode> {
    use presence_sync::accounts::login::{self, LoginFailure};
    use presence_sync::accounts::{LoginError, PollTiming};
    let config = match Config::load_with(&args.config, &Environment::from_process()) {
        Ok(config) => config,
        Err(error) => {
            for d in &error.diagnostics {
                eprintln!("{d}");
            }
            eprintln!("presence-sync login: the config has errors");
            return Ok(ExitCode::from(exit::CONFIG));
        }
    };
    if let Some(owner) = login::foreign_owner(&config) {
        eprintln!(
            "presence-sync login: warning: the state directory {} belongs to user id {owner}, not \
             to this user: the daemon may not read the token stored now; run login as the \
             daemon's user (e.g. `sudo -u <user> presence-sync login ...`)",
            config.store.state_dir.display()
        );
    }
    let mut out = std::io::stdout();
    let result = runtime()?.block_on(login::login(
        &config,
        &args.account,
        &mut out,
        PollTiming::default(),
    ));
    match result {
        Ok(logged_in) => {
            print!("{}", login::next_steps(&config, &logged_in));
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("presence-sync login: {error}");
            let code = match error {
                LoginFailure::NotConfigured { .. } | LoginFailure::Setup(_) => exit::CONFIG,
                LoginFailure::Vault(_) => exit::STORE,
                LoginFailure::Flow(LoginError::Unreachable(_)) => exit::UNAVAILABLE,
                LoginFailure::Flow(LoginError::Expired) => exit::TEMPFAIL,
                LoginFailure::Flow(_) | LoginFailure::WrongAccount { .. } => exit::NOPERM,
            };
            Ok(ExitCode::from(code))
        }
    }
}

/// `check --online`: granted or missing, per permission the config needs.
fn run_check_online(path: &std::path::Path) -> ExitCode {
    use presence_sync::consent::{self, Online};
    let (config, set) = match load_config_and_profiles(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let online = match runtime() {
        Ok(rt) => rt.block_on(consent::check_online(&config, &set.profiles)),
        Err(e) => {
            eprintln!("presence-sync check: {e}");
            return ExitCode::FAILURE;
        }
    };
    match online {
        Online::Checked(checks) => {
            let (text, all) = consent::render(&checks, &consent::consent_url_for(&config));
            print!("{text}");
            if all {
                eprintln!("ok: every Graph permission the config needs is granted");
                ExitCode::SUCCESS
            } else {
                eprintln!("failed: a Graph permission the config needs is missing");
                ExitCode::from(exit::NOPERM)
            }
        }
        Online::Refused(error) => {
            println!("credentials refused: {error}");
            eprintln!("failed: Entra refused the app's credentials");
            ExitCode::from(exit::NOPERM)
        }
        Online::Unreachable(why) => {
            println!("unreachable: {why}");
            eprintln!("failed: Entra or Graph could not be reached");
            ExitCode::from(exit::UNAVAILABLE)
        }
    }
}

/// True when the config and its mapping files have no errors.
fn run_check_config(path: &std::path::Path) -> bool {
    let report = check::check(path, &Environment::from_process());
    for error in &report.errors {
        println!("{error}");
    }
    for warning in &report.warnings {
        println!("{warning}");
    }
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    eprintln!("{}", report.summary());
    report.is_ok()
}

fn run_check_store(dir: &std::path::Path) -> ExitCode {
    match check::check_store(dir) {
        check::StoreCheck::Passed(summary) => {
            eprintln!("{summary}");
            ExitCode::SUCCESS
        }
        check::StoreCheck::NoStore(why) => {
            eprintln!("presence-sync check: {why}");
            ExitCode::from(exit::STORE)
        }
        check::StoreCheck::Refused(store::StoreError::Locked { dir }) => {
            eprintln!(
                "presence-sync check: the store in {} is in use (the daemon runs): not checked. \
                 Stop the daemon first; it checks the store itself when it starts after an unclean shutdown",
                dir.display()
            );
            ExitCode::from(exit::STORE)
        }
        check::StoreCheck::Refused(error) => {
            eprintln!("presence-sync check: {error}");
            ExitCode::from(exit::STORE)
        }
    }
}
