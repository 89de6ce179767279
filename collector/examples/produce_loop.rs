//! A load generator for one running collector, over the real protocol (the
//! collector sink's: a collector-issued producer id per producer, one
//! RecordBatch v2 per `POST /v1/produce/{topic}/{partition}`, `acks=durable`).
//!
//! Load mode: `P` producers, each on its own keep-alive connection and
//! thread, send batches of `--batch` records and wait for each
//! acknowledgement before sending the next (so `P` batches are in flight, as
//! `P` agents with `max_in_flight: 1`). Producers share `--partitions`
//! partitions of one topic (producer `i` writes partition `i % K`). With
//! `--rate R` (batches per second, all producers together) each producer
//! sends on a fixed schedule instead of as fast as it can, for latency at a
//! given load. Prints records/s, MB/s (batch bytes), acknowledgement latency
//! (p50, p99) and the collector's CPU-seconds per million records, read from
//! `/proc/PID/stat`. A batch is encoded once per producer; each send only
//! patches its base sequence and CRC, so the generator's own CPU stays small.
//!
//! Idle mode (`--idle-partitions N`): creates N partitions (topics of
//! `--topic-partitions` each), writes one small batch to each, waits, and
//! prints the collector's resident memory and open file descriptors.
//!
//! When a request fails (the collector was killed, say), it exits with the
//! error and `acked records: N` on stderr: the records acknowledged before,
//! for checking after a restart that every one of them is in the log.
//!
//! ```text
//! cargo run --release -p weir-collector --example produce_loop -- ADDR PID \
//!     [--lines N] [--batch RECORDS] [--producers P] [--record-bytes B] [--rate R]
//!     [--partitions K] [--compression none|lz4|zstd] [--topic T] [--json]
//! cargo run --release -p weir-collector --example produce_loop -- ADDR PID \
//!     --idle-partitions N [--topic-partitions M] [--json]
//! ```

#[path = "common/proc_stat.rs"]
mod proc_stat;
use proc_stat::cpu_seconds;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use weir_core::record::{encode_batch, Compression, ProducerStamp};
use weir_core::{Event, Metadata};

struct Args {
    addr: SocketAddr,
    pid: u32,
    lines: u64,
    batch: u64,
    producers: u64,
    record_bytes: Option<usize>,
    rate: Option<f64>,
    partitions: u32,
    compression: Compression,
    topic: String,
    idle_partitions: Option<u32>,
    topic_partitions: u32,
    json: bool,
}

const USAGE: &str = "usage: produce_loop ADDR PID [--lines N] [--batch RECORDS] [--producers P] [--record-bytes B] [--rate BATCHES_PER_S] [--partitions K] [--compression none|lz4|zstd] [--topic T] [--idle-partitions N] [--topic-partitions M] [--json]";

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let addr = it
        .next()
        .ok_or(USAGE)?
        .parse()
        .map_err(|e| format!("ADDR: {e}"))?;
    let pid = it
        .next()
        .ok_or(USAGE)?
        .parse()
        .map_err(|e| format!("PID: {e}"))?;
    let mut a = Args {
        addr,
        pid,
        lines: 1_000_000,
        batch: 8_000,
        producers: 4,
        record_bytes: None,
        rate: None,
        partitions: 1,
        compression: Compression::Lz4,
        topic: "load".into(),
        idle_partitions: None,
        topic_partitions: 1000,
        json: false,
    };
    while let Some(flag) = it.next() {
        if flag == "--json" {
            a.json = true;
            continue;
        }
        let v = it.next().ok_or(USAGE)?;
        let n = || v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--lines" => a.lines = n()?,
            "--batch" => a.batch = n()?.max(1),
            "--producers" => a.producers = n()?.max(1),
            "--record-bytes" => a.record_bytes = Some(n()?.max(16) as usize),
            "--rate" => a.rate = Some(v.parse::<f64>().map_err(|e| format!("{flag}: {e}"))?),
            "--partitions" => a.partitions = n()?.clamp(1, 1024) as u32,
            "--idle-partitions" => a.idle_partitions = Some(n()?.max(1) as u32),
            "--topic-partitions" => a.topic_partitions = n()?.clamp(1, 1024) as u32,
            "--topic" => a.topic = v.clone(),
            "--compression" => {
                a.compression = match v.as_str() {
                    "none" => Compression::None,
                    "lz4" => Compression::Lz4,
                    "zstd" => Compression::Zstd,
                    _ => return Err(format!("--compression {v}: none, lz4 or zstd")),
                }
            }
            _ => return Err(USAGE.into()),
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
    fn open(addr: SocketAddr) -> Result<Conn, String> {
        let s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
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
        // Answers here are small JSON documents; a larger one is a bug.
        if len > 1 << 20 {
            return Err(std::io::Error::other(format!("answer of {len} bytes")));
        }
        let mut answer = vec![0u8; len];
        self.r.read_exact(&mut answer)?;
        Ok((status, answer))
    }

    /// POSTs and wants a 200.
    fn call(&mut self, path: &str, body: &[u8]) -> Result<Vec<u8>, String> {
        let (status, answer) = self.post(path, body).map_err(|e| format!("{path}: {e}"))?;
        if status != 200 {
            let text = String::from_utf8_lossy(&answer);
            return Err(format!("{path}: {status} {text}"));
        }
        Ok(answer)
    }

    /// A collector-issued producer id and epoch.
    fn init_producer(&mut self) -> Result<(i64, i16), String> {
        let body = self.call("/v1/producers", b"{}")?;
        let id: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let pid = id["producer_id"].as_i64().ok_or("no producer_id")?;
        let epoch = id["producer_epoch"].as_i64().ok_or("no producer_epoch")?;
        Ok((pid, epoch as i16))
    }
}

