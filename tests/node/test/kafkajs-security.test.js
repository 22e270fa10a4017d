'use strict';
// kafkajs 2.2.4 over SASL_SSL (security, #13): TLS with the server certificate verified against
// a test CA (host name included, as kafkajs does by default), SASL PLAIN, SCRAM-SHA-256 and
// SCRAM-SHA-512 with users from SLUICE_BOOTSTRAP_USERS. Per mechanism: admin createTopics, a
// producer, a consumer group reading everything back; wrong passwords and unknown users fail
// with KafkaJSSASLAuthenticationError; an untrusted CA and a certificate for another host name
// are refused by the client.

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Kafka, logLevel } = require('kafkajs');
const { Broker, waitUntil, uniqueName } = require('../lib/broker');

const USERS = { admin: 'admin-secret', alice: 'alice-secret' };
const MECHANISMS = ['scram-sha-256', 'scram-sha-512', 'plain'];
// A refused login must be reported within this bound (kafkajs would otherwise retry for long).
const REFUSAL_BOUND_MS = 20000;

let certDir;
let certs;
let broker;
const brokers = [];

// ---- certificates (openssl, as tests/python/test_security.py makes them) ----

function openssl(args) {
  try {
    execFileSync('openssl', args, { cwd: certDir, stdio: ['ignore', 'pipe', 'pipe'], timeout: 30000 });
  } catch (e) {
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr || e.message}`);
  }
}

function makeCa(name) {
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
    '-keyout', `${name}.key`, '-out', `${name}.pem`, '-subj', `/CN=${name}`]);
  return path.join(certDir, `${name}.pem`);
}

/** A server certificate signed by CA `ca`, naming `san` (default: localhost and 127.0.0.1). */
function makeServerCert(ca, name, san = 'DNS:localhost,IP:127.0.0.1') {
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`,
    '-subj', `/O=Sluice Test/CN=${name}`]);
  fs.writeFileSync(path.join(certDir, `${name}.ext`), `subjectAltName=${san}\n`);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`,
    '-CAcreateserial', '-days', '2', '-out', `${name}.pem`, '-extfile', `${name}.ext`]);
  return { cert: path.join(certDir, `${name}.pem`), key: path.join(certDir, `${name}.key`) };
}

async function startSecureBroker(serverCert) {
  const b = new Broker(['--initial-rebalance-delay-ms', '300', '--tls-cert', serverCert.cert, '--tls-key', serverCert.key], {
    listeners: { SASL_SSL: 'SASL_SSL' },
    env: { SLUICE_BOOTSTRAP_USERS: Object.entries(USERS).map(([u, p]) => `${u}:${p}`).join(',') },
  });
  brokers.push(b);
  return b.start();
}

before(async () => {
  certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-node-certs-'));
  certs = { ca: makeCa('ca'), rogueCa: makeCa('rogue') };
  certs.server = makeServerCert('ca', 'server');
  certs.elsewhere = makeServerCert('ca', 'elsewhere', 'DNS:elsewhere.example');
  broker = await startSecureBroker(certs.server);
});

after(async () => {
  const codes = [];
  for (const b of brokers) {
    codes.push(await b.stop());
    b.cleanup();
  }
  if (certDir) fs.rmSync(certDir, { recursive: true, force: true });
  assert.deepEqual(codes, codes.map(() => 0), 'sluice did not exit 0 on SIGTERM');
});

/** Runs a test body; on failure the brokers' log tails are appended to the error. */
function it(name, fn) {
  test(name, { timeout: 90000 }, async () => {
    try {
      await fn();
    } catch (e) {
      e.message = `${e.message}\n${brokers.map((b) => b.logTail()).join('\n')}`;
      throw e;
    }
  });
}

/** A kafkajs client of the SASL_SSL listener of `b`, trusting `ca`. */
function client(b, sasl, { ca = certs.ca, retries = 5 } = {}) {
  return new Kafka({
    clientId: 'sluice-node-security',
    brokers: [b.listener('SASL_SSL')],
    ssl: { ca: [fs.readFileSync(ca)] }, // rejectUnauthorized and the host check stay on
    sasl,
    connectionTimeout: 5000,
    authenticationTimeout: 5000,
    logLevel: process.env.KAFKAJS_LOG ? logLevel.DEBUG : logLevel.NOTHING,
    retry: { retries, initialRetryTime: 100 },
  });
}

/** The error chain of a kafkajs error (its `cause`s), outermost first. */
function chain(e) {
  const out = [];
  for (let c = e; c && out.length < 10; c = c.cause || c.originalError) out.push(c);
  return out;
}

/** `admin.connect()` with these settings is refused with an error of `name` (bounded, no retries). */
async function refused(kafka, name, what) {
  const admin = kafka.admin();
  let timer;
  const bound = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not refused within ${REFUSAL_BOUND_MS} ms`)), REFUSAL_BOUND_MS);
  });
  let err = null;
  try {
    await Promise.race([admin.connect().then(() => admin.listTopics()), bound]);
  } catch (e) {
    err = e;
  } finally {
    clearTimeout(timer);
    await admin.disconnect().catch(() => {});
  }
  assert.ok(err, `${what}: connected, expected ${name}`);
  const names = chain(err).map((c) => c.name);
  assert.ok(names.includes(name), `${what}: expected ${name}, got ${names.join(' <- ')}: ${err.message}`);
  return chain(err).find((c) => c.name === name);
}

