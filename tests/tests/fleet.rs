//! The fleet page in a real browser: a real agent (file source → collector
//! sink, heartbeats every second) reports to a real collector; headless
//! Chromium (Debian's `chromium`, installed by scripts/test) loads `/fleet`,
//! runs its script against `/v1/fleet` and must show the agent healthy with
//! its sink; after the agent is killed with -9 and three intervals pass, the
//! page must mark it silent.
//!
//! `WEIR_FLEET_SCREENSHOT=docs/fleet-page.png` also saves the page with the
//! live agent there (how docs/fleet-page.png is made).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use weir_tests::*;

/// Headless Chromium on `url` with `what` (an output option), after it ran
/// the page's scripts for a few (virtual) seconds; its standard output.
fn chromium(url: &str, profile: &Path, what: &[String]) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--hide-scrollbars",
            "--virtual-time-budget=3000",
            "--window-size=1200,800",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(what)
        .arg(url)
        .output()
        .expect("chromium must be installed (Debian package `chromium`; scripts/test installs it)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The DOM of `url` after its scripts ran.
fn dump_dom(url: &str, profile: &Path) -> String {
    chromium(url, profile, &["--dump-dom".to_owned()])
}

/// A PNG of `url` in `file`.
fn screenshot(url: &str, profile: &Path, file: &Path) {
    chromium(url, profile, &[format!("--screenshot={}", file.display())]);
}

/// The `<tr>` of agent `id` in the dumped DOM.
fn agent_row<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let start = dom.find(&format!("data-agent=\"{id}\""))?;
    let row = &dom[start..];
    Some(&row[..row.find("</tr>")?])
}

fn fleet(c: &Collector) -> Option<serde_json::Value> {
    serde_json::from_str(&http_get(c.addr, "/v1/fleet")?).ok()
}

#[test]
fn the_fleet_page_shows_a_live_agent_healthy_and_marks_it_silent_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let collector = Collector::start(&dir.path().join("collector"));
    let cfg = write_pipeline(
        dir.path(),
        "pipeline.yaml",
        &format!(
            r#"
host: edge-fleet-test
sources:
  app:
    type: file
    include: ["{}/*.log"]
    poll_interval: 50ms
sinks:
  central:
    type: collector
    inputs: [app]
    url: {}
    topic: fleet-logs
    heartbeat_interval: 1s
    batch: {{ max_events: 100, timeout: 50ms }}
"#,
            logs.display(),
            collector.url()
        ),
    );
    let mut agent = Agent::start(&cfg, &dir.path().join("agent"));
    append_lines(&logs.join("app.log"), (0..200).map(line));

    // The agent's heartbeat arrives; its id is the pipeline's host plus a
    // hash of its (non-default) data directory.
    let id = wait_for(Duration::from_secs(20), || {
        let f = fleet(&collector)?;
        let a = f["agents"].as_array()?.first()?.clone();
        (a["status"] == "healthy" && a["sinks"][0]["id"] == "central")
            .then(|| a["agent"].as_str().map(str::to_owned))
            .flatten()
    })
    .unwrap_or_else(|| {
        panic!(
            "no healthy agent in /v1/fleet: {:?}\n{}",
            fleet(&collector),
            agent.proc.log_text()
        )
    });
    assert!(id.starts_with("edge-fleet-test-"), "{id}");

    let profile = dir.path().join("chromium");
    let page = format!("{}/fleet", collector.url());
    let dom = dump_dom(&page, &profile);
    let row =
        agent_row(&dom, &id).unwrap_or_else(|| panic!("the page lists no agent {id}:\n{dom}"));
    assert!(row.contains("data-status=\"healthy\""), "{row}");
    assert!(
        row.contains("central (collector)"),
        "the row names its sink: {row}"
    );
    assert!(
        dom.contains("data-topic=\"fleet-logs\""),
        "the page lists the topic: {dom}"
    );
    if let Ok(file) = std::env::var("WEIR_FLEET_SCREENSHOT") {
        screenshot(&page, &profile, Path::new(&file));
    } else {
        let png = dir.path().join("fleet.png");
        screenshot(&page, &profile, &png);
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "not a PNG screenshot");
    }

    // Killed: no more heartbeats. Silent after three intervals (3 s).
    agent.proc.kill9();
    let silent = wait_for(Duration::from_secs(15), || {
        let f = fleet(&collector)?;
        (f["agents"][0]["status"] == "silent").then_some(())
    });
    assert!(silent.is_some(), "not silent: {:?}", fleet(&collector));
    let dom = dump_dom(&page, &profile);
    let row = agent_row(&dom, &id).unwrap_or_else(|| panic!("the page lost agent {id}:\n{dom}"));
    assert!(row.contains("data-status=\"silent\""), "{row}");
    assert!(row.contains("no heartbeat for"), "the row says why: {row}");
}
