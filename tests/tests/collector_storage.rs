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
