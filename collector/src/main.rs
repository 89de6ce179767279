//! The `weir-collector` binary: argument parsing only; see the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use weir_collector::auth::{hex, sha256};
use weir_collector::client::ClientAuth;
use weir_collector::consume::{consume, topics, ConsumeOptions, StartAt};
use weir_collector::{CollectorConfig, ServeError};
use weir_core::http_client::ClientTls;
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
        /// Allow listening beyond loopback without TLS and principals.
        #[arg(long)]
        insecure: bool,
    },
    /// Check a config file: every problem, with file:line:column and key path; exit 1 if any.
    Validate {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Print the SHA-256 (for `token_sha256`) of the token read from standard input.
    HashToken,
    /// Make a new random token; prints it and its `token_sha256`.
    NewToken,
    /// Print a topic's records, one JSON object per line.
    Consume {
        #[arg(long, default_value = "http://127.0.0.1:7400")]
        url: String,
        #[command(flatten)]
        conn: ConnArgs,
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
        #[command(flatten)]
        conn: ConnArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write man pages and shell completions (for packages) under OUT_DIR.
    #[command(hide = true)]
    Generate {
        #[arg(long)]
        out_dir: PathBuf,
    },
}

/// How a client reaches a collector that requires TLS or a token.
#[derive(clap::Args)]
struct ConnArgs {
    /// Bearer token (or set WEIR_TOKEN).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM file with the CA that signed the collector's certificate (https URLs).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// PEM client certificate, for a collector that authenticates by certificate.
    #[arg(long, requires = "key_file")]
    cert_file: Option<PathBuf>,
    /// PEM private key of --cert-file.
    #[arg(long, requires = "cert_file")]
    key_file: Option<PathBuf>,
    /// Verify the collector's certificate for this name instead of the URL's host.
    #[arg(long)]
    server_name: Option<String>,
}

impl ConnArgs {
    fn auth(self) -> ClientAuth {
        ClientAuth {
            token: self.token,
            tls: ClientTls {
                ca_file: self.ca_file,
                cert_file: self.cert_file,
                key_file: self.key_file,
                server_name: self.server_name,
            },
        }
    }
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
    let res = rt.block_on(run(cli.cmd));
    // Tasks still blocked (a hung disk) must not keep the process alive:
    // the collector has already bounded its own shutdown.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

async fn run(cmd: Cmd) -> Result<(), (u8, anyhow::Error)> {
    match cmd {
        Cmd::Generate { out_dir } => weir_core::cli_docs::generate(Cli::command(), &out_dir)
            .map(|_| ())
            .map_err(|e| {
                (
                    2,
                    anyhow::anyhow!("writing under {}: {e}", out_dir.display()),
                )
            }),
        Cmd::Serve {
            config,
            listen,
            data,
            default_partitions,
            addr_file,
            insecure,
        } => {
            let mut cfg = match &config {
                Some(path) => weir_collector::config::load(path)
                    .map_err(|p| (1, anyhow::anyhow!("invalid config:\n{p}")))?,
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
            cfg.insecure |= insecure;
            weir_collector::serve(cfg, shutdown_signal(), move |addr| {
                if let Some(f) = addr_file {
                    if let Err(e) = std::fs::write(&f, addr.to_string()) {
                        tracing::error!(path = %f.display(), error = %e, "Failed to write the address file.");
                    }
                }
            })
            .await
            .map_err(|e| match e {
                ServeError::Config(_) => (1, e.into()),
                e => (2, e.into()),
            })
        }
        Cmd::Validate { config } => {
            let cfg =
                weir_collector::config::load(&config).map_err(|p| (1, anyhow::anyhow!("{p}")))?;
            if let Some(why) = cfg.exposure_problem() {
                return Err((1, anyhow::anyhow!("{}: listen: {why}", config.display())));
            }
            println!("{}: ok", config.display());
            Ok(())
        }
        Cmd::HashToken => {
            let mut token = String::new();
            std::io::stdin()
                .read_line(&mut token)
                .map_err(|e| (1, e.into()))?;
            let token = token.trim_end_matches(['\n', '\r']);
            if token.is_empty() {
                return Err((1, anyhow::anyhow!("no token on standard input")));
            }
            println!("{}", hex(&sha256(token.as_bytes())));
            Ok(())
        }
        Cmd::NewToken => {
            let mut bytes = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
                .map_err(|_| (2, anyhow::anyhow!("no randomness available")))?;
            let token = hex(&bytes);
            println!("token: {token}");
            println!("token_sha256: {}", hex(&sha256(token.as_bytes())));
            Ok(())
        }
        Cmd::Consume {
            url,
            conn,
            topic,
            from,
            group,
            follow,
            max_records,
        } => {
            let opts = ConsumeOptions {
                url,
                auth: conn.auth(),
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
        Cmd::Topics { url, conn, json } => {
            let list = topics(&url, &conn.auth())
                .await
                .map_err(|e| (2, e.into()))?;
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
