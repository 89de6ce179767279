"""confluent-kafka (librdkafka) against the collector's Kafka listener."""

import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from common import Clock, emit, key, parser, value


def produce(a):
    conf = {
        "bootstrap.servers": a.bootstrap,
        "compression.codec": a.codec,
        "acks": "all",
        "linger.ms": 5,
        "enable.idempotence": a.idempotent == "true",
    }
    p = Producer(conf)
    errors = []

    def done(err, _msg):
        if err is not None:
            errors.append(str(err))

    for i in range(a.n):
        while True:
            try:
                p.produce(a.topic, value(a.prefix, i), key(i), on_delivery=done)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(30)
    if left or errors:
        raise SystemExit("not delivered: %d left, errors %s" % (left, errors[:3]))
    emit(ev="produced", n=a.n)


def consumer(a, group, **extra):
    conf = {
        "bootstrap.servers": a.bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    }
    conf.update(extra)
    return Consumer(conf)


def member(a):
    def on_assign(c, parts):
        emit(ev="assign", partitions=sorted(p.partition for p in parts))

    c = consumer(a, a.group)
    c.subscribe([a.topic], on_assign=on_assign)
    clock, last, n = Clock(a.limit), time.monotonic(), 0
    while not clock.over() and time.monotonic() - last < a.idle_exit:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            continue
        last = time.monotonic()
        emit(ev="rec", p=m.partition(), o=m.offset(), k=(m.key() or b"").decode(), v=m.value().decode())
        time.sleep(a.delay)
        emit(ev="commit_intent", p=m.partition(), o=m.offset() + 1)
        try:
            c.commit(offsets=[TopicPartition(a.topic, m.partition(), m.offset() + 1)], asynchronous=False)
            emit(ev="commit", p=m.partition(), o=m.offset() + 1)
        except KafkaException as e:
            emit(ev="commit_failed", p=m.partition(), error=str(e))
        n += 1
    c.close()
    emit(ev="done", n=n)


def seek(a):
    c = consumer(a, "seek-unused")
    md = c.list_topics(a.topic, timeout=10)
    parts = [TopicPartition(a.topic, p, a.ts) for p in md.topics[a.topic].partitions]
    found = c.offsets_for_times(parts, timeout=10)
    c.assign(found)
    clock = Clock(a.limit)
    idle = time.monotonic()
    while not clock.over() and time.monotonic() - idle < 3:
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        idle = time.monotonic()
        emit(ev="rec", p=m.partition(), o=m.offset(), k=(m.key() or b"").decode(), v=m.value().decode())
    c.close()
    emit(ev="done")


def consume(a):
    c = consumer(a, "consume-unused")
    md = c.list_topics(a.topic, timeout=10)
    c.assign([TopicPartition(a.topic, p, 0) for p in md.topics[a.topic].partitions])
    clock, n = Clock(a.limit), 0
    while n < a.n and not clock.over():
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        n += 1
        headers = {k: (v or b"").decode() for k, v in (m.headers() or [])}
        emit(ev="rec", p=m.partition(), o=m.offset(), k=(m.key() or b"").decode(), v=m.value().decode(), h=headers)
    c.close()
    emit(ev="done", n=n)


if __name__ == "__main__":
    args = parser(__doc__).parse_args()
    {"produce": produce, "member": member, "seek": seek, "consume": consume}[args.cmd](args)
