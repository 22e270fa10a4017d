"""Issue #8, items 13-15 (first half): what a slow or hostile network client can make the broker
hold, the HTTP listener's guards, and accepting connections only once recovered.

- A Kafka frame whose size prefix arrived must arrive whole within the request read timeout,
  else the connection is closed and its memory freed (`--request-read-timeout-ms`).
- Request bytes in flight across connections are bounded (`--queued-max-request-bytes`, Kafka's
  `queued.max.request.bytes`): a connection whose frame does not fit waits, muted, not closed.
- HTTP: headers (and then the body) must arrive within `--http-read-timeout-ms`; at most
  `--http-max-connections` connections; registry writes need a JSON content type (415
  otherwise); the Host header must be on `--http-allowed-hosts` (default: the bind address and
  localhost names).
- Startup: until recovery is done, connections are refused (not accepted and left hanging).
"""

import json
import os
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request

from conftest import DEFAULT_EXTRA_ARGS, sluice_bin, wait_until
from kutil import create_topic, kafka_conn, produce_all, producer, recv_exact

MIB = 1024 * 1024


# ---------------------------------------------------------------- helpers

def api_versions_request(corr):
    payload = struct.pack(">hhi", 18, 0, corr) + struct.pack(">h", 4) + b"test"
    return struct.pack(">i", len(payload)) + payload


def api_versions_ok(s, corr):
    """Sends ApiVersions v0 and checks the answer (error 0, correlation id echoed)."""
    s.sendall(api_versions_request(corr))
    (size,) = struct.unpack(">i", recv_exact(s, 4))
    resp = recv_exact(s, size)
    corr_back, err = struct.unpack_from(">ih", resp, 0)
    return corr_back == corr and err == 0


