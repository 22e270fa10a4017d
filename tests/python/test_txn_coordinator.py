"""The transaction coordinator's surface, over the raw protocol (the non-flexible versions
librdkafka and kafkajs send) and through `sluice txn`: FindCoordinator key_type=1,
InitProducerId (fencing, KIP-360 epoch errors, timeout bounds), AddPartitionsToTxn,
AddOffsetsToTxn, EndTxn (retries and wrong-state errors), durability across restarts and
kill -9, the timeout abort, ListTransactions and DescribeTransactions.

Transactions that only add a group (AddOffsetsToTxn) complete without partition markers, so
most tests here run on the coordinator alone. The tests after the "markers" line write markers to
partitions (`Partition::append_marker`, the partition-side work) and pass once it is merged.
"""

import json
import struct
import subprocess

import pytest
from confluent_kafka import Producer

from conftest import sluice_bin, wait_until
from kutil import create_topic, kafka_conn, recv_exact

NONE = 0
INVALID_PRODUCER_EPOCH = 47
INVALID_TXN_STATE = 48
INVALID_PRODUCER_ID_MAPPING = 49
INVALID_TRANSACTION_TIMEOUT = 50
CONCURRENT_TRANSACTIONS = 51
INVALID_REQUEST = 42
PRODUCER_FENCED = 90

FIND_COORDINATOR, INIT_PRODUCER_ID, ADD_PARTITIONS, ADD_OFFSETS, END_TXN = 10, 22, 24, 25, 26


