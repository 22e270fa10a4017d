"""Graceful shutdown with clients still connected (BRIEF section 1: SIGTERM stops accepting,
finishes in-flight requests, flushes, exits 0). Idle connections must not hold the drain up:
a SIGTERM with an idle producer and a consumer group member connected exits promptly and
writes the clean-shutdown marker, so the next start skips crash recovery."""

import time

from conftest import sluice_only, wait_until
from kutil import admin, consume_n, consumer, create_topic, produce_all, producer, wait_assignment

# Well under the broker's 10 s drain bound, which is what a stuck connection costs.
SHUTDOWN_BOUND_S = 5.0
CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"


@sluice_only
def test_sigterm_with_idle_clients_is_prompt_and_clean(broker_factory, unique):
    b = broker_factory()
    t = create_topic(b.bootstrap, unique())
    p = producer(b.bootstrap)
    produce_all(p, t, [(b"k", b"v")])
    c = consumer(b.bootstrap, unique("g"))
    c.subscribe([t])
    assert [m.value() for m in consume_n(c, 1)] == [b"v"]
    # Both clients stay connected and idle: the producer has nothing to send, the consumer
    # keeps its group membership (heartbeats) and librdkafka's background fetches going.
    started = time.monotonic()
    code = b.stop()
    elapsed = time.monotonic() - started
    assert code == 0, f"exit code {code}\n{b.log_tail()}"
    assert elapsed < SHUTDOWN_BOUND_S, f"SIGTERM took {elapsed:.1f} s\n{b.log_tail()}"
    assert (b.data_dir / CLEAN_SHUTDOWN_FILE).is_file(), f"no clean-shutdown marker\n{b.log_tail()}"
    log = b.log_tail(400)
    assert "did not finish within" not in log, log
    # The next start is a clean one (no batch-by-batch recovery), and the clients carry on.
    b.start()
    assert_started_clean(b)
    produce_all(p, t, [(b"k", b"w")])
    # Offsets were not committed: the consumer may read "v" again before "w".
    seen = []
    wait_until(lambda: seen.extend(m.value() for m in [c.poll(0.2)] if m and not m.error())
               or b"w" in seen, 30, "the consumer to read the record produced after the restart")
    c.close()
    p.flush(10)


def assert_started_clean(b):
    text = b.log_paths[-1].read_text(errors="replace")
    assert "the last run shut down cleanly" in text, text[-4000:]


@sluice_only
def test_sigterm_with_a_join_group_waiting_on_an_idle_member_is_prompt_and_clean(broker_factory, unique):
    """A member whose application stopped polling never rejoins, so a new member's JoinGroup
    waits for it (up to its rebalance timeout, minutes): that request must not hold the
    shutdown for the whole drain bound."""
    b = broker_factory()
    t = create_topic(b.bootstrap, unique(), partitions=2)
    g = unique("g")
    idle = consumer(b.bootstrap, g)
    idle.subscribe([t])
    wait_assignment(idle, min_partitions=2)
    joiner = consumer(b.bootstrap, g)
    joiner.subscribe([t])
    # The joiner's JoinGroup reaches the coordinator and waits: the idle member does not poll,
    # so it never rejoins; the group stays in PreparingRebalance.
    wait_until(lambda: joiner.poll(0.1) is None and group_state(b, g).startswith("preparingrebalanc"),
               20, "the rebalance to wait for the idle member")
    started = time.monotonic()
    code = b.stop()
    elapsed = time.monotonic() - started
    assert code == 0, f"exit code {code}\n{b.log_tail()}"
    assert elapsed < SHUTDOWN_BOUND_S, f"SIGTERM took {elapsed:.1f} s\n{b.log_tail()}"
    assert (b.data_dir / CLEAN_SHUTDOWN_FILE).is_file(), f"no clean-shutdown marker\n{b.log_tail()}"
    b.start()
    assert_started_clean(b)
    b.kill9()
    # The clients' close would wait for a coordinator: they are dropped with the process.


def group_state(b, group):
    a = admin(b.bootstrap)
    (fut,) = a.describe_consumer_groups([group]).values()
    return str(fut.result(10).state).rsplit(".", 1)[-1].replace("_", "").lower()
