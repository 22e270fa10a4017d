"""Real `sluice` processes for fault tests: one node or a cluster, on loopback or in network
namespaces.

Two topologies:

- **loopback** (`Cluster(..., netns=False)`): every node on 127.0.0.1 with its own free ports.
  Process faults only (kill -9, SIGSTOP/SIGCONT, restart).
- **namespaces** (`Cluster(..., netns=True)`, needs root): node i runs in its own network
  namespace `sl-<lab>-n<i>` with one veth into a bridge `slb<lab>` in the root namespace, address
  10.77.X.(10+i)/24; the bridge holds 10.77.X.1, the clients' address (clients run in the root
  namespace). Each node's Kafka, HTTP and cluster listeners bind its own address with fixed ports,
  so `nemesis.py` can cut links with nftables inside the namespaces while clients still reach a
  node, or the other way round.

Every lab has a unique id (6 hex digits) and its own /24 (X chosen under a lock among the
subnets no other lab uses), so parallel runs cannot collide. A lab writes a state file
`/run/sluice-cluster/<id>.json` naming its owner's PID and start time; `NetLab.up()` first reaps the labs of
dead owners (kills the processes inside their namespaces by PID, deletes namespaces and bridge),
so a run killed by `kill -9` leaves nothing behind for long. `python3 tests/cluster/cluster.py
cleanup` does the same by hand.

Processes: each `Proc` is started by us, stopped by its own PID (SIGTERM with a bounded wait,
then SIGKILL), killed with `kill -9`, paused with SIGSTOP and resumed with SIGCONT, and
restarted with the same command line (a node keeps its data dir). The child gets
PR_SET_PDEATHSIG=SIGKILL, so a harness killed with `kill -9` takes its brokers with it. In a
namespace the command runs under `ip netns exec`, which execs it: the PID we hold is the
broker's. Every start writes a new log file; `log_tail()` shows them all.

Cluster flags (BRIEF §9): a node of a cluster of several is started with
`--node-id N --cluster-addr HOST:PORT --voters 1@HOST:PORT,2@HOST:PORT,...`; a single node is
started without `--voters` (a one-node cluster, exactly as today). `supports_cluster_flags()`
tells whether the binary knows `--cluster-addr`.

Readiness is bounded: a node is ready when its Kafka port answers a Metadata request listing
itself; a cluster when Metadata from every node lists every broker.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# One source of free loopback ports for every test process (tests/python/ports.py).
sys.path.insert(0, str(REPO / "tests" / "python"))
from ports import free_port  # noqa: E402

# Longest wait for a node to answer Metadata after its start (includes log recovery).
START_TIMEOUT_S = 30.0
# Longest wait for a node to exit after SIGTERM before it is killed and the stop fails.
STOP_TIMEOUT_S = 15.0
# Longest wait for a process to be reaped after SIGKILL.
KILL_TIMEOUT_S = 10.0
# Timeout of one `ip`/`nft` command.
CMD_TIMEOUT_S = 15.0
# Where labs record themselves (owner PID, names) for reaping.
STATE_DIR = Path(os.environ.get("SLUICE_CLUSTER_STATE", "/run/sluice-cluster"))
# The labs' addresses: 10.77.X.0/24, X in LAB_SUBNETS.
LAB_NET = "10.77"
LAB_SUBNETS = range(1, 255)
# Fixed ports inside a namespace (every node has its own address).
NS_KAFKA_PORT = 9092
NS_HTTP_PORT = 8081
NS_SASL_PORT = 9093
NS_CLUSTER_PORT = 9093
# Group joins would otherwise wait 3 s for more members.
DEFAULT_EXTRA_ARGS = ["--initial-rebalance-delay-ms", "300"]

# `ip` and `nft` live in /usr/sbin, which a non-login PATH may lack.
for _d in ("/usr/sbin", "/sbin"):
    if _d not in os.environ.get("PATH", "").split(":"):
        os.environ["PATH"] = os.environ.get("PATH", "") + ":" + _d

PR_SET_PDEATHSIG = 1
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def sluice_bin() -> str:
    """$SLUICE_BIN, else $CARGO_TARGET_DIR/release/sluice, else <repo>/target/release/sluice."""
    if os.environ.get("SLUICE_BIN"):
        return os.environ["SLUICE_BIN"]
    if os.environ.get("CARGO_TARGET_DIR"):
        return str(Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "sluice")
    return str(REPO / "target" / "release" / "sluice")


_FLAGS_CACHE: dict[str, bool] = {}


def supports_cluster_flags(binary: str | None = None) -> bool:
    """True when `sluice serve --help` lists --cluster-addr and --voters (BRIEF §9)."""
    binary = binary or sluice_bin()
    if binary not in _FLAGS_CACHE:
        out = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True,
                             timeout=CMD_TIMEOUT_S).stdout
        _FLAGS_CACHE[binary] = "--cluster-addr" in out and "--voters" in out
    return _FLAGS_CACHE[binary]




def wait_until(cond, timeout: float, what: str, interval: float = 0.05):
    """Polls `cond()` until it returns a truthy value (returned); AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - reported below
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_exc!r}")
        time.sleep(interval)


