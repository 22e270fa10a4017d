'use strict';
// kafkajs side of tests/cluster/test_client_failover.py: an idempotent acks=all producer and a
// group consumer on one topic, with nothing but standard configuration. No application code
// reacts to a broker failure: kafkajs retries, refreshes metadata and follows the new leader.
//
//   node bin/failover-client.js BOOTSTRAP TOPIC GROUP CONTROL_DIR
//
// Prints one line per event (the protocol the test parses, shared with the confluent-kafka and
// Java programs):
//
//   ACK <value> <partition> <offset> <epoch_ms>   send() resolved
//   NACK <value> <error> fatal=true               send() rejected (kafkajs gave up)
//   READ <value> <partition> <offset>             a record eachMessage received
//   CLIENT_ERROR <error> fatal=<true|false>       a consumer crash event
//   PRODUCER_DONE sent=<n> unflushed=0            after CONTROL_DIR/stop-producing
//   DONE                                          after CONTROL_DIR/stop and the disconnects
//
// It stops producing when CONTROL_DIR/stop-producing exists, and exits when CONTROL_DIR/stop does.

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

const fs = require('node:fs');
const path = require('node:path');
const { Kafka, logLevel } = require('kafkajs');

const SEND_INTERVAL_MS = 5;

const emit = (line) => fs.writeSync(1, `${line}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main([bootstrap, topic, group, control]) {
  const stopProducing = path.join(control, 'stop-producing');
  const stop = path.join(control, 'stop');
  const kafka = new Kafka({
    clientId: 'sluice-failover',
    brokers: bootstrap.split(','),
    logLevel: process.env.KAFKAJS_LOG ? logLevel.DEBUG : logLevel.WARN,
  });
  // kafkajs documents retries = MAX_SAFE_INTEGER as the idempotent producer's default, but
  // Kafka.producer() always passes a retry object, so the default in effect is 5 retries
  // (about 9 s of backoff): a failover of the metadata quorum's leader takes about as long.
  // Stating the documented default is configuration, not failover code.
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    retry: { retries: Number.MAX_SAFE_INTEGER },
  });
  const consumer = kafka.consumer({ groupId: group });
  consumer.on(consumer.events.CRASH, (e) => {
    const err = e.payload.error;
    emit(`CLIENT_ERROR ${err && err.type ? err.type : err} fatal=${e.payload.restart ? 'false' : 'true'}`);
  });

  await producer.connect();
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      emit(`READ ${message.value.toString()} ${partition} ${message.offset}`);
    },
  });

  let sent = 0;
  while (!fs.existsSync(stopProducing)) {
    const value = `js-${sent}`;
    sent += 1;
    try {
      const [meta] = await producer.send({ topic, acks: -1, messages: [{ value }] });
      emit(`ACK ${value} ${meta.partition} ${meta.baseOffset} ${Date.now()}`);
    } catch (e) {
      emit(`NACK ${value} ${e.type || e.name || e} fatal=true`);
    }
    await sleep(SEND_INTERVAL_MS);
  }
  emit(`PRODUCER_DONE sent=${sent} unflushed=0`);
  await producer.disconnect();
  while (!fs.existsSync(stop)) {
    await sleep(100);
  }
  await consumer.disconnect();
  emit('DONE');
}

if (process.argv.length !== 6) {
  process.stderr.write('usage: node bin/failover-client.js BOOTSTRAP TOPIC GROUP CONTROL_DIR\n');
  process.exit(2);
}
main(process.argv.slice(2)).then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`FAILED: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
  },
);
