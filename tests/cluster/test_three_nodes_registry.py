"""The schema registry of a three-node cluster (issue #10): one registry, following its internal
partition `_schemas-0` (RF 3, min.insync.replicas 2).

Writes are sent to every node's HTTP API (the primary — the leader of `_schemas-0` — serves
them; the others forward them to it, as Confluent's secondaries do), every node reads them back
(followers apply what is committed: bounded wait), a topic with
`confluent.value.schema.validation=true` refuses an unframed record on a partition led by a node
that is not the primary (its validation reads the replicated state), then the primary is killed
with kill -9: until the controller fences it, a write on a survivor answers Confluent's 50003
(the primary cannot be reached); registrations go on through the survivors once a new leader is
elected, new ids
never reuse an old one, every earlier schema is still there on every survivor, and the killed
node, restarted, catches up.
"""

import json
import struct
import urllib.error
import urllib.request

from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import metadata, wait_until

EXTRA = ["--broker-session-timeout-ms", "3000", "--broker-heartbeat-interval-ms", "500"]
CT = "application/vnd.schemaregistry.v1+json"
# Bounds: a registration retried while the registry has no primary or is loading (a new leader
# after the session timeout, 3 s here), a read waiting for a follower to apply.
WRITE_S = 30.0
READ_S = 20.0


def http(node, method, path, body=None, timeout=20.0):
    """(status, parsed JSON body) of one request to `node`'s HTTP port."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(node.http + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", CT)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def avro(name, fields=1):
    return json.dumps({
        "type": "record", "name": name, "namespace": "sluice.cluster",
        "fields": [{"name": f"f{i}", "type": "long", "default": 0} for i in range(fields)],
    })


def register(node, subject, schema):
    """Registers through `node`, retrying (bounded) while the cluster answers 5xx (no primary
    yet, loading, forwarding to a dead node). Returns the id."""
    seen = []

    def once():
        try:
            status, body = http(node, "POST", f"/subjects/{subject}/versions", {"schema": schema})
        except OSError as e:  # the node itself is unreachable: a test bug, not a retry case
            raise AssertionError(f"node {node.node_id}: {e}") from e
        if status == 200:
            return body["id"]
        assert status >= 500, f"node {node.node_id} refused {subject}: {status} {body}"
        seen.append((status, body))
        return None
    try:
        return wait_until(once, WRITE_S, f"registering {subject} through node {node.node_id}",
                          interval=0.2)
    except Exception as e:
        raise AssertionError(f"{e}; answers seen: {seen[-3:]}") from e


def wait_schema(node, schema_id, subject, schema):
    """Waits (bounded) until `node` answers the schema by id and under its subject."""
    def has():
        status, body = http(node, "GET", f"/schemas/ids/{schema_id}")
        if status != 200:
            return None
        status2, versions = http(node, "GET", f"/subjects/{subject}/versions")
        got, want = json.loads(body["schema"]), json.loads(schema)
        same = (got["name"], len(got["fields"])) == (want["name"], len(want["fields"]))
        assert same, f"node {node.node_id}: id {schema_id} is {body['schema']}, not {schema}"
        return status2 == 200 and versions
    wait_until(has, READ_S, f"schema {schema_id} ({subject}) on node {node.node_id}", interval=0.1)


def primary(c, exclude=()):
    """The node leading `_schemas-0` (bounded wait for one not in `exclude`)."""
    def find():
        leader = c.leader_of("_schemas", 0)
        return leader if leader.node_id not in exclude else None
    return wait_until(find, WRITE_S, "a leader of _schemas-0", interval=0.2)


def produce_one(bootstrap, topic, partition, value):
    """Delivers one record (acks=all); returns the delivery error or None."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "log_level": 0,
                  "message.timeout.ms": 20000})
    errors = []
    p.produce(topic, value=value, partition=partition,
              on_delivery=lambda err, msg: errors.append(err))
    p.flush(25)
    assert errors, "no delivery report"
    return errors[0]


