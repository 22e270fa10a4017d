'use strict';
// Transactions with kafkajs 2.2.4 (AddPartitionsToTxn/AddOffsetsToTxn/EndTxn v0-v1, TxnOffsetCommit
// v0 without generation or member id): commit and abort, and a consume-transform-produce copier
// with transaction.sendOffsets whose read_committed consumers never see aborted data.
//
// Against another broker (e.g. Apache Kafka from tests/kafka-ref/kafka-ref start):
//   SLUICE_TEST_BOOTSTRAP=127.0.0.1:9092 node --test test/kafkajs-txn.test.js

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Kafka, logLevel } = require('kafkajs');
const { Broker, waitUntil, uniqueName } = require('../lib/broker');

let broker = null;
let bootstrap;
let kafka;
const cleanups = [];

before(async () => {
  if (process.env.SLUICE_TEST_BOOTSTRAP) {
    bootstrap = process.env.SLUICE_TEST_BOOTSTRAP;
  } else {
    broker = await new Broker().start();
    bootstrap = broker.bootstrap;
  }
  kafka = new Kafka({
    clientId: 'sluice-node-txn-tests',
    brokers: [bootstrap],
    logLevel: process.env.KAFKAJS_LOG ? logLevel.DEBUG : logLevel.NOTHING,
    retry: { retries: 8, initialRetryTime: 100 },
  });
});

after(async () => {
  for (const c of cleanups.reverse()) {
    await c().catch(() => {});
  }
  if (broker) {
    const code = await broker.stop();
    broker.cleanup();
    assert.equal(code, 0, 'sluice did not exit 0 on SIGTERM');
  }
});

function it(name, fn) {
  test(name, { timeout: 120000 }, async () => {
    try {
      await fn();
    } catch (e) {
      e.message = `${e.message}\n${broker ? broker.logTail() : ''}`;
      throw e;
    }
  });
}

async function createTopic(topic, numPartitions = 1) {
  const admin = kafka.admin();
  await admin.connect();
  try {
    assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions }], waitForLeaders: true }), true);
  } finally {
    await admin.disconnect();
  }
  return topic;
}

async function txnProducer(transactionalId) {
  const p = kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await p.connect();
  cleanups.push(() => p.disconnect());
  return p;
}

/** Reads `topic` from the beginning with a group consumer until `n` values arrived, then keeps
 *  reading `idleMs` more to catch extra ones. Returns [{partition, offset, value}]. */
async function readAll(topic, n, { readUncommitted = false, idleMs = 1500 } = {}) {
  const consumer = kafka.consumer({ groupId: uniqueName('reader'), readUncommitted, maxWaitTimeInMs: 100 });
  await consumer.connect();
  const got = [];
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        got.push({ partition, offset: Number(message.offset), value: message.value.toString() });
      },
    });
    await waitUntil(() => got.length >= n, 60000, `${n} messages from ${topic} (got ${got.length})`);
    await new Promise((r) => setTimeout(r, idleMs));
  } finally {
    await consumer.disconnect();
  }
  return got;
}

const byPartition = (msgs) => {
  const out = {};
  for (const m of [...msgs].sort((a, b) => a.partition - b.partition || a.offset - b.offset)) {
    (out[m.partition] ||= []).push(m.value);
  }
  return out;
};

it('transactional commit and abort across partitions: read_committed sees committed only', async () => {
  const topic = await createTopic(uniqueName('txn'), 2);
  const p = await txnProducer(uniqueName('tid'));
  const send = async (prefix, commit) => {
    const txn = await p.transaction();
    for (const partition of [0, 1]) {
      const messages = Array.from({ length: 5 }, (_, i) => ({ partition, key: 'k', value: `${prefix}-${partition}-${i}` }));
      await txn.send({ topic, messages, acks: -1 });
    }
    if (commit) await txn.commit();
    else await txn.abort();
  };
  await send('c1', true);
  await send('a', false);
  await send('c2', true);
  const vals = (prefix, partition) => Array.from({ length: 5 }, (_, i) => `${prefix}-${partition}-${i}`);

  const committed = byPartition(await readAll(topic, 20));
  assert.deepEqual(committed, { 0: [...vals('c1', 0), ...vals('c2', 0)], 1: [...vals('c1', 1), ...vals('c2', 1)] });
  const all = byPartition(await readAll(topic, 30, { readUncommitted: true }));
  assert.deepEqual(all, {
    0: [...vals('c1', 0), ...vals('a', 0), ...vals('c2', 0)],
    1: [...vals('c1', 1), ...vals('a', 1), ...vals('c2', 1)],
  });
  // Both isolation levels end at the log end: 15 records + 3 markers per partition.
  const admin = kafka.admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    assert.deepEqual(offsets.map((o) => [o.partition, o.high]).sort(), [[0, '18'], [1, '18']]);
  } finally {
    await admin.disconnect();
  }
});

