//! Both binaries as systemd `Type=notify` services, driven the way systemd
//! drives them: `NOTIFY_SOCKET` names a datagram socket this test owns and
//! `WATCHDOG_USEC` asks for pings. Proves READY=1 after the pipeline runs,
//! STATUS= lines, periodic WATCHDOG=1, and STOPPING=1 on SIGTERM; and that
//! the shipped units pass `systemd-analyze verify` and rate an exposure of
//! 2.5 or lower in `systemd-analyze security --offline=yes`.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_tests::*;

/// A stand-in for systemd's notification socket: records every datagram.
struct NotifySocket {
    path: PathBuf,
    got: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Bounded: the test process ends long before.
            let end = Instant::now() + Duration::from_secs(120);
            while Instant::now() < end {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    sink.lock().unwrap().push((Instant::now(), text));
                }
            }
        });
        NotifySocket { path, got }
    }

    /// Every assignment received so far (`READY=1`, `STATUS=...`), in order.
    fn lines(&self) -> Vec<String> {
        let got = self.got.lock().unwrap();
        got.iter()
            .flat_map(|(_, m)| m.lines().map(str::to_owned).collect::<Vec<_>>())
            .collect()
    }

    fn wait_line(&self, limit: Duration, f: impl Fn(&str) -> bool) -> Option<String> {
        wait_for(limit, || self.lines().into_iter().find(|l| f(l)))
    }

    /// Times at which WATCHDOG=1 arrived.
    fn pings(&self) -> Vec<Instant> {
        let got = self.got.lock().unwrap();
        got.iter()
            .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
            .map(|(t, _)| *t)
            .collect()
    }
}

/// Watchdog timeout given to the binaries: pings every 200 ms.
const WATCHDOG_USEC: &str = "600000";

fn sigterm(child: &std::process::Child) {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

fn assert_pings_periodically(notify: &NotifySocket) {
    let start = notify.pings().len();
    std::thread::sleep(Duration::from_millis(1500));
    let pings = notify.pings();
    let new = &pings[start..];
    // 1.5 s at one ping per 200 ms: about 7; allow a loaded machine slack.
    assert!(new.len() >= 4, "only {} pings in 1.5 s", new.len());
    let longest = new
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(
        longest < Duration::from_millis(600),
        "a gap of {longest:?} between pings exceeds the watchdog timeout"
    );
}

#[test]
fn agent_reports_ready_status_watchdog_and_stopping_to_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("app.log"), "one\ntwo\n").unwrap();
    let out = dir.path().join("out.jsonl");
    let config = dir.path().join("pipeline.yaml");
    std::fs::write(
        &config,
        format!(
            "sources:\n  app:\n    type: file\n    include: [\"{}/*.log\"]\n    start_at: beginning\n\
             sinks:\n  out:\n    type: file\n    inputs: [app]\n    path: {}\n",
            input.display(),
            out.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let mut agent = Command::new(bin("weir"))
        .args(["run", "-c"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .stderr(log)
        .spawn()
        .unwrap();

    let ready = notify.wait_line(Duration::from_secs(15), |l| l == "READY=1");
    let agent_log = || std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
    assert!(ready.is_some(), "no READY=1; agent log:\n{}", agent_log());
    let status = notify
        .wait_line(Duration::from_secs(5), |l| l.starts_with("STATUS="))
        .unwrap();
    assert_eq!(status, "STATUS=1 source, 1 sink, backlog 0 events");
    // The pipeline runs: what the source read reached the sink.
    let delivered = wait_for(Duration::from_secs(15), || {
        let text = std::fs::read_to_string(&out).ok()?;
        (text.lines().count() == 2).then_some(text)
    });
    assert!(delivered.is_some(), "agent log:\n{}", agent_log());
    assert_pings_periodically(&notify);

    sigterm(&agent);
    let stopping = notify.wait_line(Duration::from_secs(10), |l| l == "STOPPING=1");
    assert!(stopping.is_some(), "no STOPPING=1: {:?}", notify.lines());
    let status = wait_for(Duration::from_secs(20), || agent.try_wait().ok().flatten());
    assert!(status.is_some_and(|s| s.success()), "{:?}", status);
}

#[test]
fn collector_reports_ready_status_watchdog_and_stopping_to_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let log = std::fs::File::create(dir.path().join("collector.log")).unwrap();
    let mut collector = Command::new(bin("weir-collector"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .stderr(log)
        .spawn()
        .unwrap();

    let ready = notify.wait_line(Duration::from_secs(15), |l| l == "READY=1");
    assert!(ready.is_some(), "no READY=1: {:?}", notify.lines());
    let status = notify
        .wait_line(Duration::from_secs(5), |l| l.starts_with("STATUS="))
        .unwrap();
    assert!(
        status.starts_with("STATUS=listening on 127.0.0.1:")
            && status.ends_with(", 0 topics, 0 partitions"),
        "{status}"
    );
    assert_pings_periodically(&notify);

    sigterm(&collector);
    let stopping = notify.wait_line(Duration::from_secs(10), |l| l == "STOPPING=1");
    assert!(stopping.is_some(), "no STOPPING=1: {:?}", notify.lines());
    let status = wait_for(Duration::from_secs(20), || {
        collector.try_wait().ok().flatten()
    });
    assert!(status.is_some_and(|s| s.success()), "{:?}", status);
}

fn unit(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/systemd")
        .join(name)
}

/// The overall exposure `systemd-analyze security --offline=yes` gives a unit file.
fn exposure(unit: &Path) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit)
        .output()
        .expect("systemd-analyze (scripts/test installs systemd)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no overall exposure in:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    line.split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse: {line}"))
}

#[test]
fn both_units_are_hardened_to_an_exposure_of_at_most_2_5() {
    for name in ["weir.service", "weir-collector.service"] {
        let e = exposure(&unit(name));
        assert!(e <= 2.5, "{name}: exposure {e}");
        // The parse is real: a bare unit rates far worse.
        assert!(e > 0.0, "{name}: exposure {e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("bare.service");
    std::fs::write(
        &bare,
        "[Service]\nExecStart=/usr/bin/weir run -c /etc/weir/pipeline.yaml\n",
    )
    .unwrap();
    assert!(exposure(&bare) > 9.0);
}
