"""The measurements of scripts/bench-kafka (see there). Prints medians."""

import json
import os
import statistics
import subprocess
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

BOOT, HTTP, N = os.environ["BOOT"], os.environ["HTTP"], int(os.environ["RECORDS"])
RUNS = int(sys.argv[1])
PAYLOAD = b"x" * 1024


def kafka_produce(topic, codec):
    p = Producer({"bootstrap.servers": BOOT, "acks": "all", "enable.idempotence": True,
                  "compression.codec": codec, "linger.ms": 5, "batch.size": 1 << 20})
    t = time.monotonic()
    for i in range(N):
        while True:
            try:
                p.produce(topic, PAYLOAD, str(i % 64).encode())
                break
            except BufferError:
                p.poll(0.01)
    assert p.flush(120) == 0
    return N / (time.monotonic() - t)


def kafka_consume(topic):
    c = Consumer({"bootstrap.servers": BOOT, "group.id": "bench-%f" % time.time(),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    t, n = time.monotonic(), 0
    while n < N:
        for m in c.consume(10000, 1.0):
            if not m.error():
                n += 1
    rate = N / (time.monotonic() - t)
    c.close()
    return rate


def http_consume(topic):
    t = time.monotonic()
    out = subprocess.run(["target/release/weir-collector", "consume", "--url", "http://" + HTTP,
                          "--topic", topic, "--max-records", str(N)],
                         stdout=subprocess.PIPE, check=True).stdout
    assert out.count(b"\n") == N
    return N / (time.monotonic() - t)


def rebalance():
    topic = "bench-groups-%d" % time.time_ns()
    p = Producer({"bootstrap.servers": BOOT})
    p.produce(topic, b"x")
    p.flush(10)
    members, assigned = [], {}
    for i in range(3):
        c = Consumer({"bootstrap.servers": BOOT, "group.id": topic, "session.timeout.ms": 6000})
        c.subscribe([topic], on_assign=lambda cc, parts, i=i: assigned.__setitem__(i, time.monotonic()))
        members.append(c)
    t = time.monotonic()
    while len(assigned) < 3 and time.monotonic() - t < 30:
        for c in members:
            c.poll(0.05)
    took = max(assigned.values()) - t if len(assigned) == 3 else float("nan")
    for c in members:
        c.close()
    return took


results = {}
for run in range(RUNS):
    for codec in ("lz4", "zstd"):
        topic = "bench-%s-%d" % (codec, run)
        results.setdefault("kafka produce " + codec, []).append(kafka_produce(topic, codec))
        results.setdefault("kafka consume " + codec, []).append(kafka_consume(topic))
        results.setdefault("http consume " + codec, []).append(http_consume(topic))
    results.setdefault("rebalance 3 members (s)", []).append(rebalance())
print(json.dumps({"records": N, "runs": RUNS}))
for name, vals in results.items():
    med = statistics.median(vals)
    print("%-28s median %12.1f   runs %s" % (name, med, ["%.1f" % v for v in vals]))
for codec in ("lz4", "zstd"):
    k, h = statistics.median(results["kafka consume " + codec]), statistics.median(results["http consume " + codec])
    print("consume %s: Kafka / HTTP = %.2f" % (codec, k / h))
