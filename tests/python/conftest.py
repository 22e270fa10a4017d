"""Harness for the real-client suites: starts the real `sluice` binary on loopback.

Binary: $SLUICE_BIN, else $CARGO_TARGET_DIR/release/sluice, else <repo>/target/release/sluice.

Fixtures
- `broker`        one broker shared by a test module (tests use unique topic/group names).
- `broker_factory` makes brokers owned by one test (restart and `kill -9` tests).
- `unique`        a function returning unique names ("t-<test>-<n>-<rand>").

With SLUICE_TEST_TARGET=kafka, `broker` and `broker_factory` hand out Apache Kafka 4.x
(tests/python/kafka_ref.py, one KRaft node from Maven jars) instead, to check that a test
encodes Kafka's behaviour; tests that need Sluice itself skip with `sluice_only`.

A broker's stderr goes to a log file; when a test fails, the tail of every broker log
the test used is attached to the report.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from ports import free_port  # noqa: F401 - re-exported to the tests

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
# New groups would otherwise wait 3 s (group.initial.rebalance.delay.ms) for more members.
DEFAULT_EXTRA_ARGS = ["--initial-rebalance-delay-ms", "300"]


def sluice_bin() -> str:
    if os.environ.get("SLUICE_BIN"):
        return os.environ["SLUICE_BIN"]
    if os.environ.get("CARGO_TARGET_DIR"):
        return str(Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "sluice")
    return str(REPO / "target" / "release" / "sluice")




def wait_until(cond, timeout, what, interval=0.05):
    """Polls `cond()` until it returns a truthy value; fails the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - reported below
            last_exc = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_exc!r}")


class Broker:
    """One `sluice serve` process; ports and data dir survive restarts."""

    def __init__(self, data_dir: Path, log_dir: Path, extra_args=None, listeners=None, env=None):
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.kafka_port = free_port()
        self.http_port = free_port()
        self.extra_args = list(DEFAULT_EXTRA_ARGS if extra_args is None else extra_args)
        # Extra `--listener NAME=PROTOCOL://127.0.0.1:PORT`s beside the PLAINTEXT one at
        # `kafka_port` (which is then a `--listener` too): {name: protocol}.
        self.listener_ports = {name: (proto, free_port()) for name, proto in (listeners or {}).items()}
        self.env = dict(env or {})
        self.proc = None
        self.starts = 0
        self.log_paths = []

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def listener(self, name: str) -> str:
        """host:port of the extra listener `name`."""
        return f"127.0.0.1:{self.listener_ports[name][1]}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def health_ok(self) -> bool:
        try:
            with urllib.request.urlopen(self.http + "/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def start(self):
        assert self.proc is None, "broker already running"
        self.starts += 1
        log_path = self.log_dir / f"sluice-{self.kafka_port}-{self.starts}.log"
        self.log_paths.append(log_path)
        log = open(log_path, "wb")
        if self.listener_ports:
            kafka = ["--listener", f"PLAINTEXT=PLAINTEXT://{self.bootstrap}"]
            for name, (proto, port) in self.listener_ports.items():
                kafka += ["--listener", f"{name}={proto}://127.0.0.1:{port}"]
        else:
            kafka = ["--kafka-addr", self.bootstrap]
        cmd = [
            sluice_bin(), "serve",
            *kafka,
            "--http-addr", f"127.0.0.1:{self.http_port}",
            "--data-dir", str(self.data_dir),
            *self.extra_args,
        ]
        env = dict(os.environ)
        env.update(self.env)
        env.setdefault("RUST_LOG", "info")
        env["NO_COLOR"] = "1"
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise AssertionError(f"sluice exited with {code} during start:\n{self.log_tail()}")
            if self.health_ok():
                return self
            time.sleep(0.05)
        self.kill9()
        raise AssertionError(f"sluice /health did not answer within {START_TIMEOUT_S}s:\n{self.log_tail()}")

    def stop(self) -> int:
        """SIGTERM, wait (bounded), then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return 0
        p, self.proc = self.proc, None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                return p.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=STOP_TIMEOUT_S)
                raise AssertionError(f"sluice ignored SIGTERM for {STOP_TIMEOUT_S}s")
        return p.returncode

    def kill9(self):
        if self.proc is None:
            return
        p, self.proc = self.proc, None
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait(timeout=STOP_TIMEOUT_S)

    def restart(self):
        code = self.stop()
        assert code == 0, f"sluice exited with {code} on SIGTERM (expected 0)\n{self.log_tail()}"
        return self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines=150) -> str:
        out = []
        for p in self.log_paths:
            try:
                text = p.read_text(errors="replace").splitlines()
            except OSError:
                continue
            out.append(f"----- {p.name} (last {lines} lines) -----")
            out.extend(text[-lines:])
        return "\n".join(out)


_ALL_BROKERS = []


TARGET = os.environ.get("SLUICE_TEST_TARGET", "sluice")
# Marks a test that checks Sluice-only behaviour (skipped when the target is Apache Kafka).
sluice_only = pytest.mark.skipif(TARGET != "sluice", reason=f"Sluice-only (SLUICE_TEST_TARGET={TARGET})")


def _new_broker(tmp_root: Path, extra_args=None, listeners=None, env=None) -> Broker:
    data = tmp_root / f"data-{uuid.uuid4().hex[:8]}"
    data.mkdir(parents=True)
    if TARGET == "kafka":
        from kafka_ref import KafkaRef

        b = KafkaRef(data, tmp_root)
    else:
        b = Broker(data, tmp_root, extra_args, listeners, env)
    _ALL_BROKERS.append(b)
    return b


@pytest.fixture(scope="session")
def tmp_root():
    d = Path(tempfile.mkdtemp(prefix="sluice-it-"))
    yield d
    # SLUICE_KEEP_TMP=1 keeps the brokers' data dirs and logs for a post-mortem.
    if os.environ.get("SLUICE_KEEP_TMP") != "1":
        shutil.rmtree(d, ignore_errors=True)
    else:
        print(f"\nbroker data and logs kept in {d}")


@pytest.fixture(scope="module")
def broker(tmp_root):
    b = _new_broker(tmp_root).start()
    yield b
    code = b.stop()
    assert code == 0, f"sluice exited with {code} on SIGTERM\n{b.log_tail()}"


@pytest.fixture
def broker_factory(tmp_root, request):
    made = []
    request.node._sluice_brokers = made

    def make(extra_args=None, start=True, listeners=None, env=None) -> Broker:
        b = _new_broker(tmp_root, extra_args, listeners, env)
        made.append(b)
        return b.start() if start else b

    yield make
    for b in made:
        b.kill9()


@pytest.fixture
def unique(request):
    counter = [0]
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")

    def make(prefix="t"):
        counter[0] += 1
        return f"{prefix}-{base}-{counter[0]}-{uuid.uuid4().hex[:6]}"

    return make


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        used = [v for v in getattr(item, "funcargs", {}).values() if hasattr(v, "log_tail")]
        used += [b for b in getattr(item, "_sluice_brokers", []) if b not in used]
        for b in used:
            rep.sections.append((f"sluice log ({b.bootstrap})", b.log_tail()))
