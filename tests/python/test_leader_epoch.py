"""KIP-320 leader-epoch fencing at the wire (the ReplicaManager's checks): Fetch v9+, ListOffsets
v4+ and OffsetForLeaderEpoch v2+ carry the client's CurrentLeaderEpoch; an older one is
FENCED_LEADER_EPOCH (74), a newer one UNKNOWN_LEADER_EPOCH (75), -1 or the current one (0 on a
single node) is served. Hand-built frames: no client sends a wrong epoch on purpose."""

import struct

from kutil import create_topic, kafka_conn, produce_all, producer, recv_exact

FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75
LATEST = -1


def kstr(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def roundtrip(broker, api_key, version, body, corr=7):
    header = struct.pack(">hhi", api_key, version, corr) + kstr("epoch-test")
    payload = header + body
    with kafka_conn(broker) as s:
        s.sendall(struct.pack(">i", len(payload)) + payload)
        (size,) = struct.unpack(">i", recv_exact(s, 4))
        resp = recv_exact(s, size)
    (corr_back,) = struct.unpack_from(">i", resp, 0)
    assert corr_back == corr
    return resp[4:]


def skip_str(buf, pos):
    (n,) = struct.unpack_from(">h", buf, pos)
    return pos + 2 + max(n, 0)


def fetch_v11(broker, topic, epoch, offset=0):
    """(error_code, high_watermark) of partition 0."""
    body = struct.pack(">iiiibii", -1, 0, 1, 1 << 20, 0, 0, -1)  # sessionless
    body += struct.pack(">i", 1) + kstr(topic) + struct.pack(">i", 1)
    body += struct.pack(">iiqqi", 0, epoch, offset, -1, 1 << 20)
    body += struct.pack(">i", 0) + kstr("")  # no forgotten topics; rack id
    resp = roundtrip(broker, 1, 11, body)
    pos = 4 + 2 + 4  # throttle, error, session id
    (ntopics,) = struct.unpack_from(">i", resp, pos)
    assert ntopics == 1
    pos = skip_str(resp, pos + 4) + 4
    index, err, hw = struct.unpack_from(">ihq", resp, pos)
    assert index == 0
    return err, hw


def list_offsets_v4(broker, topic, epoch, timestamp=LATEST):
    """(error_code, offset, leader_epoch) of partition 0."""
    body = struct.pack(">ib", -1, 0) + struct.pack(">i", 1) + kstr(topic)
    body += struct.pack(">i", 1) + struct.pack(">iiq", 0, epoch, timestamp)
    resp = roundtrip(broker, 2, 4, body)
    pos = skip_str(resp, 4 + 4) + 4  # throttle, topic count, name, partition count
    index, err, _ts, offset, leader_epoch = struct.unpack_from(">ihqqi", resp, pos)
    assert index == 0
    return err, offset, leader_epoch


def offset_for_leader_epoch_v2(broker, topic, current_epoch, epoch):
    """(error_code, leader_epoch, end_offset) of partition 0."""
    body = struct.pack(">i", 1) + kstr(topic) + struct.pack(">i", 1)
    body += struct.pack(">iii", 0, current_epoch, epoch)
    resp = roundtrip(broker, 23, 2, body)
    pos = skip_str(resp, 4 + 4) + 4
    err, index, leader_epoch, end_offset = struct.unpack_from(">hiiq", resp, pos)
    assert index == 0
    return err, leader_epoch, end_offset


def topic_with_records(broker, unique, n=3):
    topic = create_topic(broker.bootstrap, unique("epoch"))
    produce_all(producer(broker.bootstrap), topic, [(None, b"v%d" % i) for i in range(n)])
    return topic


def test_fetch_checks_the_current_leader_epoch(broker, unique):
    topic = topic_with_records(broker, unique)
    assert fetch_v11(broker, topic, -1) == (0, 3)
    assert fetch_v11(broker, topic, 0) == (0, 3)
    assert fetch_v11(broker, topic, -2)[0] == FENCED_LEADER_EPOCH
    assert fetch_v11(broker, topic, 1)[0] == UNKNOWN_LEADER_EPOCH
    # The epoch is checked before the offset (as Kafka does).
    assert fetch_v11(broker, topic, 5, offset=999)[0] == UNKNOWN_LEADER_EPOCH
    assert fetch_v11(broker, topic, 0, offset=999)[0] == 1  # OFFSET_OUT_OF_RANGE


def test_list_offsets_checks_the_current_leader_epoch(broker, unique):
    topic = topic_with_records(broker, unique)
    assert list_offsets_v4(broker, topic, -1) == (0, 3, 0)
    assert list_offsets_v4(broker, topic, 0) == (0, 3, 0)
    assert list_offsets_v4(broker, topic, -7)[0] == FENCED_LEADER_EPOCH
    assert list_offsets_v4(broker, topic, 3)[0] == UNKNOWN_LEADER_EPOCH


def test_offset_for_leader_epoch_checks_the_current_leader_epoch(broker, unique):
    topic = topic_with_records(broker, unique)
    assert offset_for_leader_epoch_v2(broker, topic, -1, 0) == (0, 0, 3)
    assert offset_for_leader_epoch_v2(broker, topic, 0, 0) == (0, 0, 3)
    assert offset_for_leader_epoch_v2(broker, topic, -3, 0)[0] == FENCED_LEADER_EPOCH
    assert offset_for_leader_epoch_v2(broker, topic, 2, 0)[0] == UNKNOWN_LEADER_EPOCH
    # An epoch this partition never had: undefined, no error.
    assert offset_for_leader_epoch_v2(broker, topic, 0, 4) == (0, -1, -1)