/// utime + stime of a process, in seconds.
/// A `/proc/PID/status` field in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// One batch of `n` records for `stamp`, records of about `bytes` bytes
/// (or ~120-byte log lines).
fn template(a: &Args, n: u64, stamp: ProducerStamp) -> Result<Vec<u8>, String> {
    let events: Vec<Event> = (0..n)
        .map(|i| {
            let line = format!(
                "2026-11-24T03:00:00.000Z host app[1234]: seq={i:010} msg=abcdefghijklmnopqrstuvwxyz0123456789"
            );
            let msg = match a.record_bytes {
                // The value is `{"message":"..."}`: 14 bytes of framing.
                Some(b) => {
                    let mut m = line;
                    m.truncate(b.saturating_sub(14));
                    let fill = b.saturating_sub(14 + m.len());
                    m.extend((0..fill).map(|k| (b'a' + ((i as usize + k) % 26) as u8) as char));
                    m
                }
                None => line,
            };
            Event::from_message(msg, Metadata::default())
        })
        .collect();
    encode_batch(&events, stamp, a.compression)
        .map(|b| b.to_vec())
        .map_err(|e| e.to_string())
}

/// Sets a batch's base sequence and recomputes its CRC (bytes 21.. are covered).
fn set_sequence(b: &mut [u8], seq: i32) {
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Records acknowledged so far, all producers together.
static ACKED: AtomicU64 = AtomicU64::new(0);

/// What one producer did: acknowledgement latencies and bytes sent.
struct Done {
    latencies: Vec<Duration>,
    bytes: u64,
}

/// Runs producer `p`: `batches` batches, paced when `--rate` is set.
fn producer(a: &Args, p: u64, batches: u64, start: Instant) -> Result<Done, String> {
    let mut c = Conn::open(a.addr)?;
    let (producer_id, producer_epoch) = c.init_producer()?;
    let stamp = ProducerStamp {
        producer_id,
        producer_epoch,
        base_sequence: 0,
    };
    let mut bytes = template(a, a.batch, stamp)?;
    let path = format!("/v1/produce/{}/{}", a.topic, p % a.partitions as u64);
    // Producers start spread over one period so they do not send in lockstep.
    let period = a
        .rate
        .map(|r| Duration::from_secs_f64(a.producers as f64 / r.max(1e-3)));
    let offset = period.map(|t| t.mul_f64(p as f64 / a.producers as f64));
    let mut done = Done {
        latencies: Vec::with_capacity(batches as usize),
        bytes: 0,
    };
    for b in 0..batches {
        if let (Some(t), Some(o)) = (period, offset) {
            let due = start + o + t * b as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        set_sequence(&mut bytes, (b * a.batch) as i32);
        let t = Instant::now();
        c.call(&path, &bytes)?;
        done.latencies.push(t.elapsed());
        ACKED.fetch_add(a.batch, Ordering::Relaxed);
        done.bytes += bytes.len() as u64;
    }
    Ok(done)
}

fn load(a: &Args) -> Result<(), String> {
    let mut c = Conn::open(a.addr)?;
    let body = format!("{{\"partitions\": {}}}", a.partitions);
    c.call(&format!("/v1/topics/{}", a.topic), body.as_bytes())?;
    let per = (a.lines / a.batch / a.producers).max(1);
    let records = per * a.batch * a.producers;
    let cpu0 = cpu_seconds(a.pid);
    let start = Instant::now();
    let results: Vec<Result<Done, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.producers)
            .map(|p| s.spawn(move || producer(a, p, per, start)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("producer panicked".into())))
            .collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(a.pid).zip(cpu0).map(|(b, a)| b - a);
    let (mut lat, mut bytes) = (Vec::new(), 0u64);
    for r in results {
        let d = r?;
        lat.extend(d.latencies);
        bytes += d.bytes;
    }
    lat.sort();
    let pct = |q: f64| {
        let i = ((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1));
        lat.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let rps = records as f64 / secs;
    let mbps = bytes as f64 / secs / 1e6;
    let cpu_per_m = cpu.map(|c| c / (records as f64 / 1e6));
    if a.json {
        let v = serde_json::json!({
            "records": records, "seconds": secs, "records_per_s": rps, "mb_per_s": mbps,
            "batches_per_s": lat.len() as f64 / secs, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "collector_cpu_s_per_million": cpu_per_m, "bytes_per_record": bytes as f64 / records as f64,
        });
        println!("{v}");
    } else {
        println!(
            "{records} records in {secs:.2} s: {rps:.0} records/s, {mbps:.1} MB/s; ack p50 {:.2} ms, p99 {:.2} ms; collector {} CPU-s per million records",
            pct(0.5),
            pct(0.99),
            cpu_per_m.map_or("?".into(), |c| format!("{c:.3}")),
        );
    }
    Ok(())
}

fn idle(a: &Args, n: u32) -> Result<(), String> {
    let rss0 = status_kib(a.pid, "VmRSS:");
    let fds0 = open_fds(a.pid);
    let per = a.topic_partitions;
    let topics = n.div_ceil(per);
    let mut c = Conn::open(a.addr)?;
    for t in 0..topics {
        let k = per.min(n - t * per);
        let body = format!("{{\"partitions\": {k}}}");
        c.call(&format!("/v1/topics/{}{t}", a.topic), body.as_bytes())?;
    }
    let threads = 16u32;
    let start = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                s.spawn(move || -> Result<(), String> {
                    let mut c = Conn::open(a.addr)?;
                    let (producer_id, producer_epoch) = c.init_producer()?;
                    let stamp = ProducerStamp {
                        producer_id,
                        producer_epoch,
                        base_sequence: 0,
                    };
                    let bytes = template(a, 1, stamp)?;
                    for i in (w..n).step_by(threads as usize) {
                        c.call(
                            &format!("/v1/produce/{}{}/{}", a.topic, i / per, i % per),
                            &bytes,
                        )?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or_else(|_| Err("writer panicked".into())))
    })?;
    let wrote = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(3));
    let rss = status_kib(a.pid, "VmRSS:");
    let fds = open_fds(a.pid);
    let mib = |k: Option<u64>| k.map(|k| k as f64 / 1024.0);
    if a.json {
        let v = serde_json::json!({
            "partitions": n, "write_seconds": wrote,
            "rss_mib_before": mib(rss0), "rss_mib": mib(rss), "fds_before": fds0, "fds": fds,
        });
        println!("{v}");
    } else {
        println!(
            "{n} partitions written in {wrote:.1} s; idle collector RSS {:.1} MiB (before: {:.1}), open fds {} (before: {})",
            mib(rss).unwrap_or(f64::NAN),
            mib(rss0).unwrap_or(f64::NAN),
            fds.map_or("?".into(), |f| f.to_string()),
            fds0.map_or("?".into(), |f| f.to_string()),
        );
    }
    Ok(())
}

fn main() {
    let r = args().and_then(|a| match a.idle_partitions {
        Some(n) => idle(&a, n),
        None => load(&a),
    });
    if let Err(e) = r {
        eprintln!("error: {e}");
        eprintln!("acked records: {}", ACKED.load(Ordering::Relaxed));
        std::process::exit(2);
    }
}
