//! The HTTP front-end in process (`Router` + `oneshot`) and over a socket
//! (`server::run` with short timeouts).

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use weir_core::protocol::{ApiError, ErrorKind, ProduceAck, ProducerIdentity};

use super::*;
use crate::auth::{hex, sha256, PrincipalConfig};
use crate::limits::GateLimits;
use crate::service::tests::{batch, fixture, Fixture};
use crate::service::ServiceLimits;

pub(super) fn principals() -> Vec<PrincipalConfig> {
    vec![
        PrincipalConfig {
            name: "gw".into(),
            token_sha256: Some(hex(&sha256(b"gw-token"))),
            produce: vec!["app".into()],
            create: vec!["app".into()],
            ..Default::default()
        },
        PrincipalConfig {
            name: "reader".into(),
            token_sha256: Some(hex(&sha256(b"reader-token"))),
            consume: vec!["*".into()],
            ..Default::default()
        },
    ]
}

pub(super) fn app(f: &Fixture, principals: &[PrincipalConfig], budget: usize) -> Router {
    router(Arc::new(AppState {
        service: f.service.clone(),
        auth: Arc::new(Authenticator::new(principals).unwrap()),
        gates: Arc::new(Gates::new(GateLimits {
            fetches: 4,
            produces: 4,
            others: 4,
            memory_budget: budget,
            wait: Duration::from_millis(100),
        })),
        metrics: Registry::new(),
        bodies: BodyLimits {
            max_bytes: 64 << 10,
            timeout: Duration::from_secs(5),
            min_rate: 1024,
            grace: Duration::from_secs(1),
        },
    }))
}

