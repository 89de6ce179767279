//! The collector facing a hostile or unlucky network, with the real binary
//! on 127.0.0.1: slow and stalled clients, consumers that never read,
//! long-polls, SIGTERM under load, exposure beyond loopback, and the agent
//! against a server that answers without end.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use weir_tests::*;

/// Limits short enough for a test, with a 64 MiB body budget.
const LIMITS: &str = "limits:
  header_timeout: 2s
  body_timeout: 6s
  body_min_rate: 1KiB
  idle_timeout: 5s
  write_timeout: 3s
  busy_wait: 500ms
  memory_budget: 64MiB
  max_fetch_bytes: 16MiB
  max_fetches: 64
  shutdown_timeout: 2s
";

/// The collector's memory must stay under this while hostile clients are
/// connected: the 64 MiB budget, plus the process's own ~30 MiB, plus slack
/// for allocator fragmentation and per-connection buffers.
const RSS_BOUND_KIB: u64 = 160 << 10;

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(2))).ok();
    s
}

/// Headers that never end.
fn slow_header(addr: SocketAddr) -> TcpStream {
    let mut s = connect(addr);
    let _ = s.write_all(b"POST /v1/produce/t/0 HTTP/1.1\r\nHost: x\r\n");
    s
}

/// A body announced at 1 MiB that never comes.
fn stalled_body(addr: SocketAddr) -> TcpStream {
    let mut s = connect(addr);
    let _ = s.write_all(
        b"POST /v1/produce/t/0 HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\nxx",
    );
    s
}

/// A long-poll at the end of the log.
fn long_poll(addr: SocketAddr, end: u64) -> TcpStream {
    let mut s = connect(addr);
    let _ = write!(
        s,
        "GET /v1/fetch/big/0?offset={end}&wait_ms=30000 HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    s
}

/// A 16 MiB fetch whose answer is never read.
fn never_reads(addr: SocketAddr) -> TcpStream {
    let s = connect(addr);
    // A small receive buffer, so the answer piles up on the collector's side.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
    let size: libc::c_int = 4096;
    // SAFETY: setting a socket option on a socket we own.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as u32,
        );
    }
    let mut s = s;
    let _ =
        s.write_all(b"GET /v1/fetch/big/0?offset=0&max_bytes=16777216 HTTP/1.1\r\nHost: x\r\n\r\n");
    s
}

/// Fills topic `big` with about 20 MiB (1 MiB batches); returns its end offset.
fn fill(c: &Collector) -> u64 {
    let batch = plain_batch(256, 4000);
    let mut end = 0;
    for _ in 0..20 {
        let (status, body) = raw_post(c.addr, "/v1/produce/big/0", &batch, Duration::from_secs(10))
            .expect("produce");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let ack: serde_json::Value = serde_json::from_slice(&body).unwrap();
        end = ack["last_offset"].as_u64().unwrap() + 1;
    }
    end
}

/// Times /health and a small produce; panics past `bound`.
fn served_within(c: &Collector, bound: Duration) -> Duration {
    let start = Instant::now();
    let (s, _) = raw_request(
        c.addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        bound,
    )
    .expect("health answered");
    assert_eq!(s, 200);
    let (s, body) = raw_post(c.addr, "/v1/produce/small/0", &plain_batch(1, 100), bound)
        .expect("produce answered");
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let took = start.elapsed();
    assert!(took < bound, "health + produce took {took:?}");
    took
}

#[test]
fn hostile_clients_neither_starve_produces_and_health_nor_grow_memory_past_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start_with(&dir.path().join("c"), LIMITS, &[]);
    let end = fill(&c);
    let mut held = Vec::new();
    for _ in 0..150 {
        held.push(slow_header(c.addr));
        held.push(stalled_body(c.addr));
    }
    for _ in 0..100 {
        held.push(long_poll(c.addr, end));
    }
    for _ in 0..60 {
        held.push(never_reads(c.addr));
    }
    // While they are connected (and as the collector cuts them off), the
    // service keeps answering, and memory stays bounded.
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    let mut peak = 0;
    while start.elapsed() < Duration::from_secs(8) {
        worst = worst.max(served_within(&c, Duration::from_secs(3)));
        peak = peak.max(c.rss_kib().unwrap_or(0));
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "worst health+produce {worst:?}, peak collector RSS {} MiB with {} hostile connections",
        peak >> 10,
        held.len()
    );
    assert!(
        peak < RSS_BOUND_KIB,
        "collector RSS {} MiB exceeds {} MiB",
        peak >> 10,
        RSS_BOUND_KIB >> 10
    );
    // The stalled clients have been cut off by now (header 2 s, body grace 2 s, write 3 s).
    let log = c.proc.log_text();
    assert!(!log.contains("panicked"), "{log}");
    drop(held);
}

