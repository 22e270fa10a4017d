"""Security (#13): listeners with TLS and SASL, as unmodified Kafka clients configure them.

One broker opens a PLAINTEXT listener (for admin), SSL, SASL_PLAINTEXT and SASL_SSL. Users come
from SLUICE_BOOTSTRAP_USERS and `sluice user`; certificates from openssl (a test CA; the server
certificate names localhost and 127.0.0.1, so clients verify hostnames as they do by default).
The scenarios follow librdkafka's tests/sasl_test.py: PLAIN, SCRAM-SHA-256/512, OAUTHBEARER
with unsecured tokens, SSL, SASL_SSL, mutual TLS; wrong passwords, unknown users, bad scopes,
expired tokens and untrusted certificates fail. Raw frames check what no client sends: the v0
handshake's bare tokens, requests before authentication, an unsupported mechanism."""

import base64
import json
import os
import signal
import socket
import struct
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient

from conftest import sluice_bin, sluice_only, wait_until
from kutil import create_topic, produce_all

pytestmark = sluice_only

USERS = {"admin": "admin-secret", "alice": "alice-secret"}
LISTENERS = {"SSL": "SSL", "SASL_PLAINTEXT": "SASL_PLAINTEXT", "SASL_SSL": "SASL_SSL"}


# ---- certificates ----

def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}", cwd=d)
    return d / f"{name}.pem"


