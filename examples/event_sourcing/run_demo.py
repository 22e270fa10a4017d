"""Event-sourced bank accounts on Sluice: several tellers withdraw concurrently from the same
accounts, each from its own, possibly stale, copy of the account; conditional append keeps every
account's events in order and no account is ever overdrawn. Prints what happened and checks it;
exits 0 when every check held, 1 when one failed.

    python run_demo.py --bootstrap-server 127.0.0.1:9092 [--report-json out.json]
"""

import argparse
import json
import random
import sys
import threading
import time
import uuid

from confluent_kafka.admin import AdminClient, NewTopic

from eventstore import Aggregate, Conflict, EventStore

PARTITIONS = 3
ACCOUNTS = ["alice", "bob", "carol"]
TELLERS = 4
COMMANDS_PER_TELLER = 15


class Refused(Exception):
    pass


class Account(Aggregate):
    def __init__(self, store, stream_id):
        super().__init__(store, stream_id)
        self.opened, self.balance = False, 0

    def apply(self, e):
        if e["type"] == "opened":
            self.opened = True
        elif e["type"] == "deposited":
            self.balance += e["amount"]
        elif e["type"] == "withdrawn":
            self.balance -= e["amount"]

    # Commands: each decides events from the current state, or refuses.
    @staticmethod
    def open(initial):
        def decide(acc):
            if acc.opened:
                raise Refused(f"{acc.stream_id} is already open")
            return [{"type": "opened"}, {"type": "deposited", "amount": initial}]
        return decide

    @staticmethod
    def withdraw(amount, command_id):
        def decide(acc):
            if not acc.opened or acc.balance < amount:
                raise Refused(f"{acc.stream_id}: balance {acc.balance} < {amount}")
            return [{"type": "withdrawn", "amount": amount, "command": command_id}]
        return decide


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap-server", default="127.0.0.1:9092")
    ap.add_argument("--topic", default=f"accounts-{uuid.uuid4().hex[:6]}")
    ap.add_argument("--report-json")
    a = ap.parse_args()
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:5.2f}s] {msg}", flush=True)

    admin = AdminClient({"bootstrap.servers": a.bootstrap_server})
    admin.create_topics([NewTopic(a.topic, num_partitions=PARTITIONS, replication_factor=1, config={
        "sluice.conditional.append.enable": "true", "retention.ms": "-1"})])[a.topic].result(15)
    log(f"created {a.topic} ({PARTITIONS} partitions, conditional append on)")

    setup = EventStore(a.bootstrap_server, a.topic, PARTITIONS)
    for name in ACCOUNTS:
        Account(setup, name).execute(Account.open(100))
    log(f"opened {', '.join(ACCOUNTS)} with 100 each")

    # A stale writer, deterministically: two copies of alice, one falls behind.
    a1, a2 = Account(setup, "alice"), Account(setup, "alice")
    a1.catch_up(); a2.catch_up()
    a1.execute(Account.withdraw(30, "stale-demo-1"))
    stale_refused = None
    try:
        setup.append("alice", [{"type": "withdrawn", "amount": 80, "command": "stale-demo-2"}],
                     expected=a2.version)
    except Conflict as c:
        stale_refused = c
        log(f"stale write refused: {c}")
    try:  # the stale copy catches up, sees 70 left, and refuses the command
        a2.execute(Account.withdraw(80, "stale-demo-2"))
        stale_refused = None
    except Refused as r:
        log(f"after catching up: {r}")
    setup.close()

    # Concurrent tellers.
    accepted, refused, conflicts = [], [], []
    lock = threading.Lock()

    def teller(n):
        store = EventStore(a.bootstrap_server, a.topic, PARTITIONS)
        rng = random.Random(n)
        accounts = {name: Account(store, name) for name in ACCOUNTS}
        for i in range(COMMANDS_PER_TELLER):
            acc = accounts[rng.choice(ACCOUNTS)]
            amount, cid = rng.randint(5, 40), f"teller{n}-{i}"
            try:
                acc.execute(Account.withdraw(amount, cid))
                with lock:
                    accepted.append((acc.stream_id, amount, cid))
            except Refused:
                with lock:
                    refused.append(cid)
        with lock:
            conflicts.append(sum(x.conflicts for x in accounts.values()))
        store.close()

    threads = [threading.Thread(target=teller, args=(n,)) for n in range(TELLERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log(f"{TELLERS} tellers: {len(accepted)} withdrawals accepted, {len(refused)} refused "
        f"(insufficient funds), {sum(conflicts)} conflicts retried")

    # Checks: replay every account from the log.
    problems = []
    store = EventStore(a.bootstrap_server, a.topic, PARTITIONS)
    balances = {}
    for name in ACCOUNTS:
        balance, commands = 0, []
        for _, events in store.read(name):
            for e in events:
                balance += {"deposited": 1, "withdrawn": -1}.get(e["type"], 0) * e.get("amount", 0)
                if balance < 0:
                    problems.append(f"{name} overdrawn: {balance}")
                if e["type"] == "withdrawn":
                    commands.append(e["command"])
        balances[name] = balance
        if len(commands) != len(set(commands)):
            problems.append(f"{name}: a withdrawal appended twice")
        want = sorted(c for acc, _, c in accepted if acc == name)
        got = sorted(c for c in commands if not c.startswith("stale-demo"))
        if want != got:
            problems.append(f"{name}: log withdrawals {got} != accepted {want}")
    store.close()
    if stale_refused is None:
        problems.append("the stale write was not refused")
    log(f"final balances {balances}")
    for p in problems:
        log(f"CHECK FAILED: {p}")
    report = {"ok": not problems, "problems": problems, "topic": a.topic, "balances": balances,
              "accepted": len(accepted), "refused": len(refused), "conflicts": sum(conflicts),
              "stale_refused": str(stale_refused) if stale_refused else None}
    if a.report_json:
        with open(a.report_json, "w") as f:
            json.dump(report, f)
    log("ok" if not problems else "FAILED")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
