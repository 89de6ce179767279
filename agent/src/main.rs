//! The `weir` binary: argument parsing only; see the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use weir_agent::runtime::{self, RunOptions};
use weir_core::process::{init_logging, shutdown_signal, LogFormat};

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "Weir edge agent: sources → durable channels → sinks."
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a pipeline until SIGTERM or SIGINT.
    Run {
        /// Pipeline YAML.
        #[arg(short, long)]
        config: PathBuf,
        /// Data directory for spools and state (overrides the pipeline's `data_dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Serve Prometheus metrics on http://ADDR/metrics.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
        /// Longest the sources, then the sinks, get to stop.
        #[arg(long, default_value = "10s", value_parser = humantime_duration)]
        shutdown_timeout: Duration,
    },
    /// Check a pipeline without running it; exit 1 and list every problem if it is invalid.
    Validate {
        /// Pipeline YAML.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Run the unit tests of a pipeline's transforms, in-process; exit 1 if any fails.
    Test {
        /// Pipeline YAML.
        #[arg(short, long)]
        config: PathBuf,
        /// Tests YAML (default: `<pipeline>.tests.yaml` beside the pipeline).
        #[arg(long)]
        tests: Option<PathBuf>,
    },
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(if cli.log_json {
        LogFormat::Json
    } else {
        LogFormat::Text
    });
    match cli.cmd {
        Cmd::Validate { config } => match weir_agent::config::load(&config) {
            Ok(p) => {
                println!(
                    "{}: ok ({} sources, {} sinks)",
                    config.display(),
                    p.sources.len(),
                    p.sinks.len()
                );
                ExitCode::SUCCESS
            }
            Err(problems) => {
                eprintln!("{problems}");
                ExitCode::from(1)
            }
        },
        Cmd::Test { config, tests } => {
            let mut out = std::io::stdout();
            match weir_agent::testing::run(&config, tests.as_deref(), &mut out) {
                Ok(o) if o.failed == 0 => ExitCode::SUCCESS,
                Ok(_) => ExitCode::from(1),
                Err(problems) => {
                    eprintln!("{problems}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Run {
            config,
            data_dir,
            metrics_listen,
            shutdown_timeout,
        } => {
            let pipeline = match weir_agent::config::load(&config) {
                Ok(p) => p,
                Err(problems) => {
                    eprintln!("{problems}");
                    return ExitCode::from(1);
                }
            };
            // Blocking work is short; a small pool bounds threads and memory on small devices.
            let rt = match weir_core::process::runtime(8) {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: starting the runtime: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = RunOptions {
                data_dir,
                metrics_listen,
                shutdown_timeout,
            };
            match rt.block_on(runtime::run(pipeline, opts, shutdown_signal(), |_| {})) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
