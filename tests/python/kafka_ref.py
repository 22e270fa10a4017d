"""Apache Kafka 4.x as a reference broker: one KRaft node (broker + controller) run from Maven jars.

Used two ways (see tests/kafka-ref/README.md):
- from pytest: with SLUICE_TEST_TARGET=kafka, conftest.py's `broker` / `broker_factory` fixtures hand
  out a `KafkaRef` instead of a Sluice `Broker` (same interface: bootstrap, start, stop, kill9,
  restart, alive, log_tail), so a test can be checked against Apache Kafka itself;
- from the shell: tests/kafka-ref/kafka-ref (start / stop / fetch / run), e.g. as a benchmark peer.

Standard library only. Needs `java` (17+) and, the first time, `mvn` to fetch the jars into a cache
outside the checkout (default ~/.cache/sluice-kafka-ref/<version>/libs).

Environment:
  SLUICE_KAFKA_VERSION    Apache Kafka version (default below; any 4.x that Maven Central serves)
  SLUICE_KAFKA_REF_CACHE  jar cache (default ~/.cache/sluice-kafka-ref)
  SLUICE_KAFKA_HEAP       broker heap, -Xmx (default 512m)
  SLUICE_KAFKA_JAVA       java binary (default $JAVA_HOME/bin/java, else `java`)
  SLUICE_KAFKA_TXN_VERSION  finalize feature transaction.version at this level when formatting
                          (default: Kafka's own default for a new cluster, 2 in 4.x; 1 = the pre-KIP-890 flow)
"""

import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REF_DIR = REPO / "tests" / "kafka-ref"
DEFAULT_VERSION = "4.1.1"
DEFAULT_HEAP = "512m"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0

# Kafka's defaults, except what a one-node cluster needs (replication factor 1) and what keeps
# tests short (no initial rebalance delay; timed-out transactions found within a second).
BASE_CONFIG = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "num.partitions": "1",
    "default.replication.factor": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "5",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "5",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
    "auto.create.topics.enable": "true",
    "log.flush.interval.messages": "9223372036854775807",
}


def kafka_version() -> str:
    return os.environ.get("SLUICE_KAFKA_VERSION", DEFAULT_VERSION)


def cache_root() -> Path:
    env = os.environ.get("SLUICE_KAFKA_REF_CACHE")
    return Path(env) if env else Path(os.environ.get("HOME", "/root")) / ".cache" / "sluice-kafka-ref"


def java_bin() -> str:
    if os.environ.get("SLUICE_KAFKA_JAVA"):
        return os.environ["SLUICE_KAFKA_JAVA"]
    if os.environ.get("JAVA_HOME"):
        return str(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    return "java"


def ensure_jars(version: str = None, quiet: bool = True) -> Path:
    """The directory of Kafka's broker jars + runtime deps, fetched with Maven on first use."""
    version = version or kafka_version()
    libs = cache_root() / version / "libs"
    stamp = libs / ".complete"
    if stamp.exists():
        return libs
    tmp = cache_root() / version / f"libs.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = ["mvn", "-B", "-f", str(REF_DIR / "pom.xml"), "dependency:copy-dependencies",
           f"-Dkafka.version={version}", "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"]
    if quiet:
        cmd.insert(2, "-q")
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=quiet, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"fetching Apache Kafka {version} jars failed:\n{(r.stdout or '')[-4000:]}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    stamp.touch()
    return libs


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metadata_broker_count(port: int, timeout: float = 2.0) -> int:
    """Metadata v1 (no topics) over a raw socket: how many brokers the node says are alive."""
    client = b"kafka-ref"
    body = struct.pack(">hhih", 3, 1, 1, len(client)) + client + struct.pack(">i", 0)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(body)) + body)
        head = _recv_exact(s, 4)
        (size,) = struct.unpack(">i", head)
        if size < 8 or size > 1 << 20:
            return 0
        resp = _recv_exact(s, size)
    _corr, n_brokers = struct.unpack(">ii", resp[:8])
    return n_brokers


