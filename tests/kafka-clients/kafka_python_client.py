"""kafka-python (pure Python) against the collector's Kafka listener."""

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from common import Clock, emit, key, parser, value


def produce(a):
    p = KafkaProducer(
        bootstrap_servers=a.bootstrap,
        compression_type=None if a.codec == "none" else a.codec,
        acks="all",
        linger_ms=5,
        enable_idempotence=a.idempotent == "true",
    )
    futures = [p.send(a.topic, value=value(a.prefix, i), key=key(i)) for i in range(a.n)]
    p.flush(30)
    for f in futures:
        f.get(timeout=30)
    p.close(10)
    emit(ev="produced", n=a.n)


def consumer(a, **extra):
    return KafkaConsumer(
        bootstrap_servers=a.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        **extra,
    )


class Listener(ConsumerRebalanceListener):
    def on_partitions_revoked(self, revoked):
        pass

    def on_partitions_assigned(self, assigned):
        emit(ev="assign", partitions=sorted(tp.partition for tp in assigned))


def member(a):
    c = consumer(a, group_id=a.group)
    c.subscribe([a.topic], listener=Listener())
    clock, last, n = Clock(a.limit), time.monotonic(), 0
    while not clock.over() and time.monotonic() - last < a.idle_exit:
        batch = c.poll(timeout_ms=200, max_records=1)
        for tp, msgs in batch.items():
            for m in msgs:
                last = time.monotonic()
                emit(ev="rec", p=m.partition, o=m.offset, k=(m.key or b"").decode(), v=m.value.decode())
                time.sleep(a.delay)
                emit(ev="commit_intent", p=m.partition, o=m.offset + 1)
                try:
                    c.commit({tp: OffsetAndMetadata(m.offset + 1, "", -1)})
                    emit(ev="commit", p=m.partition, o=m.offset + 1)
                except KafkaError as e:
                    emit(ev="commit_failed", p=m.partition, error=str(e))
                n += 1
    c.close()
    emit(ev="done", n=n)


def seek(a):
    c = consumer(a)
    parts = [TopicPartition(a.topic, p) for p in sorted(c.partitions_for_topic(a.topic) or [])]
    c.assign(parts)
    found = c.offsets_for_times({tp: a.ts for tp in parts})
    for tp in parts:
        f = found.get(tp)
        if f is None:
            c.seek_to_end(tp)
        else:
            c.seek(tp, f.offset)
    clock, idle = Clock(a.limit), time.monotonic()
    while not clock.over() and time.monotonic() - idle < 3:
        for _tp, msgs in c.poll(timeout_ms=200).items():
            for m in msgs:
                idle = time.monotonic()
                emit(ev="rec", p=m.partition, o=m.offset, k=(m.key or b"").decode(), v=m.value.decode())
    c.close()
    emit(ev="done")


def consume(a):
    c = consumer(a)
    parts = [TopicPartition(a.topic, p) for p in sorted(c.partitions_for_topic(a.topic) or [])]
    c.assign(parts)
    c.seek_to_beginning(*parts)
    clock, n = Clock(a.limit), 0
    while n < a.n and not clock.over():
        for _tp, msgs in c.poll(timeout_ms=200).items():
            for m in msgs:
                n += 1
                emit(ev="rec", p=m.partition, o=m.offset, k=(m.key or b"").decode(), v=m.value.decode())
    c.close()
    emit(ev="done", n=n)


if __name__ == "__main__":
    args = parser(__doc__).parse_args()
    {"produce": produce, "member": member, "seek": seek, "consume": consume}[args.cmd](args)
