// kafkajs against the collector's Kafka listener. Same commands and event
// lines as the Python scripts (common.py). kafkajs has gzip built in; the
// other codecs need plugins outside its package, so only none and gzip here.
'use strict';

const { Kafka, CompressionTypes, logLevel } = require('kafkajs');

function emit(fields) {
  process.stdout.write(JSON.stringify(fields) + '\n');
}

function args() {
  const a = { cmd: process.argv[2] };
  for (let i = 3; i < process.argv.length; i += 2) {
    a[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
  }
  return a;
}

function client(a) {
  return new Kafka({ clientId: 'weir-test', brokers: [a.bootstrap], logLevel: logLevel.NOTHING });
}

const value = (prefix, i) => JSON.stringify({ message: `${prefix}${i}`, i });

async function produce(a) {
  const p = client(a).producer({ idempotent: a.idempotent === 'true', maxInFlightRequests: 1 });
  await p.connect();
  const n = Number(a.n);
  const codec = a.codec === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None;
  for (let start = 0; start < n; start += 100) {
    const messages = [];
    for (let i = start; i < Math.min(n, start + 100); i++) {
      messages.push({ key: `k${i}`, value: value(a.prefix || 'v', i) });
    }
    await p.send({ topic: a.topic, acks: -1, compression: codec, messages });
  }
  await p.disconnect();
  emit({ ev: 'produced', n });
}

async function member(a) {
  const c = client(a).consumer({ groupId: a.group, sessionTimeout: 6000, heartbeatInterval: 500 });
  await c.connect();
  c.on(c.events.GROUP_JOIN, (e) => {
    const parts = (e.payload.memberAssignment[a.topic] || []).slice().sort((x, y) => x - y);
    emit({ ev: 'assign', partitions: parts });
  });
  await c.subscribe({ topic: a.topic, fromBeginning: true });
  let last = Date.now();
  let n = 0;
  const idle = Number(a['idle-exit'] || 8) * 1000;
  const delay = Number(a.delay || 0.002) * 1000;
  const limit = Date.now() + Number(a.limit || 90) * 1000;
  await c.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      last = Date.now();
      const o = Number(message.offset);
      emit({ ev: 'rec', p: partition, o, k: message.key ? message.key.toString() : '', v: message.value.toString() });
      await new Promise((r) => setTimeout(r, delay));
      emit({ ev: 'commit_intent', p: partition, o: o + 1 });
      try {
        await c.commitOffsets([{ topic: a.topic, partition, offset: String(o + 1) }]);
        emit({ ev: 'commit', p: partition, o: o + 1 });
      } catch (e) {
        emit({ ev: 'commit_failed', p: partition, error: String(e) });
      }
      n++;
    },
  });
  while (Date.now() - last < idle && Date.now() < limit) {
    await new Promise((r) => setTimeout(r, 200));
  }
  await c.disconnect();
  emit({ ev: 'done', n });
}

async function seek(a) {
  const k = client(a);
  const admin = k.admin();
  await admin.connect();
  const found = await admin.fetchTopicOffsetsByTimestamp(a.topic, Number(a.ts));
  await admin.disconnect();
  const c = k.consumer({ groupId: `seek-${Date.now()}` });
  await c.connect();
  await c.subscribe({ topic: a.topic });
  let last = Date.now();
  const limit = Date.now() + Number(a.limit || 30) * 1000;
  await c.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      last = Date.now();
      emit({ ev: 'rec', p: partition, o: Number(message.offset), k: message.key ? message.key.toString() : '', v: message.value.toString() });
    },
  });
  for (const f of found) c.seek({ topic: a.topic, partition: f.partition, offset: f.offset });
  while (Date.now() - last < 3000 && Date.now() < limit) {
    await new Promise((r) => setTimeout(r, 200));
  }
  await c.disconnect();
  emit({ ev: 'done' });
}

const a = args();
const cmds = { produce, member, seek };
cmds[a.cmd](a).then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
    process.exit(1);
  },
);
