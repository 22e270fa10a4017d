"""Each nemesis fault proven with plain sockets between namespaces (no sluice): the link works
before, fails within a bounded time during, and works again after heal; a one-way cut blocks
exactly one direction. Plus the lab's cleanup (also of a lab whose owner was killed) and the
process faults on an echo server process."""

import json
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cluster import STATE_DIR, NetLab, Proc, _state_lock, reap_stale_labs, sh, wait_until
from nemesis import CLIENT, NetFaults
from netprobe import EchoServers, tcp_echo

HERE = Path(__file__).resolve().parent
N = 3


@pytest.fixture
def net(lab_factory):
    lab = lab_factory(N)
    servers = EchoServers(lab).start()
    faults = NetFaults(lab)
    yield lab, servers, faults
    faults.heal()
    servers.close()


def all_endpoints():
    return range(0, N + 1)


def tcp_matrix(servers):
    """{(src, dst): echo works} for every ordered pair of distinct endpoints."""
    pairs = [(a, b) for a in all_endpoints() for b in all_endpoints() if a != b]
    with ThreadPoolExecutor(len(pairs)) as pool:
        return dict(zip(pairs, pool.map(lambda ab: servers.tcp_echo(*ab), pairs)))


def assert_matrix(got, blocked, what):
    want = {k: k not in blocked for k in got}
    wrong = {k: v for k, v in got.items() if v != want[k]}
    assert not wrong, f"{what}: links (src, dst) -> works? that differ from the fault: {wrong}"


def both(a, b):
    return {(a, b), (b, a)}


def test_baseline_every_link_works(net):
    lab, servers, _ = net
    assert_matrix(tcp_matrix(servers), set(), "no fault")
    for a in all_endpoints():
        for b in all_endpoints():
            if a != b:
                assert servers.udp_delivered(a, b), f"udp {a}->{b}"


def test_isolate_cuts_peers_but_not_clients(net):
    lab, servers, faults = net
    faults.isolate(1)
    assert_matrix(tcp_matrix(servers), both(1, 2) | both(1, 3), "isolate(1)")
    faults.heal()
    assert_matrix(tcp_matrix(servers), set(), "after heal")


def test_cut_between_two_nodes(net):
    lab, servers, faults = net
    faults.cut(1, 2)
    assert_matrix(tcp_matrix(servers), both(1, 2), "cut(1, 2)")
    # The third node still sees both (a "bridge" partition).
    assert servers.tcp_echo(3, 1) and servers.tcp_echo(3, 2)
    faults.heal()
    assert_matrix(tcp_matrix(servers), set(), "after heal")


def test_one_way_cut_drops_exactly_one_direction(net):
    lab, servers, faults = net
    faults.cut_one_way(1, 2)
    # Datagrams show the direction: 1->2 lost, 2->1 delivered, every other link untouched.
    assert not servers.udp_delivered(1, 2), "1->2 must be dropped"
    assert servers.udp_delivered(2, 1), "2->1 must pass"
    for a, b in [(1, 3), (3, 1), (2, 3), (3, 2), (0, 1), (1, 0), (0, 2), (2, 0)]:
        assert servers.udp_delivered(a, b), f"udp {a}->{b} must pass"
    # TCP needs both directions: a packet-level one-way cut breaks 1<->2 connections either way.
    assert_matrix(tcp_matrix(servers), both(1, 2), "cut_one_way(1, 2)")
    faults.heal()
    assert servers.udp_delivered(1, 2)
    assert_matrix(tcp_matrix(servers), set(), "after heal")


def test_one_way_connection_cut(net):
    lab, servers, faults = net
    faults.cut_one_way(1, 2, connections=True)
    # 1 cannot reach 2's listener; 2 reaches 1's, both ways over its own connection.
    assert_matrix(tcp_matrix(servers), {(1, 2)}, "cut_one_way(1, 2, connections=True)")
    faults.heal()
    assert_matrix(tcp_matrix(servers), set(), "after heal")


def test_one_way_connection_cut_stops_an_open_connection(net):
    lab, servers, faults = net
    s = lab.socket(1)
    s.settimeout(1.5)
    s.connect((lab.ip(2), 7001))
    s.sendall(b"a")
    assert s.recv(1) == b"a"
    faults.cut_one_way(1, 2, connections=True)
    s.sendall(b"b")
    with pytest.raises(OSError):  # socket.timeout is an OSError
        s.recv(1)
    faults.heal()
    # The kernel retransmits the unacknowledged byte: the echo arrives after heal.
    s.settimeout(5)
    assert s.recv(1) == b"b"
    s.close()


