//! The heartbeat and fleet endpoints in process: rights, bounds, the JSON
//! and the page's headers.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;
use weir_core::fleet::{Heartbeat, SinkBeat, MAX_HEARTBEAT_BYTES};

use super::tests::{app, call, principals};
use crate::service::tests::fixture;
use crate::service::ServiceLimits;

fn beat(agent: &str) -> Heartbeat {
    Heartbeat {
        agent: agent.into(),
        host: "edge".into(),
        version: "1.2.3".into(),
        started_unix_ms: 1,
        uptime_secs: 5.0,
        interval_ms: 10_000,
        sinks: vec![SinkBeat {
            id: "central".into(),
            sink_type: "collector".into(),
            backlog_events: 3,
            backlog_bytes: 300,
            capacity_bytes: 1 << 20,
            lag_seconds: 0.2,
            acked_per_sec: 10.0,
            failing: false,
        }],
    }
}

fn json(b: &Heartbeat) -> Vec<u8> {
    serde_json::to_vec(b).unwrap()
}

const HB: &str = "/v1/agents/heartbeat";

#[tokio::test]
async fn a_heartbeat_from_a_producer_shows_the_agent_healthy_to_a_reader() {
    let f = fixture(ServiceLimits::default());
    let app = app(&f, &principals(), 1 << 20);
    let (s, _) = call(&app, "POST", HB, Some("gw-token"), json(&beat("edge-1"))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = call(&app, "GET", "/v1/fleet", Some("reader-token"), vec![]).await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let a = &v["agents"][0];
    assert_eq!(a["agent"], "edge-1");
    assert_eq!(a["status"], "healthy");
    assert_eq!(a["principal"], "gw");
    assert_eq!(a["version"], "1.2.3");
    assert_eq!(a["sinks"][0]["id"], "central");
    assert_eq!(a["backlog_events"], 3);
    assert!(v["topics"].is_array() && v["groups"].is_array());
}

#[tokio::test]
async fn heartbeats_need_produce_rights_and_the_fleet_needs_consume_rights() {
    let f = fixture(ServiceLimits::default());
    let app = app(&f, &principals(), 1 << 20);
    let (s, _) = call(&app, "POST", HB, None, json(&beat("a"))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The reader may consume but not produce anywhere.
    let (s, _) = call(&app, "POST", HB, Some("reader-token"), json(&beat("a"))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The gateway may produce but not consume: it does not see the fleet.
    let (s, _) = call(&app, "GET", "/v1/fleet", Some("gw-token"), vec![]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(&app, "GET", "/v1/fleet", None, vec![]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn oversized_malformed_and_forged_heartbeats_are_refused_and_not_remembered() {
    let f = fixture(ServiceLimits::default());
    let app = app(&f, &principals(), 1 << 20);
    let mut big = beat("big");
    big.version = "v".repeat(MAX_HEARTBEAT_BYTES);
    let (s, _) = call(&app, "POST", HB, Some("gw-token"), json(&big)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, _) = call(&app, "POST", HB, Some("gw-token"), b"{not json".to_vec()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let mut many = beat("many");
    many.sinks = vec![many.sinks[0].clone(); 65];
    let (s, _) = call(&app, "POST", HB, Some("gw-token"), json(&many)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let mut forged = beat("forged");
    forged.interval_ms = u64::MAX;
    let (s, _) = call(&app, "POST", HB, Some("gw-token"), json(&forged)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, b) = call(&app, "GET", "/v1/fleet", Some("reader-token"), vec![]).await;
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["agents"], serde_json::json!([]));
}

#[tokio::test]
async fn the_fleet_remembers_at_most_max_agents() {
    let f = fixture(ServiceLimits {
        max_agents: 3,
        ..Default::default()
    });
    let app = app(&f, &[], 1 << 20);
    for i in 0..10 {
        let (s, _) = call(&app, "POST", HB, None, json(&beat(&format!("a{i}")))).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    let (_, b) = call(&app, "GET", "/v1/fleet", None, vec![]).await;
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let ids: Vec<&str> = v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["agent"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a7", "a8", "a9"]);
}

#[tokio::test]
async fn the_page_is_served_without_credentials_under_a_strict_policy() {
    let f = fixture(ServiceLimits::default());
    let app = app(&f, &principals(), 1 << 20);
    let resp = app
        .oneshot(Request::get("/fleet").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
}
