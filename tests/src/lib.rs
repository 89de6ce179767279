//! Helpers for end-to-end tests: start the real `weir` and `weir-collector`
//! binaries (built by `cargo build --bins`, which `scripts/test` runs first),
//! kill them, and read what reached the collector's log.
//!
//! Every wait here is bounded in time and returns or panics by itself.

pub mod powercut;

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
}

impl Collector {
    /// Starts on a free loopback port.
    pub fn start(data: &Path) -> Collector {
        Self::start_on(data, "127.0.0.1:0".parse().expect("addr"))
    }

    /// Starts on `addr` (to come back on the same port after a kill).
    pub fn start_on(data: &Path, addr: SocketAddr) -> Collector {
        Self::start_with(data, addr, &data.with_extension("x"), &[])
    }

    /// Starts on `addr` with extra `serve` arguments; its address and log
    /// files are `side` with the extensions `addr` and `log` (outside the
    /// data directory's filesystem, if that one is to lose power).
    pub fn start_with(data: &Path, addr: SocketAddr, side: &Path, extra: &[&str]) -> Collector {
        let addr_file = side.with_extension("addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut last = None;
        // The port of a killed collector can take a moment to be free again.
        for _ in 0..50 {
            let mut cmd = Command::new(bin("weir-collector"));
            cmd.args(["serve", "--listen", &addr.to_string(), "--data"])
                .arg(data)
                .arg("--addr-file")
                .arg(&addr_file)
                .args(extra);
            let mut proc = spawn(&mut cmd, side.with_extension("log"));
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
                Some(a) => {
                    return Collector {
                        proc,
                        addr: a,
                        data: data.to_path_buf(),
                    }
                }
                None => {
                    last = Some(proc.log_text());
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        panic!("collector did not start: {}", last.unwrap_or_default());
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// kill -9, then start again on the same port and data.
    pub fn crash_and_restart(&mut self, down_for: Duration) {
        self.proc.kill9();
        std::thread::sleep(down_for);
        let again = Collector::start_on(&self.data, self.addr);
        *self = again;
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

/// A minimal HTTP/1.1 POST of `body` over loopback: (status, body), or `None` on any failure.
pub fn http_post(addr: SocketAddr, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = std::str::from_utf8(buf.get(9..12)?).ok()?.parse().ok()?;
    Some((status, buf[split + 4..].to_vec()))
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