pub(super) async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    (
        status,
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

fn kind(body: &[u8]) -> ErrorKind {
    serde_json::from_slice::<ApiError>(body).unwrap().error
}

#[tokio::test]
async fn without_a_valid_token_requests_are_refused_and_health_stays_open() {
    let f = fixture(ServiceLimits::default());
    let app = app(&f, &principals(), 1 << 20);
    let (s, b) = call(
        &app,
        "POST",
        "/v1/produce/app/0",
        None,
        batch(-1, -1, -1, &["x"]),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(kind(&b), ErrorKind::Unauthenticated);
    let (s, _) = call(&app, "GET", "/v1/topics", Some("wrong"), vec![]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = call(
        &app,
        "POST",
        "/v1/produce/app/0",
        Some("reader-token"),
        batch(-1, -1, -1, &["x"]),
    )
    .await;
    assert_eq!(
        (s, kind(&b)),
        (StatusCode::FORBIDDEN, ErrorKind::Unauthorized)
    );
    let (s, b) = call(&app, "GET", "/health", None, vec![]).await;
    assert_eq!((s, b.as_slice()), (StatusCode::OK, &b"ok"[..]));
    assert!(
        f.service.store().topic("app").is_none(),
        "nothing was created"
    );
}

#[tokio::test]
async fn an_agent_inits_its_producer_produces_and_a_conflicting_resend_is_a_409() {
    let f = fixture(ServiceLimits::default());
    let app = app(&f, &principals(), 1 << 20);
    let (s, b) = call(&app, "POST", "/v1/producers", Some("gw-token"), vec![]).await;
    assert_eq!(s, StatusCode::OK);
    let id: ProducerIdentity = serde_json::from_slice(&b).unwrap();
    let first = batch(id.producer_id, 0, 0, &["a"]);
    let (s, b) = call(
        &app,
        "POST",
        "/v1/produce/app/0",
        Some("gw-token"),
        first.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let ack: ProduceAck = serde_json::from_slice(&b).unwrap();
    assert!(!ack.duplicate);
    let (s, b) = call(&app, "POST", "/v1/produce/app/0", Some("gw-token"), first).await;
    assert!(s.is_success() && serde_json::from_slice::<ProduceAck>(&b).unwrap().duplicate);
    let (s, b) = call(
        &app,
        "POST",
        "/v1/produce/app/0",
        Some("gw-token"),
        batch(id.producer_id, 0, 0, &["b"]),
    )
    .await;
    assert_eq!(
        (s, kind(&b)),
        (StatusCode::CONFLICT, ErrorKind::ConflictingBatch)
    );
    // The reader sees it as JSON, as curl would.
    let (s, b) = call(
        &app,
        "GET",
        "/v1/fetch/app/0?offset=0&format=json",
        Some("reader-token"),
        vec![],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert!(
        v["records"][0]["value"]
            .as_str()
            .unwrap()
            .contains("\"message\":\"a\""),
        "{v}"
    );
    assert_eq!(v["next_offset"], 1);
}

#[tokio::test]
async fn an_oversized_body_is_a_413_and_an_exhausted_budget_a_503_with_retry_after() {
    let f = fixture(ServiceLimits::default());
    let app = app(&f, &[], 8 << 10);
    let (s, b) = call(&app, "POST", "/v1/produce/t/0", None, vec![0u8; 100 << 10]).await;
    assert_eq!(
        (s, kind(&b)),
        (StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::LimitExceeded)
    );
    // A body of 12 KiB does not fit an 8 KiB budget: refused, not queued forever.
    let req = Request::post("/v1/produce/t/0")
        .body(Body::from(vec![0u8; 12 << 10]))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
}

#[tokio::test]
async fn bad_query_parameters_are_json_400s() {
    let f = fixture(ServiceLimits::default());
    let app = app(&f, &[], 1 << 20);
    let (s, b) = call(&app, "GET", "/v1/fetch/t/0?offset=abc", None, vec![]).await;
    assert_eq!(
        (s, kind(&b)),
        (StatusCode::BAD_REQUEST, ErrorKind::InvalidRequest)
    );
    let (s, b) = call(&app, "GET", "/v1/offsets/t/0?at=yesterday", None, vec![]).await;
    assert_eq!(
        (s, kind(&b)),
        (StatusCode::BAD_REQUEST, ErrorKind::InvalidRequest)
    );
}

/// Serves `app` on a loopback port with short timeouts; returns its address,
/// the shutdown trigger and the server task.
async fn socket_server(
    f: &Fixture,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let app = app(f, &[], 1 << 20);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (drain, _) = tokio::sync::watch::channel(false);
    let opts = server::ServerOptions {
        slots: std::sync::Arc::new(tokio::sync::Semaphore::new(16)),
        timeouts: conn::ConnTimeouts {
            header: Duration::from_millis(300),
            idle: Duration::from_millis(600),
            write: Duration::from_millis(300),
        },
        shutdown_timeout: Duration::from_millis(500),
        tls: None,
    };
    let task = tokio::spawn(server::run(
        listener,
        app,
        Arc::new(Authenticator::new(&[]).unwrap()),
        opts,
        drain,
        async {
            let _ = rx.await;
        },
    ));
    (addr, tx, task)
}

/// Seconds until the server closes `s` (reads until EOF or error), at most 5.
fn closed_after(mut s: std::net::TcpStream) -> f64 {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return start.elapsed().as_secs_f64(),
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_keep_alive_connections_are_closed_on_time() {
    let f = fixture(ServiceLimits::default());
    let (addr, stop, task) = socket_server(&f).await;
    let (slow, idle) = tokio::task::spawn_blocking(move || {
        let mut slow = std::net::TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .unwrap(); // never finished
        let slow = closed_after(slow);
        let mut idle = std::net::TcpStream::connect(addr).unwrap();
        idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let idle = closed_after(idle);
        (slow, idle)
    })
    .await
    .unwrap();
    assert!(
        (0.2..2.0).contains(&slow),
        "headers never finished: closed after {slow}s (header timeout 0.3s)"
    );
    assert!(
        (0.5..2.0).contains(&idle),
        "idle keep-alive closed after {idle}s (idle timeout 0.6s)"
    );
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_within_its_timeout_with_a_stalled_body_connected() {
    let f = fixture(ServiceLimits::default());
    let (addr, stop, task) = socket_server(&f).await;
    let mut s = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(
            b"POST /v1/produce/t/0 HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\nabc",
        )
        .unwrap();
        s
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    let _ = s.write_all(b"more");
}

/// Sends one produce of `body` on `s` and reads its answer's status line.
fn produce_on(s: &mut std::net::TcpStream, body: &[u8]) -> String {
    let head = format!(
        "POST /v1/produce/t/0 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // The answer is small; read until its JSON body has closed.
    while !answer.ends_with(b"}") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stalled_mid_body_or_not_reading_its_answers_holds_up_no_other_producer() {
    let f = fixture(ServiceLimits::default());
    let (addr, stop, task) = socket_server(&f).await;
    // Batches of ~46 KB (the test server takes bodies up to 64 KiB).
    let lines: Vec<String> = (0..200).map(|i| format!("{i:0>200}")).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let big = batch(-1, -1, -1, &lines);
    let small = batch(-1, -1, -1, &["x"]);
    let took = tokio::task::spawn_blocking(move || {
        let mut setup = std::net::TcpStream::connect(addr).unwrap();
        for _ in 0..20 {
            let status = produce_on(&mut setup, &big);
            assert!(status.contains("200"), "{status}");
        }
        // One client stops halfway through a batch for the same partition.
        let mut stalled = std::net::TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST /v1/produce/t/0 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            big.len()
        );
        stalled.write_all(head.as_bytes()).unwrap();
        stalled.write_all(&big[..big.len() / 2]).unwrap();
        // Another asks for the partition again and again and reads nothing
        // (more answers than the socket buffers hold).
        let mut deaf = std::net::TcpStream::connect(addr).unwrap();
        let fetch = b"GET /v1/fetch/t/0?offset=0&max_bytes=65536 HTTP/1.1\r\nHost: x\r\n\r\n";
        for _ in 0..100 {
            deaf.write_all(fetch).unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
        // A producer is acknowledged as usual, batch after batch.
        let start = Instant::now();
        let mut p = std::net::TcpStream::connect(addr).unwrap();
        p.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for _ in 0..20 {
            let status = produce_on(&mut p, &small);
            assert!(status.contains("200"), "{status}");
        }
        let took = start.elapsed();
        drop((stalled, deaf));
        took
    })
    .await
    .unwrap();
    assert!(
        took < Duration::from_secs(2),
        "20 acknowledgements took {took:?}"
    );
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .unwrap()
        .unwrap();
}
