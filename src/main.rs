use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use presence_sync::check;
use presence_sync::config::Environment;

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
    }
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
