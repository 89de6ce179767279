"""A quixstreams application on the collector's Kafka API: reads an
agent-fed topic in a consumer group, counts records in 1-second tumbling
windows (by record time), and writes each window's running count to an
output topic. Stops once --n records were counted, or after --limit seconds."""

import argparse
import threading

from quixstreams import Application

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--bootstrap", required=True)
p.add_argument("--input", required=True)
p.add_argument("--output", required=True)
p.add_argument("--n", type=int, required=True)
p.add_argument("--limit", type=float, default=60.0)
p.add_argument("--state-dir", required=True)
a = p.parse_args()

app = Application(
    broker_address=a.bootstrap,
    consumer_group="quix-window",
    auto_offset_reset="earliest",
    use_changelog_topics=False,
    state_dir=a.state_dir,
)
source = app.topic(a.input, value_deserializer="json")
sink = app.topic(a.output, value_serializer="json")
seen = {"n": 0}


def counted(value):
    seen["n"] += 1  # one running count per input record
    if seen["n"] >= a.n:
        # Let this record's result be produced, then stop.
        threading.Timer(1.0, app.stop).start()
    return value


sdf = app.dataframe(source)
# Agents' records have no key and windows are per key: one key for all
# (a repartition through a topic of its own, also on the collector).
sdf = sdf.group_by(lambda v: "all", name="all")
sdf = sdf.tumbling_window(duration_ms=1000).count().current()
sdf = sdf.update(counted)
sdf = sdf.to_topic(sink)
threading.Timer(a.limit, app.stop).start()
app.run()
print('{"ev": "done", "n": %d}' % seen["n"], flush=True)
