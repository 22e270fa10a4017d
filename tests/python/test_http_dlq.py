"""The dead-letter endpoints of the HTTP API (docs/HTTP_API.md, "Dead-letter queues"): the DLQs
with their depth, the dead letters with origin and reason, and redrive jobs (requeue to the
origin, discard) followed to their end — the bookkeeping `sluice dlq` keeps, so the CLI sees what
the API did."""

import json
import subprocess

from confluent_kafka import TopicPartition

from conftest import sluice_bin, sluice_only, wait_until
from kutil import OP_TIMEOUT_S, consume_n, consumer, create_topic
from test_http_api import call
from test_http_queue import fill, receive, settle
from test_share import queue_group

pytestmark = sluice_only


def dead_letters(broker, g, t, rejected):
    """Receives every record of `t` for `g` over the queue API, rejects the offsets in
    `rejected` and accepts the rest; waits until the DLQ holds the rejected ones."""
    for m in receive(broker, g, t, n=100):
        action = "reject" if m["offset"] in rejected else "accept"
        assert settle(broker, g, m["receipt"], action) == (204, None)

    def depth():
        status, rows = call(broker, "GET", "/v1/dlqs")
        assert status == 200, rows
        return next((r["depth"] for r in rows if r["topic"] == "dlq." + g), None) == len(rejected)

    wait_until(depth, OP_TIMEOUT_S, f"dlq.{g} to hold {len(rejected)} dead letters")


def wait_job(broker, job):
    """Polls the job until it is no longer running; returns its last state."""
    last = {}

    def finished():
        status, j = call(broker, "GET", f"/v1/jobs/{job['id']}")
        assert status == 200, j
        last.update(j)
        return j["state"] not in ("running", "cancelling")

    wait_until(finished, OP_TIMEOUT_S, f"job {job['id']} to finish")
    return last


def test_browse_requeue_and_discard(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"))
    g = queue_group(broker.bootstrap, unique("g"))
    fill(broker, t, 5)
    dead_letters(broker, g, t, {0, 2, 4})
    dlq = "dlq." + g

    status, rows = call(broker, "GET", "/v1/dlqs")
    (row,) = [r for r in rows if r["topic"] == dlq]
    assert (row["groups"], row["depth"], row["total"], row["handled"]) == ([g], 3, 3, 0)
    assert row["oldest_age_ms"] >= 0

    status, shown = call(broker, "GET", f"/v1/dlqs/{dlq}/records")
    assert status == 200, shown
    letters = shown["dead_letters"]
    assert [(d["origin"], d["reason"], d["value"]) for d in letters] == [
        ({"topic": t, "partition": 0, "offset": o}, "rejected", f"v{o}") for o in (0, 2, 4)]

    # Requeue the middle one: a job, followed to its end.
    status, job = call(broker, "POST", f"/v1/dlqs/{dlq}/requeue",
                       {"offsets": [letters[1]["offset"]]})
    assert status == 202 and job["action"] == "requeue", job
    job = wait_job(broker, job)
    assert (job["state"], job["requeued"], job["to"], job["error"]) == ("done", 1, {t: 1}, None)
    # Back on its topic at the end, with where it came from.
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(t, 0, 5)])
        (back,) = consume_n(c, 1, timeout=OP_TIMEOUT_S)
    finally:
        c.close()
    assert back.value() == b"v2"
    assert dict(back.headers())["__dlq.requeued.from"] == f"{dlq}:0:{letters[1]['offset']}".encode()

    # Requeued once only: asking again skips it.
    status, job = call(broker, "POST", f"/v1/dlqs/{dlq}/requeue",
                       {"offsets": [letters[1]["offset"]]})
    job = wait_job(broker, job)
    assert (job["state"], job["requeued"], job["skipped_already_handled"]) == ("done", 0, 1)

    # Discard the rest; the CLI sees an empty DLQ, and `all` shows every one as handled.
    status, job = call(broker, "POST", f"/v1/dlqs/{dlq}/discard", {})
    job = wait_job(broker, job)
    assert (job["state"], job["discarded"]) == ("done", 2)
    out = subprocess.run([sluice_bin(), "dlq", "list", "--bootstrap-server", broker.bootstrap,
                          "--output", "json"], capture_output=True, text=True, timeout=60, check=True)
    (cli_row,) = [r for r in json.loads(out.stdout) if r["topic"] == dlq]
    assert (cli_row["depth"], cli_row["handled"]) == (0, 3)
    status, shown = call(broker, "GET", f"/v1/dlqs/{dlq}/records")
    assert shown["dead_letters"] == [] and shown["depth"] == 0
    status, shown = call(broker, "GET", f"/v1/dlqs/{dlq}/records?all=true")
    assert [d["handled"] for d in shown["dead_letters"]] == [True, True, True]

    # A finished job cannot be cancelled into another state; jobs are listed newest first.
    status, j = call(broker, "DELETE", f"/v1/jobs/{job['id']}")
    assert (status, j["state"]) == (202, "done")
    status, jobs = call(broker, "GET", "/v1/jobs")
    assert jobs[0]["id"] == job["id"]