def make_cert(d, ca, name, cn, server=False):
    """A certificate for `cn` signed by `ca` (a server certificate names localhost and
    127.0.0.1 in its subjectAltName)."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/O=Sluice Test/CN={cn}", cwd=d)
    ext = d / f"{name}.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n" if server
                   else "extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", ext.name, cwd=d)
    return d / f"{name}.pem", d / f"{name}.key"


@pytest.fixture(scope="module")
def certs(tmp_root):
    d = tmp_root / f"certs-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    c = {"dir": d, "ca": make_ca(d, "ca"), "rogue_ca": make_ca(d, "rogue")}
    c["server"] = make_cert(d, "ca", "server", "localhost", server=True)
    c["alice"] = make_cert(d, "ca", "alice", "alice")
    c["mallory"] = make_cert(d, "rogue", "mallory", "alice")
    return c


def tls_args(certs, *extra):
    cert, key = certs["server"]
    return ["--tls-cert", str(cert), "--tls-key", str(key), *extra]


def bootstrap_env(users=USERS):
    return {"SLUICE_BOOTSTRAP_USERS": ",".join(f"{u}:{p}" for u, p in users.items())}


@pytest.fixture(scope="module")
def secure(tmp_root, certs):
    from conftest import _new_broker

    b = _new_broker(
        tmp_root,
        ["--initial-rebalance-delay-ms", "300", *tls_args(certs),
         "--allow-plain-without-tls", "--sasl-oauthbearer-unsecured",
         "--sasl-oauthbearer-required-scope", "kafka"],
        LISTENERS, bootstrap_env()).start()
    yield b
    assert b.stop() == 0, b.log_tail()


# ---- client configurations (the settings docs/SECURITY.md gives) ----

def conf(broker, certs, protocol, mechanism=None, user="alice", password=None, **extra):
    c = {"bootstrap.servers": broker.listener(protocol), "security.protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        c["ssl.ca.location"] = str(certs["ca"])
    if mechanism == "OAUTHBEARER":
        c["sasl.mechanisms"] = "OAUTHBEARER"
        c["enable.sasl.oauthbearer.unsecure.jwt"] = True
        c["sasl.oauthbearer.config"] = f"principal={user} scope=kafka"
    elif mechanism:
        c["sasl.mechanisms"] = mechanism
        c["sasl.username"] = user
        c["sasl.password"] = USERS.get(user, "") if password is None else password
    c.update(extra)
    return c


def roundtrip(broker, client_conf):
    """Produces three records to a new topic and consumes them back over the configured
    listener."""
    topic = create_topic(broker.bootstrap, f"rt-{uuid.uuid4().hex[:10]}")
    errors = []
    p = Producer({**client_conf, "linger.ms": 5, "error_cb": errors.append})
    sent = produce_all(p, topic, [(b"k%d" % i, b"v%d" % i) for i in range(3)])
    assert [o for (_, o, _, _) in sent] == [0, 1, 2]
    c = Consumer({**client_conf, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest", "error_cb": errors.append})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 3 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    assert got == [b"v0", b"v1", b"v2"], errors
    assert not [e for e in errors if e.code() == KafkaError._AUTHENTICATION], errors


def is_auth_failure(e):
    """An authentication failure as librdkafka reports it: SASL, a refused certificate, or the
    TLS alert the broker sends when a client certificate is missing."""
    return (e.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL)
            or (e.code() == KafkaError._TRANSPORT and "certificate required" in e.str()))


def auth_fails(client_conf, what):
    """The client reports an authentication failure (and never gets metadata)."""
    errors = []
    a = AdminClient({**client_conf, "error_cb": errors.append})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(is_auth_failure(e) for e in errors):
            break
        a.poll(0.2)
    assert any(is_auth_failure(e) for e in errors), \
        f"{what}: expected an authentication failure, got {errors}"
    with pytest.raises(Exception):
        a.list_topics(timeout=1)
    return errors


# ---- the mechanisms and protocols ----

@pytest.mark.parametrize("protocol,mechanism", [
    ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-512"),
    ("SASL_PLAINTEXT", "PLAIN"),
    ("SASL_SSL", "SCRAM-SHA-512"),
    ("SASL_SSL", "PLAIN"),
    ("SASL_SSL", "OAUTHBEARER"),
    ("SSL", None),
])
def test_clients_connect_with_kafka_settings(secure, certs, unique, protocol, mechanism):
    roundtrip(secure, conf(secure, certs, protocol, mechanism))


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_wrong_password_and_unknown_user_fail(secure, certs, mechanism):
    auth_fails(conf(secure, certs, "SASL_SSL", mechanism, password="wrong"), "wrong password")
    auth_fails(conf(secure, certs, "SASL_SSL", mechanism, user="nobody", password="x"),
               "unknown user")
    log = secure.log_tail(400)
    assert "SASL authentication failed" in log
    # The client was told nothing more than "invalid credentials" (no user-existence leak):
    # the broker's reason is in its own log only.


def test_oauthbearer_without_required_scope_fails(secure, certs):
    c = conf(secure, certs, "SASL_SSL", "OAUTHBEARER")
    c["sasl.oauthbearer.config"] = "principal=alice scope=other"
    auth_fails(c, "token without the required scope")


def test_untrusted_server_certificate_is_refused_by_the_client(secure, certs):
    c = conf(secure, certs, "SASL_SSL", "SCRAM-SHA-256")
    c["ssl.ca.location"] = str(certs["rogue_ca"])
    auth_fails(c, "server certificate from another CA")


def test_plaintext_client_on_a_tls_listener_is_closed(secure, certs):
    c = conf(secure, certs, "SASL_SSL", "SCRAM-SHA-256")
    c["security.protocol"] = "SASL_PLAINTEXT"
    errors = []
    a = AdminClient({**c, "error_cb": errors.append})
    with pytest.raises(Exception):
        a.list_topics(timeout=3)
    wait_until(lambda: "TLS handshake failed" in secure.log_tail(400), 10, "the broker's log line")


# ---- mutual TLS ----

def test_mutual_tls_requires_a_trusted_client_certificate(broker_factory, certs, unique):
    b = broker_factory(
        ["--initial-rebalance-delay-ms", "300",
         *tls_args(certs, "--tls-client-ca", str(certs["ca"]), "--tls-client-auth", "required")],
        listeners={"SSL": "SSL"})
    cert, key = certs["alice"]
    roundtrip(b, conf(b, certs, "SSL", **{"ssl.certificate.location": str(cert),
                                          "ssl.key.location": str(key)}))
    auth_fails(conf(b, certs, "SSL"), "no client certificate")
    rogue_cert, rogue_key = certs["mallory"]
    auth_fails(conf(b, certs, "SSL", **{"ssl.certificate.location": str(rogue_cert),
                                        "ssl.key.location": str(rogue_key)}),
               "client certificate from another CA")


def test_tls_files_reload_on_sighup(broker_factory, certs, unique, tmp_root):
    d = tmp_root / f"reload-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    cert, key = d / "server.pem", d / "server.key"
    cert.write_bytes(certs["server"][0].read_bytes())
    key.write_bytes(certs["server"][1].read_bytes())
    b = broker_factory(["--tls-cert", str(cert), "--tls-key", str(key)], listeners={"SSL": "SSL"})
    roundtrip(b, conf(b, certs, "SSL"))
    # A certificate from another CA replaces the files; clients trusting only that CA get in
    # once the broker reloads.
    new_ca = make_ca(d, "newca")
    new_cert, new_key = make_cert(d, "newca", "renewed", "localhost", server=True)
    cert.write_bytes(new_cert.read_bytes())
    key.write_bytes(new_key.read_bytes())
    b.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reloaded the TLS certificate" in b.log_tail(200), 10, "the reload")
    trusting_new = conf(b, certs, "SSL", **{"ssl.ca.location": str(new_ca)})
    roundtrip(b, trusting_new)
    auth_fails(conf(b, certs, "SSL"), "client trusting only the old CA")
    # A broken file keeps the configuration in force.
    key.write_text("not a key")
    b.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "TLS files not reloaded" in b.log_tail(200), 10, "the refused reload")
    roundtrip(b, trusting_new)


# ---- users ----

def sluice(*args, input=None):
    return subprocess.run([sluice_bin(), *args], capture_output=True, text=True, timeout=60,
                          input=input)


def test_user_cli_creates_lists_and_deletes_scram_users(secure, certs, unique):
    name = f"bob-{uuid.uuid4().hex[:6]}"
    r = sluice("user", "create", name, "--bootstrap-server", secure.bootstrap, input="bob-pass\n")
    assert r.returncode == 0, r.stderr
    r = sluice("user", "list", "--bootstrap-server", secure.bootstrap, "--output", "json")
    assert r.returncode == 0, r.stderr
    users = {u["user"]: u for u in json.loads(r.stdout)}
    assert set(USERS) <= set(users)
    assert sorted(c["mechanism"] for c in users[name]["credentials"]) == ["SCRAM-SHA-256",
                                                                          "SCRAM-SHA-512"]
    assert "password" not in r.stdout and "bob-pass" not in r.stdout
    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"):
        roundtrip(secure, conf(secure, certs, "SASL_SSL", mech, user=name, password="bob-pass"))
    # A new password replaces the old one.
    r = sluice("user", "create", name, "--password", "bob-new", "--mechanism", "SCRAM-SHA-512",
               "--bootstrap-server", secure.bootstrap)
    assert r.returncode == 0, r.stderr
    auth_fails(conf(secure, certs, "SASL_SSL", "SCRAM-SHA-512", user=name, password="bob-pass"),
               "the old password")
    r = sluice("user", "delete", name, "--bootstrap-server", secure.bootstrap)
    assert r.returncode == 0, r.stderr
    auth_fails(conf(secure, certs, "SASL_SSL", "SCRAM-SHA-256", user=name, password="bob-pass"),
               "a deleted user")
    r = sluice("user", "list", name, "--bootstrap-server", secure.bootstrap)
    assert r.returncode == 1 and "RESOURCE_NOT_FOUND" in r.stderr, r.stderr
    # Kafka's bounds on iterations.
    r = sluice("user", "create", "weak", "--password", "x", "--iterations", "100",
               "--bootstrap-server", secure.bootstrap)
    assert r.returncode == 1 and "UNACCEPTABLE_CREDENTIAL" in r.stderr, r.stderr


def test_bootstrap_users_apply_once(broker_factory, certs, unique):
    b = broker_factory(tls_args(certs), listeners={"SASL_SSL": "SASL_SSL"},
                       env=bootstrap_env({"root": "first"}))
    root = conf(b, certs, "SASL_SSL", "SCRAM-SHA-256", user="root", password="first")
    roundtrip(b, root)
    # A restart with another password in the variable changes nothing: users exist.
    b.env["SLUICE_BOOTSTRAP_USERS"] = "root:second"
    b.restart()
    roundtrip(b, root)
    auth_fails(conf(b, certs, "SASL_SSL", "SCRAM-SHA-256", user="root", password="second"),
               "the second bootstrap password")


def test_plain_is_not_offered_without_tls_unless_allowed(broker_factory, certs):
    b = broker_factory(env=bootstrap_env(), listeners={"SASL_PLAINTEXT": "SASL_PLAINTEXT"})
    with Raw(b.listener_ports["SASL_PLAINTEXT"][1]) as r:
        code, mechanisms = r.handshake("PLAIN", version=1)
        assert code == 33  # UNSUPPORTED_SASL_MECHANISM, with what is offered
        assert mechanisms == ["SCRAM-SHA-256", "SCRAM-SHA-512"]
    bad = subprocess.run([sluice_bin(), "serve", "--listener", "SASL_PLAINTEXT://127.0.0.1:0",
                          "--sasl-mechanisms", "PLAIN", "--data-dir", str(b.data_dir) + "-x"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "--allow-plain-without-tls" in bad.stderr, bad.stderr


# ---- the exchange on the wire ----

class Raw:
    """A raw connection speaking SaslHandshake and SaslAuthenticate (non-flexible versions)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.corr = 0

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.s.close()

    def send(self, api, version, body):
        self.corr += 1
        cid = b"raw"
        payload = struct.pack(">hhih", api, version, self.corr, len(cid)) + cid + body
        self.s.sendall(struct.pack(">i", len(payload)) + payload)

    def recv(self):
        head = self._exact(4)
        (n,) = struct.unpack(">i", head)
        return self._exact(n)

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed by the broker")
            buf += chunk
        return buf

    def handshake(self, mechanism, version=1):
        m = mechanism.encode()
        self.send(17, version, struct.pack(">h", len(m)) + m)
        r = self.recv()
        corr, code, count = struct.unpack(">ihi", r[:10])
        assert corr == self.corr
        out, at = [], 10
        for _ in range(count):
            (ln,) = struct.unpack(">h", r[at:at + 2])
            out.append(r[at + 2:at + 2 + ln].decode())
            at += 2 + ln
        return code, out

    def authenticate(self, token, version=1):
        """SaslAuthenticate: (error code, error message, auth bytes, session lifetime)."""
        self.send(36, version, struct.pack(">i", len(token)) + token)
        r = self.recv()
        corr, code, mlen = struct.unpack(">ihh", r[:8])
        at = 8
        msg = None
        if mlen >= 0:
            msg = r[at:at + mlen].decode()
            at += mlen
        (blen,) = struct.unpack(">i", r[at:at + 4])
        data = r[at + 4:at + 4 + blen]
        at += 4 + blen
        lifetime = struct.unpack(">q", r[at:at + 8])[0] if version >= 1 else None
        return code, msg, data, lifetime

    def metadata_v1(self):
        """Metadata v1 for all topics: True when answered."""
        self.send(3, 1, struct.pack(">i", -1))
        self.recv()
        return True


