"""Hand-built flexible (KIP-482) Kafka frames for the share-group APIs no installed client sends
with chosen fields: ShareGroupHeartbeat v1, ShareFetch v1, ShareAcknowledge v1."""

import socket
import struct
import uuid


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        if n & ~0x7F:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        else:
            out.append(n)
            return bytes(out)


def cstr(s):
    if s is None:
        return b"\x00"
    b = s.encode()
    return uvarint(len(b) + 1) + b


def carr(items):
    return uvarint(len(items) + 1) + b"".join(items)


TAGS = b"\x00"


def frame(api_key, version, corr, body, client_id="hardening-test"):
    cid = client_id.encode()
    header = struct.pack(">hhih", api_key, version, corr, len(cid)) + cid + TAGS
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


class Reader:
    def __init__(self, data, pos=0):
        self.d, self.p = data, pos

    def take(self, n):
        b = self.d[self.p:self.p + n]
        assert len(b) == n, "response too short"
        self.p += n
        return b

    def i8(self):
        return struct.unpack(">b", self.take(1))[0]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def uvarint(self):
        shift = n = 0
        while True:
            b = self.take(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7

    def cstr(self):
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def cbytes(self):
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1)

    def uuid(self):
        return uuid.UUID(bytes=self.take(16))

    def tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())

    def carr(self, item):
        n = self.uvarint()
        return [] if n == 0 else [item() for _ in range(n - 1)]


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.corr = 0

    def close(self):
        self.s.close()

    def call(self, api_key, version, body) -> Reader:
        self.corr += 1
        self.s.sendall(frame(api_key, version, self.corr, body))
        (n,) = struct.unpack(">i", self._exact(4))
        r = Reader(self._exact(n))
        assert r.i32() == self.corr
        r.tags()  # response header v1
        return r

    def _exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            assert chunk, "connection closed by the broker"
            buf += chunk
        return bytes(buf)


def heartbeat(conn, group, member, topics, epoch=0):
    """ShareGroupHeartbeat v1 (`topics` None: the subscription unchanged); returns (error_code,
    member_epoch)."""
    subscribed = b"\x00" if topics is None else carr([cstr(t) for t in topics])
    body = (cstr(group) + cstr(member) + struct.pack(">i", epoch) + cstr(None)
            + subscribed + TAGS)
    r = conn.call(76, 1, body)
    r.i32()
    code = r.i16()
    r.cstr()
    r.cstr()
    return code, r.i32()


def ack_batch(first, last, types):
    return struct.pack(">qq", first, last) + carr([struct.pack(">b", t) for t in types]) + TAGS


def share_fetch(conn, group, member, epoch, topic_id, partitions, max_bytes=1 << 20,
                max_records=500, max_wait_ms=0, acks=None):
    """ShareFetch v1 of `partitions` of one topic (acks: {partition: [ack_batch bytes]}).
    Returns (error_code, {partition: dict(error, ack_error, records, acquired)})."""
    acks = acks or {}
    parts = [struct.pack(">i", p) + carr(acks.get(p, [])) + TAGS for p in partitions]
    topics = [topic_id.bytes + carr(parts) + TAGS]
    body = (cstr(group) + cstr(member) + struct.pack(">iiiiii", epoch, max_wait_ms, 0, max_bytes,
                                                     max_records, max_records)
            + carr(topics) + carr([]) + TAGS)
    r = conn.call(78, 1, body)
    r.i32()
    code = r.i16()
    r.cstr()
    r.i32()
    out = {}

    def partition():
        p = r.i32()
        err = r.i16()
        r.cstr()
        ack_err = r.i16()
        r.cstr()
        r.i32(); r.i32(); r.tags()  # current leader
        records = r.cbytes()

        def acquired():
            a = (r.i64(), r.i64(), r.i16())
            r.tags()
            return a

        acq = r.carr(acquired)
        r.tags()
        out[p] = {"error": err, "ack_error": ack_err, "records": records or b"", "acquired": acq}

    def topic():
        r.uuid()
        r.carr(partition)
        r.tags()

    r.carr(topic)
    return code, out


def share_acknowledge(conn, group, member, epoch, topic_id, batches_by_partition):
    """ShareAcknowledge v1; returns (error_code, {partition: error_code})."""
    parts = [struct.pack(">i", p) + carr(b) + TAGS for p, b in batches_by_partition.items()]
    body = (cstr(group) + cstr(member) + struct.pack(">i", epoch)
            + carr([topic_id.bytes + carr(parts) + TAGS]) + TAGS)
    r = conn.call(79, 1, body)
    r.i32()
    code = r.i16()
    r.cstr()
    out = {}

    def partition():
        p = r.i32()
        out[p] = r.i16()
        r.cstr()
        r.i32(); r.i32(); r.tags()
        r.tags()

    def topic():
        r.uuid()
        r.carr(partition)
        r.tags()

    r.carr(topic)
    return code, out


def batches(records: bytes):
    """[(base_offset, last_offset, total_len)] of the record batches in `records`."""
    out, pos = [], 0
    while pos + 12 <= len(records):
        base, length = struct.unpack_from(">qi", records, pos)
        total = 12 + length
        if pos + total > len(records):
            break
        (last_delta,) = struct.unpack_from(">i", records, pos + 23)
        out.append((base, base + last_delta, total))
        pos += total
    return out
