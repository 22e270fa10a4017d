"""What security costs (docs/BENCHMARKS.md, "Security overhead"): one broker with PLAINTEXT,
SSL, SASL_PLAINTEXT and SASL_SSL (SCRAM-SHA-512) listeners; confluent-kafka produces 200,000
records of 1 KiB (acks=1, linger 5 ms) and a consumer reads them back over each; then the time
from a new client to its first Metadata answer (TCP, TLS handshake, SASL exchange).

    bench/security_overhead.py path/to/release/sluice
"""
import os, subprocess, sys, time, uuid, tempfile, socket
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
from confluent_kafka import Producer, Consumer
from confluent_kafka.admin import AdminClient, NewTopic
from test_security import make_ca, make_cert
from pathlib import Path

BIN = sys.argv[1]
d = Path(tempfile.mkdtemp())
make_ca(d, "ca"); cert, key = make_cert(d, "ca", "server", "localhost", server=True)
def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
P = {"PLAINTEXT": port(), "SSL": port(), "SASL_SSL": port(), "SASL_PLAINTEXT": port()}
env = dict(os.environ, SLUICE_BOOTSTRAP_USERS="u:p", RUST_LOG="warn")
args = [BIN, "serve", "--data-dir", str(d / "data"), "--http-addr", f"127.0.0.1:{port()}",
        "--tls-cert", str(cert), "--tls-key", str(key), "--flush", "os"]
for n, p in P.items():
    args += ["--listener", f"{n}={n}://127.0.0.1:{p}"]
proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(2)
def conf(n):
    c = {"bootstrap.servers": f"127.0.0.1:{P[n]}", "security.protocol": n}
    if "SSL" in n: c["ssl.ca.location"] = str(d / "ca.pem")
    if "SASL" in n: c.update({"sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "u", "sasl.password": "p"})
    return c
N, SIZE = 200_000, 1024
val = os.urandom(SIZE)
out = {}
# SSL first: the first consumer of a process warms librdkafka up, and is not the one compared.
for n in ["SSL", "PLAINTEXT", "SASL_SSL", "PLAINTEXT"]:
    t = f"m-{uuid.uuid4().hex[:6]}"
    a = AdminClient(conf("PLAINTEXT")); a.create_topics([NewTopic(t, 1, 1)])[t].result(20)
    p = Producer({**conf(n), "linger.ms": 5, "batch.size": 1_000_000, "acks": 1})
    t0 = time.perf_counter()
    for i in range(N):
        while True:
            try:
                p.produce(t, val); break
            except BufferError:
                p.poll(0.01)
    p.flush(60)
    prod = N / (time.perf_counter() - t0)
    c = Consumer({**conf(n), "group.id": t, "auto.offset.reset": "earliest", "fetch.max.bytes": 52428800})
    c.subscribe([t]); got = 0; t0 = None
    while got < N:
        for m in c.consume(10000, 1.0):
            if not m.error():
                if t0 is None: t0 = time.perf_counter()
                got += 1
    cons = N / (time.perf_counter() - t0); c.close()
    out[n] = (prod, cons)
    print(f"{n}: produce {prod:,.0f} msg/s ({prod*SIZE/1e6:.0f} MB/s), consume {cons:,.0f} msg/s ({cons*SIZE/1e6:.0f} MB/s)", flush=True)
# Login cost: new connections that authenticate (metadata round trip from a fresh client).
for n in ["PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"]:
    c = conf(n)
    ts = []
    for _ in range(20):
        t0 = time.perf_counter(); AdminClient(c).list_topics(timeout=10); ts.append(time.perf_counter() - t0)
    ts.sort()
    print(f"{n}: new client to first metadata, median {ts[10]*1000:.1f} ms", flush=True)
proc.terminate(); proc.wait(10)