def test_only_apiversions_and_sasl_before_authentication(secure):
    port = secure.listener_ports["SASL_PLAINTEXT"][1]
    with Raw(port) as r:
        with pytest.raises((ConnectionError, OSError)):
            r.metadata_v1()
    with Raw(port) as r:
        code, mechanisms = r.handshake("GSSAPI")
        assert code == 33
        assert set(mechanisms) == {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"}
        # Then the connection closes, as Kafka's does.
        with pytest.raises((ConnectionError, OSError)):
            r.handshake("PLAIN")
    with Raw(port) as r:
        code, _ = r.handshake("PLAIN")
        assert code == 0
        # Anything but SaslAuthenticate now closes it.
        with pytest.raises((ConnectionError, OSError)):
            r.metadata_v1()


def test_plain_over_v1_and_over_v0_raw_frames(secure):
    port = secure.listener_ports["SASL_PLAINTEXT"][1]
    token = b"\x00alice\x00alice-secret"
    with Raw(port) as r:
        assert r.handshake("PLAIN", version=1)[0] == 0
        code, msg, _, lifetime = r.authenticate(token)
        assert (code, lifetime) == (0, 0), msg
        assert r.metadata_v1()
    with Raw(port) as r:
        assert r.handshake("PLAIN", version=0)[0] == 0
        # v0: the token goes bare, and so does the (empty) answer.
        r.s.sendall(struct.pack(">i", len(token)) + token)
        assert r.recv() == b""
        assert r.metadata_v1()
    with Raw(port) as r:
        assert r.handshake("PLAIN")[0] == 0
        code, msg, _, _ = r.authenticate(b"\x00alice\x00wrong")
        assert code == 58  # SASL_AUTHENTICATION_FAILED
        assert msg == ("Authentication failed during authentication due to invalid credentials "
                       "with SASL mechanism PLAIN")
        with pytest.raises((ConnectionError, OSError)):
            r.metadata_v1()


def test_sasl_requests_on_a_plaintext_listener_are_illegal(secure):
    with Raw(secure.kafka_port) as r:
        code, _ = r.handshake("PLAIN")
        assert code == 34  # ILLEGAL_SASL_STATE


def jwt(claims):
    enc = lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).rstrip(b"=").decode()
    return f"{enc({'alg': 'none'})}.{enc(claims)}."


