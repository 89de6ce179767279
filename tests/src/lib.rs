//! Helpers for end-to-end tests: start the real `weir` and `weir-collector`
//! binaries (built by `cargo build --bins`, which `scripts/test` runs first),
//! kill them, and read what reached the collector's log.
//!
//! Every wait here is bounded in time and returns or panics by itself.

pub mod kafka;
pub mod mosquitto;
pub mod powercut;
pub mod sensors;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Directory holding the built binaries: `WEIR_BIN_DIR`, or the target dir of this test.
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("WEIR_BIN_DIR") {
        return PathBuf::from(d);
    }
    // target/<profile>/deps/<test exe>
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// Path of a built binary; panics with a hint when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not found: run `cargo build --bins` first (scripts/test does)",
        p.display()
    );
    p
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A running process that is killed when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (bounded) for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        wait_for(limit, || self.child.try_wait().ok().flatten())
    }

    /// The process's stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("log file");
    let child = cmd.stdout(Stdio::null()).stderr(f).spawn().expect("spawn");
    Proc { child, log }
}

/// A `weir-collector serve` process.
pub struct Collector {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub data: PathBuf,
    /// The config text it was started with (without `listen`) and its extra flags,
    /// to start it again the same way.
    yaml: String,
    args: Vec<String>,
}

impl Collector {
    /// Starts on a free loopback port.
    pub fn start(data: &Path) -> Collector {
        Self::start_with(data, "", &[])
    }

    /// Starts on `addr` (to come back on the same port after a kill).
    pub fn start_on(data: &Path, addr: SocketAddr) -> Collector {
        Self::start_with(data, &format!("listen: {addr}\n"), &[])
    }

    /// Starts with a config file holding `yaml` (plus `listen` on a free
    /// loopback port and `data_dir`, unless `yaml` sets them) and extra flags.
    /// The config, address and log files are `data` with the extensions
    /// `yaml`, `addr` and `log` (beside the data directory, so outside it
    /// when it is a mount point such as the power-cut filesystem).
    pub fn start_with(data: &Path, yaml: &str, args: &[&str]) -> Collector {
        let (listen, rest): (Vec<&str>, Vec<&str>) =
            yaml.lines().partition(|l| l.starts_with("listen:"));
        let listen = match listen.last() {
            Some(l) => l.trim_start_matches("listen:").trim().to_owned(),
            None => "127.0.0.1:0".to_owned(),
        };
        let mut rest = rest.join("\n");
        rest.push('\n');
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Self::launch_retrying(data, &listen, rest, args)
    }

    /// Starts a new collector on this one's port, data and config; this one
    /// must have stopped (see [`Proc::terminate`], [`Proc::kill9`]).
    pub fn again(&self) -> Collector {
        Self::launch_retrying(
            &self.data,
            &self.addr.to_string(),
            self.yaml.clone(),
            self.args.clone(),
        )
    }

