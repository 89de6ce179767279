//! The collector's storage under operator mistakes and damaged disks: the
//! data directory lock, and (with the power-cut filesystem) the promise that
//! nothing acknowledged is lost or re-issued.

use std::process::Command;
use std::time::Duration;

use weir_core::record::{encode_batch, Compression, ProducerStamp};
use weir_core::{Event, Metadata};
use weir_tests::*;

fn batch_of(first: u64, n: u64) -> Vec<u8> {
    let events: Vec<Event> = (first..first + n)
        .map(|i| Event::from_message(format!("r{i}"), Metadata::default()))
        .collect();
    let stamp = ProducerStamp {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
    encode_batch(&events, stamp, Compression::None)
        .unwrap()
        .to_vec()
}

#[test]
fn a_damaged_sealed_segment_loses_one_batch_and_the_consumer_reports_it_and_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let mut c = Collector::start_with(&data, "segment_bytes: 8KiB\n", &[]);
    for k in 0..100u64 {
        let (status, body) = raw_post(
            c.addr,
            "/v1/produce/t/0",
            &batch_of(k * 5, 5),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    // A batch whose record count lies is refused with a reason.
    let mut bad = batch_of(0, 3);
    bad[57..61].copy_from_slice(&4i32.to_be_bytes());
    bad[23..27].copy_from_slice(&3i32.to_be_bytes());
    let crc = crc32c(&bad[21..]);
    bad[17..21].copy_from_slice(&crc.to_be_bytes());
    let (status, body) =
        raw_post(c.addr, "/v1/produce/t/0", &bad, Duration::from_secs(10)).unwrap();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("corrupt_batch") && body.contains("record 3"),
        "{body}"
    );
    assert_eq!(
        c.proc
            .terminate(Duration::from_secs(15))
            .map(|s| s.success()),
        Some(true)
    );

    // Flip one byte in the header of the third batch of the first (sealed) segment.
    let seg = data.join("topics/t/0/00000000000000000000.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    let len0 = i32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize + 12;
    let pos = 2 * len0; // all test batches have the same size
    bytes[pos + 16] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();

    let c = c.again();
    let out = Command::new(bin("weir-collector"))
        .args([
            "consume",
            "--url",
            &c.url(),
            "--topic",
            "t",
            "--from",
            "earliest",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("records 10..14 lost to damage"), "{err}");
    let got: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["offset"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let want: Vec<i64> = (0..500).filter(|o| !(10..15).contains(o)).collect();
    assert_eq!(got, want, "every other record, at its offset");
    let m = http_get(c.addr, "/metrics").unwrap();
    assert!(m.contains("weir_collector_damaged_batches_total 1"), "{m}");
    assert!(data
        .join("topics/t/0/quarantine/00000000000000000000.log")
        .exists());
    assert!(c
        .proc
        .log_text()
        .contains("Damaged batches in a log segment"));
}

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
        /// (id, epoch) the collector issued.
        identity: Option<(i64, i16)>,
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
                let Some((producer_id, producer_epoch)) = self.identity else {
                    match raw_post(addr, "/v1/producers", b"{}", Duration::from_secs(10)) {
                        Some((200, body)) => {
                            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                            self.identity = Some((
                                v["producer_id"].as_i64().unwrap(),
                                v["producer_epoch"].as_i64().unwrap() as i16,
                            ));
                        }
                        _ if stop.load(Ordering::SeqCst) => return,
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                    continue;
                };
                if self.pending.is_none() {
                    let k = 1 + rand(&mut self.rng) % 20;
                    let ns: Vec<u64> = (self.next_n..self.next_n + k).collect();
                    self.next_n += k;
                    let events: Vec<Event> = ns
                        .iter()
                        .map(|n| Event::from_message(format!("r{n}"), Metadata::default()))
                        .collect();
                    let stamp = ProducerStamp {
                        producer_id,
                        producer_epoch,
                        base_sequence: self.seq,
                    };
                    let b = encode_batch(&events, stamp, Compression::Zstd)
                        .unwrap()
                        .to_vec();
                    self.pending = Some((ns, b));
                }
                let (ns, bytes) = self.pending.clone().unwrap();
                match raw_post(addr, "/v1/produce/t/0", &bytes, Duration::from_secs(10)) {
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
        // The data directory is the mount point itself, so that the
        // collector's config, address and log files (beside it) survive cuts.
        let data = fs.path.clone();
        let yaml = format!("listen: {}\nsegment_bytes: 8KiB\n", free_port());
        let mut rng = seed | 1;
        let mut producer = Producer::new(seed);
        for round in 0..6 {
            let mut c = Collector::start_with(&data, &yaml, &[]);
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
        let c = Collector::start_with(&data, &yaml, &[]);
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
