//! The admin socket of a running agent: `weir tap` sees the events of the
//! component it names, a tapper that stops reading never slows or stalls
//! the pipeline (it is told what it missed), and `weir top --once` shows
//! every component with its rates.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use weir_tests::*;

fn start(dir: &Path) -> (Agent, std::path::PathBuf, std::path::PathBuf) {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let out = dir.join("main.jsonl");
    let cfg = write_pipeline(
        dir,
        "p.yaml",
        &format!(
            r#"
sources:
  app: {{ type: file, include: ["{}/*.log"], poll_interval: 20ms }}
transforms:
  tag: {{ type: add_fields, inputs: [app], fields: {{ tapped: "yes" }} }}
sinks:
  main: {{ type: file, inputs: [tag], path: "{}", fsync: false }}
"#,
            logs.display(),
            out.display()
        ),
    );
    let agent = Agent::start(&cfg, &dir.join("agent"));
    (agent, logs, out)
}

fn weir(args: &[&str], data: &Path) -> std::process::Output {
    Command::new(bin("weir"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

/// The messages the file sink has written whole. The sink may be mid-write
/// while the test reads, so a last line without its newline is not one yet.
fn delivered(out: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["fields"]["message"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn a_tap_sees_the_events_of_its_component_and_a_stalled_tapper_slows_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, logs, out) = start(dir.path());
    let data = dir.path().join("agent");
    let socket = data.join("admin.sock");
    let mode = std::fs::metadata(&socket).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o777
    });
    assert_eq!(
        mode.ok(),
        Some(0o600),
        "the socket is the agent user's only"
    );

    // A tapper that asks for everything, then stops reading.
    let mut stalled = UnixStream::connect(&socket).unwrap();
    stalled
        .write_all(b"{\"cmd\":\"tap\",\"component\":\"tag\",\"rate\":10000}\n")
        .unwrap();
    let mut stalled = BufReader::new(stalled);
    let mut header = String::new();
    stalled.read_line(&mut header).unwrap();
    assert!(header.contains("\"ok\":true"), "{header}");

    // A well-behaved tap of the same component, in the background.
    let tap = {
        let data = data.clone();
        std::thread::spawn(move || weir(&["tap", "tag", "--limit", "5", "--rate", "100"], &data))
    };
    let n = 30_000;
    append_lines(&logs.join("a.log"), (0..n).map(line));
    let all = wait_for(Duration::from_secs(60), || {
        (delivered(&out).len() >= n).then_some(())
    });
    assert!(
        all.is_some(),
        "the pipeline stalled behind a tapper: {}",
        agent.proc.log_text()
    );
    assert_exactly_once_in_order(&delivered(&out), n);

    let tapped = tap.join().unwrap();
    assert!(
        tapped.status.success(),
        "{}",
        String::from_utf8_lossy(&tapped.stderr)
    );
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&tapped.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 5, "--limit 5");
    for e in &events {
        assert_eq!(e["component"], "tag");
        assert_eq!(e["output"], "default");
        assert_eq!(
            e["fields"]["tapped"], "yes",
            "events as they leave the transform"
        );
        assert!(e["fields"]["message"]
            .as_str()
            .unwrap()
            .starts_with("line "));
    }

    // The stalled tapper reads again: it is told how many it missed.
    let mut told = None;
    for _ in 0..10_000 {
        let mut l = String::new();
        if stalled.read_line(&mut l).unwrap_or(0) == 0 {
            break;
        }
        if l.contains("\"tap\":\"dropped\"") {
            told = Some(l);
            break;
        }
    }
    let told = told.expect("a stalled tapper is told about dropped events");
    let v: serde_json::Value = serde_json::from_str(&told).unwrap();
    assert!(v["dropped"].as_u64().unwrap() > 0);
}

#[test]
fn tapping_what_does_not_exist_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (_agent, _logs, _out) = start(dir.path());
    let data = dir.path().join("agent");
    let r = weir(&["tap", "nope", "--limit", "1"], &data);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("no source or transform named `nope`"));
    let r = weir(&["tap", "main"], &data);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("is a sink"));
    let r = weir(&["tap", "tag.hot"], &data);
    assert!(String::from_utf8_lossy(&r.stderr).contains("has no output `hot`"));
}

#[test]
fn top_once_shows_every_component_with_its_rates() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, logs, out) = start(dir.path());
    let data = dir.path().join("agent");
    let writer = {
        let logs = logs.clone();
        std::thread::spawn(move || {
            for k in 0..40 {
                append_lines(&logs.join("a.log"), (k * 500..(k + 1) * 500).map(line));
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let r = weir(&["top", "--once", "--interval", "1s"], &data);
    writer.join().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let text = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(text.starts_with("COMPONENT"), "{text}");
    let row = |id: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("no row for {id}: {text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(row("app")[1], "source");
    assert_eq!(row("tag")[1], "transform");
    assert_eq!(row("main")[1], "sink");
    assert_ne!(row("tag")[2], "0", "the transform's input rate: {text}");
    assert_ne!(row("main")[3], "0", "the sink's output rate: {text}");
    assert!(
        wait_for(Duration::from_secs(30), || (delivered(&out).len()
            >= 20_000)
            .then_some(()))
        .is_some(),
        "{}",
        agent.proc.log_text()
    );
}
