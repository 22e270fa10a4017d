'use strict';
// kafkajs 2.2.4 against the real sluice binary (one broker for this file, unique names per test).

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Kafka, CompressionTypes, logLevel } = require('kafkajs');
const { Broker, waitUntil, uniqueName } = require('../lib/broker');

let broker;
let kafka;
const cleanups = [];

before(async () => {
  broker = await new Broker().start();
  kafka = new Kafka({
    clientId: 'sluice-node-tests',
    brokers: [broker.bootstrap],
    logLevel: process.env.KAFKAJS_LOG ? logLevel.DEBUG : logLevel.NOTHING,
    retry: { retries: 5, initialRetryTime: 100 },
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

/** Runs a test body; on failure the broker's log tail is appended to the error. */
function it(name, fn) {
  test(name, { timeout: 90000 }, async () => {
    try {
      await fn();
    } catch (e) {
      e.message = `${e.message}\n${broker ? broker.logTail() : ''}`;
      throw e;
    }
  });
}

async function connectedAdmin() {
  const admin = kafka.admin();
  await admin.connect();
  cleanups.push(() => admin.disconnect());
  return admin;
}

async function createTopic(topic, numPartitions = 1) {
  const admin = await connectedAdmin();
  const created = await admin.createTopics({ topics: [{ topic, numPartitions }], waitForLeaders: true });
  assert.equal(created, true);
  return topic;
}

async function produce(topic, messages, compression = CompressionTypes.None) {
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  try {
    const res = await producer.send({ topic, messages, acks: -1, compression });
    for (const r of res) assert.equal(r.errorCode, 0);
    return res;
  } finally {
    await producer.disconnect();
  }
}

/** Runs a group consumer until `n` messages arrived; returns them. Leaves the group after. */
async function consumeWithGroup(groupId, topic, n, { autoCommit = true, commitAt = null } = {}) {
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 100, sessionTimeout: 10000, heartbeatInterval: 500 });
  await consumer.connect();
  const got = [];
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit,
      eachMessage: async ({ partition, message }) => {
        got.push({ partition, offset: Number(message.offset), key: message.key && message.key.toString(),
          value: message.value.toString() });
        if (commitAt !== null && got.length === commitAt) {
          await consumer.commitOffsets([{ topic, partition, offset: String(Number(message.offset) + 1) }]);
        }
      },
    });
    await waitUntil(() => got.length >= n, 30000, `${n} messages for group ${groupId} (got ${got.length})`);
    return got;
  } finally {
    await consumer.disconnect();
  }
}

function assertPartitionOrder(msgs) {
  const per = new Map();
  for (const m of msgs) {
    if (!per.has(m.partition)) per.set(m.partition, []);
    per.get(m.partition).push(m.offset);
  }
  for (const [p, offs] of per) {
    assert.deepEqual(offs, [...Array(offs.length).keys()], `partition ${p} out of order`);
  }
}

it('admin creates and lists topics, fetches metadata', async () => {
  const t = await createTopic(uniqueName(), 3);
  const admin = await connectedAdmin();
  const topics = await admin.listTopics();
  assert.ok(topics.includes(t));
  const md = await admin.fetchTopicMetadata({ topics: [t] });
  assert.equal(md.topics.length, 1);
  assert.deepEqual(md.topics[0].partitions.map((p) => p.partitionId).sort(), [0, 1, 2]);
  // kafkajs answers `false` when every topic already existed (TOPIC_ALREADY_EXISTS).
  assert.equal(await admin.createTopics({ topics: [{ topic: t, numPartitions: 1 }] }), false);
});

for (const [name, codec] of [['none', CompressionTypes.None], ['gzip', CompressionTypes.GZIP]]) {
  it(`produce (${name}) and consume with a group, in partition order`, async () => {
    const t = await createTopic(uniqueName(), 2);
    const messages = [];
    for (let i = 0; i < 120; i += 1) messages.push({ key: `k${i % 7}`, value: `${name}-value-${i}`.repeat(3) });
    const res = await produce(t, messages, codec);
    assert.deepEqual(res.map((r) => r.baseOffset).sort(), ['0', '0']);
    const got = await consumeWithGroup(uniqueName('g'), t, 120);
    assert.equal(got.length, 120);
    assertPartitionOrder(got);
    assert.deepEqual(got.map((m) => m.value).sort(), messages.map((m) => m.value).sort());
    // Same key, same partition.
    const partOfKey = new Map();
    for (const m of got) {
      if (!partOfKey.has(m.key)) partOfKey.set(m.key, m.partition);
      assert.equal(partOfKey.get(m.key), m.partition, `key ${m.key} in two partitions`);
    }
  });
}

it('commit and resume: a new consumer in the same group continues after the commit', async () => {
  const t = await createTopic(uniqueName(), 1);
  await produce(t, [...Array(50).keys()].map((i) => ({ value: `m${i}` })));
  const g = uniqueName('g');
  const first = await consumeWithGroup(g, t, 20, { autoCommit: false, commitAt: 20 });
  assert.deepEqual(first.slice(0, 20).map((m) => m.offset), [...Array(20).keys()]);

  const admin = await connectedAdmin();
  const committed = await admin.fetchOffsets({ groupId: g, topics: [t] });
  assert.deepEqual(committed, [{ topic: t, partitions: [{ partition: 0, offset: '20', metadata: null }] }]);

  const second = await consumeWithGroup(g, t, 30);
  assert.equal(second[0].offset, 20);
  assert.deepEqual(second.slice(0, 30).map((m) => m.value), [...Array(30).keys()].map((i) => `m${i + 20}`));
});

it('two groups each read everything', async () => {
  const t = await createTopic(uniqueName(), 3);
  const messages = [...Array(90).keys()].map((i) => ({ key: `k${i}`, value: `v${i}` }));
  await produce(t, messages);
  const want = messages.map((m) => m.value).sort();
  for (const g of [uniqueName('ga'), uniqueName('gb')]) {
    const got = await consumeWithGroup(g, t, 90);
    assert.deepEqual(got.map((m) => m.value).sort(), want);
  }
});

it('fetchTopicOffsets and fetchTopicOffsetsByTimestamp', async () => {
  const t = await createTopic(uniqueName(), 2);
  const base = Date.now() - 60000;
  const messages = [...Array(10).keys()].map((i) => ({ value: `x${i}`, partition: 1, timestamp: String(base + i * 100) }));
  await produce(t, messages);
  const admin = await connectedAdmin();
  const offsets = (await admin.fetchTopicOffsets(t)).sort((a, b) => a.partition - b.partition);
  assert.deepEqual(offsets.map(({ partition, offset, high, low }) => ({ partition, offset, high, low })), [
    { partition: 0, offset: '0', high: '0', low: '0' },
    { partition: 1, offset: '10', high: '10', low: '0' },
  ]);
  const byTs = (await admin.fetchTopicOffsetsByTimestamp(t, base + 450)).sort((a, b) => a.partition - b.partition);
  assert.equal(byTs[1].offset, '5');
});

it('delete topics', async () => {
  const t = await createTopic(uniqueName(), 1);
  const admin = await connectedAdmin();
  await admin.deleteTopics({ topics: [t], timeout: 10000 });
  await waitUntil(async () => !(await admin.listTopics()).includes(t), 10000, 'deleted topic to disappear');
});