def _recv_exact(s, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


class KafkaRef:
    """One Apache Kafka KRaft node; its ports and data dir survive restarts (kill -9 included).

    The ports and cluster id are kept in <data_dir>/kafka-ref.json, so a second KafkaRef made on
    the same data dir (e.g. by the CLI) comes back on the same port.
    """

    def __init__(self, data_dir: Path, log_dir: Path = None, port: int = None, heap: str = None,
                 version: str = None, config: dict = None, features: dict = None, extra_args=None):
        # extra_args: Sluice's command-line flags (conftest's interface); ignored here.
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = Path(log_dir) if log_dir else self.data_dir
        self.version = version or kafka_version()
        self.heap = heap or os.environ.get("SLUICE_KAFKA_HEAP", DEFAULT_HEAP)
        self.config = dict(config or {})
        self.features = dict(features or {})
        if os.environ.get("SLUICE_KAFKA_TXN_VERSION") and "transaction.version" not in self.features:
            self.features["transaction.version"] = os.environ["SLUICE_KAFKA_TXN_VERSION"]
        state_path = self.data_dir / "kafka-ref.json"
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        self.kafka_port = port or state.get("port") or free_port()
        self.controller_port = state.get("controller_port") or free_port()
        self.cluster_id = state.get("cluster_id") or \
            base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        state_path.write_text(json.dumps({"port": self.kafka_port, "controller_port": self.controller_port,
                                          "cluster_id": self.cluster_id, "version": self.version}))
        self.proc = None
        self.pid = None
        self.starts = 0
        self.log_paths = []

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def http(self) -> str:
        raise AssertionError("Apache Kafka has no Sluice HTTP endpoint")

    def _write_config(self) -> Path:
        cfg = dict(BASE_CONFIG)
        cfg.update({
            "listeners": f"PLAINTEXT://127.0.0.1:{self.kafka_port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.kafka_port}",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "log.dirs": str(self.data_dir / "log"),
            "metadata.log.dir": str(self.data_dir / "meta"),
        })
        cfg.update(self.config)
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in cfg.items()))
        return path

    def _classpath(self) -> str:
        return str(ensure_jars(self.version)) + "/*"

    def _java(self, main: str, *args, heap=None):
        return [java_bin(), f"-Xmx{heap or self.heap}", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={REF_DIR / 'log4j2.properties'}",
                "-cp", self._classpath(), main, *args]

    def _format_if_needed(self, props: Path):
        if (self.data_dir / "meta" / "meta.properties").exists():
            return
        args = ["format", "-t", self.cluster_id, "-c", str(props), "--ignore-formatted"]
        for name, level in self.features.items():
            args += ["--feature", f"{name}={level}"]
        cmd = self._java("kafka.tools.StorageTool", *args, heap="256m")
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise AssertionError(f"kafka-storage format failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")

    def start(self, detach: bool = False):
        assert not self.alive(), "kafka already running"
        props = self._write_config()
        self._format_if_needed(props)
        self.starts += 1
        n = self.starts
        while (self.log_dir / f"kafka-{self.kafka_port}-{n}.log").exists():
            n += 1
        log_path = self.log_dir / f"kafka-{self.kafka_port}-{n}.log"
        self.log_paths.append(log_path)
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(self._java("kafka.Kafka", str(props)), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=detach)
        self.pid = self.proc.pid
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise AssertionError(f"kafka exited with {code} during start:\n{self.log_tail()}")
            try:
                if _metadata_broker_count(self.kafka_port) >= 1:
                    return self
            except (OSError, struct.error):
                pass
            time.sleep(0.2)
        self.kill9()
        raise AssertionError(f"kafka did not serve within {START_TIMEOUT_S}s:\n{self.log_tail()}")

    def stop(self) -> int:
        """SIGTERM (controlled shutdown), wait (bounded), then SIGKILL. Returns 0 for a clean stop
        (and, with a message on stderr, for a shutdown that stalled and was killed)."""
        if self.proc is None:
            return 0
        p, self.proc = self.proc, None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                code = p.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                # Seen with Kafka 4.1 when SIGTERM comes within a few seconds of startup: its
                # shutdown stalls. That is Kafka's, not the test's: kill it and go on.
                p.kill()
                p.wait(timeout=STOP_TIMEOUT_S)
                print(f"kafka-ref: pid {p.pid} did not stop within {STOP_TIMEOUT_S}s of SIGTERM; killed",
                      file=sys.stderr)
                return 0
        else:
            code = p.returncode
        # The JVM exits with 128+SIGTERM after running its shutdown hooks: that is a clean stop.
        return 0 if code in (0, 128 + signal.SIGTERM, -signal.SIGTERM) else code

    def kill9(self):
        if self.proc is None:
            return
        p, self.proc = self.proc, None
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait(timeout=STOP_TIMEOUT_S)

    def restart(self):
        code = self.stop()
        assert code == 0, f"kafka exited with {code} on SIGTERM\n{self.log_tail()}"
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


