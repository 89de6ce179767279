//! Consumer groups of real Kafka clients on the collector: three members
//! share six partitions, one is killed with SIGKILL mid-stream, the group
//! rebalances after its session times out, every record is consumed, and
//! the partitions it held resume exactly after its last commit.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use weir_tests::kafka::*;
use weir_tests::*;

const RECORDS: usize = 1500;
const PARTITIONS: u32 = 6;

fn group_of_three_survives_a_killed_member(lib: Lib) {
    let dir = tempfile::tempdir().unwrap();
    let k = KafkaCollector::start(&dir.path().join("c"), "  group_initial_delay: 300ms\n");
    let topic = "shared";
    k.create_topic(topic, PARTITIONS);
    let n = RECORDS.to_string();
    Lib::Confluent.run(
        &k.bootstrap(),
        "produce",
        &["--topic", topic, "--n", &n],
        Duration::from_secs(60),
    );

    let outs: Vec<_> = (0..3)
        .map(|i| dir.path().join(format!("member{i}.jsonl")))
        .collect();
    let args = [
        "--topic",
        topic,
        "--group",
        "g3",
        "--delay",
        "0.004",
        "--idle-exit",
        "10",
    ];
    let mut members: Vec<_> = outs
        .iter()
        .map(|o| lib.spawn(&k.bootstrap(), "member", &args, o))
        .collect();
    // Kill member 0 once it has done some work, mid-stream.
    let started = wait_for(Duration::from_secs(60), || {
        (events(&outs[0])
            .iter()
            .filter(|e| e["ev"] == "commit")
            .count()
            >= 40)
            .then_some(())
    });
    assert!(
        started.is_some(),
        "member 0 never consumed: {:?}",
        std::fs::read_to_string(outs[0].with_extension("err"))
    );
    let _ = members[0].kill();
    let _ = members[0].wait();
    for m in members.iter_mut().skip(1) {
        let exited = wait_for(Duration::from_secs(90), || m.try_wait().ok().flatten());
        assert!(exited.is_some(), "a surviving member did not finish");
    }
    let logs: Vec<Vec<Value>> = outs.iter().map(|o| events(o)).collect();
    check(&logs, &k, topic);
}

/// The assertions, from each member's event log.
fn check(logs: &[Vec<Value>], k: &KafkaCollector, topic: &str) {
    let num = |e: &Value, f: &str| e[f].as_i64().unwrap();
    // Every record consumed: each partition's offsets cover 0..end.
    let mut seen: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    for e in logs.iter().flatten().filter(|e| e["ev"] == "rec") {
        seen.entry(num(e, "p")).or_default().insert(num(e, "o"));
    }
    let total: usize = seen.values().map(BTreeSet::len).sum();
    assert_eq!(total, RECORDS, "every record consumed at least once");
    for offsets in seen.values() {
        let max = offsets.iter().max().copied().unwrap_or(-1);
        assert_eq!(offsets.len() as i64, max + 1, "no gap in a partition");
    }
    // The killed member's last commit per partition: completed, and intended.
    let mut done: BTreeMap<i64, i64> = BTreeMap::new();
    let mut intended: BTreeMap<i64, i64> = BTreeMap::new();
    for e in &logs[0] {
        match e["ev"].as_str() {
            Some("commit") => {
                done.insert(num(e, "p"), num(e, "o"));
            }
            Some("commit_intent") => {
                intended.insert(num(e, "p"), num(e, "o"));
            }
            _ => {}
        }
    }
    let victim: BTreeSet<(i64, i64)> = logs[0]
        .iter()
        .filter(|e| e["ev"] == "rec")
        .map(|e| (num(e, "p"), num(e, "o")))
        .collect();
    // The survivors rebalanced and took over: each partition the victim
    // committed in was read on by a survivor from exactly the victim's last
    // commit (the completed one, or the one it was making when killed).
    let mut rebalanced = false;
    for (p, last_done) in &done {
        let last_intent = intended.get(p).copied().unwrap_or(*last_done);
        let victim_max = victim
            .iter()
            .filter(|(vp, _)| vp == p)
            .map(|(_, o)| *o)
            .max()
            .unwrap_or(-1);
        let survivor_offsets: BTreeSet<i64> = logs[1..]
            .iter()
            .flatten()
            .filter(|e| e["ev"] == "rec" && num(e, "p") == *p)
            .map(|e| num(e, "o"))
            .filter(|o| *o >= *last_done - 1)
            .collect();
        let Some(first) = survivor_offsets
            .iter()
            .find(|o| **o >= *last_done.min(&last_intent))
            .copied()
        else {
            // The victim read this partition to its end before dying.
            assert_eq!(
                *last_done - 1,
                seen[p].iter().max().copied().unwrap(),
                "partition {p} finished by the victim"
            );
            continue;
        };
        if first <= victim_max + 1 {
            rebalanced = true;
            assert!(
                first == *last_done || first == last_intent,
                "partition {p}: resumed at {first}, the victim's last commit was {last_done} (intended {last_intent})"
            );
        }
        // Records read twice are only those the victim read after its last commit.
        for o in survivor_offsets
            .iter()
            .filter(|o| victim.contains(&(*p, **o)))
        {
            assert!(
                *o >= *last_done.min(&last_intent),
                "partition {p}: offset {o} was committed yet read again"
            );
        }
    }
    assert!(
        rebalanced,
        "the victim's partitions were taken over by the survivors"
    );
    let assigns = logs[1..]
        .iter()
        .flatten()
        .filter(|e| e["ev"] == "assign")
        .count();
    assert!(assigns >= 2, "the survivors saw the group rebalance");
    // The committed offsets are the HTTP consumers' too: at the end of every partition.
    let body = http_get(k.collector.addr, &format!("/v1/groups/g3/{topic}")).unwrap();
    let committed: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(committed.len(), PARTITIONS as usize, "{body}");
    for c in committed {
        let p = c["partition"].as_i64().unwrap();
        let end = seen[&p].iter().max().copied().unwrap() + 1;
        assert_eq!(
            c["offset"].as_i64().unwrap(),
            end,
            "partition {p} committed at its end"
        );
    }
}

#[test]
fn confluent_kafka_group_of_three_survives_a_killed_member() {
    group_of_three_survives_a_killed_member(Lib::Confluent);
}

#[test]
fn kafka_python_group_of_three_survives_a_killed_member() {
    group_of_three_survives_a_killed_member(Lib::KafkaPython);
}

#[test]
fn aiokafka_group_of_three_survives_a_killed_member() {
    group_of_three_survives_a_killed_member(Lib::AioKafka);
}

#[test]
fn kafkajs_group_of_three_survives_a_killed_member() {
    group_of_three_survives_a_killed_member(Lib::KafkaJs);
}
