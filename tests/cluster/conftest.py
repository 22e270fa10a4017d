"""Fixtures of the cluster fault tests (see README.md).

- `run_dir`: a fresh directory per test (node data dirs, logs, history.jsonl); deleted when the
  test passes, kept (and its path printed) when it fails.
- `lab_factory(n)`: a NetLab of n namespaces, torn down by a finalizer whatever happens.
- `cluster_factory(n=1, netns=False, ...)`: a Cluster (not started), killed and torn down by a
  finalizer; a failing test's report gets the tail of every node's log.

Namespaces and nftables need root and the `ip`/`nft` tools (`bash .ci/run` installs nftables
and iproute2 when missing).
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from cluster import Cluster, NetLab


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


def _failed(request) -> bool:
    return any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False)
               for w in ("setup", "call"))


def require_netadmin():
    """Fails (with what to do) when namespaces or nftables cannot be used here."""
    if os.geteuid() != 0:
        pytest.fail("network namespaces and nftables need root")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            pytest.fail(f"`{tool}` not found: install iproute2 and nftables (bash .ci/run does)")


@pytest.fixture
def run_dir(request):
    d = Path(tempfile.mkdtemp(prefix=f"sluice-cluster-{request.node.name[:40]}-"))
    yield d
    if _failed(request):
        print(f"\nkept for inspection: {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def lab_factory(request):
    labs = []

    def make(n: int) -> NetLab:
        require_netadmin()
        lab = NetLab(n)
        labs.append(lab)
        return lab.up()

    yield make
    for lab in labs:
        lab.down()


@pytest.fixture
def cluster_factory(request, run_dir):
    clusters = []

    def make(n: int = 1, netns: bool = False, **kw) -> Cluster:
        if netns:
            require_netadmin()
        c = Cluster(run_dir / f"c{len(clusters) + 1}", n=n, netns=netns, **kw)
        clusters.append(c)
        return c

    yield make
    failed = _failed(request)
    for c in clusters:
        if failed:
            request.node.add_report_section("teardown", "sluice logs", c.log_tails(120))
        c.close()