def test_bad_redrives_are_refused(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"))
    g = queue_group(broker.bootstrap, unique("g"))
    fill(broker, t, 1)
    dead_letters(broker, g, t, {0})
    dlq = "dlq." + g
    # An offset that is not in the DLQ fails the job before anything is written.
    status, err = call(broker, "POST", f"/v1/dlqs/{dlq}/requeue", {"offsets": [99]})
    job = wait_job(broker, err) if status == 202 else None
    assert job and job["state"] == "failed" and "99" in job["error"], (status, err, job)
    for path, body, code in [(f"/v1/dlqs/{unique('none')}/requeue", {}, 40401),
                             (f"/v1/dlqs/{t}/discard", {}, 40001),  # not a dead-letter topic
                             (f"/v1/dlqs/{dlq}/requeue", {"offsets": [-1]}, 40001),
                             (f"/v1/dlqs/{dlq}/discard", {"offsets": list(range(10001))}, 40001),
                             (f"/v1/dlqs/{dlq}/discard", {"what": 1}, 42201)]:
        status, err = call(broker, "POST", path, body)
        assert (status, err["error_code"]) == (code // 100, code), (path, err)
    status, err = call(broker, "GET", f"/v1/dlqs/{dlq}/records?limit=0")
    assert (status, err["error_code"]) == (400, 40001)
    status, err = call(broker, "GET", f"/v1/dlqs/{t}/records")
    assert (status, err["error_code"]) == (400, 40001) and "not a dead-letter topic" in err["message"]
    for path in ["/v1/jobs/12345", "/v1/jobs/x"]:
        status, err = call(broker, "GET", path)
        assert (status, err["error_code"]) == (404, 40403)
    # Untouched by the failed job.
    status, shown = call(broker, "GET", f"/v1/dlqs/{dlq}/records")
    assert shown["depth"] == 1


def test_requeue_is_paced_by_max_per_second(broker, unique):
    """max_per_second (SQS's redrive velocity) spaces a requeue's batches: 20 dead letters at
    10 a second go in two batches a second apart, so the job cannot finish sooner (a lower
    bound only: a slow machine may take longer)."""
    t = create_topic(broker.bootstrap, unique("t"))
    g = queue_group(broker.bootstrap, unique("g"))
    fill(broker, t, 20)
    dead_letters(broker, g, t, set(range(20)))
    dlq = "dlq." + g
    status, bad = call(broker, "POST", f"/v1/dlqs/{dlq}/requeue", {"max_per_second": 0})
    assert (status, bad["error_code"]) == (400, 40001), bad
    status, job = call(broker, "POST", f"/v1/dlqs/{dlq}/requeue", {"max_per_second": 10})
    assert status == 202, job
    end = wait_job(broker, job)
    assert (end["state"], end["requeued"], end["max_per_second"]) == ("done", 20, 10), end
    assert end["finished_ms"] - end["created_ms"] >= 1000, end