def sh(*argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    """Runs one command (bounded); raises with its stderr when it fails and `check`."""
    r = subprocess.run(list(argv), capture_output=True, text=True, input=input, timeout=CMD_TIMEOUT_S)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def _pdeathsig():
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def proc_start_time(pid: int) -> int | None:
    """The process' start time (clock ticks since boot, /proc/<pid>/stat field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def owner_alive(pid: int, start_time: int | None) -> bool:
    """True while the process that created a lab runs (same PID and start time: no PID reuse)."""
    if not pid_alive(pid):
        return False
    return start_time is None or proc_start_time(pid) == start_time


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------------------------
# Network lab: namespaces, veths, one bridge.


@contextmanager
def _state_lock():
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _teardown(namespaces, bridge):
    """Kills every process inside `namespaces` (by PID), deletes them and `bridge`. Idempotent."""
    for ns in namespaces:
        r = sh("ip", "netns", "pids", ns, check=False)
        for word in r.stdout.split():
            try:
                os.kill(int(word), signal.SIGKILL)
            except (ValueError, ProcessLookupError):
                pass
        sh("ip", "netns", "del", ns, check=False)  # also deletes its veth and the peer end
    sh("ip", "link", "del", bridge, check=False)


def reap_stale_labs() -> list[str]:
    """Tears down the labs whose owner process is gone. Returns their ids. Call under the lock."""
    reaped = []
    if not STATE_DIR.exists():
        return reaped
    for f in STATE_DIR.glob("*.json"):
        try:
            st = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if owner_alive(int(st.get("owner", 0)), st.get("owner_start")):
            continue
        _teardown(st.get("namespaces", []), st.get("bridge", ""))
        f.unlink(missing_ok=True)
        reaped.append(st.get("id", f.stem))
    return reaped


class NetLab:
    """`n` network namespaces joined by veth pairs to one bridge; clients in the root namespace.

    Endpoint names used by `nemesis.py`: 1..n are the namespaces, CLIENT is the root namespace.
    """

    CLIENT = 0

    def __init__(self, n: int, lab_id: str | None = None):
        assert 1 <= n <= 200
        self.n = n
        self.id = lab_id or uuid.uuid4().hex[:6]
        self.bridge = f"slb{self.id}"
        self.namespaces = [f"sl-{self.id}-n{i}" for i in range(1, n + 1)]
        self.subnet = None  # X of 10.77.X.0/24, set by up()
        self.owner = os.getpid()
        self._up = False

    @property
    def state_file(self) -> Path:
        return STATE_DIR / f"{self.id}.json"

    def ns(self, i: int) -> str:
        return self.namespaces[i - 1]

    def ip(self, i: int) -> str:
        """Address of endpoint i (0 = the clients' address on the bridge)."""
        return f"{LAB_NET}.{self.subnet}.{1 if i == self.CLIENT else 10 + i}"

    @property
    def client_ip(self) -> str:
        return self.ip(self.CLIENT)

    def exec_argv(self, i: int, argv: list[str]) -> list[str]:
        """argv run inside namespace i (`ip netns exec` execs it: same PID)."""
        return ["ip", "netns", "exec", self.ns(i), *argv]

    def up(self) -> "NetLab":
        with _state_lock():
            reap_stale_labs()
            used = set()
            for f in STATE_DIR.glob("*.json"):
                try:
                    used.add(int(json.loads(f.read_text()).get("subnet", -1)))
                except (OSError, ValueError):
                    pass
            routes = sh("ip", "-4", "route", "show").stdout
            free = [x for x in LAB_SUBNETS if x not in used and f"{LAB_NET}.{x}.0/24" not in routes]
            if not free:
                raise RuntimeError("no free 10.77.X.0/24 subnet for a lab")
            self.subnet = free[int(self.id, 16) % len(free)]
            self.state_file.write_text(json.dumps({
                "id": self.id, "owner": self.owner, "owner_start": proc_start_time(self.owner),
                "subnet": self.subnet,
                "namespaces": self.namespaces, "bridge": self.bridge, "created": time.time()}))
        self._up = True
        try:
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            sh("ip", "addr", "add", f"{self.client_ip}/24", "dev", self.bridge)
            sh("ip", "link", "set", self.bridge, "up")
            for i in range(1, self.n + 1):
                ns, host_end, ns_end = self.ns(i), f"sl{self.id}h{i}", f"sl{self.id}n{i}"
                sh("ip", "netns", "add", ns)
                sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end)
                sh("ip", "link", "set", ns_end, "netns", ns)
                sh("ip", "link", "set", host_end, "master", self.bridge)
                sh("ip", "link", "set", host_end, "up")
                sh("ip", "-n", ns, "addr", "add", f"{self.ip(i)}/24", "dev", ns_end)
                sh("ip", "-n", ns, "link", "set", ns_end, "up")
                sh("ip", "-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.down()
            raise
        return self

    def down(self):
        """Kills what runs in the namespaces, deletes namespaces, veths, bridge and state file."""
        if not self._up:
            return
        _teardown(self.namespaces, self.bridge)
        self.state_file.unlink(missing_ok=True)
        self._up = False

    def exists(self) -> bool:
        """True while any of this lab's namespaces or its bridge exists."""
        names = sh("ip", "netns", "list").stdout
        if any(ns in names.split() for ns in self.namespaces):
            return True
        return sh("ip", "link", "show", self.bridge, check=False).returncode == 0

    def socket(self, i: int, family=socket.AF_INET, type=socket.SOCK_STREAM) -> socket.socket:
        """A socket living in endpoint i's namespace (the root namespace for CLIENT)."""
        if i == self.CLIENT:
            return socket.socket(family, type)
        return ns_socket(self.ns(i), family, type)


def ns_socket(ns: str, family=socket.AF_INET, type=socket.SOCK_STREAM) -> socket.socket:
    """Creates a socket in network namespace `ns` (setns in a short-lived thread: the socket keeps
    the namespace it was made in; the calling thread's namespace is untouched)."""
    box = {}

    def make():
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns({ns}): {os.strerror(e)}")
            finally:
                os.close(fd)
            box["sock"] = socket.socket(family, type)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["err"] = e

    t = threading.Thread(target=make)
    t.start()
    t.join()
    if "err" in box:
        raise box["err"]
    return box["sock"]


# ---------------------------------------------------------------------------------------------
# Processes.


class Proc:
    """A process we start, stop by PID, kill -9, pause, resume and restart (same argv).

    The child gets PR_SET_PDEATHSIG=SIGKILL, which fires when the *thread* that started it ends:
    start processes from a thread that lives as long as they should (the test's main thread)."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict | None = None):
        self.name = name
        self.argv = argv
        self.log_dir = log_dir
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.log_paths: list[Path] = []
        self.paused = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def spawn(self):
        assert self.proc is None, f"{self.name} already running"
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = self.log_dir / f"{self.name}-{self.starts}.log"
        self.log_paths.append(path)
        with open(path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env,
                                         preexec_fn=_pdeathsig)
        self.paused = False
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM (after SIGCONT if paused), bounded wait, then SIGKILL and AssertionError."""
        if self.proc is None:
            return 0
        p, self.proc = self.proc, None
        if p.poll() is None:
            if self.paused:
                p.send_signal(signal.SIGCONT)
            p.send_signal(signal.SIGTERM)
            try:
                return p.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=KILL_TIMEOUT_S)
                raise AssertionError(f"{self.name} ignored SIGTERM for {STOP_TIMEOUT_S}s")
        return p.returncode

    def kill9(self):
        """`kill -9` by PID and reap it."""
        if self.proc is None:
            return
        p, self.proc = self.proc, None
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait(timeout=KILL_TIMEOUT_S)
        self.paused = False

    def pause(self):
        """SIGSTOP: the process keeps its sockets (the kernel still completes TCP handshakes)."""
        assert self.alive(), f"{self.name} is not running"
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        """SIGCONT."""
        assert self.alive(), f"{self.name} is not running"
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def log_tail(self, lines: int = 80) -> str:
        out = []
        for p in self.log_paths:
            try:
                text = p.read_text(errors="replace").splitlines()
            except OSError:
                continue
            out.append(f"----- {p} (last {lines} of {len(text)} lines) -----")
            out.extend(text[-lines:])
        return "\n".join(out)


def metadata(bootstrap: str, timeout: float = 3.0):
    """ClusterMetadata (brokers, topics) from `bootstrap`, or raises."""
    from confluent_kafka.admin import AdminClient

    a = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0,
                     "socket.connection.setup.timeout.ms": int(timeout * 1000)})
    return a.list_topics(timeout=timeout)