def test_expired_oauthbearer_token_fails_after_kafkas_error_exchange(secure):
    port = secure.listener_ports["SASL_PLAINTEXT"][1]
    now = int(time.time())
    expired = jwt({"sub": "alice", "iat": now - 120, "exp": now - 60, "scope": "kafka"})
    with Raw(port) as r:
        assert r.handshake("OAUTHBEARER")[0] == 0
        code, _, data, _ = r.authenticate(f"n,,\x01auth=Bearer {expired}\x01\x01".encode())
        # Kafka answers an invalid token with its JSON error first, the client acknowledges
        # with 0x01, and only then the exchange fails.
        assert code == 0 and json.loads(data)["status"] == "invalid_token"
        code, _, _, _ = r.authenticate(b"\x01")
        assert code == 58
    valid = jwt({"sub": "alice", "iat": now, "exp": now + 60, "scope": "kafka"})
    with Raw(port) as r:
        assert r.handshake("OAUTHBEARER")[0] == 0
        code, msg, _, lifetime = r.authenticate(f"n,,\x01auth=Bearer {valid}\x01\x01".encode())
        assert code == 0, msg
        # The session ends with the token (KIP-368): the lifetime is what is left of it.
        assert 0 < lifetime <= 60_000
        assert r.metadata_v1()


