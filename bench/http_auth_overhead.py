"""What HTTP authentication costs (docs/BENCHMARKS.md, "HTTP authentication overhead"): the
latency of the registry's `GET /subjects` and the HTTP API's `GET /v1/topics` (a Kafka
Metadata call made by the API's pooled client) on an open broker, then on one whose SASL
listener turns HTTP authentication on, with HTTP Basic on every request (a keep-alive
`requests` session, as a registry client keeps); and a console login, which hashes the password
(PBKDF2) every time.

    bench/http_auth_overhead.py path/to/release/sluice
"""
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import requests

BIN = sys.argv[1]
USER, PASSWORD = "admin", "secret"


def port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(args):
    d = tempfile.mkdtemp()
    http = f"127.0.0.1:{port()}"
    env = dict(os.environ, SLUICE_BOOTSTRAP_USERS=f"{USER}:{PASSWORD}", RUST_LOG="warn")
    proc = subprocess.Popen([BIN, "serve", "--data-dir", d, "--http-addr", http, *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://{http}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(base + "/health", timeout=1).ok:
                return proc, base, d
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise SystemExit("the broker did not start")


def latency(session, url, n):
    """Median and 99th percentile, in ms, of `n` GETs after 20 not counted."""
    times = []
    for i in range(n + 20):
        t = time.perf_counter()
        r = session.get(url)
        if i >= 20:
            times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.text
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def measure(label, session, base):
    for path in ["/subjects", "/v1/topics"]:
        p50, p99 = latency(session, base + path, 500)
        print(f"{label:6} {path:11} p50 {p50:.3f} ms  p99 {p99:.3f} ms")


proc, base, d = start(["--kafka-addr", f"127.0.0.1:{port()}"])
measure("open", requests.Session(), base)
proc.terminate(), proc.wait()
shutil.rmtree(d, ignore_errors=True)

proc, base, d = start(["--listener", f"P=PLAINTEXT://127.0.0.1:{port()}",
                       "--listener", f"S=SASL_PLAINTEXT://127.0.0.1:{port()}",
                       "--authorizer", "on", "--superuser", f"User:{USER}"])
deadline = time.monotonic() + 30
while requests.get(base + "/subjects", auth=(USER, PASSWORD)).status_code != 200:
    assert time.monotonic() < deadline, "the bootstrap user never logged in"
    time.sleep(0.1)
logins = []
for _ in range(30):
    t = time.perf_counter()
    r = requests.post(base + "/ui/login", data={"username": USER, "password": PASSWORD},
                      allow_redirects=False)
    logins.append((time.perf_counter() - t) * 1000)
    assert r.status_code == 303, r.text
print(f"console login (PBKDF2-SHA-512, 8192 iterations) median {statistics.median(logins):.2f} ms")
session = requests.Session()
session.auth = (USER, PASSWORD)
measure("basic", session, base)
proc.terminate(), proc.wait()
shutil.rmtree(d, ignore_errors=True)