def data_dir_of(pid: int):
    """The data dir of a running kafka-ref broker (its server.properties is the last argument)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    args = [a.decode(errors="replace") for a in args if a]
    if "kafka.Kafka" not in args or not args[-1].endswith("server.properties"):
        return None
    d = Path(args[-1]).parent
    return d if (d / "kafka-ref.json").exists() else None


def stop_pid(pid: int, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Stops a broker started detached (by the CLI): SIGTERM, bounded wait, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return False


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(prog="kafka-ref", description="Apache Kafka 4.x reference broker "
                                 "(one KRaft broker+controller on loopback) from Maven jars.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, help_ in (("start", "start detached; prints port=, pid=, data_dir=, log= and exits"),
                        ("run", "run in the foreground until Ctrl-C / SIGTERM")):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--port", type=int, help="Kafka listener port (default: a free one; "
                        "kept in the data dir for restarts)")
        sp.add_argument("--data-dir", help="data dir (default: a new temp dir); reuse it to restart "
                        "on the same port with the same data")
        sp.add_argument("--heap", help=f"-Xmx (default {DEFAULT_HEAP})")
        sp.add_argument("--version", help=f"Apache Kafka version (default {kafka_version()})")
        sp.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="extra broker config (repeatable)")
    sp = sub.add_parser("stop", help="stop a broker by PID (SIGTERM, then SIGKILL after 30 s)")
    sp.add_argument("pid", type=int)
    sp.add_argument("--delete-data", action="store_true",
                    help="then delete its data dir (only a dir kafka-ref made: it holds kafka-ref.json)")
    sp = sub.add_parser("fetch", help="only fetch the jars into the cache; prints the libs dir")
    sp.add_argument("--version")
    args = ap.parse_args(argv)

    if args.cmd == "fetch":
        print(ensure_jars(args.version, quiet=False))
        return 0
    if args.cmd == "stop":
        data = data_dir_of(args.pid)
        if args.delete_data and data is None:
            print(f"pid {args.pid} is not a running kafka-ref broker: nothing deleted", file=sys.stderr)
        ok = stop_pid(args.pid)
        if ok and args.delete_data and data is not None:
            shutil.rmtree(data, ignore_errors=True)
        return 0 if ok else 1
    data = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="kafka-ref-"))
    config = dict(kv.split("=", 1) for kv in args.config)
    k = KafkaRef(data, port=args.port, heap=args.heap, version=args.version, config=config)
    k.start(detach=(args.cmd == "start"))
    print(f"port={k.kafka_port}\npid={k.pid}\nbootstrap={k.bootstrap}\ndata_dir={k.data_dir}\n"
          f"log={k.log_paths[-1]}", flush=True)
    if args.cmd == "start":
        return 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while k.alive() and not stop:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    return k.stop()
