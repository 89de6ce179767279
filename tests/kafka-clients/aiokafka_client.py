"""aiokafka (asyncio) against the collector's Kafka listener."""

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from common import Clock, emit, key, parser, value


async def produce(a):
    p = AIOKafkaProducer(
        bootstrap_servers=a.bootstrap,
        compression_type=None if a.codec == "none" else a.codec,
        acks="all",
        linger_ms=5,
        enable_idempotence=a.idempotent == "true",
    )
    await p.start()
    try:
        futures = [await p.send(a.topic, value=value(a.prefix, i), key=key(i)) for i in range(a.n)]
        await asyncio.wait_for(asyncio.gather(*futures), 30)
    finally:
        await p.stop()
    emit(ev="produced", n=a.n)


def consumer(a, **extra):
    return AIOKafkaConsumer(
        bootstrap_servers=a.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        **extra,
    )


class Listener(ConsumerRebalanceListener):
    async def on_partitions_revoked(self, revoked):
        pass

    async def on_partitions_assigned(self, assigned):
        emit(ev="assign", partitions=sorted(tp.partition for tp in assigned))


async def member(a):
    c = consumer(a, group_id=a.group)
    c.subscribe([a.topic], listener=Listener())
    await c.start()
    clock, last, n = Clock(a.limit), time.monotonic(), 0
    try:
        while not clock.over() and time.monotonic() - last < a.idle_exit:
            batch = await c.getmany(timeout_ms=200, max_records=1)
            for tp, msgs in batch.items():
                for m in msgs:
                    last = time.monotonic()
                    emit(ev="rec", p=m.partition, o=m.offset, k=(m.key or b"").decode(), v=m.value.decode())
                    await asyncio.sleep(a.delay)
                    emit(ev="commit_intent", p=m.partition, o=m.offset + 1)
                    try:
                        await c.commit({tp: OffsetAndMetadata(m.offset + 1, "")})
                        emit(ev="commit", p=m.partition, o=m.offset + 1)
                    except KafkaError as e:
                        emit(ev="commit_failed", p=m.partition, error=str(e))
                    n += 1
    finally:
        await c.stop()
    emit(ev="done", n=n)


async def partitions(c, topic):
    # The consumer's own metadata only covers subscribed topics; ask the cluster.
    cluster = await c._client.fetch_all_metadata()
    return [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or [])]


async def seek(a):
    c = consumer(a)
    await c.start()
    try:
        parts = await partitions(c, a.topic)
        c.assign(parts)
        found = await c.offsets_for_times({tp: a.ts for tp in parts})
        for tp in parts:
            f = found.get(tp)
            if f is None:
                await c.seek_to_end(tp)
            else:
                c.seek(tp, f.offset)
        clock, idle = Clock(a.limit), time.monotonic()
        while not clock.over() and time.monotonic() - idle < 3:
            for _tp, msgs in (await c.getmany(timeout_ms=200)).items():
                for m in msgs:
                    idle = time.monotonic()
                    emit(ev="rec", p=m.partition, o=m.offset, k=(m.key or b"").decode(), v=m.value.decode())
    finally:
        await c.stop()
    emit(ev="done")


async def consume(a):
    c = consumer(a)
    await c.start()
    n = 0
    try:
        parts = await partitions(c, a.topic)
        c.assign(parts)
        await c.seek_to_beginning(*parts)
        clock = Clock(a.limit)
        while n < a.n and not clock.over():
            for _tp, msgs in (await c.getmany(timeout_ms=200)).items():
                for m in msgs:
                    n += 1
                    emit(ev="rec", p=m.partition, o=m.offset, k=(m.key or b"").decode(), v=m.value.decode())
    finally:
        await c.stop()
    emit(ev="done", n=n)


if __name__ == "__main__":
    args = parser(__doc__).parse_args()
    fn = {"produce": produce, "member": member, "seek": seek, "consume": consume}[args.cmd]
    asyncio.run(fn(args))
