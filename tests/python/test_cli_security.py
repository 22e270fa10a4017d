"""The command-line tools against secured listeners (#13).

`sluice topic create|list`, `sluice produce`, `sluice consume` and `sluice user list` run over
SASL_SSL with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN, with the settings given three ways: as
flags, as SLUICE_* environment variables, and as a Kafka client properties file
(`--command-config`, a Java-style JAAS line as people give kafka-topics.sh). Over SSL with a
client certificate on a broker that requires one (flags, and a librdkafka-style file). Failures
say what failed and exit with 1: a wrong password (SASL authentication, naming the mechanism and
the broker's message), an untrusted CA (a TLS error), a mechanism the listener does not offer
(the ones it does), a plaintext client on a TLS listener, a JKS truststore in the file.

Certificates and the broker's TLS and users come from test_security's helpers."""

import json
import os
import subprocess
import time

import pytest

from conftest import _new_broker, sluice_bin, sluice_only
from test_security import USERS, bootstrap_env, certs, tls_args  # noqa: F401 - `certs` is a fixture

pytestmark = sluice_only

MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]


@pytest.fixture(scope="module")
def secure(tmp_root, certs):  # noqa: F811 - the imported fixture
    """One broker: PLAINTEXT (for setup), SASL_SSL and SASL_PLAINTEXT (PLAIN is offered over TLS
    only), users from SLUICE_BOOTSTRAP_USERS."""
    b = _new_broker(
        tmp_root, ["--initial-rebalance-delay-ms", "300", *tls_args(certs)],
        {"SASL_SSL": "SASL_SSL", "SASL_PLAINTEXT": "SASL_PLAINTEXT"}, bootstrap_env()).start()
    yield b
    assert b.stop() == 0, b.log_tail()


@pytest.fixture(scope="module")
def mtls(tmp_root, certs):  # noqa: F811
    """A broker whose SSL listener requires a client certificate signed by the test CA."""
    b = _new_broker(
        tmp_root,
        ["--initial-rebalance-delay-ms", "300",
         *tls_args(certs, "--tls-client-ca", str(certs["ca"]), "--tls-client-auth", "required")],
        {"SSL": "SSL"}).start()
    yield b
    assert b.stop() == 0, b.log_tail()


