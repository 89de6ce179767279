//! Peers for the sensor tests: pseudo-terminal pairs (socat), a Modbus
//! server (pymodbus, `tests/peers/modbus_server.py`) and the sensor
//! simulator example. `scripts/test` installs socat and pymodbus; a test
//! that finds one missing fails with a hint rather than skipping.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{bin_dir, wait_for, Proc};

/// Panics with an install hint when `cmd --version`-style probing fails.
pub fn need(cmd: &str, probe: &[&str], hint: &str) {
    let ok = Command::new(cmd)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "`{cmd}` is needed by this test: {hint} (scripts/test installs it)"
    );
}

/// An example binary of the workspace (`cargo build --examples`, which
/// `scripts/test` runs for the simulator).
pub fn example(name: &str) -> PathBuf {
    let p = bin_dir().join("examples").join(name);
    assert!(
        p.exists(),
        "{} not found: run `cargo build -p weir-embedded --example {name}` first (scripts/test does)",
        p.display()
    );
    p
}

/// Two connected pseudo-terminals made by socat, reachable through two
/// symlinks — like a device on `/dev/serial/by-id/...` and the other end.
pub struct PtyPair {
    pub a: PathBuf,
    pub b: PathBuf,
    proc: Option<Proc>,
}

impl PtyPair {
    /// Starts socat linking `<dir>/<a>` and `<dir>/<b>`.
    pub fn start(dir: &Path, a: &str, b: &str) -> PtyPair {
        need("socat", &["-V"], "apt-get install socat");
        let (a, b) = (dir.join(a), dir.join(b));
        let mut pair = PtyPair { a, b, proc: None };
        pair.restart();
        pair
    }

    /// Unplugs: socat exits on SIGTERM, closing both ptys and removing the links.
    pub fn unplug(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(5));
        }
        let gone = wait_for(Duration::from_secs(5), || (!self.a.exists()).then_some(()));
        assert!(gone.is_some(), "socat left {} behind", self.a.display());
    }

    /// Plugs in again: a new pair of ptys behind the same links.
    pub fn restart(&mut self) {
        let log = self.a.with_extension("socat.log");
        let mut cmd = Command::new("socat");
        cmd.arg(format!("pty,raw,echo=0,link={}", self.a.display()))
            .arg(format!("pty,raw,echo=0,link={}", self.b.display()));
        let f = std::fs::File::create(&log).expect("socat log");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("spawn socat");
        let proc = Proc { child, log };
        let up = wait_for(Duration::from_secs(10), || {
            (self.a.exists() && self.b.exists()).then_some(())
        });
        assert!(up.is_some(), "socat did not start: {}", proc.log_text());
        self.proc = Some(proc);
    }
}

/// The pymodbus server of `tests/peers/modbus_server.py`.
pub struct ModbusServer {
    pub proc: Proc,
}

fn modbus_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/modbus_server.py")
}

fn need_pymodbus() {
    need(
        "python3",
        &["-c", "import pymodbus, serial"],
        "pip install 'pymodbus[serial]'",
    );
}

impl ModbusServer {
    /// Modbus TCP on `addr` (a loopback address); waits until it accepts connections.
    pub fn tcp(addr: std::net::SocketAddr, log: &Path) -> ModbusServer {
        need_pymodbus();
        let mut last = String::new();
        // The port of a stopped server can take a moment to be free again.
        for _ in 0..20 {
            let proc = spawn_python(&["tcp", &addr.to_string()], log);
            let up = wait_for(Duration::from_secs(10), || {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                    .ok()
                    .map(|_| ())
            });
            if up.is_some() {
                return ModbusServer { proc };
            }
            last = proc.log_text();
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("modbus server did not start on {addr}: {last}");
    }

    /// Modbus RTU on the serial port `path`.
    pub fn rtu(path: &Path, baud: u32, log: &Path) -> ModbusServer {
        need_pymodbus();
        let proc = spawn_python(
            &["rtu", &path.display().to_string(), &baud.to_string()],
            log,
        );
        // pymodbus opens the port at once; give it a moment, and check it lives.
        std::thread::sleep(Duration::from_millis(1500));
        let mut s = ModbusServer { proc };
        assert!(
            s.proc.child.try_wait().ok().flatten().is_none(),
            "modbus RTU server exited: {}",
            s.proc.log_text()
        );
        s
    }

    /// Stops the server (SIGKILL: the device simply goes away).
    pub fn kill(&mut self) {
        self.proc.kill9();
    }
}

fn spawn_python(args: &[&str], log: &Path) -> Proc {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let child = Command::new("python3")
        .arg(modbus_script())
        .args(args)
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .expect("spawn python3");
    Proc {
        child,
        log: log.to_path_buf(),
    }
}

/// The JSON lines a `file` sink wrote so far.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits (at most `limit`) until `path` holds at least `n` JSON lines.
pub fn wait_jsonl(path: &Path, n: usize, limit: Duration) -> Vec<serde_json::Value> {
    wait_for(limit, || {
        let v = read_jsonl(path);
        (v.len() >= n).then_some(v)
    })
    .unwrap_or_else(|| read_jsonl(path))
}
