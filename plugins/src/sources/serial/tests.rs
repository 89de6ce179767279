//! The serial source over real pseudo-terminals: the test holds the master
//! side (the "device") and the source opens the slave through a symlink,
//! as it would a `/dev/serial/by-id/...` name.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use weir_core::metrics::Registry;
use weir_core::Event;
use weir_embedded::{FrameBuilder, Header, Timestamp, Value as FrameValue, MAX_ENCODED_LEN};

use super::*;
use crate::component::{BoxFuture, SendError, SourceOutput};
use crate::state::StateStore;

/// A pseudo-terminal: the master is the device's end; the slave's path is
/// what the source opens.
struct Pty {
    master: File,
    /// Held so that the slave exists until the source opens it; dropped on unplug.
    _slave: OwnedFd,
    path: PathBuf,
}

impl Pty {
    fn new() -> Pty {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two new descriptors; null pointers mean no
        // name buffer, termios or window size.
        let r = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
        // Raw from the start: before the source sets its own modes, the
        // line discipline must not turn \r into \n or echo anything back.
        // SAFETY: termios is filled by tcgetattr before use; fds are open.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(slave, &mut t), 0);
            libc::cfmakeraw(&mut t);
            assert_eq!(libc::tcsetattr(slave, libc::TCSANOW, &t), 0);
        }
        let path = std::fs::read_link(format!("/proc/self/fd/{slave}")).unwrap();
        // SAFETY: both descriptors were just created and are owned here.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        Pty {
            master,
            _slave: slave,
            path,
        }
    }

    /// Points `link` at this pty's slave (atomically, like udev does).
    fn link(&self, link: &Path) {
        let tmp = link.with_extension("new");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&self.path, &tmp).unwrap();
        std::fs::rename(&tmp, link).unwrap();
    }

    /// Writes from another thread, so a full pty never blocks the runtime.
    fn write_in_background(&self, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
        let mut m = self.master.try_clone().unwrap();
        std::thread::spawn(move || m.write_all(&bytes).unwrap())
    }
}

#[derive(Default)]
struct Collect {
    events: Mutex<Vec<Event>>,
    errors: Mutex<Vec<Event>>,
}

impl SourceOutput for Collect {
    fn send(&self, batch: SourceBatch) -> BoxFuture<'_, Result<(), SendError>> {
        assert!(batch.stream.is_none() && batch.marks.is_empty());
        self.events.lock().unwrap().extend(batch.events);
        Box::pin(async { Ok(()) })
    }

    fn send_to<'a>(
        &'a self,
        output: &'a str,
        batch: SourceBatch,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        assert_eq!(output, ERRORS_OUTPUT);
        self.errors.lock().unwrap().extend(batch.events);
        Box::pin(async { Ok(()) })
    }
}

impl Collect {
    async fn wait(&self, events: usize, errors: usize) -> (Vec<Event>, Vec<Event>) {
        for _ in 0..400 {
            let (e, d) = (
                self.events.lock().unwrap().len(),
                self.errors.lock().unwrap().len(),
            );
            if e >= events && d >= errors {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        (
            self.events.lock().unwrap().clone(),
            self.errors.lock().unwrap().clone(),
        )
    }
}

struct Running {
    out: Arc<Collect>,
    metrics: Registry,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), ComponentError>>,
}

impl Running {
    fn counter(&self, name: &'static str, extra: &[(&str, &str)]) -> u64 {
        let mut l = vec![("component", "s")];
        l.extend_from_slice(extra);
        self.metrics.counter(name, "", &l).get()
    }

