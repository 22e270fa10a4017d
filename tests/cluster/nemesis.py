"""Faults: network cuts with nftables inside a NetLab's namespaces, and process faults.

Network faults need the namespace topology (`Cluster(netns=True)` or a bare `NetLab`). Endpoints
are node ids 1..n and `CLIENT` (0, the root namespace where clients run). A fault is a set of
blocked *directed* links; every change rewrites, in one nft transaction per namespace, the
table `inet sluice_nemesis`:

- a packet-level block src→dst (dst a node) drops, in dst's namespace, input packets from src's
  address (the packet is lost on the wire, as a dead link or a firewall would do);
- a block node→CLIENT drops, in the node's namespace, output packets to the clients' address (the
  root namespace's rules are never touched);
- a connection-level block src→dst drops, in dst's namespace, input packets from src that travel
  in the *original* direction of their connection (`ct direction original`): src can no longer
  open or use connections to dst, while connections dst opened to src keep working both ways.

The faults:

| method | blocked |
| --- | --- |
| `isolate(a)` | a↔every other node, both ways; clients still reach a, and a them |
| `cut(a, b)` | a↔b, both ways |
| `cut_one_way(a, b)` | packets a→b (b→a pass: Jepsen's asymmetric partition; TCP in either direction then fails, as it needs both) |
| `cut_one_way(a, b, connections=True)` | a cannot reach b's listeners; b reaches a's |
| `cut_clients(a)` | clients↔a, both ways; a's peers still reach it |
| `heal()` | nothing (deletes every table) |

`Nemesis.heal()` also resumes paused nodes and starts dead ones; a node that exited although no
fault killed it is recorded as `crashed` (in `Nemesis.crashes` and the history) and restarted.

Process faults (`pause`/`resume`: SIGSTOP/SIGCONT, `kill`: kill -9, `restart`, `stop`) act on a
Cluster's nodes by PID. Every fault and heal is recorded in the history, when given one, as a
`nemesis` event (the checker's liveness check measures from the last `heal`).
"""

from __future__ import annotations

from cluster import Cluster, NetLab, sh

TABLE = "sluice_nemesis"
CLIENT = NetLab.CLIENT


class NetFaults:
    """Blocked links of one NetLab, applied with nftables."""

    def __init__(self, lab: NetLab):
        self.lab = lab
        self.packets: set[tuple[int, int]] = set()  # (src, dst) packet-level blocks
        self.conns: set[tuple[int, int]] = set()  # (src, dst) connection-level blocks

    def _nodes(self):
        return range(1, self.lab.n + 1)

    def _ruleset(self, i: int) -> str:
        """The nft script for node i's namespace (empty table when nothing is blocked there)."""
        drop_in = sorted(self.lab.ip(s) for (s, d) in self.packets if d == i)
        drop_conn = sorted(self.lab.ip(s) for (s, d) in self.conns if d == i)
        drop_out = sorted(self.lab.ip(d) for (s, d) in self.packets | self.conns if s == i and d == CLIENT)
        lines = [f"table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{",
                 "  chain input { type filter hook input priority -150; policy accept;"]
        if drop_in:
            lines.append(f"    ip saddr {{ {', '.join(drop_in)} }} drop")
        if drop_conn:
            lines.append(f"    ip saddr {{ {', '.join(drop_conn)} }} ct direction original drop")
        lines.append("  }")
        lines.append("  chain output { type filter hook output priority -150; policy accept;")
        if drop_out:
            lines.append(f"    ip daddr {{ {', '.join(drop_out)} }} drop")
        lines += ["  }", "}"]
        return "\n".join(lines) + "\n"

    def apply(self):
        for i in self._nodes():
            sh("ip", "netns", "exec", self.lab.ns(i), "nft", "-f", "-", input=self._ruleset(i))

    def _check(self, *eps):
        for e in eps:
            assert e == CLIENT or 1 <= e <= self.lab.n, f"no endpoint {e}"

    def isolate(self, a: int):
        self._check(a)
        for b in self._nodes():
            if b != a:
                self.packets |= {(a, b), (b, a)}
        self.apply()

    def cut(self, a: int, b: int):
        self._check(a, b)
        assert a != b
        self.packets |= {(a, b), (b, a)}
        self.apply()

    def cut_one_way(self, a: int, b: int, connections: bool = False):
        self._check(a, b)
        assert a != b
        assert not connections or b != CLIENT, "connection-level cuts need a node as b"
        (self.conns if connections else self.packets).add((a, b))
        self.apply()

    def cut_clients(self, a: int):
        self._check(a)
        assert a != CLIENT
        self.packets |= {(CLIENT, a), (a, CLIENT)}
        self.apply()

    def heal(self):
        self.packets.clear()
        self.conns.clear()
        for i in self._nodes():
            sh("ip", "netns", "exec", self.lab.ns(i), "nft", "delete", "table", "inet", TABLE, check=False)

    def rules(self, i: int) -> str:
        """What nft holds in node i's namespace now (for reports)."""
        return sh("ip", "netns", "exec", self.lab.ns(i), "nft", "list", "ruleset", check=False).stdout


