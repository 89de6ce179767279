//! A consumer load generator for one running collector, over the real
//! protocol (the binary HTTP fetch consumers use): from `--from` (default
//! offset 0) it fetches `GET /v1/fetch/{topic}/{partition}?offset=N&max_bytes=M`
//! on one keep-alive connection, follows `x-weir-next-offset`, and stops at
//! the end offset the first answer reported (`x-weir-end-offset`). Each
//! answer is read into one reused buffer and walked batch by batch (header
//! only) to count records and check that the offsets are dense.
//!
//! Prints MB/s (batch bytes), records/s and the CPU-seconds per GB served of
//! the collector (read from `/proc/PID/stat`) and of this consumer: on a
//! shared machine the wall-clock rate depends on what else runs, while the
//! CPU per GB says what rate two free cores would give.
//!
//! ```text
//! cargo run --release -p weir-collector --example fetch_loop -- ADDR PID \
//!     [--topic T] [--partition P] [--from OFFSET] [--max-bytes B] [--json]
//! ```

#[path = "common/proc_stat.rs"]
mod proc_stat;
use proc_stat::cpu_seconds;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use weir_core::batch::BatchHeader;

struct Args {
    addr: SocketAddr,
    pid: u32,
    topic: String,
    partition: u32,
    from: i64,
    max_bytes: usize,
    json: bool,
}

const USAGE: &str = "usage: fetch_loop ADDR PID [--topic T] [--partition P] [--from OFFSET] [--max-bytes B] [--json]";

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
        topic: "bench".into(),
        partition: 0,
        from: 0,
        max_bytes: 16 << 20,
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
            "--topic" => a.topic = v.clone(),
            "--partition" => a.partition = n()? as u32,
            "--from" => a.from = n()? as i64,
            "--max-bytes" => a.max_bytes = n()?.max(1) as usize,
            _ => return Err(USAGE.into()),
        }
    }
    Ok(a)
}

/// utime + stime of a process, in seconds.
/// One answer's head: status, next offset, end offset, body length.
struct Head {
    status: u16,
    next: Option<i64>,
    end: Option<i64>,
    len: usize,
}

fn get(r: &mut BufReader<TcpStream>, addr: SocketAddr, path: &str) -> std::io::Result<Head> {
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/octet-stream\r\n\r\n");
    r.get_mut().write_all(req.as_bytes())?;
    let mut h = Head {
        status: 0,
        next: None,
        end: None,
        len: 0,
    };
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            return Ok(h);
        }
        if let Some(rest) = l.strip_prefix("HTTP/1.1 ") {
            h.status = rest.get(..3).and_then(|s| s.parse().ok()).unwrap_or(0);
        } else if let Some((k, v)) = l.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                h.len = v.parse().unwrap_or(0);
            } else if k.eq_ignore_ascii_case("x-weir-next-offset") {
                h.next = v.parse().ok();
            } else if k.eq_ignore_ascii_case("x-weir-end-offset") {
                h.end = v.parse().ok();
            }
        }
    }
}

fn run(a: &Args) -> Result<(), String> {
    let s = TcpStream::connect(a.addr).map_err(|e| format!("connect {}: {e}", a.addr))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut r = BufReader::with_capacity(64 << 10, s);
    let mut buf: Vec<u8> = Vec::new();
    let (mut offset, mut end) = (a.from, None::<i64>);
    let (mut bytes, mut records, mut fetches) = (0u64, 0u64, 0u64);
    let cpu0 = cpu_seconds(a.pid);
    let me0 = cpu_seconds(std::process::id());
    let start = Instant::now();
    while end.is_none_or(|e| offset < e) {
        let path = format!(
            "/v1/fetch/{}/{}?offset={offset}&max_bytes={}",
            a.topic, a.partition, a.max_bytes
        );
        let h = get(&mut r, a.addr, &path).map_err(|e| format!("{path}: {e}"))?;
        if h.len > a.max_bytes.max(64 << 20) {
            return Err(format!("answer of {} bytes", h.len));
        }
        buf.resize(h.len, 0);
        r.read_exact(&mut buf).map_err(|e| format!("{path}: {e}"))?;
        if h.status != 200 {
            return Err(format!(
                "{path}: {} {}",
                h.status,
                String::from_utf8_lossy(&buf)
            ));
        }
        end = end.or(h.end);
        let next = h.next.ok_or("no x-weir-next-offset")?;
        // Walk the batches: whole ones, dense offsets from where we asked.
        let mut at = 0usize;
        let mut expect = offset;
        while at < buf.len() {
            let b = BatchHeader::parse(&buf[at..]).map_err(|e| format!("at {offset}: {e}"))?;
            if b.base_offset > expect {
                return Err(format!("gap: batch at {} after {expect}", b.base_offset));
            }
            records += (b.last_offset() + 1 - expect.max(b.base_offset)) as u64;
            expect = b.last_offset() + 1;
            at += b.total_len();
        }
        if next <= offset {
            return Err(format!("no progress at offset {offset}"));
        }
        bytes += buf.len() as u64;
        fetches += 1;
        offset = next;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(a.pid).zip(cpu0).map(|(b, a)| b - a);
    let mbps = bytes as f64 / secs / 1e6;
    let rps = records as f64 / secs;
    let cpu_per_gb = cpu.map(|c| c / (bytes as f64 / 1e9));
    let me = cpu_seconds(std::process::id()).zip(me0).map(|(b, a)| b - a);
    let me_per_gb = me.map(|c| c / (bytes as f64 / 1e9));
    if a.json {
        let v = serde_json::json!({
            "bytes": bytes, "records": records, "fetches": fetches, "seconds": secs,
            "mb_per_s": mbps, "records_per_s": rps, "collector_cpu_s_per_gb": cpu_per_gb,
            "consumer_cpu_s_per_gb": me_per_gb,
        });
        println!("{v}");
    } else {
        println!(
            "{bytes} bytes, {records} records in {fetches} fetches, {secs:.2} s: {mbps:.0} MB/s, {rps:.0} records/s; CPU-s per GB: collector {}, consumer {}",
            cpu_per_gb.map_or("?".into(), |c| format!("{c:.3}")),
            me_per_gb.map_or("?".into(), |c| format!("{c:.3}")),
        );
    }
    Ok(())
}

fn main() {
    if let Err(e) = args().and_then(|a| run(&a)) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
