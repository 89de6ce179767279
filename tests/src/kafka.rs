//! Helpers for the Kafka-listener tests: a collector with its Kafka port,
//! and the real Kafka clients (kcat, the Python clients in
//! `target/kafka-venv`, kafkajs under `tests/kafka-clients/node_modules`),
//! all installed by `scripts/test`. A missing client fails the test with a
//! pointer to `scripts/test`; it is never skipped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_for, Collector};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// Directory of the client scripts.
pub fn clients_dir() -> PathBuf {
    repo().join("tests/kafka-clients")
}

/// The Python of the clients' venv (`WEIR_KAFKA_PYTHON` overrides).
pub fn python() -> PathBuf {
    let p = std::env::var("WEIR_KAFKA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("target/kafka-venv/bin/python"));
    assert!(
        p.exists(),
        "{} not found: run scripts/test, which installs the Kafka clients",
        p.display()
    );
    p
}

/// A program on PATH, or a failure naming the installer.
pub fn need(cmd: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(cmd))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| panic!("{cmd} not found: run scripts/test, which installs it"))
}

/// A collector with a Kafka listener.
pub struct KafkaCollector {
    pub collector: Collector,
    pub kafka: SocketAddr,
    yaml: String,
}

impl KafkaCollector {
    /// Starts with `kafka.listen` on a free port, plus `extra` YAML.
    pub fn start(data: &Path, extra: &str) -> KafkaCollector {
        let http = free_port();
        let kafka = free_port();
        let yaml = format!("listen: {http}\nkafka:\n  listen: {kafka}\n{extra}");
        let collector = Collector::start_with(data, &yaml, &[]);
        KafkaCollector {
            collector,
            kafka,
            yaml,
        }
    }

    /// The bootstrap address for clients.
    pub fn bootstrap(&self) -> String {
        self.kafka.to_string()
    }

    /// The HTTP URL.
    pub fn url(&self) -> String {
        self.collector.url()
    }

    /// kill -9, then start again on the same ports and data.
    pub fn crash_and_restart(&mut self, down_for: Duration) {
        self.collector.proc.kill9();
        std::thread::sleep(down_for);
        let data = self.collector.data.clone();
        let mut last = String::new();
        for _ in 0..50 {
            match std::panic::catch_unwind(|| Collector::start_with(&data, &self.yaml, &[])) {
                Ok(c) => {
                    self.collector = c;
                    return;
                }
                Err(e) => {
                    last = format!("{e:?}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        panic!("collector did not restart: {last}");
    }

    /// Creates a topic over HTTP with `partitions`.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let body = format!("{{\"partitions\":{partitions}}}");
        let r = crate::raw_post(
            self.collector.addr,
            &format!("/v1/topics/{topic}"),
            body.as_bytes(),
            Duration::from_secs(10),
        );
        assert!(
            r.as_ref().is_some_and(|(status, _)| *status == 200),
            "create topic {topic}: {r:?}"
        );
    }
}

/// Which client library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lib {
    Confluent,
    KafkaPython,
    AioKafka,
    KafkaJs,
}

impl Lib {
    fn command(self) -> Command {
        let dir = clients_dir();
        match self {
            Lib::KafkaJs => {
                let mut c = Command::new(need("node"));
                let script = dir.join("kafkajs_client.js");
                assert!(
                    dir.join("node_modules/kafkajs").exists(),
                    "kafkajs not installed: run scripts/test"
                );
                c.arg(script);
                c
            }
            py => {
                let mut c = Command::new(python());
                c.arg(dir.join(match py {
                    Lib::Confluent => "confluent_client.py",
                    Lib::KafkaPython => "kafka_python_client.py",
                    _ => "aiokafka_client.py",
                }));
                c
            }
        }
    }

    /// Starts `cmd` (produce, member, seek, consume) with `args`; stdout to `out`.
    pub fn spawn(self, bootstrap: &str, cmd: &str, args: &[&str], out: &Path) -> Child {
        let mut c = self.command();
        // kafkajs takes the command first, the Python scripts the bootstrap first.
        if self == Lib::KafkaJs {
            c.arg(cmd).args(["--bootstrap", bootstrap]);
        } else {
            c.args(["--bootstrap", bootstrap, cmd]);
        }
        c.args(args)
            .current_dir(clients_dir())
            .stdout(std::fs::File::create(out).expect("client output"))
            .stderr(std::fs::File::create(out.with_extension("err")).expect("client errors"))
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn client")
    }

    /// Runs a command to its end (within `limit`) and returns its events.
    pub fn run(
        self,
        bootstrap: &str,
        cmd: &str,
        args: &[&str],
        limit: Duration,
    ) -> Vec<serde_json::Value> {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("out.jsonl");
        let mut child = self.spawn(bootstrap, cmd, args, &out);
        let status = wait_for(limit, || child.try_wait().ok().flatten());
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let err = std::fs::read_to_string(out.with_extension("err")).unwrap_or_default();
        assert!(
            status.is_some_and(|s| s.success()),
            "{self:?} {cmd} {args:?} failed ({status:?}):\n{err}"
        );
        events(&out)
    }
}

/// The JSON event lines a client wrote.
pub fn events(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Runs kcat with `args` (bounded); its stdout.
pub fn kcat(args: &[&str], stdin: Option<&[u8]>, limit: Duration) -> String {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let mut child = Command::new(need("kcat"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(std::fs::File::create(&out).expect("out"))
        .stderr(std::fs::File::create(dir.path().join("err")).expect("err"))
        .spawn()
        .expect("spawn kcat");
    if let Some(input) = stdin {
        let mut s = child.stdin.take().expect("stdin");
        s.write_all(input).expect("write kcat stdin");
    }
    let status = wait_for(limit, || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let err = std::fs::read_to_string(dir.path().join("err")).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "kcat {args:?} failed ({status:?}): {err}"
    );
    std::fs::read_to_string(out).unwrap_or_default()
}