def kstr(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def uvarint(n):
    out = bytearray()
    while True:
        if n & ~0x7F:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        else:
            out.append(n)
            return bytes(out)


def compact_str(s):
    if s is None:
        return b"\x00"
    b = s.encode()
    return uvarint(len(b) + 1) + b


class Conn:
    """One raw connection; `call` sends a request and returns the response body."""

    def __init__(self, broker):
        self.s = kafka_conn(broker)
        self.corr = 0

    def call(self, api_key, version, body, flexible=False):
        self.corr += 1
        header = struct.pack(">hhi", api_key, version, self.corr) + kstr("txn-test")
        if flexible:
            header += b"\x00"
        payload = header + body
        self.s.sendall(struct.pack(">i", len(payload)) + payload)
        (n,) = struct.unpack(">i", recv_exact(self.s, 4))
        resp = recv_exact(self.s, n)
        (corr,) = struct.unpack(">i", resp[:4])
        assert corr == self.corr
        return resp[5:] if flexible else resp[4:]

    def close(self):
        self.s.close()

    # --- requests ---

    def init_pid(self, txn_id, timeout_ms=60000):
        """InitProducerId v1 -> (error, pid, epoch)."""
        r = self.call(INIT_PRODUCER_ID, 1, kstr(txn_id) + struct.pack(">i", timeout_ms))
        _, err, pid, epoch = struct.unpack(">ihqh", r[:16])
        return err, pid, epoch

    def init_pid_v4(self, txn_id, pid=-1, epoch=-1, timeout_ms=60000):
        """InitProducerId v4 (flexible, KIP-360 fields) -> (error, pid, epoch)."""
        body = compact_str(txn_id) + struct.pack(">iqh", timeout_ms, pid, epoch) + b"\x00"
        r = self.call(INIT_PRODUCER_ID, 4, body, flexible=True)
        _, err, pid, epoch = struct.unpack(">ihqh", r[:16])
        return err, pid, epoch

    def add_partitions(self, txn_id, pid, epoch, topic, partitions):
        """AddPartitionsToTxn v1 -> {partition: error}."""
        body = (kstr(txn_id) + struct.pack(">qh", pid, epoch) + struct.pack(">i", 1) + kstr(topic)
                + struct.pack(">i", len(partitions)) + b"".join(struct.pack(">i", p) for p in partitions))
        r = self.call(ADD_PARTITIONS, 1, body)
        pos = 4
        (ntopics,) = struct.unpack(">i", r[pos:pos + 4]); pos += 4
        out = {}
        for _ in range(ntopics):
            (ln,) = struct.unpack(">h", r[pos:pos + 2]); pos += 2 + ln
            (np,) = struct.unpack(">i", r[pos:pos + 4]); pos += 4
            for _ in range(np):
                p, err = struct.unpack(">ih", r[pos:pos + 6]); pos += 6
                out[p] = err
        return out

    def add_offsets(self, txn_id, pid, epoch, group, version=0):
        r = self.call(ADD_OFFSETS, version, kstr(txn_id) + struct.pack(">qh", pid, epoch) + kstr(group))
        return struct.unpack(">ih", r[:6])[1]

    def end_txn(self, txn_id, pid, epoch, commit, version=1):
        r = self.call(END_TXN, version, kstr(txn_id) + struct.pack(">qhb", pid, epoch, 1 if commit else 0))
        return struct.unpack(">ih", r[:6])[1]

    def find_coordinator(self, key, key_type):
        r = self.call(FIND_COORDINATOR, 1, kstr(key) + struct.pack(">b", key_type))
        _, err = struct.unpack(">ih", r[:6])
        pos = 6
        (ln,) = struct.unpack(">h", r[pos:pos + 2]); pos += 2 + max(ln, 0)
        (node,) = struct.unpack(">i", r[pos:pos + 4])
        return err, node


@pytest.fixture
def conn(broker):
    c = Conn(broker)
    yield c
    c.close()


def cli(broker, *args):
    out = subprocess.run([sluice_bin(), "txn", *args, "--bootstrap-server", broker.bootstrap,
                          "--output", "json"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else None


def describe(broker, txn_id):
    return cli(broker, "describe", txn_id)


def test_find_coordinator_for_transactional_id(broker, conn, unique):
    err, node = conn.find_coordinator(unique("txn"), 1)
    assert err == NONE
    assert node >= 0


def test_init_producer_id_bounds(broker, conn, unique):
    assert conn.init_pid(unique("txn"), timeout_ms=0)[0] == INVALID_TRANSACTION_TIMEOUT
    assert conn.init_pid(unique("txn"), timeout_ms=900_001)[0] == INVALID_TRANSACTION_TIMEOUT
    assert conn.init_pid("")[0] == INVALID_REQUEST
    err, pid, epoch = conn.init_pid(unique("txn"), timeout_ms=900_000)
    assert (err, epoch) == (NONE, 0) and pid >= 0
    # The null id keeps the plain idempotent path.
    err, pid2, epoch2 = conn.init_pid(None)
    assert (err, epoch2) == (NONE, 0) and pid2 != pid


def test_init_bumps_epoch_and_kip360(broker, conn, unique):
    tid = unique("txn")
    err, pid, e0 = conn.init_pid_v4(tid)
    assert (err, e0) == (NONE, 0)
    assert conn.init_pid_v4(tid)[1:] == (pid, 1)
    # KIP-360: the current id and epoch bump; a retry of that bump gets the same answer.
    assert conn.init_pid_v4(tid, pid, 1) == (NONE, pid, 2)
    assert conn.init_pid_v4(tid, pid, 1) == (NONE, pid, 2)
    # An unknown producer id, or an epoch older than the last one, is fenced.
    assert conn.init_pid_v4(tid, pid + 1000, 0)[0] == PRODUCER_FENCED
    assert conn.init_pid_v4(tid, pid, 0)[0] == PRODUCER_FENCED


def test_add_partitions_errors(broker, conn, unique):
    topic = unique("topic")
    create_topic(broker.bootstrap, topic, partitions=2)
    tid = unique("txn")
    _, pid, epoch = conn.init_pid(tid)
    assert conn.add_partitions(tid, pid + 1, epoch, topic, [0]) == {0: INVALID_PRODUCER_ID_MAPPING}
    assert conn.add_partitions(tid, pid, epoch + 1, topic, [0]) == {0: INVALID_PRODUCER_EPOCH}
    assert conn.add_partitions(unique("other"), pid, epoch, topic, [0]) == {0: INVALID_PRODUCER_ID_MAPPING}
    # An unknown partition fails the request; the others are not attempted.
    assert conn.add_partitions(tid, pid, epoch, topic, [0, 7]) == {0: 55, 7: 3}
    assert conn.add_partitions(tid, pid, epoch, topic, [0, 1]) == {0: NONE, 1: NONE}
    d = describe(broker, tid)
    assert d["state"] == "Ongoing"
    assert sorted(d["partitions"]) == [f"{topic}-0", f"{topic}-1"]


def test_end_txn_retries_and_wrong_state(broker, conn, unique):
    tid, group = unique("txn"), unique("group")
    _, pid, epoch = conn.init_pid(tid)
    # No transaction open (TV1): INVALID_TXN_STATE.
    assert conn.end_txn(tid, pid, epoch, True) == INVALID_TXN_STATE
    assert conn.end_txn(tid, pid, epoch + 1, True) == INVALID_PRODUCER_EPOCH
    assert conn.end_txn(tid, pid, epoch + 1, True, version=2) == PRODUCER_FENCED
    assert conn.end_txn(tid, pid + 1, epoch, True) == INVALID_PRODUCER_ID_MAPPING
    assert conn.add_offsets(tid, pid, epoch, group) == NONE
    assert conn.end_txn(tid, pid, epoch, True) == NONE
    # A retry: NONE once complete, CONCURRENT_TRANSACTIONS while the markers are written.
    wait_until(lambda: conn.end_txn(tid, pid, epoch, True) == NONE, 10, "commit retry answered NONE")
    assert describe(broker, tid)["state"] == "CompleteCommit"
    # The opposite result is a wrong state.
    assert conn.end_txn(tid, pid, epoch, False) == INVALID_TXN_STATE
    # A new transaction with the same epoch, aborted.
    assert conn.add_offsets(tid, pid, epoch, group) == NONE
    assert conn.end_txn(tid, pid, epoch, False) == NONE
    wait_until(lambda: describe(broker, tid)["state"] == "CompleteAbort", 10, "abort completes")
    assert conn.end_txn(tid, pid, epoch, True) == INVALID_TXN_STATE


def test_init_fences_an_open_transaction(broker, conn, unique):
    tid, group = unique("txn"), unique("group")
    _, pid, epoch = conn.init_pid(tid)
    assert conn.add_offsets(tid, pid, epoch, group) == NONE
    # A new instance: the open transaction is aborted under epoch+1; the client retries.
    assert conn.init_pid(tid)[0] == CONCURRENT_TRANSACTIONS
    got = wait_until(lambda: (lambda r: r if r[0] == NONE else None)(conn.init_pid(tid)), 10,
                     "InitProducerId succeeds after the fencing abort")
    assert got[1:] == (pid, epoch + 2)
    assert describe(broker, tid)["state"] == "Empty"
    # The zombie is fenced everywhere.
    assert conn.end_txn(tid, pid, epoch, True) == INVALID_PRODUCER_EPOCH
    assert conn.add_offsets(tid, pid, epoch, group) == INVALID_PRODUCER_EPOCH


def test_state_survives_kill9(broker_factory, unique):
    b = broker_factory()
    c = Conn(b)
    tid, tid2, group = unique("txn"), unique("txn"), unique("group")
    _, pid, epoch = c.init_pid(tid)
    assert c.add_offsets(tid, pid, epoch, group) == NONE
    _, pid2, epoch2 = c.init_pid(tid2)
    assert c.add_offsets(tid2, pid2, epoch2, group) == NONE
    assert c.end_txn(tid2, pid2, epoch2, True) == NONE
    c.close()
    b.kill9()
    b.start()
    d = describe(b, tid)
    assert (d["state"], d["producer_id"], d["producer_epoch"]) == ("Ongoing", pid, epoch)
    wait_until(lambda: describe(b, tid2)["state"] == "CompleteCommit", 10, "committed txn recovered")
    c = Conn(b)
    assert c.end_txn(tid, pid, epoch, True) == NONE
    wait_until(lambda: describe(b, tid)["state"] == "CompleteCommit", 10, "commit after restart")
    # The coordinator never hands out a producer id twice across restarts.
    err, pid3, _ = c.init_pid(unique("txn"))
    assert err == NONE and pid3 not in (pid, pid2)
    c.close()


def test_timeout_aborts_and_fences(broker_factory, unique):
    b = broker_factory(extra_args=["--initial-rebalance-delay-ms", "300",
                                   "--transaction-abort-interval-ms", "100"])
    c = Conn(b)
    tid, group = unique("txn"), unique("group")
    _, pid, epoch = c.init_pid(tid, timeout_ms=500)
    assert c.add_offsets(tid, pid, epoch, group) == NONE
    wait_until(lambda: describe(b, tid)["state"] == "CompleteAbort", 15, "timed-out txn aborted")
    d = describe(b, tid)
    assert d["producer_epoch"] == epoch + 1
    assert c.end_txn(tid, pid, epoch, True) == INVALID_PRODUCER_EPOCH
    c.close()


def test_max_timeout_flag(broker_factory, unique):
    b = broker_factory(extra_args=["--transaction-max-timeout-ms", "1000"])
    c = Conn(b)
    assert c.init_pid(unique("txn"), timeout_ms=1001)[0] == INVALID_TRANSACTION_TIMEOUT
    assert c.init_pid(unique("txn"), timeout_ms=1000)[0] == NONE
    c.close()


def test_list_and_describe(broker, conn, unique):
    topic = unique("topic")
    create_topic(broker.bootstrap, topic)
    a, b = unique("txn"), unique("txn")
    _, pid_a, ea = conn.init_pid(a)
    _, pid_b, _ = conn.init_pid(b)
    assert conn.add_partitions(a, pid_a, ea, topic, [0]) == {0: NONE}
    listed = {t["transactional_id"]: t for t in cli(broker, "list")}
    assert listed[a]["state"] == "Ongoing" and listed[a]["producer_id"] == pid_a
    assert listed[b]["state"] == "Empty" and listed[b]["producer_id"] == pid_b
    ongoing = {t["transactional_id"] for t in cli(broker, "list", "--state", "Ongoing")}
    assert a in ongoing and b not in ongoing
    by_pid = cli(broker, "list", "--producer-id", str(pid_b))
    assert [t["transactional_id"] for t in by_pid] == [b]
    assert a not in {t["transactional_id"] for t in cli(broker, "list", "--duration-filter", "3600000")}
    d = describe(broker, a)
    assert d["state"] == "Ongoing" and d["partitions"] == [f"{topic}-0"] and d["timeout_ms"] == 60000
    assert d["start_time_ms"] > 0
    out = subprocess.run([sluice_bin(), "txn", "describe", unique("missing"), "--bootstrap-server",
                          broker.bootstrap], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "TRANSACTIONAL_ID_NOT_FOUND" in out.stderr.upper().replace(" ", "_")


def test_confluent_kafka_init_and_abort_empty(broker, unique):
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": unique("txn")})
    p.init_transactions(15)
    p.begin_transaction()
    p.abort_transaction(15)
    p.begin_transaction()
    p.commit_transaction(15)


# ---- These write markers to partitions: they pass once the partition side is merged. ----


def test_commit_with_partitions_completes(broker, conn, unique):
    topic = unique("topic")
    create_topic(broker.bootstrap, topic, partitions=2)
    tid = unique("txn")
    _, pid, epoch = conn.init_pid(tid)
    assert conn.add_partitions(tid, pid, epoch, topic, [0, 1]) == {0: NONE, 1: NONE}
    assert conn.end_txn(tid, pid, epoch, True) == NONE
    wait_until(lambda: describe(broker, tid)["state"] == "CompleteCommit", 15, "markers written")


def test_restart_resends_markers(broker_factory, unique):
    b = broker_factory()
    topic = unique("topic")
    create_topic(b.bootstrap, topic)
    c = Conn(b)
    tid = unique("txn")
    _, pid, epoch = c.init_pid(tid)
    assert c.add_partitions(tid, pid, epoch, topic, [0]) == {0: NONE}
    assert c.end_txn(tid, pid, epoch, True) == NONE
    # kill -9 right after the decision is durable (usually before the markers are done).
    b.kill9()
    c.close()
    b.start()
    assert describe(b, tid)["state"] in ("PrepareCommit", "CompleteCommit")
    wait_until(lambda: describe(b, tid)["state"] == "CompleteCommit", 15, "markers re-sent after restart")


def test_cli_abort_hanging_transaction(broker, unique):
    topic = unique("topic")
    create_topic(broker.bootstrap, topic)
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": unique("txn"),
                  "transaction.timeout.ms": 600000})
    p.init_transactions(15)
    p.begin_transaction()
    p.produce(topic, b"v", partition=0)
    assert p.flush(15) == 0
    hanging = cli(broker, "find-hanging", "--topic", topic, "--max-transaction-timeout", "0")
    assert [h["start_offset"] for h in hanging] == [0]
    # A coordinator epoch from the future would fence the real coordinator's markers for this
    # producer: refused, and the transaction is still there to abort properly.
    future = subprocess.run(
        [sluice_bin(), "txn", "abort", "--topic", topic, "--partition", "0",
         "--producer-id", str(hanging[0]["producer_id"]),
         "--producer-epoch", str(hanging[0]["producer_epoch"]),
         "--coordinator-epoch", "1000000", "--bootstrap-server", broker.bootstrap],
        capture_output=True, text=True, timeout=30)
    assert future.returncode != 0, future.stdout
    assert "INVALID_REQUEST" in future.stderr.upper().replace(" ", "_") or "invalid" in future.stderr.lower(), future.stderr
    assert [h["start_offset"] for h in cli(
        broker, "find-hanging", "--topic", topic, "--max-transaction-timeout", "0")] == [0]
    out = cli(broker, "abort", "--topic", topic, "--partition", "0", "--start-offset", "0")
    assert out["status"] == "aborted"
    assert cli(broker, "find-hanging", "--topic", topic, "--max-transaction-timeout", "0") == []