def test_registry_follows_schemas_partition(cluster_factory):
    c = cluster_factory(3, extra_args=EXTRA).start()
    lead = primary(c)
    ids = {}  # subject -> (id, schema)

    # Writes through every node: the primary serves, the others forward.
    for node in c.nodes:
        subject = f"via-{node.node_id}-value"
        schema = avro(f"Via{node.node_id}")
        ids[subject] = (register(node, subject, schema), schema)
    assert len({i for i, _ in ids.values()}) == len(ids), f"ids not unique: {ids}"

    # A config change through a follower is forwarded too, and every node applies it.
    follower = next(n for n in c.nodes if n.node_id != lead.node_id)
    status, body = http(follower, "PUT", "/config/via-1-value", {"compatibility": "FULL"})
    assert status == 200, (status, body)
    for node in c.nodes:
        wait_until(lambda: http(node, "GET", "/config/via-1-value")[1] == {"compatibilityLevel": "FULL"},
                   READ_S, f"the subject config on node {node.node_id}", interval=0.1)

    # Reads on every node (followers apply what is committed).
    for node in c.nodes:
        for subject, (sid, schema) in ids.items():
            wait_schema(node, sid, subject, schema)

    # Produce-side validation on a partition led by a node that is not the primary.
    topic = "validated"
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    fut = admin.create_topics([NewTopic(topic, 3, 3, config={
        "confluent.value.schema.validation": "true", "min.insync.replicas": "2"})])
    fut[topic].result(30)
    c.wait_full_isr(topic)
    value_id = register(follower, f"{topic}-value", avro("Validated"))
    ids[f"{topic}-value"] = (value_id, avro("Validated"))

    def follower_led_partition():
        t = metadata(c.bootstrap).topics[topic]
        for p, info in sorted(t.partitions.items()):
            if info.leader not in (-1, lead.node_id):
                return p, info.leader
        return None
    part, part_leader = wait_until(follower_led_partition, READ_S,
                                   "a partition of the validated topic led by a non-primary node")
    wait_schema(c.node(part_leader), value_id, f"{topic}-value", avro("Validated"))
    err = produce_one(c.bootstrap, topic, part, b"not schema-framed")
    assert err is not None and err.code() == KafkaError.INVALID_RECORD, err
    good = b"\x00" + struct.pack(">i", value_id) + b"\x02"
    err = produce_one(c.bootstrap, topic, part, good)
    assert err is None, f"a framed record with a registered id was refused on partition {part}: {err}"

    # kill -9 of the primary: a new leader of _schemas-0 has every committed schema.
    old_max = max(i for i, _ in ids.values())
    lead.kill9()
    survivors = [n for n in c.nodes if n.node_id != lead.node_id]
    # Until the controller fences it (the 3 s session timeout), the dead primary is still the
    # leader in the image: a write on a survivor cannot be forwarded. Confluent's answer: HTTP
    # 500 with 50003 (or 50004 once no primary is known).
    status, body = http(survivors[0], "POST", "/subjects/during-value/versions",
                        {"schema": avro("During")})
    assert status == 500 and body["error_code"] in (50003, 50004), (status, body)
    new_lead = primary(c, exclude={lead.node_id})
    assert new_lead.node_id != lead.node_id
    new_ids = []
    for node in survivors:
        subject = f"after-{node.node_id}-value"
        schema = avro(f"After{node.node_id}", fields=2)
        sid = register(node, subject, schema)
        assert sid > old_max, f"id {sid} after the failover reuses or precedes an old id (max {old_max})"
        new_ids.append(sid)
        ids[subject] = (sid, schema)
    assert len(set(new_ids)) == len(new_ids), new_ids
    for node in survivors:
        for subject, (sid, schema) in ids.items():
            wait_schema(node, sid, subject, schema)
    # The subject config set before the failover is still there.
    for node in survivors:
        assert http(node, "GET", "/config/via-1-value")[1] == {"compatibilityLevel": "FULL"}

    # Validation still refuses on the survivors.
    err = produce_one(",".join(n.kafka_addr for n in survivors), topic, part, b"still not framed")
    assert err is not None and err.code() == KafkaError.INVALID_RECORD, err

    # The killed node returns and catches up (its log is truncated to the leader's, then
    # fetched); its state is the cluster's.
    lead.start()
    c.wait_ready()
    for subject, (sid, schema) in ids.items():
        wait_schema(lead, sid, subject, schema)
    status, subjects = http(lead, "GET", "/subjects")
    assert status == 200 and sorted(subjects) == sorted(ids), subjects
    # And writes through it are forwarded to the current primary.
    sid = register(lead, "returned-value", avro("Returned"))
    assert sid > max(new_ids)
