"""Long fault runs outside pytest: a seeded random sequence of faults against a cluster under the
workload, then heal, drain and check.

    python3 tests/cluster/soak.py --rounds 30 --seed 7                 # one node on loopback
    python3 tests/cluster/soak.py --netns --rounds 30                  # one node in a namespace
    python3 tests/cluster/soak.py --nodes 3 --netns --rounds 50        # needs --voters (BRIEF §9)

Runs under the tests' venv (`~/.cache/sluice-venv/bin/python`), as root for --netns, with
SLUICE_BIN naming the binary. Prints the checker's report; exits 0 when every check passed.
The run dir (node logs and data, history.jsonl, clients.log) is deleted on success and kept on
failure.
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenarios  # noqa: E402
from cluster import Cluster  # noqa: E402

# Faults by what they need.
PROCESS_FAULTS = ["kill_leader", "pause_leader", "restart_leader", "rolling_restart", "kill_all"]
NETNS_FAULTS = ["cut_clients_from_leader"]
CLUSTER_FAULTS = ["kill_follower", "isolate_leader", "cut_leader_from_one_peer", "one_way_from_leader"]


def available(nodes: int, netns: bool) -> list[str]:
    out = list(PROCESS_FAULTS)
    if netns:
        out += NETNS_FAULTS
        if nodes >= 3:
            out += CLUSTER_FAULTS
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--netns", action="store_true", help="each node in its own network namespace (root)")
    ap.add_argument("--rounds", type=int, default=10, help="faults to inject, one after the other")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--faults", default=None,
                    help="comma-separated fault names (default: every fault the topology allows)")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--writers", type=int, default=3)
    ap.add_argument("--rate", type=float, default=200.0, help="records/s per writer")
    ap.add_argument("--flush", default="always")
    ap.add_argument("--min-insync", type=int, default=None, help="min.insync.replicas of the topic")
    ap.add_argument("--hold", type=float, default=None,
                    help="seconds each fault is held before heal (default: each fault's own)")
    ap.add_argument("--liveness", type=float, default=scenarios.LIVENESS_S,
                    help="seconds after a heal within which the workload must progress")
    args = ap.parse_args(argv)

    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    names = args.faults.split(",") if args.faults else available(args.nodes, args.netns)
    allowed = set(available(args.nodes, args.netns))
    bad = [n for n in names if n not in allowed]
    if bad:
        print(f"faults not possible with --nodes {args.nodes}{' --netns' if args.netns else ''}: {bad}",
              file=sys.stderr)
        return 2
    plan = [rng.choice(names) for _ in range(args.rounds)]
    print(f"seed {seed}: {' '.join(plan)}", flush=True)

    run_dir = Path(tempfile.mkdtemp(prefix="sluice-soak-"))
    # librdkafka's log (connection refused while a node is down, ...) goes to a file.
    logging.basicConfig(filename=run_dir / "clients.log", level=logging.INFO,
                        format="%(asctime)s %(name)s %(message)s")
    cluster = Cluster(run_dir, n=args.nodes, netns=args.netns, flush=args.flush)
    ok = False
    try:
        cluster.start()
        config = {"min.insync.replicas": str(args.min_insync)} if args.min_insync else None
        faults = [getattr(scenarios, n) for n in plan]
        if args.hold is not None:
            faults = [scenarios.held(f, args.hold) for f in faults]
        report, _history = scenarios.run(cluster, run_dir, faults, partitions=args.partitions,
                                         writers=args.writers, rate=args.rate, topic_config=config,
                                         liveness_s=args.liveness)
        print(report)
        ok = report.ok
    finally:
        cluster.close()
        if ok:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            print(f"seed {seed}: kept {run_dir}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
