//! Windowed aggregation through `kill -9`: a tailed file → `aggregate` →
//! collector, with the agent killed mid-window several times. Every window
//! must reach the collector's log exactly once, with the values an
//! uninterrupted run would have given.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use weir_tests::*;

/// Collector records of `topic` as (group, window_start) → record value.
fn windows(
    url: &str,
    topic: &str,
    group: &str,
) -> (BTreeMap<(String, String), serde_json::Value>, usize) {
    let records = consume_all(url, topic);
    let n = records.len();
    let mut by_window = BTreeMap::new();
    for r in records {
        let v = r["value"].clone();
        let key = (
            v[group].as_str().unwrap_or("?").to_owned(),
            v["window_start"].as_str().unwrap_or("?").to_owned(),
        );
        by_window.insert(key, v);
    }
    (by_window, n)
}

fn keep_dir_and_panic(dir: tempfile::TempDir, agent: &Agent, msg: String) -> ! {
    let log = agent.proc.log_text();
    let kept = dir.keep();
    panic!("{msg}\nkept {}\nagent log:\n{log}", kept.display());
}

/// Writes `lines` in chunks 150 ms apart, killing the agent with -9 after
/// the chunks in `kills` (kills more than a second apart find a checkpoint
/// with open windows to restore, not only a log to replay).
fn write_with_kills(
    agent: &mut Agent,
    log: &Path,
    lines: &[String],
    chunk: usize,
    kills: &[usize],
) {
    for (i, part) in lines.chunks(chunk).enumerate() {
        append_lines(log, part.iter().cloned());
        std::thread::sleep(Duration::from_millis(150));
        if kills.contains(&i) {
            agent.crash_and_restart(Duration::from_millis(300));
        }
    }
}

#[test]
fn processing_time_windows_count_every_line_exactly_once_across_kill9() {
    const DEVICES: usize = 7;
    const TOTAL: usize = 25_000;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let collector = Collector::start(&dir.path().join("collector"));
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            r#"
sources:
  sensors: {{ type: file, include: ["{}/*.log"], poll_interval: 50ms }}
transforms:
  per_device:
    type: aggregate
    inputs: [sensors]
    window: {{ kind: tumbling, size: 1s }}
    group_by: [message]
    aggregates: {{ n: {{ fn: count }} }}
sinks:
  central:
    type: collector
    inputs: [per_device]
    url: {}
    topic: counts
    batch: {{ timeout: 50ms }}
"#,
            logs.display(),
            collector.url()
        ),
    );
    let mut agent = Agent::start(&cfg, &dir.path().join("agent"));
    let lines: Vec<String> = (0..TOTAL)
        .map(|i| format!("dev-{}", (i * 31 + i / 7) % DEVICES))
        .collect();
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for l in &lines {
        *want.entry(l.clone()).or_default() += 1;
    }
    write_with_kills(&mut agent, &logs.join("s.log"), &lines, 500, &[12, 27, 42]);

    // Processing-time windows close on the clock: everything arrives
    // within a few seconds of the last line.
    let total = |w: &BTreeMap<(String, String), serde_json::Value>| -> i64 {
        w.values().map(|v| v["n"].as_i64().unwrap_or(0)).sum()
    };
    let done = wait_for(Duration::from_secs(40), || {
        let (w, _) = windows(&collector.url(), "counts", "message");
        (total(&w) >= TOTAL as i64).then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500)); // room for a (wrong) duplicate to land
    let (w, records) = windows(&collector.url(), "counts", "message");
    if done.is_none() || records != w.len() || total(&w) != TOTAL as i64 {
        keep_dir_and_panic(
            dir,
            &agent,
            format!(
                "{} records for {} distinct windows, {} of {TOTAL} lines counted",
                records,
                w.len(),
                total(&w)
            ),
        );
    }
    let mut got: BTreeMap<String, i64> = BTreeMap::new();
    for ((device, _), v) in &w {
        *got.entry(device.clone()).or_default() += v["n"].as_i64().unwrap();
        assert!(v["window_end"].as_str() > v["window_start"].as_str());
    }
    assert_eq!(got, want, "each device's lines, counted once");
    assert_eq!(
        agent
            .proc
            .terminate(Duration::from_secs(15))
            .map(|s| s.success()),
        Some(true)
    );
}