async function roundtrip(kafka, n) {
  const topic = uniqueName('sec');
  const admin = kafka.admin();
  await admin.connect();
  try {
    assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true }), true);
    assert.ok((await admin.listTopics()).includes(topic), `${topic} not listed`);
  } finally {
    await admin.disconnect();
  }

  const messages = [...Array(n).keys()].map((i) => ({ key: `k${i % 5}`, value: `v${i}` }));
  const producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    const res = await producer.send({ topic, messages, acks: -1 });
    for (const r of res) assert.equal(r.errorCode, 0, `produce error ${JSON.stringify(r)}`);
  } finally {
    await producer.disconnect();
  }

  const groupId = uniqueName('g');
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 100, sessionTimeout: 10000, heartbeatInterval: 500 });
  const got = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        got.push({ partition, offset: Number(message.offset), value: message.value.toString() });
      },
    });
    await waitUntil(() => got.length >= n, 30000, `${n} messages for group ${groupId} (got ${got.length})`);
  } finally {
    await consumer.disconnect();
  }
  assert.equal(got.length, n, `read ${got.length} messages, sent ${n}`);
  assert.deepEqual(got.map((m) => m.value).sort(), messages.map((m) => m.value).sort());
  for (const p of new Set(got.map((m) => m.partition))) {
    const offs = got.filter((m) => m.partition === p).map((m) => m.offset);
    assert.deepEqual(offs, [...offs.keys()], `partition ${p} read out of order`);
  }
}

for (const mechanism of MECHANISMS) {
  it(`SASL_SSL ${mechanism}: admin, producer and consumer group`, async () => {
    await roundtrip(client(broker, { mechanism, username: 'alice', password: USERS.alice }), 60);
  });

  it(`SASL_SSL ${mechanism}: a wrong password and an unknown user fail with KafkaJSSASLAuthenticationError`, async () => {
    const wrong = await refused(client(broker, { mechanism, username: 'alice', password: 'wrong' }, { retries: 0 }),
      'KafkaJSSASLAuthenticationError', 'a wrong password');
    assert.match(wrong.message, /SASL/i);
    await refused(client(broker, { mechanism, username: 'nobody', password: 'x' }, { retries: 0 }),
      'KafkaJSSASLAuthenticationError', 'an unknown user');
    // The right password still works on the same listener.
    const admin = client(broker, { mechanism, username: 'admin', password: USERS.admin }).admin();
    await admin.connect();
    try {
      assert.ok(Array.isArray(await admin.listTopics()));
    } finally {
      await admin.disconnect();
    }
  });
}

it('TLS: a server certificate from an untrusted CA is refused by the client', async () => {
  const sasl = { mechanism: 'scram-sha-512', username: 'alice', password: USERS.alice };
  const e = await refused(client(broker, sasl, { ca: certs.rogueCa, retries: 0 }), 'KafkaJSConnectionError',
    'a client trusting another CA');
  assert.match(`${e.message} ${e.code || ''}`, /certificate|SELF_SIGNED|UNABLE_TO_VERIFY/i);
});

it('TLS: a certificate for another host name is refused by the client (host verification on)', async () => {
  const other = await startSecureBroker(certs.elsewhere);
  const sasl = { mechanism: 'scram-sha-256', username: 'alice', password: USERS.alice };
  const e = await refused(client(other, sasl, { retries: 0 }), 'KafkaJSConnectionError',
    'a certificate naming elsewhere.example only');
  assert.match(`${e.message} ${e.code || ''}`, /ERR_TLS_CERT_ALTNAME_INVALID|altnames|does not match/i);
  assert.equal(await other.stop(), 0);
});