    fn launch_retrying(data: &Path, listen: &str, yaml: String, args: Vec<String>) -> Collector {
        let cfg = data.with_extension("yaml");
        let text = format!("listen: {listen}\ndata_dir: {}\n{yaml}", data.display());
        std::fs::write(&cfg, text).expect("write collector config");
        let mut last = None;
        // The port of a killed collector can take a moment to be free again.
        let tries = if listen.ends_with(":0") { 1 } else { 50 };
        for _ in 0..tries {
            let mut cmd = Command::new(bin("weir-collector"));
            cmd.args(["serve", "-c"]).arg(&cfg).args(&args);
            match Self::launch(data, cmd) {
                Ok((proc, addr)) => {
                    return Collector {
                        proc,
                        addr,
                        data: data.to_path_buf(),
                        yaml,
                        args,
                    }
                }
                Err(log) => {
                    last = Some(log);
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        panic!("collector did not start: {}", last.unwrap_or_default());
    }

    /// Spawns `cmd` (a `serve` without `--addr-file`) and waits for its
    /// address; the log text if it exits or does not listen within 10 s.
    fn launch(data: &Path, mut cmd: Command) -> Result<(Proc, SocketAddr), String> {
        let addr_file = data.with_extension("addr");
        let _ = std::fs::remove_file(&addr_file);
        cmd.arg("--addr-file").arg(&addr_file);
        let mut proc = spawn(&mut cmd, data.with_extension("log"));
        let bound = wait_for(Duration::from_secs(10), || {
            if let Ok(Some(_)) = proc.child.try_wait() {
                return Some(None);
            }
            std::fs::read_to_string(&addr_file)
                .ok()
                .and_then(|s| s.trim().parse::<SocketAddr>().ok())
                .map(Some)
        })
        .flatten();
        match bound {
            Some(a) => Ok((proc, a)),
            None => {
                proc.kill9();
                Err(proc.log_text())
            }
        }
    }

    /// Resident memory of the collector process, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.proc.child.id())
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// End offset of partition 0 of `topic`: how many records it holds
    /// (`None` while the topic does not exist or the collector is down).
    pub fn end_offset(&self, topic: &str) -> Option<u64> {
        let t = http_get(self.addr, &format!("/v1/topics/{topic}"))?;
        let v: serde_json::Value = serde_json::from_str(&t).ok()?;
        v["partitions"][0]["end_offset"].as_u64()
    }

    /// kill -9, then start again on the same port and data.
    pub fn crash_and_restart(&mut self, down_for: Duration) {
        self.proc.kill9();
        std::thread::sleep(down_for);
        *self = self.again();
    }
}

/// A `weir run` process.
pub struct Agent {
    pub proc: Proc,
    pub config: PathBuf,
    pub data: PathBuf,
    pub metrics: SocketAddr,
}

impl Agent {
    /// Starts an agent on `config` with its own data dir and a metrics port.
    pub fn start(config: &Path, data: &Path) -> Agent {
        let metrics = free_port();
        let mut cmd = Command::new(bin("weir"));
        cmd.args(["run", "-c"])
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .args(["--metrics-listen", &metrics.to_string()]);
        let proc = spawn(&mut cmd, data.with_extension("log"));
        let a = Agent {
            proc,
            config: config.to_path_buf(),
            data: data.to_path_buf(),
            metrics,
        };
        let up = wait_for(Duration::from_secs(15), || a.metrics_text().map(|_| ()));
        assert!(up.is_some(), "agent did not start: {}", a.proc.log_text());
        a
    }

    /// kill -9 and start again on the same config and data.
    pub fn crash_and_restart(&mut self, down_for: Duration) {
        self.proc.kill9();
        std::thread::sleep(down_for);
        let again = Agent::start(&self.config, &self.data);
        *self = again;
    }

    /// The Prometheus text from `/metrics`, if reachable.
    pub fn metrics_text(&self) -> Option<String> {
        http_get(self.metrics, "/metrics")
    }

    /// Waits (at most `limit`) until metric `name` (see [`Agent::metric`]) satisfies `ok`; its value then.
    pub fn wait_metric(
        &self,
        name: &str,
        labels: &str,
        limit: Duration,
        ok: impl Fn(f64) -> bool,
    ) -> Option<f64> {
        wait_for(limit, || self.metric(name, labels).filter(|v| ok(*v)))
    }

    /// Sum of the samples of `name` whose label text contains `labels`.
    pub fn metric(&self, name: &str, labels: &str) -> Option<f64> {
        let text = self.metrics_text()?;
        Some(
            text.lines()
                .filter(|l| {
                    l.starts_with(name)
                        && l[name.len()..].starts_with(['{', ' '])
                        && l.contains(labels)
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
    }
}

/// Resident memory of process `pid`, in KiB (from /proc).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Sends raw request bytes over a new loopback connection and reads the
/// answer until the server closes; (status, body), or `None` on any failure
/// or after `limit`.
pub fn raw_request(addr: SocketAddr, request: &[u8], limit: Duration) -> Option<(u16, Vec<u8>)> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect_timeout(&addr, limit).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    s.set_write_timeout(Some(limit)).ok()?;
    s.write_all(request).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, buf[end + 4..].to_vec()))
}

/// POSTs `body` to `path` (HTTP/1.1, `Connection: close`); (status, body).
pub fn raw_post(
    addr: SocketAddr,
    path: &str,
    body: &[u8],
    limit: Duration,
) -> Option<(u16, Vec<u8>)> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw_request(addr, &req, limit)
}

/// A RecordBatch of `n` records of `size` bytes each, from no idempotent
/// producer (id -1), uncompressed: what a plain Kafka client would send.
pub fn plain_batch(n: usize, size: usize) -> Vec<u8> {
    use weir_core::record::{encode_batch, Compression, ProducerStamp};
    let events: Vec<weir_core::Event> = (0..n)
        .map(|i| {
            // Varied bytes, so that nothing compresses them away.
            let text: String = (0..size)
                .map(|j| (b'a' + ((i * 7 + j * 13) % 26) as u8) as char)
                .collect();
            weir_core::Event::from_message(text, weir_core::Metadata::default())
        })
        .collect();
    let stamp = ProducerStamp {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
    encode_batch(&events, stamp, Compression::None)
        .expect("encode")
        .to_vec()
}

/// A test certificate authority and the certificates it signs, as PEM files in a directory.
pub struct TestCa {
    pub dir: PathBuf,
    ca: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    /// A new CA named `name`, writing `<name>-ca.pem` into `dir`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let ca = params.self_signed(&key).expect("CA cert");
        std::fs::write(dir.join(format!("{name}-ca.pem")), ca.pem()).expect("write CA");
        TestCa {
            dir: dir.to_path_buf(),
            ca,
            key,
        }
    }

    /// Path of the CA certificate file.
    pub fn ca_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-ca.pem"))
    }

    /// Issues a certificate for `names` (DNS names or IP addresses); writes
    /// `<file>.pem` and `<file>.key` and returns their paths.
    pub fn issue(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        let cert = params.signed_by(&key, &self.ca, &self.key).expect("sign");
        let (c, k) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }
}

/// SHA-256 of `token` in hex, as a collector's `token_sha256`.
pub fn token_sha256(token: &str) -> String {
    let out = Command::new(bin("weir-collector"))
        .arg("hash-token")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(token.as_bytes())?;
            c.wait_with_output()
        })
        .expect("hash-token");
    String::from_utf8(out.stdout)
        .expect("hex")
        .trim()
        .to_owned()
}