it('transactional copier with sendOffsets: exactly once, aborted batches never visible', async () => {
  const src = await createTopic(uniqueName('in'), 2);
  const dst = await createTopic(uniqueName('out'), 2);
  const groupId = uniqueName('copier');
  const N = 600;
  const plain = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await plain.connect();
  for (const partition of [0, 1]) {
    const messages = [];
    for (let i = partition; i < N; i += 2) messages.push({ partition, key: String(i), value: String(i) });
    await plain.send({ topic: src, messages, acks: -1 });
  }
  await plain.disconnect();

  const producer = await txnProducer(uniqueName('copier-tid'));
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 100, maxBytesPerPartition: 4096 });
  await consumer.connect();
  cleanups.push(() => consumer.disconnect());
  await consumer.subscribe({ topic: src, fromBeginning: true });
  const aborted = new Set();
  let abortedRecords = 0;
  let txns = 0;
  const copied = { 0: 0, 1: 0 };
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, isRunning, isStale }) => {
      for (let i = 0; i < batch.messages.length; i += 50) {
        if (!isRunning() || isStale()) return;
        const slice = batch.messages.slice(i, i + 50);
        const last = slice[slice.length - 1].offset;
        const txn = await producer.transaction();
        txns += 1;
        const abort = txns % 3 === 0;
        await txn.send({
          topic: dst,
          acks: -1,
          messages: slice.map((m) => ({
            partition: batch.partition,
            key: m.key,
            value: abort ? `aborted-${m.value.toString()}` : m.value,
          })),
        });
        if (abort) {
          for (const m of slice) aborted.add(`aborted-${m.value.toString()}`);
          abortedRecords += slice.length;
          await txn.abort();
          return; // not resolved: the next fetch starts again at this slice
        }
        await txn.sendOffsets({
          consumerGroupId: groupId,
          topics: [{ topic: src, partitions: [{ partition: batch.partition, offset: String(Number(last) + 1) }] }],
        });
        await txn.commit();
        resolveOffset(last);
        copied[batch.partition] = Number(last) + 1;
      }
    },
  });
  await waitUntil(() => copied[0] === N / 2 && copied[1] === N / 2, 90000, `the copier to copy ${N} records (${JSON.stringify(copied)})`);
  await consumer.disconnect();
  assert.ok(aborted.size > 0, 'no transaction was aborted');

  // The group's offsets were committed by the transactions.
  const admin = kafka.admin();
  await admin.connect();
  try {
    const offs = await admin.fetchOffsets({ groupId, topics: [src] });
    assert.deepEqual(offs[0].partitions.map((p) => [p.partition, p.offset]).sort(), [[0, String(N / 2)], [1, String(N / 2)]]);
  } finally {
    await admin.disconnect();
  }

  const out = await readAll(dst, N);
  const values = out.map((m) => m.value);
  assert.equal(values.length, N, 'duplicates in read_committed output');
  assert.deepEqual([...values].sort((a, b) => a - b), Array.from({ length: N }, (_, i) => String(i)));
  const parts = byPartition(out);
  for (const partition of [0, 1]) {
    const want = [];
    for (let i = partition; i < N; i += 2) want.push(String(i));
    assert.deepEqual(parts[partition], want, `partition ${partition} out of order`);
  }
  const everything = await readAll(dst, N + abortedRecords, { readUncommitted: true });
  const seenAborted = everything.filter((m) => m.value.startsWith('aborted-'));
  assert.equal(seenAborted.length, abortedRecords, 'read_uncommitted shows every aborted record');
  assert.deepEqual(new Set(seenAborted.map((m) => m.value)), aborted);
  assert.equal(everything.length, N + abortedRecords);
});