def closed_within(s, timeout):
    """True if the peer closes the connection (EOF or reset) within `timeout` s; whatever it
    sends before closing is read and ignored."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        s.settimeout(left)
        try:
            data = s.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        if data == b"":
            return True


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def http_request(broker, method, path, body=None, headers=None):
    """Returns (status, parsed JSON or text) without raising on HTTP errors."""
    req = urllib.request.Request(broker.http + path, data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def http_conn(broker, timeout=10):
    return socket.create_connection(("127.0.0.1", broker.http_port), timeout=timeout)


# ---------------------------------------------------------------- Kafka listener (item 13)

def test_partial_frame_is_closed_after_the_read_timeout(broker_factory):
    b = broker_factory(DEFAULT_EXTRA_ARGS + ["--request-read-timeout-ms", "500"])
    stalled = kafka_conn(b)
    bystander = kafka_conn(b)
    try:
        # A 1000-byte frame of which 10 bytes ever arrive.
        stalled.sendall(struct.pack(">i", 1000) + b"x" * 10)
        assert api_versions_ok(bystander, 1), "others are served while a frame stalls"
        assert closed_within(stalled, 15), "a stalled frame must close its connection"
        assert api_versions_ok(bystander, 2)
    finally:
        stalled.close()
        bystander.close()
    assert b.alive()


def test_stalled_frame_mutes_others_until_its_memory_frees(broker_factory):
    """The whole pool is held by one stalled frame: another connection's request waits (muted,
    not closed), and is answered once the stalled connection times out and frees the pool."""
    b = broker_factory(DEFAULT_EXTRA_ARGS + [
        "--max-request-bytes", str(MIB), "--queued-max-request-bytes", str(MIB),
        "--request-read-timeout-ms", "3000"])
    hog = kafka_conn(b)
    probes = []
    try:
        hog.sendall(struct.pack(">i", MIB) + b"x" * 100)
        # Wait (bounded) until the hog's reservation is in place: a fresh connection's request
        # is then not answered. Before that, probes are answered and closed.
        deadline = time.monotonic() + 10
        while True:
            assert time.monotonic() < deadline, "a request was never held back by the full pool"
            waiter = kafka_conn(b)
            probes.append(waiter)
            waiter.sendall(api_versions_request(7))
            waiter.settimeout(0.3)
            try:
                waiter.recv(1)
            except socket.timeout:
                break  # muted: not answered, not closed
            waiter.close()
        assert closed_within(hog, 15), "the stalled frame's connection is closed"
        waiter.settimeout(15)
        (size,) = struct.unpack(">i", recv_exact(waiter, 4))
        corr, err = struct.unpack_from(">ih", recv_exact(waiter, size), 0)
        assert (corr, err) == (7, 0), "the muted connection is served once memory frees"
        assert api_versions_ok(waiter, 8)
    finally:
        hog.close()
        for s in probes:
            s.close()
    assert b.alive()


def test_partial_big_frames_stay_within_the_in_flight_bound(broker_factory):
    """16 connections each start an 8 MiB frame and send all but its last byte. Only
    `--queued-max-request-bytes` (17 MiB: two frames) of them may be read into the broker; the
    rest wait, muted, in socket buffers. Unbounded, the broker would hold 128 MiB. Small requests
    still fit in the free MiB and are answered although big frames wait."""
    frame = 8 * MIB
    bound = 2 * frame + MIB
    b = broker_factory(DEFAULT_EXTRA_ARGS + [
        "--max-request-bytes", str(frame), "--queued-max-request-bytes", str(bound),
        "--request-read-timeout-ms", "60000"])
    assert api_versions_ok(kafka_conn(b), 1)
    before = rss_bytes(b.proc.pid)
    conns = []
    try:
        for _ in range(16):
            s = kafka_conn(b)
            s.setblocking(False)
            conns.append([s, struct.pack(">i", frame) + b"\xab" * (frame - 1)])
        chunk = 256 * 1024
        # Push bytes until every connection has sent everything or made no progress for 1 s
        # (its socket buffers are full because the broker does not read it).
        last_progress = time.monotonic()
        while time.monotonic() - last_progress < 1.0:
            progressed = False
            for c in conns:
                if not c[1]:
                    continue
                try:
                    n = c[0].send(c[1][:chunk])
                except BlockingIOError:
                    continue
                if n:
                    c[1] = c[1][n:]
                    progressed = True
            if progressed:
                last_progress = time.monotonic()
            elif all(not c[1] for c in conns):
                break
            else:
                time.sleep(0.01)
        grown = rss_bytes(b.proc.pid) - before
        print(f"RSS grew {grown / MIB:.1f} MiB; {sum(frame + 3 - len(c[1]) for c in conns) / MIB:.0f} MiB sent")
        assert grown < bound + 24 * MIB, f"RSS grew {grown / MIB:.0f} MiB with a {bound // MIB} MiB bound"
        s = kafka_conn(b)
        try:
            assert api_versions_ok(s, 3), "a small request passes the muted big frames"
        finally:
            s.close()
    finally:
        for c in conns:
            c[0].close()
    # Closing the clients frees their reservations: a small request is answered again.
    s = kafka_conn(b)
    try:
        assert api_versions_ok(s, 2)
    finally:
        s.close()


# ---------------------------------------------------------------- HTTP listener (item 14)

def test_http_slowloris_is_closed_after_the_read_timeout(broker_factory):
    b = broker_factory(DEFAULT_EXTRA_ARGS + ["--http-read-timeout-ms", "500"])
    s = http_conn(b)
    try:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slo")  # never ends
        assert closed_within(s, 15), "unfinished headers must close the connection"
    finally:
        s.close()
    idle = http_conn(b)
    try:
        assert closed_within(idle, 15), "an idle connection closes after the same timeout"
    finally:
        idle.close()
    assert b.health_ok()


def test_http_body_must_arrive_within_the_read_timeout(broker_factory):
    b = broker_factory(DEFAULT_EXTRA_ARGS + ["--http-read-timeout-ms", "500"])
    s = http_conn(b)
    try:
        s.sendall(b"POST /subjects/x/versions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"sch")
        s.settimeout(15)
        head = s.recv(65536)
        assert head.startswith(b"HTTP/1.1 408"), head[:100]
        assert closed_within(s, 15)
    finally:
        s.close()
    assert http_request(b, "GET", "/subjects")[1] == []


def test_http_connection_cap(broker_factory):
    b = broker_factory(DEFAULT_EXTRA_ARGS + ["--http-max-connections", "3"])
    held = []
    try:
        # Each held connection is accepted (the server answers a request on it) before the next.
        # The start-up health checks' connections may still count for a moment after the client
        # closed them: a connection refused then is retried (bounded) until one is accepted.
        for _ in range(3):
            deadline = time.monotonic() + 10
            while True:
                s = http_conn(b)
                s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                s.settimeout(10)
                answer = s.recv(65536)
                if answer or time.monotonic() > deadline:
                    break
                s.close()
                time.sleep(0.1)
            held.append(s)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
        extra = http_conn(b)
        try:
            assert closed_within(extra, 15), "a connection over the cap is closed at accept"
        finally:
            extra.close()
    finally:
        held[0].close()
    # A slot frees when a connection ends.
    wait_until(b.health_ok, 15, "/health once a connection slot is free")
    for s in held[1:]:
        s.close()


def test_registry_write_needs_json_content_type(broker):
    schema = json.dumps({"schema": '"string"'}).encode()
    for ct in ["text/plain", "application/x-www-form-urlencoded", None]:
        headers = {"Content-Type": ct} if ct else {}
        req = urllib.request.Request(broker.http + "/subjects/net-ct/versions", data=schema,
                                     method="POST", headers=headers)
        if ct is None:
            # urllib adds a form content type to any body; remove it to send none at all.
            req.remove_header("Content-type")
            req.unredirected_hdrs.pop("Content-type", None)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        assert status == 415, (ct, status, text)
        assert json.loads(text) == {"error_code": 415, "message": "HTTP 415 Unsupported Media Type"}
    status, subjects = http_request(broker, "GET", "/subjects")
    assert status == 200 and "net-ct" not in subjects
    status, body = http_request(broker, "POST", "/subjects/net-ct/versions", schema,
                                {"Content-Type": "application/vnd.schemaregistry.v1+json"})
    assert status == 200 and "id" in body
    status, body = http_request(broker, "POST", "/subjects/net-ct/versions", schema,
                                {"Content-Type": "application/json; charset=utf-8"})
    assert status == 200 and "id" in body


def test_http_host_allow_list_default(broker):
    port = broker.http_port
    for host in [f"localhost:{port}", f"127.0.0.1:{port}", "localhost", f"[::1]:{port}"]:
        status, body = http_request(broker, "GET", "/health", headers={"Host": host})
        assert status == 200, (host, body)
    for host in ["evil.example", f"evil.example:{port}", f"localhost.evil.example:{port}"]:
        status, body = http_request(broker, "GET", "/subjects", headers={"Host": host})
        assert status == 403, (host, status, body)
        assert "not allowed" in body["message"] and "--http-allowed-hosts" in body["message"]
    # A refused write registers nothing.
    status, _ = http_request(broker, "POST", "/subjects/net-host/versions",
                             json.dumps({"schema": '"string"'}).encode(),
                             {"Content-Type": "application/json", "Host": "evil.example"})
    assert status == 403
    assert "net-host" not in http_request(broker, "GET", "/subjects")[1]


def test_http_allowed_hosts_flag(broker_factory):
    b = broker_factory(DEFAULT_EXTRA_ARGS + ["--http-allowed-hosts", "registry.example,127.0.0.1"])
    assert http_request(b, "GET", "/health", headers={"Host": "registry.example:8081"})[0] == 200
    assert http_request(b, "GET", "/health")[0] == 200  # 127.0.0.1:port
    assert http_request(b, "GET", "/health", headers={"Host": "localhost"})[0] == 403
    star = broker_factory(DEFAULT_EXTRA_ARGS + ["--http-allowed-hosts", "*"])
    assert http_request(star, "GET", "/health", headers={"Host": "anything.example"})[0] == 200


# ---------------------------------------------------------------- startup (item 15)

def test_connections_are_refused_until_recovered(broker_factory, unique):
    """A data dir with many partitions, killed with -9, so start-up recovers each active
    segment. Every connection attempt during start-up is either refused or made to a broker
    that has already logged that it is serving (and then answered)."""
    b = broker_factory()
    topic = unique()
    create_topic(b.bootstrap, topic, partitions=400)
    p = producer(b.bootstrap)
    produce_all(p, topic, [(None, b"v%d" % i) for i in range(400)])
    del p  # no client reconnecting in the background while the broker is down
    b.kill9()

    log_path = b.log_dir / f"sluice-{b.kafka_port}-restart.log"
    log = open(log_path, "wb")
    cmd = [sluice_bin(), "serve", "--kafka-addr", b.bootstrap,
           "--http-addr", f"127.0.0.1:{b.http_port}", "--data-dir", str(b.data_dir),
           *b.extra_args]
    env = dict(os.environ, RUST_LOG="info", NO_COLOR="1")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            stdin=subprocess.DEVNULL)
    log.close()
    try:
        refused = 0
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "the broker never accepted a connection"
            assert proc.poll() is None, log_path.read_text(errors="replace")
            try:
                s = socket.create_connection(("127.0.0.1", b.kafka_port), timeout=5)
            except ConnectionRefusedError:
                refused += 1
                continue
            try:
                assert "sluice is serving" in log_path.read_text(errors="replace"), \
                    "a connection was accepted before recovery finished"
                s.settimeout(10)
                assert api_versions_ok(s, 1)
            finally:
                s.close()
            break
        assert refused > 0
    finally:
        proc.kill()
        proc.wait(timeout=15)