    async fn wait_counter(&self, name: &'static str, extra: &[(&str, &str)], at_least: u64) -> u64 {
        for _ in 0..400 {
            if self.counter(name, extra) >= at_least {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.counter(name, extra)
    }

    async fn stop(self) -> Arc<Collect> {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the source stops within 5 s")
            .unwrap()
            .unwrap();
        self.out
    }
}

fn start(yaml: &str) -> Running {
    let cfg: SerialSourceConfig = serde_yaml::from_str(yaml).unwrap();
    assert_eq!(cfg.problems(), Vec::<String>::new());
    let out = Arc::new(Collect::default());
    let metrics = Registry::new();
    let (stop, shutdown) = watch::channel(false);
    let ctx = SourceContext {
        id: "s".into(),
        host: "h".into(),
        output: out.clone(),
        state: StateStore::in_memory().unwrap(),
        shutdown,
        metrics: metrics.clone(),
        held: Default::default(),
    };
    let task = tokio::spawn(cfg.build(ctx).unwrap());
    Running {
        out,
        metrics,
        stop,
        task,
    }
}

/// A pty linked at `<dir>/tty` and a source reading it with `extra` keys.
fn pty_source(dir: &Path, extra: &str) -> (Pty, PathBuf, Running) {
    let pty = Pty::new();
    let link = dir.join("tty");
    pty.link(&link);
    let r = start(&format!(
        "path: {}\nbaud: 115200\ninitial_backoff: 20ms\nmax_backoff: 100ms\n{extra}",
        link.display()
    ));
    (pty, link, r)
}

fn field<'a>(e: &'a Event, k: &str) -> &'a weir_core::Value {
    e.fields
        .get(k)
        .unwrap_or_else(|| panic!("no `{k}` in {:?}", e.fields))
}

fn s(v: &str) -> weir_core::Value {
    weir_core::Value::String(v.to_owned())
}

#[tokio::test]
async fn raw_lines_carry_the_port_and_the_receive_time() {
    let dir = tempfile::tempdir().unwrap();
    let (pty, link, r) = pty_source(dir.path(), "");
    let before = weir_core::event::now_nanos();
    pty.write_in_background(b"first\r\nsecond\n\r\n\xffthird\n".to_vec());
    let (events, errors) = r.out.wait(3, 0).await;
    let after = weir_core::event::now_nanos();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(errors.is_empty());
    let msgs: Vec<_> = events
        .iter()
        .map(|e| e.message().unwrap().to_owned())
        .collect();
    assert_eq!(msgs, ["first", "second", "\u{fffd}third"]);
    for e in &events {
        assert_eq!(field(e, "port"), &s(&link.display().to_string()));
        assert!(e.timestamp >= before && e.timestamp <= after);
        assert_eq!(&*e.meta.source, "s");
    }
    r.stop().await;
}

#[tokio::test]
async fn json_csv_and_kv_lines_become_typed_fields_and_failures_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "parser: json",
            "{\"t\": 21.5, \"id\": \"a\"}\n[1]\n",
            ("t", weir_core::Value::Float(21.5)),
            "not_an_object",
        ),
        (
            "parser: csv\ncsv: { columns: [id, t, ok], delimiter: ';' }",
            "id;t;ok\n007;-3;true\n1;2\n",
            ("t", weir_core::Value::Int(-3)),
            "column_count",
        ),
        (
            "parser: kv",
            "T=21.5 status=\"door open\"\nT=1 junk\n",
            ("status", s("door open")),
            "not_key_value",
        ),
    ];
    for (i, (cfg, input, (k, v), reason)) in cases.into_iter().enumerate() {
        let sub = dir.path().join(i.to_string());
        std::fs::create_dir(&sub).unwrap();
        let (pty, _link, r) = pty_source(&sub, cfg);
        pty.write_in_background(input.as_bytes().to_vec());
        let (events, errors) = r.out.wait(1, 1).await;
        assert_eq!(events.len(), 1, "{cfg}: {events:?}");
        assert_eq!(field(&events[0], k), &v, "{cfg}");
        assert_eq!(errors.len(), 1, "{cfg}: {errors:?}");
        assert_eq!(field(&errors[0], "reason"), &s(reason), "{cfg}");
        assert_eq!(field(&errors[0], "component"), &s("s"));
        assert_eq!(
            r.counter("weir_serial_parse_errors_total", &[("reason", reason)]),
            1
        );
        r.stop().await;
    }
}

fn nmea(body: &str, good: bool) -> String {
    let sum = parse::nmea::checksum(body) ^ u8::from(!good);
    format!("${body}*{sum:02X}\r\n")
}