#[test]
fn sigterm_ends_the_collector_within_its_shutdown_timeout_whatever_clients_do() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collector::start_with(&dir.path().join("c"), LIMITS, &[]);
    let end = fill(&c);
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(slow_header(c.addr));
        held.push(stalled_body(c.addr));
        held.push(long_poll(c.addr, end));
        held.push(never_reads(c.addr));
    }
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let status = c.proc.terminate(Duration::from_secs(10));
    let took = start.elapsed();
    eprintln!(
        "collector exited {took:?} after SIGTERM with {} slow clients",
        held.len()
    );
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "{}",
        c.proc.log_text()
    );
    // shutdown_timeout is 2 s; the final sync and exit take a fraction of a second.
    assert!(took < Duration::from_millis(3500), "took {took:?}");
}

#[test]
fn listening_beyond_loopback_without_authentication_needs_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("c");
    let out = std::process::Command::new(bin("weir-collector"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("beyond loopback")
            && err.contains("--insecure")
            && err.contains("no principals"),
        "{err}"
    );
    // With the explicit flag it starts (and says so loudly).
    let mut c = Collector::start_with(&data, "listen: 0.0.0.0:0\n", &["--insecure"]);
    assert!(c.proc.log_text().contains("insecure"));
    assert_eq!(
        c.proc.terminate(Duration::from_secs(5)).map(|s| s.code()),
        Some(Some(0))
    );
}

#[test]
fn collector_validate_lists_every_problem_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.yaml");
    std::fs::write(&p, "listen: 0.0.0.0:7400\nlimits:\n  idle_timeout: 0s\n  max_topics: many\nfsync_interval: 1ns\n").unwrap();
    let out = std::process::Command::new(bin("weir-collector"))
        .args(["validate", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        format!(
            "{}:3:3: limits.idle_timeout: 0s is out of range",
            p.display()
        ),
        format!(
            "{}:4:3: limits.max_topics: string \"many\", expected a whole number",
            p.display()
        ),
        format!("{}:5:1: fsync_interval: 1ns is out of range", p.display()),
        "3 problems found".to_owned(),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    std::fs::write(&p, "listen: 0.0.0.0:7400\n").unwrap();
    let out = std::process::Command::new(bin("weir-collector"))
        .args(["validate", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "exposed without auth is a config problem"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure"));
}

/// A server that answers every request with headers and then bytes without end.
fn endless_server() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let started = Instant::now();
        while !stop2.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
            match l.accept() {
                Ok((mut s, _)) => {
                    let stop3 = stop2.clone();
                    std::thread::spawn(move || {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
                        let mut buf = [0u8; 4096];
                        let _ = std::io::Read::read(&mut s, &mut buf);
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n");
                        let chunk = vec![b'['; 64 << 10];
                        let t = Instant::now();
                        while !stop3.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(30)
                        {
                            if s.write_all(&chunk).is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (addr, stop)
}

#[test]
fn the_agent_reads_a_bounded_answer_from_a_server_that_never_stops_talking() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let (addr, stop) = endless_server();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "sources:\n  app: {{ type: file, include: [\"{}/*.log\"], poll_interval: 50ms }}\nsinks:\n  c: {{ type: collector, inputs: [app], url: \"http://{addr}\", topic: t, initial_backoff: 50ms, max_backoff: 200ms }}\n",
            logs.display()
        ),
    );
    append_lines(&logs.join("a.log"), (0..100).map(line));
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    let mut peak = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        peak = peak.max(rss_kib(agent.proc.child.id()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "agent peak RSS {} MiB against an endless answer",
        peak >> 10
    );
    assert!(peak < 100 << 10, "agent RSS {} MiB", peak >> 10);
    let log = agent.proc.log_text();
    assert!(log.contains("larger than"), "the refusal is logged: {log}");
}
