"""The SQS-shaped queue API over share groups (docs/HTTP_API.md, "Queues"): receive with a wait
and a lock, settle by receipt (accept, release, reject, renew), stale receipts refused with 409,
and the same records, locks and dead-letter queue a librdkafka ShareConsumer of the group sees."""

import threading
import time

from conftest import sluice_only, wait_until
from kutil import OP_TIMEOUT_S, create_topic, produce_all, producer, share_consume, share_consumer
from test_http_api import call
from test_share import queue_group, read_all

pytestmark = sluice_only


def fill(broker, topic, n, prefix="v"):
    produce_all(producer(broker.bootstrap), topic,
                [(b"k%d" % i, f"{prefix}{i}".encode()) for i in range(n)], partition=0)


def receive(broker, group, topic, n=1, wait_ms=0, **extra):
    status, body = call(broker, "POST", f"/v1/queues/{group}/receive",
                        {"topic": topic, "max_messages": n, "wait_ms": wait_ms, **extra})
    assert status == 200, body
    return body["messages"]


def settle(broker, group, receipt, action):
    status, body = call(broker, "POST", f"/v1/queues/{group}/messages/{receipt}/{action}", b"")
    return status, body


def test_receive_accept_release_reject(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"))
    g = queue_group(broker.bootstrap, unique("g"))
    fill(broker, t, 6)
    first = receive(broker, g, t, n=4)
    assert [(m["offset"], m["value"], m["delivery_count"]) for m in first] == \
        [(0, "v0", 1), (1, "v1", 1), (2, "v2", 1), (3, "v3", 1)]
    assert all(m["topic"] == t and m["partition"] == 0 and m["key"] == f"k{m['offset']}" for m in first)
    assert len({m["receipt"] for m in first}) == 4

    assert settle(broker, g, first[0]["receipt"], "accept") == (204, None)
    assert settle(broker, g, first[1]["receipt"], "release") == (204, None)
    assert settle(broker, g, first[2]["receipt"], "reject") == (204, None)
    # Settled already: the receipt is stale and changes nothing.
    status, err = settle(broker, g, first[0]["receipt"], "release")
    assert (status, err["error_code"]) == (409, 40903), err
    assert "stale receipt" in err["message"]

    # Offset 3 is still locked; the released 1 comes back with its delivery count raised.
    again = receive(broker, g, t, n=10)
    assert [(m["offset"], m["delivery_count"]) for m in again] == [(1, 2), (4, 1), (5, 1)]
    status, res = call(broker, "POST", f"/v1/queues/{g}/acknowledge", {"acknowledgements": [
        {"receipt": m["receipt"], "action": "accept"} for m in again + [first[3]]
    ] + [{"receipt": first[0]["receipt"], "action": "accept"}]})
    assert status == 200, res
    assert res["succeeded"] == [m["receipt"] for m in again + [first[3]]]
    assert [(f["receipt"], f["error_code"]) for f in res["failed"]] == [(first[0]["receipt"], 40903)]
    assert receive(broker, g, t, n=10) == []

    # The rejected record is in the group's DLQ with its origin, as a share consumer's would be.
    (dl,) = read_all(broker.bootstrap, "dlq." + g, 1)
    h = dict(dl.headers())
    assert dl.value() == b"v2"
    assert (h["__dlq.errors.reason"], h["__dlq.errors.offset"], h["__dlq.errors.topic"]) == \
        (b"rejected", b"2", t.encode())


def test_lock_expiry_makes_the_receipt_stale_and_renew_extends_it(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"))
    g = queue_group(broker.bootstrap, unique("g"), share_record_lock_duration_ms=4000)
    fill(broker, t, 2)
    a, b = receive(broker, g, t, n=2)
    received_at = time.time()
    # Renew b well inside its lock, past the point that makes its new lock outlast the old one.
    wait_until(lambda: time.time() >= received_at + 2.0, 5, "two seconds to pass")
    assert settle(broker, g, b["receipt"], "renew") == (204, None)
    # a's lock runs out: it goes to the next receive, and its old receipt is stale.
    redelivered = receive(broker, g, t, n=1, wait_ms=10000)
    assert [(m["offset"], m["delivery_count"]) for m in redelivered] == [(0, 2)]
    status, err = settle(broker, g, a["receipt"], "accept")
    assert (status, err["error_code"]) == (409, 40903), err
    # b's old deadline has passed, but the renewal holds it.
    assert time.time() * 1000 > received_at * 1000 + 4000
    assert settle(broker, g, b["receipt"], "accept") == (204, None)
    assert settle(broker, g, redelivered[0]["receipt"], "accept") == (204, None)
    assert receive(broker, g, t, n=10) == []


def test_long_poll_answers_when_a_record_arrives(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"), partitions=3)
    g = queue_group(broker.bootstrap, unique("g"))
    got = {}

    def waiter():
        got["messages"] = receive(broker, g, t, n=5, wait_ms=15000)
        got["at"] = time.monotonic()

    th = threading.Thread(target=waiter)
    th.start()
    # The receive has looked at every partition (it opened the group's share-partitions) and
    # found nothing: from here it waits, so the record below is what must wake it.
    def opened():
        status, view = call(broker, "GET", f"/v1/share-groups/{g}")
        return status == 200 and len(view["partitions"]) == 3

    wait_until(opened, OP_TIMEOUT_S, "the waiting receive to open the share-partitions")
    sent_at = time.monotonic()
    produce_all(producer(broker.bootstrap), t, [(b"k", b"late")], partition=2)
    th.join(20)
    assert not th.is_alive()
    assert [(m["partition"], m["value"]) for m in got["messages"]] == [(2, "late")]
    assert got["at"] - sent_at < 10, "answered by the record, not by the wait running out"


def test_a_share_consumer_and_the_queue_api_share_locks(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"))
    g = queue_group(broker.bootstrap, unique("g"))
    fill(broker, t, 10)
    held = receive(broker, g, t, n=4)
    assert [m["offset"] for m in held] == [0, 1, 2, 3]
    c = share_consumer(broker.bootstrap, g)
    try:
        c.subscribe([t])
        msgs = share_consume(c, 6, idle_after=1.0)
        assert sorted(m.offset() for m in msgs) == [4, 5, 6, 7, 8, 9]
        # Released over HTTP: the Kafka consumer gets it, with the delivery count it reached.
        assert settle(broker, g, held[0]["receipt"], "release") == (204, None)
        (m,) = share_consume(c, 1)
        assert (m.offset(), m.delivery_count()) == (0, 2)
    finally:
        c.close()
    for m in held[1:]:
        assert settle(broker, g, m["receipt"], "accept") == (204, None)


def test_bad_requests_are_refused(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"))
    g = unique("g")
    for body, code in [({"topic": t, "max_messages": 0}, 40001),
                       ({"topic": t, "max_messages": 101}, 40001),
                       ({"topic": t, "wait_ms": 20001}, 40001),
                       ({"topic": t, "lock_ms": 5}, 42201),
                       ({"topic": unique("missing")}, 40401)]:
        status, err = call(broker, "POST", f"/v1/queues/{g}/receive", body)
        assert (status, err["error_code"]) == (code // 100, code), (body, err)
    for receipt, action, code in [("garbage", "accept", 40001), ("A" * 66, "accept", 40001),
                                  ("x", "explode", 40001)]:
        status, err = settle(broker, g, receipt, action)
        assert err["error_code"] == code, (receipt, action, err)
    status, err = call(broker, "POST", f"/v1/queues/{g}/acknowledge", {"acknowledgements": []})
    assert (status, err["error_code"]) == (400, 40001)

    # A consumer group's name is not a queue.
    cg = unique("cg")
    fill(broker, t, 1)
    from kutil import consume_n, consumer
    c = consumer(broker.bootstrap, group_id=cg)
    try:
        c.subscribe([t])
        assert len(consume_n(c, 1, timeout=OP_TIMEOUT_S)) == 1
        status, err = call(broker, "POST", f"/v1/queues/{cg}/receive", {"topic": t})
        assert (status, err["error_code"]) == (409, 40902), err
    finally:
        c.close()


def test_share_group_view_counts_locks_and_deliveries(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"))
    g = queue_group(broker.bootstrap, unique("g"))
    fill(broker, t, 5)
    a, b = receive(broker, g, t, n=2)
    assert settle(broker, g, b["receipt"], "release") == (204, None)
    (b2,) = receive(broker, g, t, n=1)
    assert (b2["offset"], b2["delivery_count"]) == (1, 2)
    c = share_consumer(broker.bootstrap, g, client_id="view-test")
    try:
        c.subscribe([t])
        assert sorted(m.offset() for m in share_consume(c, 3)) == [2, 3, 4]
        status, view = call(broker, "GET", f"/v1/share-groups/{g}")
        assert status == 200, view
        assert view["state"] == "Stable" and view["dead_letter_topic"] == "dlq." + g
        (m,) = view["members"]
        assert m["client_id"] == "view-test" and m["subscribed_topics"] == [t]
        assert m["assignment"] == [{"topic": t, "partition": 0}]
        (p,) = view["partitions"]
        counts = [0] * 12
        counts[1], counts[2] = 1, 1  # offset 0 delivered once, offset 1 twice; 2..4 accepted
        assert (p["topic"], p["partition"], p["leader"]) == (t, 0, 1)
        assert (p["start_offset"], p["end_offset"], p["lag"]) == (0, 5, 2)
        assert (p["acquired"], p["available"], p["dead_lettering"]) == (2, 0, 0)
        assert p["delivery_counts"] == counts
        assert view["totals"] == {"lag": 2, "acquired": 2, "available": 0, "dead_lettering": 0,
                                  "delivery_counts": counts}
        status, groups = call(broker, "GET", "/v1/share-groups")
        assert {"group_id": g, "state": "Stable"} in groups
    finally:
        c.close()
    status, err = call(broker, "GET", f"/v1/share-groups/{unique('none')}")
    assert (status, err["error_code"]) == (404, 40402), err