#[tokio::test]
async fn nmea_sentences_with_bad_checksums_are_counted_and_the_good_ones_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let (pty, _link, r) = pty_source(dir.path(), "parser: nmea");
    let gga = "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,";
    let rmc = "GPRMC,123520,A,4807.038,S,01131.000,W,022.4,084.4,230394,003.1,W";
    let mut text = String::new();
    for i in 0..30 {
        text.push_str(&nmea(if i % 2 == 0 { gga } else { rmc }, i % 5 != 4));
    }
    pty.write_in_background(text.into_bytes());
    let (events, errors) = r.out.wait(24, 6).await;
    assert_eq!((events.len(), errors.len()), (24, 6));
    assert_eq!(
        r.counter(
            "weir_serial_parse_errors_total",
            &[("reason", "bad_checksum")]
        ),
        6
    );
    let rmc_event = events
        .iter()
        .find(|e| e.fields.get("sentence") == Some(&s("RMC")))
        .unwrap();
    assert_eq!(
        field(rmc_event, "lat"),
        &weir_core::Value::Float(-(48.0 + 7.038 / 60.0))
    );
    assert_eq!(field(rmc_event, "valid"), &weir_core::Value::Bool(true));
    let bad = &errors[0];
    assert_eq!(field(bad, "reason"), &s("bad_checksum"));
    let weir_core::Value::Map(orig) = field(bad, "event") else {
        panic!()
    };
    assert!(
        matches!(orig.get("message"), Some(weir_core::Value::String(m)) if m.starts_with("$GP"))
    );
    r.stop().await;
}

#[tokio::test]
async fn a_line_over_the_limit_keeps_its_start_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (pty, _link, r) = pty_source(dir.path(), "max_line_bytes: 16");
    pty.write_in_background(format!("{}\nshort\n", "x".repeat(100)).into_bytes());
    let (events, _) = r.out.wait(2, 0).await;
    let msgs: Vec<_> = events
        .iter()
        .map(|e| e.message().unwrap().to_owned())
        .collect();
    assert_eq!(msgs, ["x".repeat(16), "short".to_owned()]);
    assert_eq!(r.counter("weir_serial_truncated_lines_total", &[]), 1);
    r.stop().await;
}

