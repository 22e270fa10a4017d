"""Kafka Streams exactly_once_v2 survives kill -9 of the app and of the broker.

A word count (re-key by word -> repartition topic; count in a state store -> compacted changelog;
caching off, so every input record makes one output record) runs from tests/java
(sluice.tests.StreamsEos) while a paced idempotent generator writes the input. Mid-run the Streams
process is killed with SIGKILL and restarted (same state dir), then the broker is killed with SIGKILL
and restarted (same data dir and port); each kill waits for a moment when a transaction holding
output records is open (output's last stable offset below its high watermark), so the kills do cut
transactions off and the check below sees their records only through read_uncommitted. Afterwards a read_committed reader checks that for every word
the output holds exactly the counts 1, 2, ..., n, where n is the word's number of input records:
nothing missing, nothing twice. The generator writes all along (both kills land mid-run) and stops
only once the restarted broker has served the restarted app for a while.
"""

import json
import time

import pytest

import jvm
from confluent_kafka import TopicPartition

from conftest import wait_until
from kutil import consumer, create_topic

MIN_RECORDS = 3000  # the generator writes at least this many, and on until the broker is back
RATE = 250          # records/s
KEYS = 30
PARTITIONS = 3


@pytest.fixture(scope="module")
def java_cp():
    return jvm.java_classpath()


def verify(cp, bootstrap, topic_in, topic_out):
    r = jvm.run(cp, "streams-verify", bootstrap, topic_in, topic_out, timeout=60)
    for line in r.stdout.splitlines():
        if line.startswith("VERIFY "):
            return json.loads(line[len("VERIFY "):])
    raise AssertionError(f"streams-verify printed no result:\n{r.stdout[-4000:]}")


@pytest.mark.timeout(300)
def test_streams_eos_v2_kill9_app_and_broker(broker_factory, unique, java_cp, tmp_path):
    t0 = time.monotonic()
    b = broker_factory()
    topic_in, topic_out, app_id = unique("in"), unique("out"), unique("app")
    create_topic(b.bootstrap, topic_in, PARTITIONS)
    create_topic(b.bootstrap, topic_out, PARTITIONS)
    state = tmp_path / "state"
    procs = []

    def start_app(n):
        p = jvm.JavaProc(java_cp, tmp_path / f"streams-{n}.log", "streams-app", b.bootstrap,
                         app_id, topic_in, topic_out, state)
        procs.append(p)
        return p

    probes = {iso: consumer(b.bootstrap, group=unique("probe"), **{"isolation.level": iso})
              for iso in ("read_committed", "read_uncommitted")}

    def open_txn_with_output():
        """True when some output partition has records of an open transaction (LSO < HW)."""
        for p in range(PARTITIONS):
            tp = TopicPartition(topic_out, p)
            lso = probes["read_committed"].get_watermark_offsets(tp, timeout=5)[1]
            hw = probes["read_uncommitted"].get_watermark_offsets(tp, timeout=5)[1]
            if lso < hw:
                return True
        return False

    def phase(what):
        print(f"{time.monotonic() - t0:6.1f}s {what}", flush=True)

    phase("broker up, topics made")
    gen = None
    try:
        app = start_app(1)
        deadline = time.monotonic() + 90
        while "STATE RUNNING" not in app.text():
            # Fail fast when the app cannot start at all (its stream thread dies again and again).
            assert app.text().count("THREAD-ERROR") < 3, "Streams cannot start:\n" + app.tail()
            assert app.proc.poll() is None, "Streams exited:\n" + app.tail()
            assert time.monotonic() < deadline, "Streams not RUNNING within 90 s:\n" + app.tail()
            time.sleep(0.2)
        phase("Streams RUNNING; generator starts")
        stop_file = tmp_path / "generator.stop"
        gen = jvm.JavaProc(java_cp, tmp_path / "generator.log", "streams-generate", b.bootstrap,
                           topic_in, MIN_RECORDS, RATE, KEYS, stop_file)
        procs.append(gen)
        wait_until(lambda: app.last_int("processed") >= 500, 60, "first Streams instance processing")
        wait_until(open_txn_with_output, 30, "an open transaction with output records", interval=0.01)
        app.kill9()
        phase("kill -9 Streams")
        app = start_app(2)
        wait_until(lambda: app.last_int("processed") >= 300, 60, "restarted Streams instance processing")
        assert gen.proc.poll() is None, gen.tail()
        wait_until(open_txn_with_output, 30, "an open transaction with output records", interval=0.01)
        b.kill9()
        phase("kill -9 broker")
        b.start()
        phase("broker restarted")
        before = app.last_int("processed")
        wait_until(lambda: app.last_int("processed") >= before + 300, 90,
                   "Streams processing again after the broker restart")
        stop_file.touch()
        assert gen.wait(timeout=150) == 0, gen.tail()
        records = gen.last_int("generated")
        phase(f"generator done: {records} records")
        assert f"generated={records} failed=0" in gen.text() and records >= MIN_RECORDS, gen.tail()

        last = {}

        def complete():
            last.update(verify(java_cp, b.bootstrap, topic_in, topic_out))
            return last["complete"]

        wait_until(complete, 120, "Streams output to catch up with the input", interval=1.0)
        phase("output complete")
        assert app.stop() in (0, 143), app.tail()
        final = verify(java_cp, b.bootstrap, topic_in, topic_out)
        phase(f"final: {final}")
        assert final["input"] == records and final["input_dups"] == 0, final
        assert final["keys"] == KEYS, final
        assert final["exact"], final
        assert final["output"] == records, final
        phase(f"aborted output records (read_uncommitted only): {final['output_uncommitted'] - final['output']}")
        assert final["output_uncommitted"] > final["output"], "no transaction with output was aborted"
    except BaseException:
        print("\n".join(p.digest() for p in procs))
        print("\n".join(p.tail() for p in procs))
        raise
    finally:
        for c in probes.values():
            c.close()
        for p in procs:
            if p.proc.poll() is None:
                p.kill9()
