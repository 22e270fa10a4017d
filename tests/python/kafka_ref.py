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
from ports import free_port  # noqa: E402

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


def new_cluster_id() -> str:
    """A random cluster id (base64 of 16 bytes). Like Kafka's Uuid.randomUuid, never one that
    starts with '-': the storage tool would read it as an option (`-t -abc...` fails)."""
    while True:
        cid = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


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


def _metadata_broker_ids(port: int, timeout: float = 2.0) -> list:
    """Metadata v1 (no topics) over a raw socket: the ids of the brokers the node lists."""
    client = b"kafka-ref"
    body = struct.pack(">hhih", 3, 1, 1, len(client)) + client + struct.pack(">i", 0)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", _recv_exact(s, 4))
        if size < 8 or size > 1 << 20:
            return []
        resp = _recv_exact(s, size)
    _corr, n = struct.unpack(">ii", resp[:8])
    pos, ids = 8, []
    for _ in range(max(0, min(n, 1000))):
        (node_id,) = struct.unpack(">i", resp[pos:pos + 4])
        (hlen,) = struct.unpack(">h", resp[pos + 4:pos + 6])
        pos += 6 + max(hlen, 0) + 4  # host, port
        (rlen,) = struct.unpack(">h", resp[pos:pos + 2])  # rack (nullable)
        pos += 2 + max(rlen, 0)
        ids.append(node_id)
    return ids


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
                 version: str = None, config: dict = None, features: dict = None, extra_args=None,
                 node_id: int = 1, cluster_id: str = None, jvm_opts=None):
        # extra_args: Sluice's command-line flags (conftest's interface); ignored here.
        # node_id / cluster_id / `voters` (set before start): a node of a KafkaRefCluster.
        self.node_id = node_id
        self.voters = None
        self.expected_brokers = 1
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = Path(log_dir) if log_dir else self.data_dir
        self.version = version or kafka_version()
        self.heap = heap or os.environ.get("SLUICE_KAFKA_HEAP", DEFAULT_HEAP)
        # JVM flags besides -Xmx: tests use the serial collector (small, quick to start);
        # benchmarks pass Kafka's own production flags (KAFKA_JVM_PERFORMANCE_OPTS).
        self.jvm_opts = list(jvm_opts) if jvm_opts is not None else ["-XX:+UseSerialGC"]
        self.config = dict(config or {})
        self.features = dict(features or {})
        if os.environ.get("SLUICE_KAFKA_TXN_VERSION") and "transaction.version" not in self.features:
            self.features["transaction.version"] = os.environ["SLUICE_KAFKA_TXN_VERSION"]
        state_path = self.data_dir / "kafka-ref.json"
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        self.kafka_port = port or state.get("port") or free_port()
        self.controller_port = state.get("controller_port") or free_port()
        self.cluster_id = state.get("cluster_id") or cluster_id or new_cluster_id()
        state_path.write_text(json.dumps({"port": self.kafka_port, "controller_port": self.controller_port,
                                          "cluster_id": self.cluster_id, "version": self.version,
                                          "node_id": self.node_id}))
        self.proc = None
        self.pid = None
        self.starts = 0
        self.log_paths = []

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def voter(self) -> str:
        """This node as a `controller.quorum.voters` entry."""
        return f"{self.node_id}@127.0.0.1:{self.controller_port}"

    @property
    def http(self) -> str:
        raise AssertionError("Apache Kafka has no Sluice HTTP endpoint")

    def _write_config(self) -> Path:
        cfg = dict(BASE_CONFIG)
        cfg.update({
            "listeners": f"PLAINTEXT://127.0.0.1:{self.kafka_port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.kafka_port}",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters or self.voter,
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
        opts = self.jvm_opts if heap is None else ["-XX:+UseSerialGC"]
        return [java_bin(), f"-Xmx{heap or self.heap}", *opts, "-Djava.awt.headless=true",
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
        """Starts the node and returns once Metadata lists `expected_brokers` brokers (1 alone)."""
        self.launch(detach)
        return self.wait_ready()

    def launch(self, detach: bool = False):
        """Starts the JVM without waiting (a cluster launches every node, then waits)."""
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
        (self.data_dir / "pid").write_text(str(self.pid))
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT_S):
        """Waits (bounded) until this node answers Metadata listing `expected_brokers` brokers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                self.proc = None
                raise AssertionError(f"kafka node {self.node_id} exited with {code} during start:\n"
                                     f"{self.log_tail()}")
            try:
                if _metadata_broker_count(self.kafka_port) >= self.expected_brokers:
                    return self
            except (OSError, struct.error):
                pass
            time.sleep(0.2)
        self.kill9()
        raise AssertionError(f"kafka node {self.node_id} did not serve within {timeout}s:\n"
                             f"{self.log_tail()}")

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


# What a 3-node cluster changes from BASE_CONFIG: Kafka's production-like replication settings
# (RF 3 everywhere, min.insync.replicas 2), and a quicker failure detection than Kafka's defaults
# (broker session 9 s, heartbeat 2 s) so that kill -9 tests see the ISR shrink within seconds.
CLUSTER_CONFIG = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
    "broker.session.timeout.ms": "8000",
    "broker.heartbeat.interval.ms": "1000",
    "replica.lag.time.max.ms": "10000",
}
CLUSTER_DEFAULT_HEAP = "384m"
CLUSTER_START_TIMEOUT_S = 120.0


class KafkaRefCluster:
    """Apache Kafka as an N-node KRaft cluster on loopback: every node is broker + controller
    (`process.roles=broker,controller`, a static `controller.quorum.voters` of all nodes), node ids
    1..N, data in <data_dir>/node-<id>. Ports, cluster id and data survive restarts of any node.

    Node control by id: `stop(id)` (SIGTERM: controlled shutdown), `kill9(id)`, `start_node(id)`,
    `restart(id)`; `stop_all()`. `racks` (optional, one per node) sets `broker.rack`.
    """

    def __init__(self, data_dir: Path, brokers: int = 3, heap: str = None, version: str = None,
                 config: dict = None, racks=None):
        assert brokers >= 1
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        state_path = self.data_dir / "kafka-ref-cluster.json"
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        self.cluster_id = state.get("cluster_id") or new_cluster_id()
        brokers = state.get("brokers") or brokers
        heap = heap or os.environ.get("SLUICE_KAFKA_HEAP", CLUSTER_DEFAULT_HEAP)
        cfg = dict(CLUSTER_CONFIG)
        cfg.update(config or {})
        self.nodes = {}
        for i in range(1, brokers + 1):
            node_cfg = dict(cfg)
            if racks:
                node_cfg["broker.rack"] = racks[i - 1]
            self.nodes[i] = KafkaRef(self.data_dir / f"node-{i}", heap=heap, version=version,
                                     config=node_cfg, node_id=i, cluster_id=self.cluster_id)
        voters = ",".join(n.voter for n in self.nodes.values())
        for n in self.nodes.values():
            n.voters = voters
            n.expected_brokers = 1
        state_path.write_text(json.dumps({"cluster_id": self.cluster_id, "brokers": brokers,
                                          "voters": voters}))

    @property
    def bootstrap(self) -> str:
        """Every node's Kafka address, comma-separated (clients take any)."""
        return ",".join(n.bootstrap for n in self.nodes.values())

    def node(self, node_id: int) -> KafkaRef:
        return self.nodes[node_id]

    def bootstrap_of(self, node_id: int) -> str:
        return self.nodes[node_id].bootstrap

    def any_bootstrap(self, exclude=()) -> str:
        """The address of a running node (not in `exclude`)."""
        for i, n in self.nodes.items():
            if i not in exclude and n.alive():
                return n.bootstrap
        raise AssertionError("no kafka node is running")

    def start(self, detach: bool = False, timeout: float = CLUSTER_START_TIMEOUT_S):
        """Launches every node, then waits (bounded) until each lists all N brokers."""
        for n in self.nodes.values():
            if not n.alive():
                n.launch(detach)
        self._wait_listed(list(self.nodes), timeout)
        return self

    def _wait_listed(self, ids, timeout):
        want = set(self.nodes)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            for i in ids:
                n = self.nodes[i]
                if n.proc is not None and n.proc.poll() is not None:
                    code = n.proc.returncode
                    n.proc = None
                    raise AssertionError(f"kafka node {i} exited with {code} during start:\n{n.log_tail()}")
            try:
                if all(want <= set(_metadata_broker_ids(self.nodes[i].kafka_port)) for i in ids):
                    return
            except (OSError, struct.error) as e:
                last = e
            time.sleep(0.25)
        tails = "\n".join(self.nodes[i].log_tail(40) for i in ids)
        raise AssertionError(f"kafka nodes {ids} did not list all of {sorted(want)} within {timeout}s "
                             f"(last error {last!r}):\n{tails}")

    def start_node(self, node_id: int, timeout: float = CLUSTER_START_TIMEOUT_S):
        """Starts one stopped node; returns when it serves Metadata listing every running node."""
        n = self.nodes[node_id]
        n.launch()
        want = {i for i, m in self.nodes.items() if m.alive()}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if n.proc is None or n.proc.poll() is not None:
                raise AssertionError(f"kafka node {node_id} exited during start:\n{n.log_tail()}")
            try:
                if want <= set(_metadata_broker_ids(n.kafka_port)):
                    return n
            except (OSError, struct.error):
                pass
            time.sleep(0.25)
        raise AssertionError(f"kafka node {node_id} did not rejoin within {timeout}s:\n{n.log_tail()}")

    def stop(self, node_id: int) -> int:
        return self.nodes[node_id].stop()

    def kill9(self, node_id: int):
        self.nodes[node_id].kill9()

    def restart(self, node_id: int):
        code = self.stop(node_id)
        assert code == 0, f"kafka node {node_id} exited with {code} on SIGTERM"
        return self.start_node(node_id)

    def alive(self, node_id: int) -> bool:
        return self.nodes[node_id].alive()

    def stop_all(self):
        # SIGTERM to all at once: stopping one by one makes the last ones wait for a quorum.
        for n in self.nodes.values():
            if n.alive():
                n.proc.send_signal(signal.SIGTERM)
        for n in self.nodes.values():
            n.stop()

    def kill_all(self):
        for n in self.nodes.values():
            n.kill9()

    def log_tail(self, lines=80) -> str:
        return "\n".join(n.log_tail(lines) for n in self.nodes.values())


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


def _node_command(args) -> int:
    """`kafka-ref node stop|kill|start --data-dir D --id N` on a detached cluster."""
    node_dir = Path(args.data_dir) / f"node-{args.id}"
    if not (Path(args.data_dir) / "kafka-ref-cluster.json").exists() or not node_dir.exists():
        print(f"{args.data_dir} has no kafka-ref cluster node {args.id}", file=sys.stderr)
        return 1
    pid_file = node_dir / "pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    running = pid is not None and data_dir_of(pid) == node_dir
    if args.action == "stop":
        return 0 if not running or stop_pid(pid) else 1
    if args.action == "kill":
        if running:
            os.kill(pid, signal.SIGKILL)
        return 0
    if running:
        print(f"node {args.id} is already running (pid {pid})", file=sys.stderr)
        return 1
    c = KafkaRefCluster(Path(args.data_dir))
    n = c.nodes[args.id]
    n.launch(detach=True)
    # Wait until it serves and lists itself (the others may or may not be up).
    deadline = time.monotonic() + CLUSTER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if args.id in _metadata_broker_ids(n.kafka_port):
                print(f"node.{args.id}.port={n.kafka_port}\nnode.{args.id}.pid={n.pid}")
                return 0
        except (OSError, struct.error):
            pass
        if n.proc.poll() is not None:
            break
        time.sleep(0.25)
    print(f"node {args.id} did not serve:\n{n.log_tail(40)}", file=sys.stderr)
    return 1


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
        sp.add_argument("--brokers", type=int, default=1,
                        help="nodes (default 1); N > 1 runs a KRaft cluster of N broker+controller "
                        "nodes, ids 1..N, data in DATA_DIR/node-<id>")
        sp.add_argument("--racks", help="with --brokers: broker.rack per node, comma-separated")
    sp = sub.add_parser("node", help="stop, kill -9 or start one node of a cluster started with "
                        "--brokers N (by its data dir and node id)")
    sp.add_argument("action", choices=["stop", "kill", "start"])
    sp.add_argument("--data-dir", required=True, help="the cluster's data dir")
    sp.add_argument("--id", type=int, required=True, help="node id (1..N)")
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
    if args.cmd == "node":
        return _node_command(args)
    data = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="kafka-ref-"))
    config = dict(kv.split("=", 1) for kv in args.config)
    if args.brokers > 1 or (data / "kafka-ref-cluster.json").exists():
        if args.port:
            ap.error("--port applies to one node only; a cluster picks free ports")
        racks = args.racks.split(",") if args.racks else None
        c = KafkaRefCluster(data, brokers=args.brokers, heap=args.heap, version=args.version,
                            config=config, racks=racks)
        c.start(detach=(args.cmd == "start"))
        print(f"bootstrap={c.bootstrap}\ndata_dir={c.data_dir}\ncluster_id={c.cluster_id}")
        for i, n in c.nodes.items():
            print(f"node.{i}.port={n.kafka_port}\nnode.{i}.pid={n.pid}\nnode.{i}.log={n.log_paths[-1]}")
        sys.stdout.flush()
        if args.cmd == "start":
            return 0
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        try:
            while any(n.alive() for n in c.nodes.values()) and not stop:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        c.stop_all()
        return 0
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