/// The issue's scenario, with real values: JSON sensor readings parsed by a
/// `script` transform, 1-minute mean and p95 per device by event time.
#[test]
fn event_time_means_and_p95_per_device_are_exact_across_kill9() {
    const BASE: i64 = 1_764_000_000; // a whole minute
    const MINUTES: i64 = 12;
    const DEVICES: i64 = 5;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let collector = Collector::start(&dir.path().join("collector"));
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            r#"
sources:
  sensors: {{ type: file, include: ["{}/*.log"], poll_interval: 50ms }}
transforms:
  parse:
    type: script
    inputs: [sensors]
    source: |
      let f = parse_json(event.message);
      event.device = f.device;
      event.temp = f.temp;
      event.ts = f.ts;
      event
  by_device:
    type: aggregate
    inputs: [parse]
    window: {{ kind: tumbling, size: 1m }}
    event_time: {{ field: ts, watermark: 5s }}
    group_by: [device]
    aggregates:
      n: {{ fn: count }}
      mean_temp: {{ fn: mean, field: temp }}
      p95_temp: {{ fn: percentile, field: temp, q: 0.95 }}
sinks:
  central:
    type: collector
    inputs: [by_device]
    url: {}
    topic: device-stats
    batch: {{ timeout: 50ms }}
"#,
            logs.display(),
            collector.url()
        ),
    );
    let mut agent = Agent::start(&cfg, &dir.path().join("agent"));
    // Readings every 200 ms of event time per device, slightly out of order.
    let mut lines = Vec::new();
    let mut readings: BTreeMap<(String, i64), Vec<f64>> = BTreeMap::new();
    for step in 0..(MINUTES * 60 * 5) {
        for d in 0..DEVICES {
            let jitter = if step % 3 == 0 { -0.4 } else { 0.0 };
            let ts = (BASE as f64 + step as f64 * 0.2 + jitter).max(BASE as f64);
            let temp = 20.0 + d as f64 + ((step * 7 + d * 13) % 50) as f64 / 10.0;
            let device = format!("dev-{d}");
            let minute = ((ts as i64) - BASE) / 60;
            readings
                .entry((device.clone(), minute))
                .or_default()
                .push(temp);
            lines.push(format!(
                r#"{{"device":"{device}","temp":{temp},"ts":{ts}}}"#
            ));
        }
    }
    // A reading far ahead moves the watermark past every window above.
    lines.push(format!(
        r#"{{"device":"flush","temp":0,"ts":{}}}"#,
        BASE + 86_400
    ));
    write_with_kills(&mut agent, &logs.join("s.log"), &lines, 500, &[10, 22, 32]);

    let expected = readings.len();
    let done = wait_for(Duration::from_secs(40), || {
        let (w, _) = windows(&collector.url(), "device-stats", "device");
        (w.len() >= expected).then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    let (w, records) = windows(&collector.url(), "device-stats", "device");
    if done.is_none() || records != expected || w.len() != expected {
        keep_dir_and_panic(
            dir,
            &agent,
            format!("{records} records, {} windows, want {expected}", w.len()),
        );
    }
    let mut seen = BTreeSet::new();
    for ((device, minute), temps) in &readings {
        let start = format!("{}:00.000000000Z", iso_minute(BASE + minute * 60));
        let v = w
            .get(&(device.clone(), start))
            .unwrap_or_else(|| panic!("no window for {device} at minute {minute}"));
        seen.insert((device.clone(), *minute));
        let n = temps.len() as f64;
        let mean = temps.iter().sum::<f64>() / n;
        let mut sorted = temps.clone();
        sorted.sort_by(f64::total_cmp);
        let p95 = sorted[(0.95 * (n - 1.0)).floor() as usize];
        assert_eq!(
            v["n"].as_i64(),
            Some(temps.len() as i64),
            "{device} {minute}"
        );
        let got_mean = v["mean_temp"].as_f64().unwrap();
        assert!(
            (got_mean - mean).abs() < 1e-9 * mean,
            "{device} {minute}: mean {got_mean} vs {mean}"
        );
        let got_p95 = v["p95_temp"].as_f64().unwrap();
        assert!(
            (got_p95 - p95).abs() <= 0.01 * p95,
            "{device} {minute}: p95 {got_p95} vs {p95}"
        );
    }
    assert_eq!(seen.len(), expected);
}

/// `YYYY-MM-DDTHH:MM` of a time in seconds (UTC), to match `window_start`.
fn iso_minute(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}
