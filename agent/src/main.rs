//! The `weir` binary: argument parsing only; see the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use weir_agent::admin::{client, top};
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
    /// Ask the running agent to re-read its pipeline file; print the changes, or every problem and exit 1.
    Reload {
        #[command(flatten)]
        at: AdminAt,
    },
    /// Print live events passing a component output (`component` or `component.output`) as JSON lines.
    Tap {
        /// `component` (its default output) or `component.output`.
        target: String,
        /// Most events per second shown (sampled; the pipeline is never slowed).
        #[arg(long, default_value_t = 10)]
        rate: u32,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
        #[command(flatten)]
        at: AdminAt,
    },
    /// Show per-component rates, errors, backlog and lag, refreshing.
    Top {
        /// Print one table (rates over one interval) and exit.
        #[arg(long)]
        once: bool,
        /// Time between readings.
        #[arg(long, default_value = "2s", value_parser = humantime_duration)]
        interval: Duration,
        /// List every metric of each component below its row.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        at: AdminAt,
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
    /// Write man pages and shell completions (for packages) under OUT_DIR.
    #[command(hide = true)]
    Generate {
        #[arg(long)]
        out_dir: PathBuf,
    },
}

/// Where the running agent's admin socket is.
#[derive(clap::Args)]
struct AdminAt {
    /// The admin socket (default: the pipeline's `admin.socket`, else `<data_dir>/admin.sock`).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The agent's pipeline file (to find its socket).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// The agent's data directory (to find its socket).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl AdminAt {
    fn socket(&self) -> PathBuf {
        client::socket_for(
            self.socket.as_deref(),
            self.config.as_deref(),
            self.data_dir.as_deref(),
        )
    }
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
        Cmd::Generate { out_dir } => {
            match weir_core::cli_docs::generate(Cli::command(), &out_dir) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: writing under {}: {e}", out_dir.display());
                    ExitCode::from(2)
                }
            }
        }
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
        Cmd::Reload { at } => match client::reload(&at.socket()) {
            Ok(changes) => {
                println!("reloaded: {changes}");
                ExitCode::SUCCESS
            }
            Err(client::ClientError::Refused(problems)) => {
                eprintln!("reload refused; the agent runs its previous pipeline:\n{problems}");
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Cmd::Tap {
            target,
            rate,
            limit,
            at,
        } => {
            let stdout = std::io::stdout();
            let result = client::tap(
                &at.socket(),
                &target,
                rate,
                limit,
                |event| {
                    use std::io::Write;
                    let _ = writeln!(stdout.lock(), "{event}");
                },
                |status| match status["tap"].as_str() {
                    Some("dropped") => eprintln!(
                        "tap: {} events not shown (this terminal reads slower than they pass)",
                        status["dropped"]
                    ),
                    Some("end") => {
                        eprintln!("tap: ended: {}", status["reason"].as_str().unwrap_or("?"))
                    }
                    _ => {}
                },
            );
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(client::ClientError::Refused(e)) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Top {
            once,
            interval,
            all,
            at,
        } => match top_loop(&at.socket(), once, interval, all) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
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
                config: Some(config),
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

/// `weir top`: two readings `interval` apart make one table; redraws until
/// interrupted, or prints once.
fn top_loop(
    socket: &std::path::Path,
    once: bool,
    interval: Duration,
    all: bool,
) -> Result<(), client::ClientError> {
    let mut before = top::parse(&client::metrics(socket)?);
    let mut at = std::time::Instant::now();
    loop {
        std::thread::sleep(interval);
        let after = top::parse(&client::metrics(socket)?);
        let now = std::time::Instant::now();
        let table = top::render(&top::rows(&before, &after, now - at), all);
        if once {
            print!("{table}");
            return Ok(());
        }
        // Home and clear, then the table: a plain ANSI redraw.
        print!("\x1b[H\x1b[2J{table}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        before = after;
        at = now;
    }
}
