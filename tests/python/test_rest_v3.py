"""The Confluent REST Proxy v3 subset under /v3 (docs/HTTP_API.md): clusters, brokers, topics,
partitions, consumer groups with consumers, lags and lag summary, and produce in both forms (one
record, and a stream of records answered with one delivery report each) — read back with a real
Kafka client."""

import base64
import json
import urllib.error
import urllib.request

from confluent_kafka import TopicPartition

from conftest import sluice_only
from kutil import OP_TIMEOUT_S, consume_n, consumer, create_topic, produce_all, producer

pytestmark = sluice_only


def call(broker, method, path, body=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(broker.http + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=OP_TIMEOUT_S) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def get(broker, path):
    status, text = call(broker, "GET", path)
    assert status == 200, text
    return json.loads(text)


def cluster_id(broker):
    clusters = get(broker, "/v3/clusters")
    assert clusters["kind"] == "KafkaClusterList" and len(clusters["data"]) == 1
    c = clusters["data"][0]
    assert c["kind"] == "KafkaCluster"
    assert c["metadata"]["self"] == f"{broker.http}/v3/clusters/{c['cluster_id']}"
    return c["cluster_id"]


def test_clusters_brokers_topics_partitions(broker, unique):
    cid = cluster_id(broker)
    base = f"/v3/clusters/{cid}"
    brokers = get(broker, f"{base}/brokers")["data"]
    assert [(b["broker_id"], b["port"]) for b in brokers] == [(1, broker.kafka_port)]
    name = unique("t")
    status, text = call(broker, "POST", f"{base}/topics",
                        {"topic_name": name, "partitions_count": 3, "replication_factor": 1,
                         "configs": [{"name": "cleanup.policy", "value": "compact"}]})
    assert status == 201, text
    t = json.loads(text)
    assert (t["kind"], t["topic_name"], t["partitions_count"]) == ("KafkaTopic", name, 3)
    assert any(x["topic_name"] == name for x in get(broker, f"{base}/topics")["data"])
    parts = get(broker, f"{base}/topics/{name}/partitions")
    assert [p["partition_id"] for p in parts["data"]] == [0, 1, 2]
    assert get(broker, f"{base}/topics/{name}/partitions/2")["partition_id"] == 2
    status, text = call(broker, "GET", f"{base}/topics/{name}/partitions/9")
    assert status == 404, text
    status, _ = call(broker, "DELETE", f"{base}/topics/{name}")
    assert status == 204
    status, text = call(broker, "GET", f"{base}/topics/{name}")
    assert status == 404 and json.loads(text)["error_code"] == 40401
    status, text = call(broker, "GET", "/v3/clusters/not-this-one/topics")
    assert status == 404


def test_produce_one_record_and_a_stream(broker, unique):
    cid = cluster_id(broker)
    t = create_topic(broker.bootstrap, unique("t"), partitions=2)
    path = f"/v3/clusters/{cid}/topics/{t}/records"
    status, text = call(broker, "POST", path, {
        "key": {"type": "STRING", "data": "alice"},
        "value": {"type": "JSON", "data": {"order": 1}},
        "headers": [{"name": "source", "value": base64.b64encode(b"web").decode()}]})
    assert status == 200, text
    report = json.loads(text)
    assert report["error_code"] == 200 and report["value"] == {"type": "JSON", "size": 11}
    # The streaming form: records one after another, one delivery report each, in order.
    stream = b"".join(json.dumps(r).encode() for r in [
        {"partition_id": 1, "value": {"type": "BINARY", "data": base64.b64encode(b"\x00\x01").decode()}},
        {"partition_id": 1, "value": {"type": "STRING", "data": "two"}, "timestamp": "2026-01-02T03:04:05.678Z"},
        {"value": {"type": "AVRO", "data": 1}},
        {"partition_id": 7, "value": {"type": "STRING", "data": "nowhere"}},
    ])
    status, text = call(broker, "POST", path, stream)
    assert status == 200, text
    reports = [json.loads(line) for line in text.splitlines()]
    assert [r["error_code"] for r in reports] == [200, 200, 400, 404]
    assert reports[1]["offset"] == reports[0]["offset"] + 1
    assert reports[1]["timestamp"] == "2026-01-02T03:04:05.678Z"
    c = consumer(broker.bootstrap)
    c.assign([TopicPartition(t, 0, 0), TopicPartition(t, 1, 0)])
    got = {m.value(): m for m in consume_n(c, 3)}
    c.close()
    first = got[b'{"order":1}']
    assert first.key() == b"alice" and first.headers() == [("source", b"web")]
    assert got[b"two"].timestamp()[1] == 1767323045678
    assert got[b"\x00\x01"].partition() == 1


def test_consumer_group_lags_and_summary(broker, unique):
    cid = cluster_id(broker)
    t = create_topic(broker.bootstrap, unique("t"), partitions=2)
    g = unique("g")
    p = producer(broker.bootstrap)
    produce_all(p, t, [(None, b"a")] * 5, partition=0)
    produce_all(p, t, [(None, b"b")] * 3, partition=1)
    c = consumer(broker.bootstrap, g)
    c.commit(offsets=[TopicPartition(t, 0, 1), TopicPartition(t, 1, 3)], asynchronous=False)
    c.close()
    base = f"/v3/clusters/{cid}/consumer-groups"
    assert any(x["consumer_group_id"] == g for x in get(broker, base)["data"])
    assert get(broker, f"{base}/{g}")["consumer_group_id"] == g
    assert get(broker, f"{base}/{g}/consumers")["data"] == []
    lags = {(x["topic_name"], x["partition_id"]): (x["current_offset"], x["log_end_offset"], x["lag"])
            for x in get(broker, f"{base}/{g}/lags")["data"]}
    assert lags == {(t, 0): (1, 5, 4), (t, 1): (3, 3, 0)}
    summary = get(broker, f"{base}/{g}/lag-summary")
    assert (summary["max_lag"], summary["total_lag"], summary["max_lag_partition_id"]) == (4, 4, 0)
    status, _ = call(broker, "GET", f"{base}/{unique('nobody')}/lags")
    assert status == 404
