use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use clap::{Args, Parser, Subcommand};

use presence_sync::check;
use presence_sync::config::Environment;
use presence_sync::sim::{self, SimOptions};

/// Keeps Microsoft Teams presence and contact-center agent statuses in sync.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config and every mapping file it names; exit 1 on any error.
    Check(CheckArgs),
    /// Run the embedded Microsoft Graph simulator (a fake tenant) until Ctrl-C.
    Sim(SimArgs),
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
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The daemon's config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => Ok(run_check(&args)),
        Command::Sim(args) => run_sim(&args),
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let options = SimOptions {
            listen: args.listen,
            users: args.users,
            budget: (args.budget > 0).then_some(args.budget),
            seed: args.seed,
            scripted: args.script,
            script_rate: args.script_rate,
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
        println!("Ctrl-C stops it.");
        tokio::signal::ctrl_c()
            .await
            .context("cannot wait for Ctrl-C")?;
        handle.shutdown().await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn run_check(args: &CheckArgs) -> ExitCode {
    let report = check::check(&args.config, &Environment::from_process());
    for error in &report.errors {
        println!("{error}");
    }
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    eprintln!("{}", report.summary());
    if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