def clean_env():
    """The environment without SLUICE_* settings (the test decides them)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}


def sluice(*args, env=None, input=None):
    e = clean_env()
    e.update(env or {})
    return subprocess.run([sluice_bin(), *args], capture_output=True, text=True, timeout=90,
                          input=input, env=e)


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def exercise(run, topic, users=True):
    """The tools over the configured connection: `run(*args, input=None)` runs `sluice`."""
    ok(run("topic", "create", topic, "--partitions", "2"))
    listed = json.loads(ok(run("topic", "list", "--output", "json")).stdout)
    assert topic in [t["name"] for t in listed], listed
    ok(run("produce", topic, "-K", ":", input="k1:one\nk2:two\nk3:three\n"))
    got = ok(run("consume", topic, "--from-beginning", "--count", "3", "--format", "%k=%v"))
    assert sorted(got.stdout.split()) == ["k1=one", "k2=two", "k3=three"], got.stdout
    # A group member too: JoinGroup, SyncGroup, offsets, over the same secured connections.
    got = ok(run("consume", topic, "--group", f"g-{topic}", "--from-beginning", "--count", "3"))
    assert sorted(got.stdout.split()) == ["one", "three", "two"], got.stdout
    names = {u["user"] for u in json.loads(ok(run("user", "list", "--output", "json")).stdout)}
    if users:
        assert set(USERS) <= names, names


def java_jaas_file(path, mechanism, user, password, ca):
    module = ("org.apache.kafka.common.security.plain.PlainLoginModule" if mechanism == "PLAIN"
              else "org.apache.kafka.common.security.scram.ScramLoginModule")
    path.write_text(
        "# as for kafka-topics.sh --command-config\n"
        "security.protocol=SASL_SSL\n"
        f"sasl.mechanism={mechanism}\n"
        f"sasl.jaas.config={module} required \\\n"
        f"    username=\"{user}\" \\\n"
        f"    password=\"{password}\";\n"
        "ssl.truststore.type=PEM\n"
        f"ssl.truststore.location={ca}\n"
        "client.id=ignored-by-sluice\n")
    return path


# ---- SASL_SSL: flags, environment, --command-config ----

@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_tools_over_sasl_ssl_with_flags(secure, certs, unique, mechanism):
    flags = ["--bootstrap-server", secure.listener("SASL_SSL"), "--security-protocol", "SASL_SSL",
             "--sasl-mechanism", mechanism, "--sasl-username", "alice",
             "--sasl-password", USERS["alice"], "--tls-ca", str(certs["ca"])]
    exercise(lambda *a, input=None: sluice(*a, *flags, input=input), unique("flags"))


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_tools_over_sasl_ssl_with_environment(secure, certs, unique, mechanism):
    env = {"SLUICE_BOOTSTRAP_SERVER": secure.listener("SASL_SSL"),
           "SLUICE_SECURITY_PROTOCOL": "SASL_SSL", "SLUICE_SASL_MECHANISM": mechanism,
           "SLUICE_SASL_USERNAME": "alice", "SLUICE_SASL_PASSWORD": USERS["alice"],
           "SLUICE_TLS_CA": str(certs["ca"])}
    exercise(lambda *a, input=None: sluice(*a, env=env, input=input), unique("env"))


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_tools_over_sasl_ssl_with_command_config(secure, certs, unique, tmp_root, mechanism):
    cfg = java_jaas_file(tmp_root / f"{unique('client')}.properties", mechanism, "admin",
                         USERS["admin"], certs["ca"])
    bootstrap = ["--bootstrap-server", secure.listener("SASL_SSL")]
    exercise(lambda *a, input=None: sluice(*a, *bootstrap, "--command-config", str(cfg),
                                           input=input), unique("file"))
    # The file by environment variable, and a flag winning over it (a wrong password fails).
    r = sluice("topic", "list", *bootstrap, env={"SLUICE_COMMAND_CONFIG": str(cfg)})
    ok(r)
    r = sluice("topic", "list", *bootstrap, "--sasl-password", "not-it",
               env={"SLUICE_COMMAND_CONFIG": str(cfg)})
    assert r.returncode == 1 and "SASL authentication" in r.stderr, r.stderr


def test_scram_over_sasl_plaintext_and_the_default_mechanism(secure, unique):
    # No --sasl-mechanism: SCRAM-SHA-512.
    flags = ["--bootstrap-server", secure.listener("SASL_PLAINTEXT"),
             "--security-protocol", "SASL_PLAINTEXT", "--sasl-username", "alice"]
    env = {"SLUICE_SASL_PASSWORD": USERS["alice"]}
    topic = unique("sp")
    ok(sluice("topic", "create", topic, *flags, env=env))
    assert topic in ok(sluice("topic", "list", *flags, env=env)).stdout


# ---- SSL with a client certificate ----

def test_tools_over_ssl_with_a_client_certificate(mtls, certs, unique, tmp_root):
    cert, key = certs["alice"]
    flags = ["--bootstrap-server", mtls.listener("SSL"), "--security-protocol", "SSL",
             "--tls-ca", str(certs["ca"]), "--tls-cert", str(cert), "--tls-key", str(key)]
    exercise(lambda *a, input=None: sluice(*a, *flags, input=input), unique("mtls"), users=False)
    # The same as a librdkafka-style properties file.
    cfg = tmp_root / f"{unique('mtls')}.properties"
    cfg.write_text(f"security.protocol=SSL\nssl.ca.location={certs['ca']}\n"
                   f"ssl.certificate.location={cert}\nssl.key.location={key}\n")
    ok(sluice("topic", "list", "--bootstrap-server", mtls.listener("SSL"),
              "--command-config", str(cfg)))
    # Without a certificate the broker ends the TLS session.
    r = sluice("topic", "list", "--bootstrap-server", mtls.listener("SSL"),
               "--security-protocol", "SSL", "--tls-ca", str(certs["ca"]))
    assert r.returncode == 1, r.stderr
    assert "TLS" in r.stderr or "closed" in r.stderr, r.stderr
    # A certificate from another CA is refused too.
    rogue_cert, rogue_key = certs["mallory"]
    r = sluice("topic", "list", "--bootstrap-server", mtls.listener("SSL"),
               "--security-protocol", "SSL", "--tls-ca", str(certs["ca"]),
               "--tls-cert", str(rogue_cert), "--tls-key", str(rogue_key))
    assert r.returncode == 1, r.stderr


# ---- failures ----

@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_wrong_password_fails_naming_sasl_authentication(secure, certs, mechanism):
    r = sluice("topic", "list", "--bootstrap-server", secure.listener("SASL_SSL"),
               "--security-protocol", "SASL_SSL", "--sasl-mechanism", mechanism,
               "--sasl-username", "alice", "--tls-ca", str(certs["ca"]),
               env={"SLUICE_SASL_PASSWORD": "wrong"})
    assert r.returncode == 1, r.stderr
    assert "SASL authentication" in r.stderr and mechanism in r.stderr, r.stderr
    assert "SASL_AUTHENTICATION_FAILED" in r.stderr, r.stderr
    assert "wrong" not in r.stderr
    # The hint says what to check.
    assert "--sasl-username" in r.stderr, r.stderr


def test_untrusted_ca_fails_with_a_tls_error(secure, certs):
    r = sluice("topic", "list", "--bootstrap-server", secure.listener("SASL_SSL"),
               "--security-protocol", "SASL_SSL", "--sasl-username", "alice",
               "--tls-ca", str(certs["rogue_ca"]), env={"SLUICE_SASL_PASSWORD": USERS["alice"]})
    assert r.returncode == 1, r.stderr
    assert "TLS" in r.stderr and "UnknownIssuer" in r.stderr, r.stderr
    assert "--tls-ca" in r.stderr, r.stderr  # the hint


def test_insecure_skip_verify_needs_no_ca(secure):
    r = sluice("topic", "list", "--bootstrap-server", secure.listener("SASL_SSL"),
               "--security-protocol", "SASL_SSL", "--sasl-username", "alice",
               "--tls-insecure-skip-verify", env={"SLUICE_SASL_PASSWORD": USERS["alice"]})
    ok(r)
    ok(sluice("topic", "list", "--bootstrap-server", secure.listener("SASL_SSL"),
              env={"SLUICE_SECURITY_PROTOCOL": "SASL_SSL", "SLUICE_SASL_USERNAME": "alice",
                   "SLUICE_SASL_PASSWORD": USERS["alice"],
                   "SLUICE_TLS_INSECURE_SKIP_VERIFY": "true"}))
    # Without it, a TLS protocol needs a CA.
    r = sluice("topic", "list", "--bootstrap-server", secure.listener("SASL_SSL"),
               "--security-protocol", "SASL_SSL", "--sasl-username", "alice",
               env={"SLUICE_SASL_PASSWORD": USERS["alice"]})
    assert r.returncode == 1 and "--tls-ca" in r.stderr, r.stderr


def test_a_mechanism_the_listener_does_not_offer(secure):
    # PLAIN is offered over TLS only (no --allow-plain-without-tls).
    r = sluice("topic", "list", "--bootstrap-server", secure.listener("SASL_PLAINTEXT"),
               "--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "PLAIN",
               "--sasl-username", "alice", env={"SLUICE_SASL_PASSWORD": USERS["alice"]})
    assert r.returncode == 1, r.stderr
    assert "UNSUPPORTED_SASL_MECHANISM" in r.stderr, r.stderr
    assert "SCRAM-SHA-256, SCRAM-SHA-512" in r.stderr, r.stderr


def test_wrong_protocol_fails_fast_and_says_so(secure, certs):
    # A plaintext client on the TLS listener: the TLS alert is not read as a frame length
    # (and waited for until the timeout).
    started = time.monotonic()
    r = sluice("topic", "list", "--bootstrap-server", secure.listener("SASL_SSL"),
               "--request-timeout-ms", "10000")
    assert r.returncode == 1, r.stderr
    assert "speaks TLS" in r.stderr and "--security-protocol SSL" in r.stderr, r.stderr
    assert time.monotonic() - started < 8
    # A TLS client on the plaintext listener.
    r = sluice("topic", "list", "--bootstrap-server", secure.bootstrap,
               "--security-protocol", "SSL", "--tls-ca", str(certs["ca"]),
               "--request-timeout-ms", "10000")
    assert r.returncode == 1 and "TLS" in r.stderr, r.stderr
    # A plaintext client on a SASL listener: closed after ApiVersions.
    r = sluice("topic", "list", "--bootstrap-server", secure.listener("SASL_PLAINTEXT"),
               "--request-timeout-ms", "10000")
    assert r.returncode == 1 and "--security-protocol" in r.stderr, r.stderr
    # SASL settings without a protocol are refused before connecting.
    r = sluice("topic", "list", "--bootstrap-server", secure.listener("SASL_PLAINTEXT"),
               "--sasl-username", "alice")
    assert r.returncode == 1 and "no security protocol" in r.stderr, r.stderr


def test_unusable_command_config_is_a_clear_error(secure, tmp_root, unique):
    cfg = tmp_root / f"{unique('jks')}.properties"
    cfg.write_text("security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-256\n"
                   "ssl.truststore.location=/etc/kafka/client.truststore.jks\n"
                   "ssl.truststore.password=changeit\n")
    r = sluice("topic", "list", "--bootstrap-server", secure.listener("SASL_SSL"),
               "--command-config", str(cfg))
    assert r.returncode == 1, r.stderr
    assert "PEM" in r.stderr and "keytool" in r.stderr and str(cfg) in r.stderr, r.stderr
    cfg.write_text("security.protocol=SASL_SSL\nsasl.jaas.config=org.apache.kafka.common."
                   "security.scram.ScramLoginModule required username=\"alice\" password=\"x;\n")
    r = sluice("topic", "list", "--bootstrap-server", secure.listener("SASL_SSL"),
               "--command-config", str(cfg))
    assert r.returncode == 1 and "sasl.jaas.config" in r.stderr, r.stderr


# ---- session lifetime (KIP-368) ----

def test_a_long_consume_reconnects_before_its_session_ends(broker_factory, certs, unique):
    """The tools do not re-authenticate: a consumer opens a new connection (and authenticates
    again) before the session lifetime the broker gave ends, and loses nothing."""
    b = broker_factory(["--initial-rebalance-delay-ms", "300", "--connections-max-reauth-ms",
                        "1500", *tls_args(certs)],
                       listeners={"SASL_SSL": "SASL_SSL"}, env=bootstrap_env())
    topic = unique("reauth")
    ok(sluice("topic", "create", topic, "--bootstrap-server", b.bootstrap))
    env = clean_env()
    env.update({"SLUICE_BOOTSTRAP_SERVER": b.listener("SASL_SSL"),
                "SLUICE_SECURITY_PROTOCOL": "SASL_SSL", "SLUICE_SASL_USERNAME": "alice",
                "SLUICE_SASL_PASSWORD": USERS["alice"], "SLUICE_TLS_CA": str(certs["ca"])})
    consumer = subprocess.Popen([sluice_bin(), "consume", topic, "--group", unique("g"),
                                 "--from-beginning", "--count", "8"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
    try:
        for i in range(4):  # over about three session lifetimes
            ok(sluice("produce", topic, "--bootstrap-server", b.bootstrap,
                      input=f"a{i}\nb{i}\n"))
            time.sleep(1.2)
        out, err = consumer.communicate(timeout=60)
    finally:
        consumer.kill()
    assert consumer.returncode == 0, err
    assert sorted(out.split()) == sorted(f"{x}{i}" for i in range(4) for x in "ab"), out
    # No connection was used past its session (the broker would have closed it).
    assert "did not re-authenticate" not in b.log_tail(2000)