fn frame(device: u64, seq: u32, temp: f32) -> Vec<u8> {
    let mut buf = [0u8; MAX_ENCODED_LEN];
    let header = Header {
        device_id: device,
        sequence: seq,
        timestamp: Timestamp::UnixMicros(1_700_000_000_000_000 + u64::from(seq)),
    };
    let mut f = FrameBuilder::new(&mut buf, &header).unwrap();
    f.push(1, FrameValue::F32(temp)).unwrap();
    f.push(7, FrameValue::U32(seq)).unwrap();
    let n = f.finish();
    buf[..n].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_at_a_high_rate_with_garbage_arrive_once_each_and_damage_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (pty, _link, r) = pty_source(
        dir.path(),
        "framing: frame\nchannels: { 1: temperature }\nbatch: { max_events: 64, linger: 10ms }",
    );
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut wire = Vec::new();
    let mut expected = std::collections::BTreeSet::new();
    let (mut garbage, mut bursts, mut corrupted, mut skipped) = (0u64, 0u64, 0u64, 0u64);
    let mut seqs = [0u32; 3];
    for i in 0..6000u32 {
        let d = (i % 3) as usize;
        let seq = seqs[d];
        seqs[d] += 1;
        let device = 100 + d as u64;
        if i % 1000 == 500 {
            // Never sent: a gap in this device's numbering.
            skipped += 1;
            continue;
        }
        let mut f = frame(device, seq, 20.0 + (i % 10) as f32);
        if i % 500 == 250 {
            // One flipped bit (never to or from zero): a CRC or COBS failure.
            let at = 2 + (next() as usize % (f.len() - 4));
            let flipped = f[at] ^ 0x04;
            if flipped != 0 && f[at] != 0 {
                f[at] = flipped;
                corrupted += 1;
                garbage += f.len() as u64 - 2;
                wire.extend(f);
                continue;
            }
        }
        expected.insert((device as i64, i64::from(seq)));
        wire.extend_from_slice(&f);
        if i % 97 == 0 {
            let n = 1 + next() % 40;
            wire.extend((0..n).map(|_| 1 + (next() % 255) as u8));
            garbage += n;
            bursts += 1;
        }
        if i == 3001 {
            // The same frame again: a replay.
            wire.extend_from_slice(&frame(device, seq, 20.0 + (i % 10) as f32));
        }
    }
    pty.write_in_background(wire).join().unwrap();
    let (events, _) = r.out.wait(expected.len(), 0).await;
    let got: Vec<(i64, i64)> = events
        .iter()
        .map(|e| match (field(e, "device_id"), field(e, "sequence")) {
            (weir_core::Value::Int(d), weir_core::Value::Int(s)) => (*d, *s),
            other => panic!("{other:?}"),
        })
        .collect();
    let unique: std::collections::BTreeSet<_> = got.iter().copied().collect();
    assert_eq!(got.len(), unique.len(), "no frame twice");
    assert_eq!(unique, expected, "every good frame once");
    assert_eq!(
        r.wait_counter("weir_serial_garbage_bytes_total", &[], garbage)
            .await,
        garbage
    );
    let link_errors: u64 = ["bad_crc", "bad_cobs", "truncated", "too_long"]
        .iter()
        .map(|reason| r.counter("weir_serial_frame_errors_total", &[("reason", reason)]))
        .sum();
    assert_eq!(link_errors, bursts + corrupted);
    assert_eq!(
        r.counter("weir_serial_lost_frames_total", &[]),
        skipped + corrupted
    );
    assert_eq!(r.counter("weir_serial_duplicate_frames_total", &[]), 1);
    let e = &events[0];
    assert!(matches!(
        field(e, "temperature"),
        weir_core::Value::Float(_)
    ));
    assert!(matches!(field(e, "ch7"), weir_core::Value::Int(_)));
    assert_eq!(
        field(e, "device_time"),
        &weir_core::Value::Timestamp(1_700_000_000_000_000_000)
    );
    r.stop().await;
}

