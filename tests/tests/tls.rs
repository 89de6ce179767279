//! TLS end to end with a CA made by the test: agents ship over https with a
//! bearer token and with a client certificate; a consumer reads with its own
//! token; an agent that trusts another CA is refused with a clear error.

use std::path::Path;
use std::time::Duration;

use weir_tests::*;

struct Pki {
    server_ca: std::path::PathBuf,
    agents: TestCa,
    collector_yaml: String,
}

fn pki(dir: &Path) -> Pki {
    let servers = TestCa::new(dir, "servers");
    let (cert, key) = servers.issue("collector", &["collector.test", "127.0.0.1"]);
    let agents = TestCa::new(dir, "agents");
    let collector_yaml = format!(
        "tls:\n  cert: {}\n  key: {}\n  client_ca: {}\nprincipals:\n  - name: gw-token\n    token_sha256: {}\n    produce: [tok]\n    create: [tok]\n  - name: gw-cert\n    cert_name: gw-cert.agents\n    produce: [cert]\n    create: [cert]\n  - name: reader\n    token_sha256: {}\n    consume: [\"*\"]\n",
        cert.display(),
        key.display(),
        agents.ca_file("agents").display(),
        token_sha256("token-gw"),
        token_sha256("token-reader"),
    );
    Pki {
        server_ca: servers.ca_file("servers"),
        agents,
        collector_yaml,
    }
}

#[test]
fn agents_ship_over_https_with_a_token_and_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let p = pki(dir.path());
    let (ccert, ckey) = p.agents.issue("gw-cert", &["gw-cert.agents"]);
    let c = Collector::start_with(&dir.path().join("c"), &p.collector_yaml, &[]);
    let url = format!("https://{}", c.addr);
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            r#"sources:
  app: {{ type: file, include: ["{logs}/*.log"], poll_interval: 50ms }}
sinks:
  by_token:
    type: collector
    inputs: [app]
    url: {url}
    topic: tok
    token: token-gw
    tls: {{ ca_file: {ca} }}
  by_cert:
    type: collector
    inputs: [app]
    url: {url}
    topic: cert
    tls: {{ ca_file: {ca}, cert_file: {ccert}, key_file: {ckey}, server_name: collector.test }}
"#,
            logs = logs.display(),
            ca = p.server_ca.display(),
            ccert = ccert.display(),
            ckey = ckey.display(),
        ),
    );
    let n = 2000;
    append_lines(&logs.join("a.log"), (0..n).map(line));
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    for sink in ["by_token", "by_cert"] {
        let done = agent.wait_metric(
            "weir_sink_acked_events_total",
            sink,
            Duration::from_secs(30),
            |v| v as usize == n,
        );
        assert!(
            done.is_some(),
            "{sink} did not deliver: {}",
            agent.proc.log_text()
        );
    }
    let ca = p.server_ca.display().to_string();
    for topic in ["tok", "cert"] {
        let got = consume(
            &c.url().replace("http://", "https://"),
            topic,
            &[
                "--from",
                "earliest",
                "--ca-file",
                &ca,
                "--token",
                "token-reader",
            ],
        );
        assert_exactly_once_in_order(&messages(&got), n);
    }
    // Without a token the reader gets nothing; the agent's token may not read.
    assert!(consume(&url, "tok", &["--from", "earliest", "--ca-file", &ca]).is_empty());
    assert!(consume(
        &url,
        "tok",
        &[
            "--from",
            "earliest",
            "--ca-file",
            &ca,
            "--token",
            "token-gw"
        ]
    )
    .is_empty());
}

#[test]
fn an_agent_that_trusts_another_ca_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let p = pki(dir.path());
    let other = TestCa::new(dir.path(), "other");
    let c = Collector::start_with(&dir.path().join("c"), &p.collector_yaml, &[]);
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "sources:\n  app: {{ type: file, include: [\"{}/*.log\"], poll_interval: 50ms }}\nsinks:\n  s: {{ type: collector, inputs: [app], url: \"https://{}\", topic: tok, token: token-gw, tls: {{ ca_file: {} }}, max_backoff: 200ms }}\n",
            logs.display(),
            c.addr,
            other.ca_file("other").display()
        ),
    );
    append_lines(&logs.join("a.log"), (0..10).map(line));
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    let said = wait_for(Duration::from_secs(15), || {
        let log = agent.proc.log_text();
        log.contains("UnknownIssuer").then_some(log)
    });
    assert!(
        said.is_some(),
        "the agent log names the cause: {}",
        agent.proc.log_text()
    );
    assert_eq!(agent.metric("weir_sink_acked_events_total", "s"), Some(0.0));
}
