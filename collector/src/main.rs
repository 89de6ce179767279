//! The `weir-collector` binary: argument parsing only; see the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weir_collector::consume::{consume, topics, ConsumeOptions, StartAt};
use weir_collector::CollectorConfig;
use weir_core::process::{init_logging, shutdown_signal, LogFormat};

#[derive(Parser)]
#[command(
    name = "weir-collector",
    version,
    about = "Weir's central log: replication ingest, segmented log, consumers."
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
    /// Run the collector.
    Serve {
        /// YAML config file; flags override its values.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Address to listen on (e.g. 127.0.0.1:7400; port 0 picks a free one).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Data directory.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Partitions of topics created on first write.
        #[arg(long)]
        default_partitions: Option<u32>,
        /// Write the bound address to this file once listening (for scripts and tests).
        #[arg(long)]
        addr_file: Option<PathBuf>,
    },
    /// Print a topic's records, one JSON object per line.
    Consume {
        #[arg(long, default_value = "http://127.0.0.1:7400")]
        url: String,
        #[arg(long)]
        topic: String,
        /// earliest, latest, an offset, or an RFC 3339 time.
        #[arg(long, default_value = "earliest")]
        from: StartAt,
        /// Consumer group: resume from and commit to its offsets.
        #[arg(long)]
        group: Option<String>,
        /// Keep waiting for new records instead of exiting at the end of the log.
        #[arg(long)]
        follow: bool,
        /// Stop after this many records.
        #[arg(long)]
        max_records: Option<u64>,
    },
    /// List topics with partitions, offsets and sizes.
    Topics {
        #[arg(long, default_value = "http://127.0.0.1:7400")]
        url: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(if cli.log_json {
        LogFormat::Json
    } else {
        LogFormat::Text
    });
    let rt = match weir_core::process::runtime(32) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli.cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

async fn run(cmd: Cmd) -> Result<(), (u8, anyhow::Error)> {
    match cmd {
        Cmd::Serve {
            config,
            listen,
            data,
            default_partitions,
            addr_file,
        } => {
            let mut cfg = match &config {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))
                        .map_err(|e| (1, e))?;
                    serde_yaml::from_str::<CollectorConfig>(&text)
                        .with_context(|| format!("invalid config {}", path.display()))
                        .map_err(|e| (1, e))?
                }
                None => CollectorConfig::default(),
            };
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(d) = data {
                cfg.data_dir = d;
            }
            if let Some(p) = default_partitions {
                cfg.default_partitions = p;
            }
            weir_collector::serve(cfg, shutdown_signal(), move |addr| {
                if let Some(f) = addr_file {
                    if let Err(e) = std::fs::write(&f, addr.to_string()) {
                        tracing::error!(path = %f.display(), error = %e, "Failed to write the address file.");
                    }
                }
            })
            .await
            .map_err(|e| (2, e.into()))
        }
        Cmd::Consume {
            url,
            topic,
            from,
            group,
            follow,
            max_records,
        } => {
            let opts = ConsumeOptions {
                url,
                topic,
                from,
                group,
                follow,
                max_records,
            };
            let mut out = std::io::stdout();
            tokio::select! {
                r = consume(opts, &mut out) => r.map(|_| ()).map_err(|e| (2, e.into())),
                _ = shutdown_signal() => Ok(()),
            }
        }
        Cmd::Topics { url, json } => {
            let list = topics(&url).await.map_err(|e| (2, e.into()))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).map_err(|e| (2, e.into()))?
                );
            } else {
                println!(
                    "{:<24} {:>9} {:>14} {:>14} {:>14} {:>8}",
                    "TOPIC", "PARTITION", "START", "END", "BYTES", "SEGMENTS"
                );
                for t in list {
                    for p in t.partitions {
                        println!(
                            "{:<24} {:>9} {:>14} {:>14} {:>14} {:>8}",
                            t.topic,
                            p.partition,
                            p.start_offset,
                            p.end_offset,
                            p.size_bytes,
                            p.segments
                        );
                    }
                }
            }
            Ok(())
        }
    }
}