#[tokio::test]
async fn a_frame_the_decoder_refuses_goes_to_the_errors_output() {
    let dir = tempfile::tempdir().unwrap();
    let (pty, _link, r) = pty_source(dir.path(), "framing: frame");
    // A body with a valid CRC but format version 9.
    let body = [9u8, 0, 1, 2, 0];
    let mut framed = body.to_vec();
    framed.extend_from_slice(&weir_embedded::crc32c(&body).to_le_bytes());
    let mut wire = vec![0u8];
    wire.extend(cobs(&framed));
    wire.push(0);
    wire.extend(frame(5, 0, 1.0));
    pty.write_in_background(wire);
    let (events, errors) = r.out.wait(1, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(field(&errors[0], "reason"), &s("unknown_version"));
    assert_eq!(
        r.counter(
            "weir_serial_frame_errors_total",
            &[("reason", "unknown_version")]
        ),
        1
    );
    r.stop().await;
}

/// COBS in its canonical form (docs/frame-format.md, section 6).
fn cobs(input: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    let (mut code_at, mut code) = (0usize, 1u8);
    for &b in input {
        if b == 0 {
            out[code_at] = code;
            code_at = out.len();
            out.push(0);
            code = 1;
        } else {
            out.push(b);
            code += 1;
            if code == 0xFF {
                out[code_at] = code;
                code_at = out.len();
                out.push(0);
                code = 1;
            }
        }
    }
    out[code_at] = code;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_mode_writes_the_request_reads_the_reply_and_counts_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let (pty, _link, r) = pty_source(
        dir.path(),
        "parser: kv\npoll: { request: 'MEAS?\\r\\n', interval: 100ms, timeout: 80ms }",
    );
    // The device: answers the first three requests, then falls silent.
    let mut m = pty.master.try_clone().unwrap();
    let device = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut answered = 0;
        let mut buf = [0u8; 64];
        while answered < 3 {
            let n = m.read(&mut buf).unwrap();
            seen.extend_from_slice(&buf[..n]);
            while let Some(i) = seen.windows(7).position(|w| w == b"MEAS?\r\n") {
                seen.drain(..i + 7);
                answered += 1;
                write!(m, "T=2{answered}.5\r\n").unwrap();
            }
        }
    });
    let (events, _) = r.out.wait(3, 0).await;
    device.join().unwrap();
    let temps: Vec<_> = events.iter().map(|e| field(e, "T").clone()).collect();
    assert_eq!(
        temps,
        [21.5, 22.5, 23.5].map(weir_core::Value::Float).to_vec()
    );
    assert!(
        r.wait_counter("weir_serial_poll_timeouts_total", &[], 2)
            .await
            >= 2
    );
    assert!(r.counter("weir_serial_poll_requests_total", &[]) >= 5);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_vanishes_is_reopened_when_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let (pty, link, r) = pty_source(dir.path(), "");
    pty.write_in_background(b"before\n".to_vec())
        .join()
        .unwrap();
    r.out.wait(1, 0).await;
    let connected = r
        .metrics
        .gauge("weir_serial_connected", "", &[("component", "s")]);
    assert_eq!(connected.get(), 1);
    // Unplug: the device end closes, the node goes away.
    drop(pty);
    assert_eq!(
        r.wait_counter("weir_serial_disconnects_total", &[], 1)
            .await,
        1
    );
    assert_eq!(connected.get(), 0);
    // Several reopen attempts fail while it is away (the link dangles).
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Replug: a new pty behind the same name.
    let again = Pty::new();
    again.link(&link);
    for _ in 0..200 {
        if connected.get() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(connected.get(), 1, "reopened");
    again
        .write_in_background(b"after\n".to_vec())
        .join()
        .unwrap();
    let (events, _) = r.out.wait(2, 0).await;
    let msgs: Vec<_> = events
        .iter()
        .map(|e| e.message().unwrap().to_owned())
        .collect();
    assert_eq!(msgs, ["before", "after"]);
    assert_eq!(r.counter("weir_serial_disconnects_total", &[]), 1);
    r.stop().await;
}

#[test]
fn config_problems_are_all_reported() {
    let cfg: SerialSourceConfig = serde_yaml::from_str(
        "path: ''\nbaud: 0\nparser: csv\nchannels: { 1: sequence }\nbatch: { max_events: 0 }\npoll: { request: 'x', interval: 1s, timeout: 2s }",
    )
    .unwrap();
    let p = cfg.problems();
    assert_eq!(p.len(), 6, "{p:#?}");
    assert!(serde_yaml::from_str::<SerialSourceConfig>("path: /dev/x\ndata_bits: 9").is_err());
    assert!(serde_yaml::from_str::<SerialSourceConfig>(
        "path: /dev/x\nstop_bits: 2\nparity: even\ndata_bits: 7"
    )
    .is_ok());
    let framed: SerialSourceConfig =
        serde_yaml::from_str("path: /dev/x\nframing: frame\nparser: nmea").unwrap();
    assert_eq!(framed.problems().len(), 1);
}

#[test]
fn config_round_trips_through_yaml() {
    let yaml = "path: /dev/ttyUSB0\nbaud: 9600\ndata_bits: 7\nparity: odd\nstop_bits: 2\nflow_control: hardware\nframing: lines\nparser: csv\ncsv: { columns: [a, b], delimiter: ';' }\nport_field: null\npoll: { request: { hex: '01 03' }, interval: 2s, timeout: 1s }";
    let cfg: SerialSourceConfig = serde_yaml::from_str(yaml).unwrap();
    let again: SerialSourceConfig =
        serde_yaml::from_str(&serde_yaml::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(format!("{cfg:?}"), format!("{again:?}"));
    assert_eq!(again.port_field, None);
    assert_eq!(
        again.settings().data_bits,
        crate::sources::serial_port::DataBits::Seven
    );
}