class Nemesis:
    """Network and process faults against a Cluster, recorded in a History when given one."""

    def __init__(self, cluster: Cluster, history=None):
        self.cluster = cluster
        self.history = history
        self.net = NetFaults(cluster.lab) if cluster.lab else None
        # Nodes found dead that no fault killed: [(node id, exit code)].
        self.crashes: list[tuple[int, int]] = []

    def _record(self, action: str, **kw):
        if self.history is not None:
            self.history.record("nemesis", process="nemesis", action=action, **kw)

    def _need_net(self):
        assert self.net is not None, "network faults need Cluster(netns=True)"
        return self.net

    # network
    def isolate(self, a: int):
        self._need_net().isolate(a)
        self._record("isolate", node=a)

    def cut(self, a: int, b: int):
        self._need_net().cut(a, b)
        self._record("cut", a=a, b=b)

    def cut_one_way(self, a: int, b: int, connections: bool = False):
        self._need_net().cut_one_way(a, b, connections)
        self._record("cut-one-way", a=a, b=b, connections=connections)

    def cut_clients(self, a: int):
        self._need_net().cut_clients(a)
        self._record("cut-clients", node=a)

    # process
    def pause(self, a: int):
        self.cluster.node(a).pause()
        self._record("pause", node=a)

    def resume(self, a: int):
        self.cluster.node(a).resume()
        self._record("resume", node=a)

    def kill(self, a: int):
        self.cluster.node(a).kill9()
        self._record("kill", node=a)

    def stop(self, a: int):
        """Clean stop (SIGTERM, must exit 0); `start` or `heal` brings it back."""
        code = self.cluster.node(a).stop()
        assert code == 0, f"node {a} exited {code} on SIGTERM"
        self._record("stop", node=a)

    def start(self, a: int, wait: bool = True):
        """Starts a killed or stopped node on its data dir (waits until it answers Metadata)."""
        self._record("start", node=a)
        self.cluster.node(a).start(wait=False)
        if wait:
            self.cluster.node(a).wait_ready(brokers=1)
        self._record("started", node=a)

    def restart(self, a: int):
        """Clean restart (SIGTERM, exit 0, start)."""
        self._record("restart", node=a)
        self.cluster.node(a).restart()
        self._record("started", node=a)

    def heal(self):
        """Undoes every fault: network tables deleted, paused nodes resumed, dead nodes started."""
        if self.net:
            self.net.heal()
        for node in self.cluster.nodes:
            if node.paused and node.alive():
                node.resume()
        for node in self.cluster.nodes:
            if node.proc is not None and node.proc.poll() is not None:
                # Exited on its own: a crash. Recorded (scenarios fail on it), then restarted.
                code = node.proc.returncode
                self.crashes.append((node.node_id, code))
                self._record("crashed", node=node.node_id, code=code)
                node.proc = None
            if node.proc is None:
                node.start(wait=False)
        self.cluster.wait_ready()
        self._record("heal")