# ---- re-authentication (KIP-368) ----

def test_reauthentication_under_load_loses_nothing(broker_factory, certs, unique):
    b = broker_factory(["--connections-max-reauth-ms", "2000", *tls_args(certs)],
                       listeners={"SASL_SSL": "SASL_SSL"}, env=bootstrap_env())
    topic = create_topic(b.bootstrap, unique())
    c = conf(b, certs, "SASL_SSL", "SCRAM-SHA-512")
    errors = []
    p = Producer({**c, "linger.ms": 5, "error_cb": errors.append})
    delivered, failed = [], []
    n = 0
    deadline = time.monotonic() + 7  # three to four session lifetimes
    while time.monotonic() < deadline:
        p.produce(topic, b"v%d" % n,
                  on_delivery=lambda e, m: (failed if e else delivered).append(e or m.offset()))
        n += 1
        p.poll(0.01)
    assert p.flush(30) == 0
    assert not failed and len(delivered) == n, failed
    cons = Consumer({**c, "group.id": unique("g"), "auto.offset.reset": "earliest"})
    cons.subscribe([topic])
    got = 0
    end = time.monotonic() + 30
    while got < n and time.monotonic() < end:
        m = cons.poll(0.5)
        if m is not None and not m.error():
            got += 1
    cons.close()
    assert got == n
    assert not [e for e in errors if e.code() == KafkaError._AUTHENTICATION], errors
    # The clients re-authenticated on their live connections rather than being cut off.
    assert "did not re-authenticate" not in b.log_tail(1000)


