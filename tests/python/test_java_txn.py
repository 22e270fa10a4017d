"""Transactions through the Java client (kafka-clients 4.x): tests/java, sluice.tests.TxnScenarios.

Each scenario asserts in Java and prints "CHECK ok: ..." per check; a failure prints the check and
exits 1. The Java 4.x client runs the KIP-890 (TV2) flow when the broker finalizes
transaction.version >= 2 and the older flow otherwise; the scenarios hold for both.
Checked against Apache Kafka with SLUICE_TEST_TARGET=kafka (tests/kafka-ref/README.md).
"""

import pytest

import jvm


@pytest.fixture(scope="module")
def java_cp():
    return jvm.java_classpath()


def test_java_transaction_version_reported(broker, java_cp):
    """Which transaction flow the Java client will use against this broker (shown with -rA)."""
    r = jvm.run(java_cp, "transaction-version", broker.bootstrap, timeout=60)
    assert r.returncode == 0, r.stdout
    tv = int(r.stdout.strip().splitlines()[0])
    print(f"finalized transaction.version = {tv}")
    assert tv >= 0, r.stdout


@pytest.mark.parametrize("scenario", [
    "txn-commit-abort",   # commit/abort across partitions of 2 topics; read_committed vs read_uncommitted; LSO
    "txn-fencing",        # same transactional.id fences the first producer: ProducerFencedException
    "txn-send-offsets",   # consume-transform-produce with sendOffsetsToTransaction(groupMetadata)
    "txn-send-offsets-kip848",  # the same with group.protocol=consumer (KIP-848 member epochs)
    "txn-timeout",        # transaction.timeout.ms exceeded: the coordinator aborts it
])
def test_java_transactions(broker, unique, java_cp, scenario):
    r = jvm.run(java_cp, scenario, broker.bootstrap, unique("j"), timeout=100)
    print("\n".join(line for line in r.stdout.splitlines() if line.startswith("INFO ")))
    assert r.returncode == 0 and f"PASSED {scenario}" in r.stdout, r.stdout[-8000:]
