//! A producer loop against a running collector, to measure what ingest costs
//! the collector with the real protocol: `P` producers, each with its own
//! collector-issued id and its own keep-alive connection, send batches of
//! ~120-byte lines to partition 0 of one topic, each waiting for its
//! acknowledgement (fsync per the collector's policy) before sending the
//! next — so `P` is the number of batches in flight, as an agent's
//! `max_in_flight`. Prints lines/s, acknowledgement latency (p50, p99) and the
//! collector's CPU-seconds per million lines, read from `/proc/PID/stat`.
//!
//! ```text
//! cargo run --release -p weir-collector --example produce_loop -- \
//!     ADDR PID [--lines N] [--batch LINES] [--producers P] [--compression none|lz4|zstd] [--topic T]
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use weir_core::record::{encode_batch, Compression, ProducerStamp};
use weir_core::{Event, Metadata};

struct Args {
    addr: SocketAddr,
    pid: u32,
    lines: u64,
    batch: u64,
    producers: u64,
    compression: Compression,
    topic: String,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let usage = "usage: produce_loop ADDR PID [--lines N] [--batch LINES] [--producers P] [--compression none|lz4|zstd] [--topic T]";
    let addr = it
        .next()
        .ok_or(usage)?
        .parse()
        .map_err(|e| format!("ADDR: {e}"))?;
    let pid = it
        .next()
        .ok_or(usage)?
        .parse()
        .map_err(|e| format!("PID: {e}"))?;
    let mut a = Args {
        addr,
        pid,
        lines: 1_000_000,
        batch: 8_000,
        producers: 4,
        compression: Compression::Lz4,
        topic: "load".into(),
    };
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(usage)?;
        let n = || v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--lines" => a.lines = n()?,
            "--batch" => a.batch = n()?.max(1),
            "--producers" => a.producers = n()?.max(1),
            "--topic" => a.topic = v.clone(),
            "--compression" => {
                a.compression = match v.as_str() {
                    "none" => Compression::None,
                    "lz4" => Compression::Lz4,
                    "zstd" => Compression::Zstd,
                    _ => return Err(format!("--compression {v}: none, lz4 or zstd")),
                }
            }
            _ => return Err(usage.into()),
        }
    }
    Ok(a)
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    addr: SocketAddr,
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Conn {
            addr,
            r: BufReader::new(s),
        })
    }

    /// POSTs `body`; (status, answer body).
    fn post(&mut self, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        let s = self.r.get_mut();
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut status = 0u16;
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if self.r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(rest) = l.strip_prefix("HTTP/1.1 ") {
                status = rest.get(..3).and_then(|s| s.parse().ok()).unwrap_or(0);
            } else if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut answer = vec![0u8; len];
        self.r.read_exact(&mut answer)?;
        Ok((status, answer))
    }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..13)?
        .iter()
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

/// Runs one producer: `batches` batches of `lines` lines; returns ack latencies.
fn producer(a: &Args, first_line: u64, batches: u64) -> Result<Vec<Duration>, String> {
    let mut c = Conn::open(a.addr).map_err(|e| e.to_string())?;
    let (status, body) = c.post("/v1/producers", b"{}").map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!(
            "producer init: {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let id: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    let producer_id = id["producer_id"].as_i64().ok_or("no producer_id")?;
    let producer_epoch = id["producer_epoch"].as_i64().ok_or("no producer_epoch")? as i16;
    let path = format!("/v1/produce/{}/0", a.topic);
    let mut latencies = Vec::with_capacity(batches as usize);
    let mut seq = 0i32;
    for b in 0..batches {
        let start_line = first_line + b * a.batch;
        let events: Vec<Event> = (start_line..start_line + a.batch)
            .map(|i| {
                Event::from_message(
                    format!("2026-11-24T03:00:00.000Z host app[1234]: seq={i:010} msg=abcdefghijklmnopqrstuvwxyz0123456789{}", &"abcdefghijkl"[..(i % 12) as usize]),
                    Metadata::default(),
                )
            })
            .collect();
        let stamp = ProducerStamp {
            producer_id,
            producer_epoch,
            base_sequence: seq,
        };
        let bytes = encode_batch(&events, stamp, a.compression).map_err(|e| e.to_string())?;
        let t = Instant::now();
        let (status, body) = c.post(&path, &bytes).map_err(|e| e.to_string())?;
        latencies.push(t.elapsed());
        if status != 200 {
            return Err(format!(
                "produce: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        seq += a.batch as i32;
    }
    Ok(latencies)
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let per = a.lines / a.batch / a.producers;
    let total = per * a.batch * a.producers;
    let cpu0 = cpu_seconds(a.pid);
    let start = Instant::now();
    let results: Vec<Result<Vec<Duration>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.producers)
            .map(|p| {
                let a = &a;
                s.spawn(move || producer(a, p * per * a.batch, per))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("producer panicked".into())))
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(a.pid).zip(cpu0).map(|(b, a)| b - a);
    let mut lat = Vec::new();
    for r in results {
        match r {
            Ok(l) => lat.extend(l),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        }
    }
    lat.sort();
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{total} lines in {elapsed:.2} s: {:.0} lines/s; ack p50 {:.2} ms, p99 {:.2} ms; collector {} CPU-s per million lines",
        total as f64 / elapsed,
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        cpu.map_or("?".into(), |c| format!("{:.3}", c / (total as f64 / 1e6))),
    );
}
