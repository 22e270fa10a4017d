"""Security (#13) through the Java client (kafka-clients 4.1, tests/java `SaslScram`): SASL_SSL
with SCRAM as Kafka's own clients configure it (PEM truststore, hostname verification on), and
SCRAM users managed with Admin.alterUserScramCredentials / describeUserScramCredentials.

The scenario, as the bootstrap user "admin": creates java-user (SCRAM-SHA-256, 8192
iterations) and describes it; an unknown user is RESOURCE_NOT_FOUND, 100 or 16385 iterations
UNACCEPTABLE_CREDENTIAL. java-user produces 100 records (acks=all, idempotent) and a consumer
group reads them back in order. Wrong passwords and a mechanism without a credential fail with
SaslAuthenticationException. Deleting the credential makes describe and java-user's logins fail."""

import uuid

import pytest

import jvm
from conftest import sluice_only
from test_security import USERS, bootstrap_env, make_ca, make_cert, tls_args

pytestmark = sluice_only


@pytest.fixture(scope="module")
def certs(tmp_root):
    d = tmp_root / f"java-certs-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    c = {"dir": d, "ca": make_ca(d, "ca")}
    c["server"] = make_cert(d, "ca", "server", "localhost", server=True)
    return c


def test_java_client_scram_over_sasl_ssl(broker_factory, certs, unique):
    cp = jvm.java_classpath()
    b = broker_factory(["--initial-rebalance-delay-ms", "300", *tls_args(certs)],
                       listeners={"SASL_SSL": "SASL_SSL"}, env=bootstrap_env())
    r = jvm.run(cp, "sasl-scram", b.listener("SASL_SSL"), certs["ca"], "admin", USERS["admin"],
                unique("scram"), timeout=180)
    out = r.stdout
    print(out)  # the CHECK lines, with -s
    assert r.returncode == 0 and "PASSED sasl-scram" in out, \
        f"sasl-scram exited {r.returncode}:\n{out[-8000:]}"
    # What the scenario proved, all of it (a CHECK line per step).
    for what in ("described with SCRAM-SHA-256 and 8192 iterations",
                 "describing an unknown user (ResourceNotFoundException",
                 "an upsertion with 100 iterations (UnacceptableCredentialException",
                 "got every ack", "read all 100 records in order",
                 "the admin user with a wrong password: Admin.describeCluster (SaslAuthenticationException",
                 "after its credential was deleted: producer send (SaslAuthenticationException"):
        assert what in out, f"no CHECK line for {what!r}:\n{out[-8000:]}"
    # The broker saw the failed logins (and says why in its own log only).
    assert "SASL authentication failed" in b.log_tail(1000)
