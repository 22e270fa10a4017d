"""confluent-kafka (librdkafka) side of test_client_failover.py: an idempotent acks=all producer
and a group consumer on one topic, with nothing but standard configuration. No application code
reacts to a broker failure: librdkafka retries, refreshes metadata and follows the new leader.

    python failover_client.py BOOTSTRAP TOPIC GROUP CONTROL_DIR

Prints one line per event, flushed (the protocol the test parses, shared with the kafkajs and
Java programs):

    ACK <value> <partition> <offset> <epoch_ms>   a delivery report without error
    NACK <value> <error> fatal=<true|false>       a delivery report with an error
    READ <value> <partition> <offset>             a record the consumer returned
    CLIENT_ERROR <error> fatal=<true|false>       the client's error callback / a consumer error
    PRODUCER_DONE sent=<n> unflushed=<n>          after CONTROL_DIR/stop-producing and the flush
    DONE                                          after CONTROL_DIR/stop and the consumer's close

It stops producing when CONTROL_DIR/stop-producing exists, and exits when CONTROL_DIR/stop does.
"""

import os
import sys
import threading
import time

from confluent_kafka import Consumer, Producer

RATE_PER_S = 200
FLUSH_TIMEOUT_S = 60.0

_out_lock = threading.Lock()


def emit(line: str):
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def main(bootstrap: str, topic: str, group: str, control: str) -> int:
    stop_producing = os.path.join(control, "stop-producing")
    stop = os.path.join(control, "stop")

    def on_error(err):
        emit(f"CLIENT_ERROR {err.name()} fatal={'true' if err.fatal() else 'false'}")

    def on_delivery(err, msg):
        value = msg.value().decode()
        if err is None:
            emit(f"ACK {value} {msg.partition()} {msg.offset()} {int(time.time() * 1000)}")
        else:
            emit(f"NACK {value} {err.name()} fatal={'true' if err.fatal() else 'false'}")

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                         "error_cb": on_error})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "error_cb": on_error})

    def consume():
        consumer.subscribe([topic])
        while not os.path.exists(stop):
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                e = msg.error()
                emit(f"CLIENT_ERROR {e.name()} fatal={'true' if e.fatal() else 'false'}")
                continue
            emit(f"READ {msg.value().decode()} {msg.partition()} {msg.offset()}")
        consumer.close()

    reader = threading.Thread(target=consume, name="consumer")
    reader.start()

    sent = 0
    next_at = time.monotonic()
    while not os.path.exists(stop_producing):
        value = f"py-{sent}"
        while True:
            try:
                producer.produce(topic, value=value.encode(), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        sent += 1
        next_at += 1.0 / RATE_PER_S
        delay = next_at - time.monotonic()
        producer.poll(max(0.0, delay))
        if delay < 0:
            next_at = time.monotonic()
    left = producer.flush(FLUSH_TIMEOUT_S)
    emit(f"PRODUCER_DONE sent={sent} unflushed={left}")
    reader.join()
    emit("DONE")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
