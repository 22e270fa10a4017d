"""The worked example examples/event_sourcing (bank accounts on conditional append) run end to
end against the real broker: `run_demo.py` opens accounts, shows a stale write refused, then has
concurrent tellers withdraw from the same accounts, and checks itself (no overdraft, every
accepted withdrawal in the log once). This test then checks the outcome again from the log."""

import json
import subprocess
import sys

from confluent_kafka import TopicPartition

from conftest import REPO
from kutil import OP_TIMEOUT_S, consume_n, consumer

EXAMPLE = REPO / "examples" / "event_sourcing"


def test_event_sourcing_example(broker, tmp_path):
    report = tmp_path / "report.json"
    demo = subprocess.run(
        [sys.executable, str(EXAMPLE / "run_demo.py"), "--bootstrap-server", broker.bootstrap,
         "--report-json", str(report)],
        cwd=str(EXAMPLE), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    out = f"--- run_demo.py ---\n{demo.stdout}\n{demo.stderr}"
    assert demo.returncode == 0, out
    facts = json.loads(report.read_text())
    assert facts["ok"] and not facts["problems"], out
    assert "expected last offset" in facts["stale_refused"], out

    # Ground truth: every account's records, replayed; no balance ever below zero, and the
    # final balances the demo reported.
    c = consumer(broker.bootstrap)
    try:
        tps = [TopicPartition(facts["topic"], p, 0) for p in range(3)]
        total = sum(c.get_watermark_offsets(tp, timeout=OP_TIMEOUT_S)[1] for tp in tps)
        c.assign(tps)
        msgs = consume_n(c, total, idle_after=0.2)
    finally:
        c.close()
    balances = {}
    for m in sorted(msgs, key=lambda m: (m.partition(), m.offset())):
        name = m.key().decode()
        for e in json.loads(m.value()):
            sign = {"deposited": 1, "withdrawn": -1}.get(e["type"], 0)
            balances[name] = balances.get(name, 0) + sign * e.get("amount", 0)
            assert balances[name] >= 0, (name, balances[name])
    assert balances == facts["balances"]
    assert facts["accepted"] > 0
    print(out)