def test_cut_clients_only(net):
    lab, servers, faults = net
    faults.cut_clients(2)
    assert_matrix(tcp_matrix(servers), both(CLIENT, 2), "cut_clients(2)")
    faults.heal()
    assert_matrix(tcp_matrix(servers), set(), "after heal")


def test_faults_compose_and_heal_all(net):
    lab, servers, faults = net
    faults.cut(1, 2)
    faults.cut_clients(3)
    faults.cut_one_way(3, 1, connections=True)
    assert_matrix(tcp_matrix(servers), both(1, 2) | both(CLIENT, 3) | {(3, 1)}, "three faults")
    faults.heal()
    for i in range(1, N + 1):
        assert "sluice_nemesis" not in faults.rules(i)
    assert_matrix(tcp_matrix(servers), set(), "after heal")


def test_process_faults_on_an_echo_process(lab_factory, tmp_path):
    lab = lab_factory(1)
    p = Proc("echo", lab.exec_argv(1, [sys.executable, str(HERE / "netprobe.py"), lab.ip(1), "7100"]),
             tmp_path)
    try:
        p.spawn()
        # `ip netns exec` execs: the PID we hold is the server's own.
        wait_until(lambda: tcp_echo(lab.socket(0), lab.ip(1), 7100), 10, "echo process")
        assert Path(f"/proc/{p.pid}/cmdline").read_bytes().split(b"\0")[1].endswith(b"netprobe.py")
        p.pause()
        wait_until(lambda: Path(f"/proc/{p.pid}/stat").read_text().split()[2] == "T", 5, "state T (stopped)")
        assert not tcp_echo(lab.socket(0), lab.ip(1), 7100, timeout=1.0), "a stopped process echoes nothing"
        p.resume()
        wait_until(lambda: tcp_echo(lab.socket(0), lab.ip(1), 7100), 10, "echo after SIGCONT")
        pid = p.pid
        p.kill9()
        assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
        assert not tcp_echo(lab.socket(0), lab.ip(1), 7100, timeout=1.0), "a killed process echoes nothing"
        p.spawn()
        wait_until(lambda: tcp_echo(lab.socket(0), lab.ip(1), 7100), 10, "echo after restart")
        assert p.stop() == -signal.SIGTERM  # stopped by its own PID
        assert p.starts == 2 and len(p.log_paths) == 2
    finally:
        p.kill9()


def test_lab_down_removes_everything(lab_factory):
    lab = lab_factory(2)
    assert lab.exists()
    pid_in_ns = subprocess.Popen(lab.exec_argv(1, ["sleep", "600"]))
    wait_until(lambda: str(pid_in_ns.pid) in sh("ip", "netns", "pids", lab.ns(1)).stdout.split(), 10,
               "the process inside the namespace")
    lab.down()
    assert not lab.exists()
    assert pid_in_ns.wait(timeout=10) != 0, "the process inside the namespace was killed"
    assert not lab.state_file.exists()


def test_a_dead_owners_lab_is_reaped(tmp_path):
    from conftest import require_netadmin

    require_netadmin()
    # A lab whose owner is a process that has exited (as if the test run was killed with -9).
    owner = subprocess.Popen(["true"])
    owner.wait(timeout=10)
    lab = NetLab(1)
    lab.owner = owner.pid
    lab.up()
    try:
        assert lab.exists()
        assert json.loads(lab.state_file.read_text())["owner"] == owner.pid
        with _state_lock():
            reaped = reap_stale_labs()
        assert lab.id in reaped
        assert not lab.exists() and not lab.state_file.exists()
    finally:
        lab.down()


def test_two_labs_coexist(lab_factory):
    a, b = lab_factory(1), lab_factory(1)
    assert a.id != b.id and a.subnet != b.subnet and a.bridge != b.bridge
    assert sh("ip", "netns", "list").stdout.count(f"sl-{a.id}-") == 1
    assert STATE_DIR.joinpath(f"{b.id}.json").exists()
    sa, sb = EchoServers(a).start(), EchoServers(b).start()
    try:
        assert sa.tcp_echo(0, 1) and sb.tcp_echo(0, 1)
    finally:
        sa.close()
        sb.close()


def test_a_reused_owner_pid_does_not_keep_a_lab(lab_factory):
    live = lab_factory(1)
    stale = lab_factory(1)
    # Same owner PID as ours, but another start time: the PID was reused, the owner is gone.
    st = json.loads(stale.state_file.read_text())
    st["owner_start"] = (st["owner_start"] or 0) + 1
    stale.state_file.write_text(json.dumps(st))
    with _state_lock():
        reaped = reap_stale_labs()
    assert stale.id in reaped and not stale.exists()
    assert live.id not in reaped and live.exists()