/// A free loopback port (bound then released).
pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A minimal HTTP/1.1 GET over loopback; the body, or `None` on any failure.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// Every record of `topic` as printed by `weir-collector consume --from earliest`.
pub fn consume_all(url: &str, topic: &str) -> Vec<serde_json::Value> {
    consume(url, topic, &["--from", "earliest"])
}

/// Runs `weir-collector consume` with extra arguments (bounded by a timeout) and parses its lines.
pub fn consume(url: &str, topic: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    // Output goes to a file: a pipe nobody reads while we wait would fill and block the consumer.
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let mut child = Command::new(bin("weir-collector"))
        .args(["consume", "--url", url, "--topic", topic])
        .args(extra)
        .stdout(out.reopen().expect("reopen"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn consume");
    let status = wait_for(Duration::from_secs(60), || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
        panic!("consume did not finish within 60s");
    }
    let text = std::fs::read_to_string(out.path()).expect("consume output");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("consume prints JSON lines"))
        .collect()
}

/// The `message` field of each record.
pub fn messages(records: &[serde_json::Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            r["value"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Appends lines to a file (creating it).
pub fn append_lines(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    let mut buf = String::new();
    for l in lines {
        buf.push_str(&l);
        buf.push('\n');
    }
    f.write_all(buf.as_bytes()).expect("write log");
}

/// The i-th test line: a fixed-width number so order can be checked, padded to about 100 bytes.
pub fn line(i: usize) -> String {
    format!("line {i:09} {}", "x".repeat(85))
}

/// Asserts `got` is exactly `line(0..n)` in order, with a readable report of the first difference.
pub fn assert_exactly_once_in_order(got: &[String], n: usize) {
    let dup = {
        let mut seen = std::collections::HashSet::new();
        got.iter().filter(|m| !seen.insert(m.as_str())).count()
    };
    let first_diff = (0..n.max(got.len())).find(|&i| i >= n || got.get(i) != Some(&line(i)));
    assert!(
        got.len() == n && first_diff.is_none(),
        "expected {n} lines exactly once in order; got {} lines, {dup} duplicates, first difference at index {:?}: {:?}",
        got.len(),
        first_diff,
        first_diff.and_then(|i| got.get(i)),
    );
}

/// Writes a pipeline file.
pub fn write_pipeline(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write pipeline");
    p
}

/// CRC-32C (Castagnoli), bitwise: tests that forge or check on-disk
/// records compute it without trusting the code under test.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
