//! The `ricochet` command line.

use clap::{Parser, Subcommand};
use ricochet::bench::{self, BenchArgs};
use ricochet::server::config::{ServeArgs, Settings};
use ricochet::server::shard;
use ricochet::tune::{self, TuneArgs};
use std::process::ExitCode;

/// Ricochet: a shard-per-core WebSocket echo server for bare-metal Linux.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the echo server (SIGINT/SIGTERM shut it down gracefully; a flag given twice takes the last value)
    #[command(args_override_self = true, allow_negative_numbers = true)]
    Serve(Box<ServeArgs>),
    /// Load generator: closed-loop echo (or idle connections) against a WebSocket server; exits 1 on any wrong or missing echo
    #[command(args_override_self = true)]
    Bench(BenchArgs),
    /// Audit this host's kernel settings for a load; exit 1 when something should change (--apply changes it, as root)
    #[command(args_override_self = true)]
    Tune(TuneArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            // One line: what is wrong. `--help` has the rest.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("ricochet: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not for journald or files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .init();
    match cli.command {
        Command::Serve(args) => {
            let settings = match Settings::resolve(&args) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("ricochet: {e}");
                    return ExitCode::from(2);
                }
            };
            match shard::serve(settings) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e @ shard::ServeError::Uring(_)) => {
                    eprintln!("ricochet: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("ricochet: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Tune(args) => match tune::run(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e @ (tune::TuneError::Invalid { .. } | tune::TuneError::Setting(_))) => {
                eprintln!("ricochet: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("ricochet: {e}");
                ExitCode::from(1)
            }
        },
        Command::Bench(args) => match bench::run(&args) {
            Ok(r) => {
                bench::print_report(&r, args.mode, args.json);
                if r.clean() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e @ (bench::BenchError::Url(_) | bench::BenchError::Setting(_) | bench::BenchError::RawEmpty)) => {
                eprintln!("ricochet: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("ricochet: {e}");
                ExitCode::from(1)
            }
        },
    }
}
