"""The measurements of scripts/bench-kafka (see there). Prints medians."""

import json
import os
import statistics
import subprocess
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

BOOT, HTTP, N = os.environ["BOOT"], os.environ["HTTP"], int(os.environ["RECORDS"])
CPID = os.environ["CPID"]
EXAMPLES = "target/release/examples/"
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


def http_produce(topic, codec):
    """The HTTP path: produce_loop, 10 producers, batches of 256 ~1 KiB records."""
    out = subprocess.run([EXAMPLES + "produce_loop", HTTP, CPID, "--json", "--topic", topic,
                          "--producers", "10", "--batch", "256", "--record-bytes", "1024",
                          "--compression", codec, "--lines", str(N)],
                         stdout=subprocess.PIPE, check=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["records_per_s"]


def http_fetch(topic):
    """The binary HTTP fetch from offset 0 to the end (fetch_loop)."""
    out = subprocess.run([EXAMPLES + "fetch_loop", HTTP, CPID, "--json", "--topic", topic],
                         stdout=subprocess.PIPE, check=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    assert r["records"] == N, r
    return r["records_per_s"]


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
        results.setdefault("http fetch " + codec, []).append(http_fetch(topic))
        results.setdefault("http consume " + codec, []).append(http_consume(topic))
        results.setdefault("http produce " + codec, []).append(
            http_produce("bench-http-%s-%d" % (codec, run), codec))
    results.setdefault("rebalance 3 members (s)", []).append(rebalance())
print(json.dumps({"records": N, "runs": RUNS}))
for name, vals in results.items():
    med = statistics.median(vals)
    print("%-28s median %12.1f   runs %s" % (name, med, ["%.1f" % v for v in vals]))
def ratio(a, b):
    return statistics.median(results[a]) / statistics.median(results[b])


for codec in ("lz4", "zstd"):
    print("%s: produce Kafka / HTTP = %.2f; consume Kafka / HTTP fetch = %.2f, Kafka / HTTP consume = %.2f"
          % (codec, ratio("kafka produce " + codec, "http produce " + codec),
             ratio("kafka consume " + codec, "http fetch " + codec),
             ratio("kafka consume " + codec, "http consume " + codec)))
