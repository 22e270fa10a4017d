"""The router: reads `events` as a consumer group and fans each event out to the work topics of the
channels it asks for (`notify.email`, `notify.push`, `notify.sms`), one record per notification,
keyed by user id, the event id in the value.

At least once: the router commits its position on `events` only after every notification of the
batch is acknowledged by the broker (producer flushed, no delivery error). If it dies in between,
its successor fans the same events out again, so a work topic can hold the same event id twice:
the workers dedupe on the event id.

    python router.py [--bootstrap-server HOST:PORT] [--crash-after N]

`--crash-after N` stops after fanning out N events, with the notifications written but the
position not committed: what the broker sees when a router dies between the two."""

import argparse
import json
import signal
import sys
import threading

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from common import EVENTS_TOPIC, ROUTER_GROUP, default_bootstrap, work_topic

BATCH = 100
FLUSH_TIMEOUT_S = 30


def notification(event, channel):
    user = event["user"]
    to = {"email": user["email"], "push": user["device"], "sms": user["phone"]}[channel]
    what = "was shipped" if event["type"] == "order_shipped" else "was placed"
    return {
        "event_id": event["event_id"],
        "channel": channel,
        "user_id": user["id"],
        "to": to,
        "text": f"Your order {event['order_id']} {what}.",
    }


class Router:
    def __init__(self, bootstrap, group=ROUTER_GROUP, crash_after=None, log=print):
        self.bootstrap = bootstrap
        self.group = group
        self.crash_after = crash_after
        self.log = log
        self.events = 0
        self.notifications = 0

    def run(self, stop: threading.Event):
        """Routes until `stop` is set. Returns "stopped" or "crashed" (see --crash-after)."""
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": self.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,  # commit by hand, after the fan-out is durable
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000,
        })
        producer = Producer({
            "bootstrap.servers": self.bootstrap,
            "acks": "all",
            "enable.idempotence": True,  # no duplicates from the producer's own retries
            "linger.ms": 5,
        })
        errors = []

        def on_delivery(err, msg):
            if err is not None:
                errors.append(err)

        consumer.subscribe([EVENTS_TOPIC])
        try:
            while not stop.is_set():
                msgs = consumer.consume(num_messages=BATCH, timeout=0.5)
                routed = 0
                for m in msgs:
                    if m.error():
                        if m.error().code() == KafkaError._PARTITION_EOF:
                            continue
                        raise KafkaException(m.error())
                    event = json.loads(m.value())
                    for channel in event["channels"]:
                        producer.produce(work_topic(channel), key=event["user"]["id"],
                                         value=json.dumps(notification(event, channel)),
                                         on_delivery=on_delivery)
                        self.notifications += 1
                        producer.poll(0)
                    self.events += 1
                    routed += 1
                    if self.crash_after is not None and self.events >= self.crash_after:
                        producer.flush(FLUSH_TIMEOUT_S)
                        self.log(f"router: fanned out {self.events} events and stops here, "
                                 f"before committing (as if it crashed)")
                        return "crashed"
                if not routed:
                    continue
                # The batch's notifications must be on the broker before the position moves on.
                left = producer.flush(FLUSH_TIMEOUT_S)
                if left or errors:
                    raise RuntimeError(f"fan-out failed ({left} unsent, errors {errors[:3]}); "
                                       f"not committing: a restart routes these events again")
                try:
                    consumer.commit(asynchronous=False)
                except KafkaException as e:
                    # E.g. a rebalance took the partitions: whoever owns them now routes the
                    # batch again (duplicates the workers dedupe).
                    self.log(f"router: commit failed ({e}); the batch will be routed again")
                self.log(f"router: routed {routed} events "
                         f"({self.events} events, {self.notifications} notifications so far)")
            return "stopped"
        finally:
            producer.flush(FLUSH_TIMEOUT_S)
            consumer.close()  # leaves the group; commits nothing (enable.auto.commit is off)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap-server", default=default_bootstrap())
    ap.add_argument("--crash-after", type=int, metavar="N",
                    help="stop after fanning out N events, before committing")
    args = ap.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    r = Router(args.bootstrap_server, crash_after=args.crash_after,
               log=lambda s: print(s, flush=True))
    how = r.run(stop)
    print(f"router: {how} after {r.events} events, {r.notifications} notifications", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