# ---- kcat (Debian's, librdkafka 2.x) ----

def test_kcat_scram_over_sasl_ssl(secure, certs, unique):
    topic = create_topic(secure.bootstrap, unique())
    args = ["kcat", "-b", secure.listener("SASL_SSL"), "-X", "security.protocol=SASL_SSL",
            "-X", "sasl.mechanisms=SCRAM-SHA-256", "-X", "sasl.username=alice",
            "-X", "sasl.password=alice-secret", "-X", f"ssl.ca.location={certs['ca']}"]
    r = subprocess.run([*args, "-P", "-t", topic], input=b"one\ntwo\n", capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*args, "-C", "-t", topic, "-o", "beginning", "-c", "2", "-e"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [b"one", b"two"]
    bad = [a.replace("alice-secret", "nope") for a in args]
    r = subprocess.run([*bad, "-L"], capture_output=True, timeout=60)
    assert r.returncode != 0


def test_client_certificate_cn_is_the_principal_acls_see(broker_factory, certs):
    """Mutual TLS with `--authorizer on`: the connection of a certificate with CN=alice is
    `User:alice` (ACLs granted to it apply), one without a certificate is `User:ANONYMOUS`."""
    import json as _json

    b = broker_factory(
        [*tls_args(certs, "--tls-client-ca", str(certs["ca"]), "--tls-client-auth", "requested"),
         "--authorizer", "on", "--superuser", "User:ANONYMOUS"],
        listeners={"SSL": "SSL"})
    # The PLAINTEXT listener is User:ANONYMOUS, a super user here: it sets up the ACLs.
    granted = f"cn-{uuid.uuid4().hex[:6]}"
    other = f"cn-{uuid.uuid4().hex[:6]}"
    create_topic(b.bootstrap, granted)
    create_topic(b.bootstrap, other)
    r = sluice("acl", "create", "--principal", "User:alice", "--producer", "--topic", granted,
               "--bootstrap-server", b.bootstrap)
    assert r.returncode == 0, r.stderr
    rows = _json.loads(sluice("acl", "list", "--bootstrap-server", b.bootstrap,
                              "--output", "json").stdout)
    assert {r["principal"] for r in rows} == {"User:alice"}
    cert, key = certs["alice"]
    alice = conf(b, certs, "SSL", **{"ssl.certificate.location": str(cert),
                                     "ssl.key.location": str(key)})

    def produce(c, topic):
        out = []
        p = Producer({**c, "message.timeout.ms": 8000})
        p.produce(topic, b"x", on_delivery=lambda e, m: out.append(e))
        p.flush(20)
        return out[0].code() if out and out[0] is not None else None

    assert produce(alice, granted) is None
    assert produce(alice, other) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # Without a certificate the SSL connection is User:ANONYMOUS (a super user here).
    assert produce(conf(b, certs, "SSL"), other) is None


# ---- OAUTHBEARER with signed tokens (JWKS, KIP-768) ----

def rsa_key_and_jwks(kid):
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    nums = key.public_key().public_numbers()
    b64 = lambda i: base64.urlsafe_b64encode(i.to_bytes((i.bit_length() + 7) // 8, "big")) \
        .rstrip(b"=").decode()
    return key, {"keys": [{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                           "n": b64(nums.n), "e": b64(nums.e)}]}


def signed_jwt(key, kid, claims):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = enc(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
    body = enc(json.dumps(claims).encode())
    sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{enc(sig)}"


class IdentityProvider:
    """A tiny OAuth identity provider on loopback: `/jwks` serves the key set and `/token`
    (client credentials) issues RS256 tokens for the client id, as an OIDC provider does for
    librdkafka's `sasl.oauthbearer.method=oidc`."""

    def __init__(self, issuer="https://idp.test", audience="sluice"):
        import http.server
        import threading

        self.kid = f"k-{uuid.uuid4().hex[:6]}"
        self.key, self.jwks = rsa_key_and_jwks(self.kid)
        self.issuer, self.audience = issuer, audience
        idp = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, obj):
                body = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._send(idp.jwks)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                form = self.rfile.read(n).decode()
                auth = self.headers.get("Authorization", "")
                client = base64.b64decode(auth.split(" ", 1)[1]).decode().split(":")[0] \
                    if auth.startswith("Basic ") else "unknown"
                assert "grant_type=client_credentials" in form
                self._send({"access_token": idp.token(client), "token_type": "bearer",
                            "expires_in": 60})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, sub, lifetime=60, **over):
        now = int(time.time())
        claims = {"sub": sub, "iss": self.issuer, "aud": self.audience, "iat": now,
                  "exp": now + lifetime, "scope": "kafka"}
        claims.update(over)
        return signed_jwt(self.key, self.kid, claims)

    def close(self):
        self.server.shutdown()


def test_oauthbearer_signed_tokens_from_a_key_set(broker_factory, tmp_root):
    idp = IdentityProvider()
    try:
        b = broker_factory(["--sasl-oauthbearer-jwks-url", f"http://127.0.0.1:{idp.port}/jwks",
                            "--sasl-oauthbearer-expected-issuer", idp.issuer,
                            "--sasl-oauthbearer-expected-audience", idp.audience,
                            "--sasl-oauthbearer-required-scope", "kafka"],
                           listeners={"SASL_PLAINTEXT": "SASL_PLAINTEXT"})
        port = b.listener_ports["SASL_PLAINTEXT"][1]

        def login(token):
            with Raw(port) as r:
                assert r.handshake("OAUTHBEARER")[0] == 0
                code, _, data, lifetime = r.authenticate(
                    f"n,,\x01auth=Bearer {token}\x01\x01".encode())
                if code == 0 and not data:
                    return lifetime
                assert json.loads(data)["status"] in ("invalid_token", "insufficient_scope")
                code, _, _, _ = r.authenticate(b"\x01")
                assert code == 58
                return None

        assert 0 < login(idp.token("svc-a")) <= 60_000
        # Another issuer, another audience, a forged signature, a missing scope: refused.
        assert login(idp.token("svc-a", iss="https://evil.test")) is None
        assert login(idp.token("svc-a", aud="other")) is None
        assert login(idp.token("svc-a", scope="other")) is None
        forged = idp.token("svc-a").rsplit(".", 1)[0] + "." + \
            base64.urlsafe_b64encode(b"x" * 256).rstrip(b"=").decode()
        assert login(forged) is None
        # Unsecured tokens are not accepted when a key set is configured.
        assert login(jwt({"sub": "svc-a", "exp": int(time.time()) + 60, "scope": "kafka"})) is None

        # librdkafka's OIDC client: it fetches a token from the provider and logs in with it.
        c = {"bootstrap.servers": b.listener("SASL_PLAINTEXT"),
             "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "OAUTHBEARER",
             "sasl.oauthbearer.method": "oidc", "sasl.oauthbearer.client.id": "svc-b",
             "sasl.oauthbearer.client.secret": "s3cret",
             "sasl.oauthbearer.token.endpoint.url": f"http://127.0.0.1:{idp.port}/token"}
        roundtrip(b, c)

        # Key rotation: the provider's new key set is read on SIGHUP.
        old = idp.token("svc-a")
        idp.kid = f"k-{uuid.uuid4().hex[:6]}"
        idp.key, idp.jwks = rsa_key_and_jwks(idp.kid)
        assert login(idp.token("svc-a")) is None
        b.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reloaded the OAUTHBEARER key set" in b.log_tail(300), 10,
                   "the key set reload")
        assert login(idp.token("svc-a")) is not None
        assert login(old) is None
    finally:
        idp.close()
