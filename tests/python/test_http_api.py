"""The native HTTP API under /v1 (docs/HTTP_API.md): topics, configs, produce, consume by offset
and time, groups and lag — checked against what real Kafka clients see — and its OpenAPI document
checked against the server by schemathesis."""

import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from confluent_kafka import TopicPartition

from conftest import sluice_only, wait_until
from kutil import OP_TIMEOUT_S, consume_n, consumer, create_topic, produce_all, producer

pytestmark = sluice_only


def call(broker, method, path, body=None, content_type="application/json"):
    """(status, parsed JSON or None)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(broker.http + path, data=data, method=method)
    if data is not None and content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=OP_TIMEOUT_S) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


def test_topics_create_describe_configs_delete(broker, unique):
    name = unique("t")
    status, t = call(broker, "POST", "/v1/topics",
                     {"name": name, "partitions": 3, "configs": {"retention.ms": "3600000"}})
    assert status == 201, t
    assert [p["partition"] for p in t["partitions"]] == [0, 1, 2]
    assert t["configs"]["retention.ms"] == {"value": "3600000", "source": "topic", "read_only": False}
    status, err = call(broker, "POST", "/v1/topics", {"name": name})
    assert (status, err["error_code"]) == (409, 40901)
    status, topics = call(broker, "GET", "/v1/topics")
    assert {"name": name, "partitions": 3, "replication_factor": 1, "internal": False} in topics

    status, _ = call(broker, "PATCH", f"/v1/topics/{name}/configs",
                     {"set": {"cleanup.policy": "compact"}, "delete": ["retention.ms"]})
    assert status == 204
    status, configs = call(broker, "GET", f"/v1/topics/{name}/configs")
    by_name = {c["name"]: c for c in configs}
    assert by_name["cleanup.policy"]["value"] == "compact" and by_name["cleanup.policy"]["source"] == "topic"
    assert by_name["retention.ms"]["value"] == "604800000" and by_name["retention.ms"]["source"] != "topic"
    status, err = call(broker, "PATCH", f"/v1/topics/{name}/configs", {"set": {"retention.ms": "soon"}})
    assert (status, err["error_code"]) == (400, 40001) and "retention.ms" in err["message"]

    status, _ = call(broker, "DELETE", f"/v1/topics/{name}")
    assert status == 204
    status, err = call(broker, "GET", f"/v1/topics/{name}")
    assert (status, err["error_code"]) == (404, 40401)


def test_records_produced_over_http_are_what_kafka_clients_read(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"), partitions=3)
    records = [{"key": "alice", "value": "order-1", "headers": [{"name": "source", "value": "web"}]},
               {"key": "alice", "value": "order-2"},
               {"value": "no key", "partition": 2}]
    status, out = call(broker, "POST", f"/v1/topics/{t}/records", {"records": records})
    assert status == 200, out
    offsets = out["offsets"]
    # Same key, same partition (Kafka's default partitioner), consecutive offsets.
    assert offsets[0]["partition"] == offsets[1]["partition"]
    assert offsets[1]["offset"] == offsets[0]["offset"] + 1
    assert offsets[2] == {"partition": 2, "offset": 0}
    c = consumer(broker.bootstrap)
    c.assign([TopicPartition(t, p, 0) for p in range(3)])
    got = consume_n(c, 3)
    c.close()
    seen = {(m.partition(), m.offset()): (m.key(), m.value(), m.headers()) for m in got}
    p0 = offsets[0]["partition"]
    assert seen[(p0, offsets[0]["offset"])] == (b"alice", b"order-1", [("source", b"web")])
    assert seen[(2, 0)] == (None, b"no key", None)

    # Binary values travel as base64, both ways.
    raw = bytes(range(256))
    status, out = call(broker, "POST", f"/v1/topics/{t}/records",
                       {"encoding": "base64", "records": [{"partition": 1, "value": base64.b64encode(raw).decode()}]})
    assert status == 200, out
    off = out["offsets"][0]["offset"]
    status, page = call(broker, "GET", f"/v1/topics/{t}/partitions/1/records?offset={off}")
    assert status == 200
    rec = page["records"][0]
    assert rec["encoding"] == "base64" and base64.b64decode(rec["value"]) == raw
    assert page["next_offset"] == off + 1


def test_consume_by_offset_and_time_pages_through_a_partition(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"))
    p = producer(broker.bootstrap)
    base = int(time.time() * 1000) - 100_000
    produce_all(p, t, [(b"k", b"v%d" % i, base + i * 1000) for i in range(25)])
    status, page = call(broker, "GET", f"/v1/topics/{t}/partitions/0/records?max_records=10")
    assert status == 200
    assert [r["value"] for r in page["records"]] == ["v%d" % i for i in range(10)]
    assert page["next_offset"] == 10 and page["high_watermark"] == 25
    status, page = call(broker, "GET", f"/v1/topics/{t}/partitions/0/records?offset=20")
    assert [r["offset"] for r in page["records"]] == [20, 21, 22, 23, 24]
    assert page["records"][0]["timestamp"] == base + 20_000
    status, page = call(broker, "GET", f"/v1/topics/{t}/partitions/0/records?timestamp={base + 14_500}&max_records=2")
    assert [r["offset"] for r in page["records"]] == [15, 16]
    # Past the end: nothing, at once; offset and timestamp together: refused.
    status, page = call(broker, "GET", f"/v1/topics/{t}/partitions/0/records?offset=25")
    assert (status, page["records"], page["next_offset"]) == (200, [], 25)
    status, err = call(broker, "GET", f"/v1/topics/{t}/partitions/0/records?offset=1&timestamp=1")
    assert (status, err["error_code"]) == (400, 40001)
    status, err = call(broker, "GET", f"/v1/topics/{t}/partitions/7/records")
    assert status == 404, err


def test_group_lag_matches_the_groups_commits(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"), partitions=2)
    g = unique("g")
    p = producer(broker.bootstrap)
    produce_all(p, t, [(None, b"a")] * 6, partition=0)
    produce_all(p, t, [(None, b"b")] * 2, partition=1)
    c = consumer(broker.bootstrap, g)
    c.commit(offsets=[TopicPartition(t, 0, 1), TopicPartition(t, 1, 2)], asynchronous=False)
    c.close()
    status, groups = call(broker, "GET", "/v1/groups")
    assert any(x["group_id"] == g for x in groups)
    status, desc = call(broker, "GET", f"/v1/groups/{g}")
    assert status == 200, desc
    lags = {(o["topic"], o["partition"]): (o["committed_offset"], o["lag"]) for o in desc["offsets"]}
    assert lags == {(t, 0): (1, 5), (t, 1): (2, 0)}
    assert desc["total_lag"] == 5
    status, err = call(broker, "GET", f"/v1/groups/{unique('nobody')}")
    assert (status, err["error_code"]) == (404, 40402)


def test_requests_that_are_not_json_are_refused(broker, unique):
    # A web page can send text/plain cross-site without a preflight: writes need JSON.
    status, err = call(broker, "POST", "/v1/topics", b'{"name": "x"}', content_type="text/plain")
    assert (status, err["error_code"]) == (415, 41501)
    status, err = call(broker, "POST", "/v1/topics", b'{"name": ', content_type="application/json")
    assert status == 400 and err["error_code"] == 40001
    status, err = call(broker, "POST", "/v1/topics", {"name": "x", "colour": "red"})
    assert status == 422 and err["error_code"] == 42201


def test_the_api_outlives_the_listeners_idle_timeout(broker_factory):
    """The API's pooled Kafka clients are dropped before the Kafka listener would close their
    connections for idleness, so a call after a quiet spell does not fail."""
    b = broker_factory(["--idle-timeout-ms", "1000"])
    for _ in range(3):
        status, cluster = call(b, "GET", "/v1/cluster")
        assert status == 200, cluster
        time.sleep(1.5)


def test_cluster_and_openapi(broker):
    status, cluster = call(broker, "GET", "/v1/cluster")
    assert status == 200 and cluster["brokers"][0]["port"] == broker.kafka_port
    status, doc = call(broker, "GET", "/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert "/v1/topics/{topic}/records" in doc["paths"]


def test_the_openapi_document_matches_the_server(broker_factory, tmp_path):
    """schemathesis generates requests from /v1/openapi.json (valid and invalid, and sequences
    that create and use topics) and checks every response: no 5xx, only documented statuses and
    content types, bodies matching their schemas, invalid requests refused. Left out:
    positive_data_acceptance — whether Kafka accepts a schema-valid request depends on the
    cluster (a topic that exists, the partitions a broker may hold, config values), which a
    schema cannot say; and the live tail (tailTopic), an event stream that does not end, which
    schemathesis would wait on until its timeout (test_http_browse.py checks it)."""
    # A partition limit so generated topics cannot fill the machine.
    b = broker_factory(["--max-partitions", "500"])
    st = Path(os.environ.get("VIRTUAL_ENV", Path(__import__("sys").executable).parent.parent)) / "bin" / "st"
    r = subprocess.run(
        [str(st), "run", b.http + "/v1/openapi.json", "--checks", "all",
         "--exclude-checks", "positive_data_acceptance", "--exclude-operation-id", "tailTopic",
         "--max-examples", "60", "--workers", "1",
         "--request-timeout", "45", "--max-response-time", "40", "--seed", "1", "--no-color"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]


def test_group_lag_history_follows_the_commits(broker, unique):
    """The coordinator samples each group's lag every 10 s; the history shows a commit's lag and
    then its catching up."""
    t = create_topic(broker.bootstrap, unique("t"))
    g = unique("g")
    produce_all(producer(broker.bootstrap), t, [(b"k", b"v%d" % i) for i in range(5)], partition=0)
    c = consumer(broker.bootstrap, g)
    try:
        c.commit(offsets=[TopicPartition(t, 0, 2)], asynchronous=False)
        last = {}

        def sampled(lag):
            status, h = call(broker, "GET", f"/v1/groups/{g}/lag-history")
            assert status == 200, h
            last.update(h)
            return bool(h["samples"]) and h["samples"][-1]["lag"] == lag

        wait_until(lambda: sampled(3), 30, "a lag sample of 3")
        c.commit(offsets=[TopicPartition(t, 0, 5)], asynchronous=False)
        wait_until(lambda: sampled(0), 30, "a lag sample of 0")
    finally:
        c.close()
    s = last["samples"]
    assert last["interval_ms"] == 10000 and s[-1]["partitions"] == 1
    assert any(x["lag"] == 3 for x in s) and all(a["at_ms"] < b["at_ms"] for a, b in zip(s, s[1:]))
    status, h = call(broker, "GET", f"/v1/groups/{unique('none')}/lag-history")
    assert (status, h["samples"]) == (200, [])
