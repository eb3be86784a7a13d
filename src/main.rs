//! The `patgate` binary: parse the command line, dispatch, print the error chain. No logic.

use clap::Parser;
use patgate::cli::{Cli, Command};
use patgate::conf::Conf;
use std::error::Error;
use std::process::ExitCode;

/// mimalloc: +15% plain Pingora throughput over glibc malloc on this project's machine
/// (shared/reference/perf-baseline.md), for a per-request allocation pattern like ours.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("patgate: {}", patgate::causes::with_causes(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn Error>> {
    let Cli {
        conf: conf_path,
        command,
    } = cli;
    if let Command::Demo(args) = command {
        return Ok(patgate::demo::run(args.port)?);
    }
    let conf = Conf::load(&conf_path)?;
    match command {
        Command::Serve(args) => patgate::serve::serve(conf, args),
        Command::Check => Ok(patgate::serve::check(&conf)?),
        Command::Demo(_) => Ok(()),
        Command::Explain(args) => Ok(patgate::commands::explain(&conf, args)?),
        Command::User { command } => Ok(patgate::commands::user(&conf, command)?),
        Command::Token { command } => Ok(patgate::commands::token(&conf, command)?),
        Command::Apikey { command } => Ok(patgate::commands::apikey(&conf, command)?),
        Command::Audit { command } => Ok(patgate::commands::audit(&conf, command)?),
    }
}