def tcp_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Node(Proc):
    """One `sluice serve`. Addresses are fixed at construction and survive restarts; so does the
    data dir."""

    def __init__(self, node_id: int, run_dir: Path, host: str, kafka_port: int, http_port: int,
                 cluster_port: int, lab: NetLab | None = None, voters: str | None = None,
                 flush: str = "always", extra_args=None, binary: str | None = None,
                 sasl_port: int | None = None):
        self.node_id = node_id
        # With a SASL port the node has two listeners: PLAINTEXT on kafka_port (what the harness
        # probes) and SASL_PLAINTEXT on sasl_port.
        self.sasl_port = sasl_port
        self.host = host
        self.kafka_port = kafka_port
        self.http_port = http_port
        self.cluster_port = cluster_port
        self.lab = lab
        self.voters = voters
        self.flush = flush
        self.extra_args = list(DEFAULT_EXTRA_ARGS if extra_args is None else extra_args)
        self.binary = binary or sluice_bin()
        assert os.access(self.binary, os.X_OK), f"no sluice binary at {self.binary} (set SLUICE_BIN)"
        self.dir = run_dir / f"n{node_id}"
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env["NO_COLOR"] = "1"
        super().__init__(f"n{node_id}", self.command(), self.dir, env)

    @property
    def kafka_addr(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def cluster_addr(self) -> str:
        return f"{self.host}:{self.cluster_port}"

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def sasl_addr(self) -> str:
        return f"{self.host}:{self.sasl_port}"

    def serve_args(self) -> list[str]:
        if self.sasl_port is None:
            kafka = ["--kafka-addr", self.kafka_addr, "--advertised-kafka-addr", self.kafka_addr]
        else:
            kafka = ["--listener", f"PLAIN=PLAINTEXT://{self.kafka_addr}",
                     "--listener", f"SASL=SASL_PLAINTEXT://{self.sasl_addr}"]
        args = [
            self.binary, "serve",
            "--node-id", str(self.node_id),
            *kafka,
            "--http-addr", f"{self.host}:{self.http_port}",
            "--data-dir", str(self.data_dir),
            "--flush", self.flush,
        ]
        if self.voters:
            args += ["--cluster-addr", self.cluster_addr, "--voters", self.voters]
        return args + self.extra_args

    def command(self) -> list[str]:
        args = self.serve_args()
        return self.lab.exec_argv(self.node_id, args) if self.lab else args

    def start(self, wait: bool = True) -> "Node":
        self.spawn()
        if wait:
            self.wait_ready()
        return self

    def ready(self, brokers: int = 1) -> bool:
        """Kafka port answers Metadata listing this node and `brokers` brokers in all."""
        if not tcp_answers(self.host, self.kafka_port, timeout=1.0):
            return False
        try:
            md = metadata(self.kafka_addr, timeout=2.0)
        except Exception:  # noqa: BLE001 - no answer (yet)
            return False
        return self.node_id in md.brokers and len(md.brokers) >= brokers

    def wait_ready(self, timeout: float = START_TIMEOUT_S, brokers: int = 1):
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                self.proc = None
                raise AssertionError(f"{self.name} exited ({code}) while starting:\n{self.log_tail()}")
            try:
                if self.ready(brokers):
                    return self
            except Exception:  # noqa: BLE001 - not ready yet
                pass
            if time.monotonic() >= deadline:
                raise AssertionError(f"{self.name} not ready within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)

    def restart(self, wait: bool = True) -> "Node":
        """Clean restart: SIGTERM (must exit 0), start again on the same data dir."""
        code = self.stop()
        assert code == 0, f"{self.name} exited {code} on SIGTERM\n{self.log_tail()}"
        return self.start(wait)


class Cluster:
    """`n` sluice nodes. `netns=True` puts each in its own namespace (see NetLab); a cluster of
    several is started with --voters (all nodes voters), one node without (as today)."""

    def __init__(self, run_dir: Path, n: int = 1, netns: bool = False, flush: str = "always",
                 extra_args=None, voters: bool | None = None, binary: str | None = None,
                 sasl: bool = False):
        self.run_dir = Path(run_dir)
        self.sasl = sasl
        self.n = n
        self.lab = NetLab(n) if netns else None
        self.nodes: list[Node] = []
        self.flush = flush
        self.extra_args = extra_args
        self.binary = binary or sluice_bin()
        self.use_voters = (n > 1) if voters is None else voters
        self._made = False

    def _make_nodes(self):
        if self._made:
            return
        if self.lab:
            self.lab.up()
            addrs = [(self.lab.ip(i), NS_KAFKA_PORT, NS_HTTP_PORT, NS_CLUSTER_PORT, NS_SASL_PORT)
                     for i in range(1, self.n + 1)]
        else:
            addrs = [("127.0.0.1", free_port(), free_port(), free_port(), free_port())
                     for _ in range(self.n)]
        voters = ",".join(f"{i}@{a[0]}:{a[3]}" for i, a in enumerate(addrs, 1)) if self.use_voters else None
        if voters and not supports_cluster_flags(self.binary):
            raise RuntimeError(f"{self.binary} has no --cluster-addr/--voters yet (BRIEF §9)")
        for i, (host, kp, hp, cp, sp) in enumerate(addrs, 1):
            self.nodes.append(Node(i, self.run_dir, host, kp, hp, cp, lab=self.lab, voters=voters,
                                   flush=self.flush, extra_args=self.extra_args, binary=self.binary,
                                   sasl_port=sp if self.sasl else None))
        self._made = True

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id - 1]

    @property
    def bootstrap(self) -> str:
        return ",".join(n.kafka_addr for n in self.nodes)

    def start(self, timeout: float = START_TIMEOUT_S) -> "Cluster":
        self._make_nodes()
        for node in self.nodes:
            if not node.alive():
                node.spawn()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT_S):
        """Every running node answers, and Metadata from each lists all `n` brokers (without
        --voters, `voters=False`, each node is its own one-node cluster and lists itself)."""
        deadline = time.monotonic() + timeout
        brokers = self.n if self.use_voters else 1
        for node in self.nodes:
            if node.proc is not None:
                node.wait_ready(max(0.1, deadline - time.monotonic()), brokers=brokers)

    def leader_of(self, topic: str, partition: int = 0, timeout: float = START_TIMEOUT_S) -> Node:
        """The node that Metadata (asked of any running node) names leader of the partition."""
        def find():
            for node in self.nodes:
                if not node.alive() or node.paused:
                    continue
                try:
                    md = metadata(node.kafka_addr, timeout=2.0)
                except Exception:  # noqa: BLE001 - try the next node
                    continue
                t = md.topics.get(topic)
                if t is None or t.error is not None or partition not in t.partitions:
                    continue
                leader = t.partitions[partition].leader
                if 1 <= leader <= self.n:
                    return self.node(leader)
            return None
        return wait_until(find, timeout, f"a leader for {topic}/{partition}", interval=0.2)

    def wait_full_isr(self, topic: str, timeout: float = START_TIMEOUT_S):
        """Waits until Metadata from every running node shows, for every partition of `topic`, a
        leader and an ISR equal to the replica set (the cluster has healed)."""
        def full():
            for node in self.nodes:
                if not node.alive():
                    continue
                t = metadata(node.kafka_addr, timeout=2.0).topics.get(topic)
                if t is None or t.error is not None or not t.partitions:
                    return False
                for p in t.partitions.values():
                    if p.error is not None or p.leader < 0 or sorted(p.isrs) != sorted(p.replicas):
                        return False
            return True
        wait_until(full, timeout, f"a full ISR for every partition of {topic}", interval=0.2)

    def stop(self):
        """SIGTERM every node (bounded)."""
        errors = []
        for node in self.nodes:
            try:
                node.stop()
            except AssertionError as e:
                errors.append(str(e))
        if errors:
            raise AssertionError("; ".join(errors))

    def close(self):
        """Best-effort teardown, for finalizers: kill -9 every node, delete the lab."""
        for node in self.nodes:
            try:
                node.kill9()
            except Exception:  # noqa: BLE001 - keep tearing down
                pass
        if self.lab:
            self.lab.down()

    def log_tails(self, lines: int = 80) -> str:
        return "\n".join(n.log_tail(lines) for n in self.nodes)


def _main(argv):
    if argv[1:] == ["cleanup"]:
        with _state_lock():
            ids = reap_stale_labs()
        print(f"reaped {len(ids)} stale lab(s): {' '.join(ids)}")
        return 0
    print(f"usage: {argv[0]} cleanup   (tear down labs whose owner process is gone)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
