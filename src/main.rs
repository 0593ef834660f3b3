//! The `ricochet` command line.

use clap::{Parser, Subcommand};
use ricochet::bench::{self, BenchArgs};
use ricochet::logging::{self, say_error};
use ricochet::process;
use ricochet::server::config::{ServeArgs, Settings};
use ricochet::tune::{self, TuneArgs};
use std::process::ExitCode;

/// What `--version` says: the version, the commit, and what this build
/// speaks beyond RFC 6455 (its TLS library and crypto provider, its
/// compression) and which I/O backends it has.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RICOCHET_GIT_COMMIT"),
    ")\nfeatures: tls (rustls 0.23, ring), permessage-deflate (flate2, zlib-rs), backends epoll and io_uring"
);

/// Ricochet: a shard-per-core WebSocket echo server for bare-metal Linux.
#[derive(Parser, Debug)]
#[command(version = VERSION, about, long_about = None, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the echo server (SIGINT/SIGTERM shut it down gracefully; a flag given twice takes the last value)
    #[command(args_override_self = true, allow_negative_numbers = true)]
    Serve(Box<ServeArgs>),
    /// Load generator: closed-loop or fixed-rate (--rate) echo, idle connections, handshakes per second (connect) or a reconnect storm, against a WebSocket server; exits 1 on any wrong or missing echo
    #[command(args_override_self = true)]
    Bench(Box<BenchArgs>),
    /// Audit this host's kernel settings for a load; exit 1 when something should change (--apply changes it, as root)
    #[command(args_override_self = true)]
    Tune(TuneArgs),
    /// Writes the man pages (man/ricochet.1, one per subcommand), shell completions (completions/: bash, zsh, fish) and the reference tables of docs/ (settings.md, metrics.md) into DIR, from the same definitions as --help and /metrics; `make install`, `make deb` and `make docs` run it
    #[command(hide = true)]
    Generate {
        /// Where to write them
        dir: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // A bare `ricochet`: the whole help, and the status of a usage error.
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) if e.use_stderr() => {
            say_error(one_line(&e));
            return ExitCode::from(2);
        }
        Err(e) => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    // `serve` logs as its settings say, once they are read.
    if !matches!(cli.command, Command::Serve(_)) {
        logging::init(logging::LogFormat::Text);
    }
    match cli.command {
        Command::Serve(args) => {
            let settings = match Settings::resolve(&args) {
                Ok(s) => s,
                Err(e) => {
                    let argv: Vec<String> = std::env::args().collect();
                    match e.origin(&args, &argv) {
                        Some(origin) => say_error(format!("{e} ({origin})")),
                        None => say_error(e),
                    }
                    return ExitCode::from(2);
                }
            };
            // Until every shard accepts, log lines are held: a start that
            // fails prints its one error line and nothing else.
            logging::hold();
            logging::init(settings.log_format);
            match process::serve(settings) {
                Ok(_) => ExitCode::SUCCESS,
                // A failure while serving (the start went through).
                Err(e @ process::ServeError::Stopped { .. }) => {
                    say_error(e);
                    ExitCode::from(1)
                }
                // Any failure to start: one line, exit 2.
                Err(e) => {
                    logging::discard();
                    say_error(e);
                    ExitCode::from(2)
                }
            }
        }
        Command::Generate { dir } => match generate(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                say_error(format!("generate {}: {e}", dir.display()));
                ExitCode::from(1)
            }
        },
        Command::Tune(args) => match tune::run(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e @ (tune::TuneError::Invalid { .. } | tune::TuneError::Setting(_))) => {
                say_error(e);
                ExitCode::from(2)
            }
            Err(e) => {
                say_error(e);
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
            Err(
                e @ (bench::BenchError::Url(_)
                | bench::BenchError::Setting(_)
                | bench::BenchError::RawEmpty
                | bench::BenchError::RawDeflate
                | bench::BenchError::WarmupMode
                | bench::BenchError::Tls(_)),
            ) => {
                say_error(e);
                ExitCode::from(2)
            }
            Err(e) => {
                say_error(e);
                ExitCode::from(1)
            }
        },
    }
}

