"""librdkafka's own transaction tests (tests/librdkafka/run: 0103, 0129, 0098, 0137) against the
broker of the `broker` fixture (Sluice, or Apache Kafka with SLUICE_TEST_TARGET=kafka).

The first run builds librdkafka's test binary into ~/.cache/sluice-librdkafka-tests (a few
minutes on 2 cores); later runs reuse it. 0098 also needs the Kafka client jars from
tests/kafka-ref/kafka-ref fetch (Maven) and javac. SLUICE_RDKTESTS="0103 0129" narrows the
selection; SLUICE_RDKTEST_FULL=1 drops librdkafka's quick mode.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "tests" / "librdkafka" / "run"
TESTS = os.environ.get("SLUICE_RDKTESTS", "0103 0129 0098 0137").split()

pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def rdk_tests():
    """Builds (once, cached) librdkafka's test-runner."""
    subprocess.run([str(REPO / "tests" / "librdkafka" / "build")], check=True,
                   stdout=subprocess.DEVNULL, timeout=1800)


@pytest.mark.parametrize("test", TESTS)
def test_librdkafka(broker, rdk_tests, test, tmp_path):
    if test == "0098":
        if not (REPO / "tests" / "kafka-ref" / "kafka-ref").exists() and not os.environ.get("KAFKA_PATH"):
            pytest.skip("0098 needs the Kafka client jars (tests/kafka-ref) or $KAFKA_PATH")
        if not shutil.which("javac"):
            pytest.skip("0098 needs javac")
    env = dict(os.environ, OUT_DIR=str(tmp_path))
    r = subprocess.run([str(RUN), "--bootstrap", broker.bootstrap, test], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1100)
    if r.returncode != 0:
        log = tmp_path / f"{test}.log"
        tail = log.read_text(errors="replace").splitlines()[-150:] if log.exists() else []
        pytest.fail(f"librdkafka test {test} failed:\n{r.stdout}\n" + "\n".join(tail))
