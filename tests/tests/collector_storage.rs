//! The collector's storage under operator mistakes and damaged disks: the
//! data directory lock, and (with the power-cut filesystem) the promise that
//! nothing acknowledged is lost or re-issued.

use std::process::Command;
use std::time::Duration;

use weir_tests::*;

#[test]
fn a_second_collector_on_the_same_data_directory_exits_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let first = Collector::start(&data);
    let out = Command::new(bin("weir-collector"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("another collector is using data directory"),
        "{err}"
    );
    // The first one is unaffected.
    assert!(http_get(first.addr, "/health").is_some());
    drop(first);
    let _again = wait_for(Duration::from_secs(5), || Some(Collector::start(&data)));
}

mod powercut_load {
    use std::collections::BTreeMap;
    use std::io::{Read, Write};
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use weir_core::record::{encode_batch, Compression, ProducerStamp};
    use weir_core::{Event, Metadata};
    use weir_tests::*;

    /// A producer that sends one batch at a time and remembers what was acknowledged.
    #[derive(Default)]
    pub struct Producer {
        seq: i32,
        next_n: u64,
        /// (sequence, record numbers, bytes) of the batch sent but not acknowledged.
        pending: Option<(Vec<u64>, Vec<u8>)>,
        /// Acknowledged offset → record number.
        pub acked: BTreeMap<i64, u64>,
        /// Offsets acknowledged twice for different records.
        pub reissued: Vec<i64>,
        rng: u64,
    }

    fn rand(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    fn post(addr: SocketAddr, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
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

    impl Producer {
        pub fn new(seed: u64) -> Self {
            Producer {
                rng: seed | 1,
                ..Producer::default()
            }
        }

        /// Sends until `stop` is set and a send fails (the collector is gone).
        pub fn run(&mut self, addr: SocketAddr, stop: &AtomicBool) {
            loop {
                if self.pending.is_none() {
                    let k = 1 + rand(&mut self.rng) % 20;
                    let ns: Vec<u64> = (self.next_n..self.next_n + k).collect();
                    self.next_n += k;
                    let events: Vec<Event> = ns
                        .iter()
                        .map(|n| Event::from_message(format!("r{n}"), Metadata::default()))
                        .collect();
                    let stamp = ProducerStamp {
                        producer_id: 4242,
                        producer_epoch: 0,
                        base_sequence: self.seq,
                    };
                    let b = encode_batch(&events, stamp, Compression::Zstd)
                        .unwrap()
                        .to_vec();
                    self.pending = Some((ns, b));
                }
                let (ns, bytes) = self.pending.clone().unwrap();
                match post(addr, "/v1/produce/t/0", &bytes) {
                    Some((200, body)) => {
                        let ack: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        let base = ack["base_offset"].as_i64().unwrap();
                        for (i, n) in ns.iter().enumerate() {
                            let o = base + i as i64;
                            if let Some(prev) = self.acked.insert(o, *n) {
                                if prev != *n {
                                    self.reissued.push(o);
                                }
                            }
                        }
                        self.seq += ns.len() as i32;
                        self.pending = None;
                    }
                    other => {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        if let Some((status, body)) = other {
                            assert!(
                                status >= 500,
                                "refused: {status} {}",
                                String::from_utf8_lossy(&body)
                            );
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        }
    }

    /// The collector under load loses power at random moments: after each
    /// restart every acknowledged record is readable at its original offset,
    /// no offset is acknowledged twice, and nothing is duplicated.
    #[test]
    fn acknowledged_records_survive_power_cuts_at_random_moments() {
        let seed: u64 = std::env::var("POWERCUT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_cafe);
        eprintln!("POWERCUT_SEED={seed}");
        let tmp = tempfile::tempdir().unwrap();
        let fs = powercut::mount(&tmp.path().join("mnt"), seed)
            .expect("mounting the power-cut filesystem (needs /dev/fuse and fusermount3; scripts/test installs fuse3)");
        let data = fs.path.join("data");
        let side = tmp.path().join("collector");
        let cfg = tmp.path().join("collector.yaml");
        std::fs::write(&cfg, "segment_bytes: 8KiB\n").unwrap();
        let cfg_arg = cfg.to_string_lossy().into_owned();
        let addr = free_port();
        let mut rng = seed | 1;
        let mut producer = Producer::new(seed);
        for round in 0..6 {
            let mut c = Collector::start_with(&data, addr, &side, &["-c", &cfg_arg]);
            let stop = Arc::new(AtomicBool::new(false));
            let s2 = stop.clone();
            let addr = c.addr;
            let load = std::thread::spawn(move || {
                producer.run(addr, &s2);
                producer
            });
            std::thread::sleep(Duration::from_millis(150 + rand(&mut rng) % 400));
            c.proc.kill9();
            stop.store(true, Ordering::SeqCst);
            producer = load.join().unwrap();
            let torn = (rand(&mut rng) >> 17).is_multiple_of(2);
            fs.handle.cut(torn);
            eprintln!(
                "round {round}: {} records acknowledged, cut (torn: {torn})",
                producer.acked.len()
            );
        }
        let c = Collector::start_with(&data, addr, &side, &["-c", &cfg_arg]);
        assert!(
            producer.reissued.is_empty(),
            "offsets acknowledged twice: {:?}",
            producer.reissued
        );
        assert!(
            producer.acked.len() > 100,
            "too little load to mean anything"
        );
        let log: BTreeMap<i64, String> = consume_all(&c.url(), "t")
            .iter()
            .map(|r| {
                (
                    r["offset"].as_i64().unwrap(),
                    r["value"]["message"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for (o, n) in &producer.acked {
            assert_eq!(
                log.get(o),
                Some(&format!("r{n}")),
                "acknowledged record r{n} at offset {o} (seed {seed}); collector log:\n{}",
                c.proc.log_text()
            );
        }
        let mut seen = std::collections::HashSet::new();
        let dups: Vec<&String> = log.values().filter(|m| !seen.insert(*m)).collect();
        assert!(dups.is_empty(), "records duplicated: {dups:?}");
        let (cuts, fsyncs) = fs.handle.counts();
        assert_eq!(cuts, 6);
        assert!(fsyncs > 0);
    }
}