/// A clap error as one line: what is wrong and the part clap puts on the
/// following lines (the missing arguments, the allowed values), without the
/// usage and the tip, and, when the value came from a `RICOCHET_*`
/// variable rather than a flag, that variable's name.
/// The man pages and completions, into `dir`/man and `dir`/completions.
fn generate(dir: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    let man = dir.join("man");
    let completions = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let cmd = Cli::command().name("ricochet");
    let page = |c: clap::Command, file: String| -> std::io::Result<()> {
        let mut out = Vec::new();
        clap_mangen::Man::new(c).render(&mut out)?;
        std::fs::write(man.join(file), out)
    };
    page(cmd.clone(), "ricochet.1".into())?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // clap names are 'static: a few bytes leaked once, by a command that exits.
        let name: &'static str = Box::leak(format!("ricochet-{}", sub.get_name()).into_boxed_str());
        page(sub.clone().name(name), format!("{name}.1"))?;
    }
    use clap_complete::Shell;
    for (shell, file) in [(Shell::Bash, "ricochet.bash"), (Shell::Zsh, "_ricochet"), (Shell::Fish, "ricochet.fish")] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "ricochet", &mut out);
        std::fs::write(completions.join(file), out)?;
    }
    let serve = cmd.find_subcommand("serve").expect("the serve subcommand");
    std::fs::write(dir.join("settings.md"), settings_markdown(serve))?;
    let metrics = format!(
        "{GENERATED}\n# Metrics reference\n\nEvery family the admin listener (`--metrics-listen`) exports at `/metrics` \
         (Prometheus text) and `/stats.json`; some only with the setting they count (TLS, io_uring, \
         permessage-deflate, PROXY, rate limits, per-address limits, `--takeover`). \
         [metrics.md](metrics.md) says how to read them.\n\n{}",
        ricochet::admin::exposition::reference_markdown()
    );
    std::fs::write(dir.join("metrics.md"), metrics)?;
    Ok(())
}

/// The first line of every generated page of docs/.
const GENERATED: &str = "<!-- Generated by `make docs` (ricochet generate) from the code; do not edit. -->";

/// Every `ricochet serve` setting as a Markdown table: flag, environment
/// variable, TOML key, default and what it does, read off the clap
/// definitions `--help` prints (the default is the help's `[default: ...]`).
fn settings_markdown(serve: &clap::Command) -> String {
    let mut out = format!(
        "{GENERATED}\n# Settings\n\nEvery `ricochet serve` setting is a flag, an environment variable and a key in \
         the TOML file given with `--config` (the flag's name without `--`; `tuning/ricochet.toml` has them all, \
         commented). Flags win over the environment, the environment over the file. Sizes take `K`, `M`, `G` \
         (binary) suffixes; times take `ms`, `s`, `m`, and a bare number is seconds; boolean variables take \
         `1`/`0`, `true`/`false`, `yes`/`no`.\n\n\
         | Flag | Variable | Default | What it does |\n|---|---|---|---|\n"
    );
    for a in serve.get_arguments() {
        let Some(long) = a.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
        let (text, default) = match help.rsplit_once(" [default: ") {
            Some((t, d)) => (t.to_string(), d.trim_end_matches(']').to_string()),
            None => (help.clone(), if a.get_action().takes_values() { "unset".into() } else { "off".into() }),
        };
        let value = a
            .get_value_names()
            .and_then(|v| v.first())
            .filter(|_| a.get_action().takes_values())
            .map(|v| format!(" {v}"))
            .unwrap_or_default();
        let env = a.get_env().map(|e| format!("`{}`", e.to_string_lossy())).unwrap_or_default();
        let cell = |s: &str| s.replace('|', "\\|");
        out.push_str(&format!("| `--{long}{value}` | {env} | {} | {} |\n", cell(&default), cell(&text)));
    }
    out
}

fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut parts = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("tip:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.trim_start_matches("error: "));
        }
    }
    let mut msg = parts.join(" ");
    if let Some(var) = env_source(e) {
        msg.push_str(&format!(" (from the environment variable {var})"));
    }
    msg
}

/// The `RICOCHET_*` variable an invalid value came from, if it did: the
/// argument's flag is not on the command line and its variable is set.
fn env_source(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else { return None };
    let flag = arg.split_whitespace().next()?;
    let name = flag.strip_prefix("--")?;
    let var = format!("RICOCHET_{}", name.to_ascii_uppercase().replace('-', "_"));
    let on_command_line = std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    (!on_command_line && std::env::var_os(&var).is_some()).then_some(var)
}
