"""HTTP authentication and authorization on the HTTP port (registry, /v1 and /v3 API, console),
on whenever a Kafka listener authenticates.

One broker with a SASL_PLAINTEXT listener, `--authorizer on` and `User:admin` as super user is
shared by most tests (users admin, bob, carol, dave from SLUICE_BOOTSTRAP_USERS; each test uses topics
of its own and makes its ACLs with `sluice acl` as admin over SASL). Checked from outside:

- requests without credentials, with a wrong password, an unknown user or another scheme get
  401 with a Basic challenge; /health (and /metrics unless --http-metrics-auth) stay open;
- with no authenticating listener everything stays open, and --http-metrics-auth refuses to start;
- the registry authorizes a subject as its topic (register needs WRITE, lists are filtered,
  delete needs DELETE, global config needs ALTER_CONFIGS on the cluster);
- /v1 acts as its caller on the Kafka side, so Kafka ACLs apply; a changed password stops the
  old one at once; the queue API checks READ on group and topic itself;
- console sessions: login form (same origin only), HttpOnly SameSite=Strict cookie, CSRF token
  for writes, logout, an SSE tail on the session; and the whole flow in a real browser.
"""

import html
import http.client
import json
import os
import re
import subprocess
import uuid

import pytest
import requests
from playwright.sync_api import expect

from conftest import sluice_bin, sluice_only
from kutil import OP_TIMEOUT_S
from test_console import browser, page  # noqa: F401 - the Playwright fixtures
from test_http_browse import Tail
from test_security import certs, tls_args  # noqa: F401 - the test CA and server certificate

pytestmark = sluice_only

USERS = {"admin": "secret", "bob": "bobpw", "carol": "carolpw", "dave": "davepw"}
SASL = "SASL"
SECURED_ARGS = ["--initial-rebalance-delay-ms", "300", "--authorizer", "on",
                "--superuser", "User:admin", "--auto-create-topics", "false"]
SCHEMA = {"schema": '"string"'}
REGISTRY_JSON = "application/vnd.schemaregistry.v1+json"


def users_env(users=USERS):
    return {"SLUICE_BOOTSTRAP_USERS": ",".join(f"{u}:{p}" for u, p in users.items())}


@pytest.fixture(scope="module")
def secured(tmp_root):
    from conftest import _new_broker

    b = _new_broker(tmp_root, SECURED_ARGS, {SASL: "SASL_PLAINTEXT"}, users_env()).start()
    yield b
    assert b.stop() == 0, b.log_tail()


# ---- helpers ----

def req(b, method, path, user=None, password=None, **kw):
    """One HTTP request (no redirects followed); `user` logs in with HTTP Basic, with its
    password from USERS unless `password` is given."""
    if user is not None:
        kw["auth"] = (user, USERS.get(user, "") if password is None else password)
    kw.setdefault("timeout", OP_TIMEOUT_S)
    return requests.request(method, b.http + path, allow_redirects=False, **kw)


def register(b, subject, user):
    return req(b, "POST", f"/subjects/{subject}/versions", user, data=json.dumps(SCHEMA),
               headers={"Content-Type": REGISTRY_JSON})


def cli(b, *args):
    """`sluice ...` as admin over the SASL listener."""
    env = dict(os.environ)
    env.update({"SLUICE_BOOTSTRAP_SERVER": b.listener(SASL),
                "SLUICE_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "SLUICE_SASL_MECHANISM": "SCRAM-SHA-256",
                "SLUICE_SASL_USERNAME": "admin", "SLUICE_SASL_PASSWORD": USERS["admin"]})
    r = subprocess.run([sluice_bin(), *args], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, f"sluice {' '.join(args)}: {r.stderr}"
    return r


def acl(b, *args):
    return cli(b, "acl", "create", *args)


def new_topic(b, prefix="t", partitions=1):
    """A topic created by admin through POST /v1/topics."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    r = req(b, "POST", "/v1/topics", "admin", json={"name": name, "partitions": partitions})
    assert r.status_code == 201, r.text
    return name


def login(b, user, password):
    """POST /ui/login as a browser does; returns the session cookie as a dict."""
    r = req(b, "POST", "/ui/login", headers={"Origin": b.http},
            data={"username": user, "password": password, "next": "/ui/topics"})
    assert r.status_code == 303, (r.status_code, r.text)
    return {"sluice_session": r.cookies["sluice_session"]}


def refused(r, status, code):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.json()["error_code"] == code, r.text


def topic_names(r):
    assert r.status_code == 200, r.text
    return {t["name"] for t in r.json()}


# ---- authentication ----

def test_requests_need_valid_basic_credentials(secured):
    """Registry, /v1, /v3 and console answer 401 with a Basic challenge to no credentials, a
    wrong password, an unknown user and a Bearer token; right credentials get through;
    /health and (by default) /metrics stay open."""
    b = secured
    for path in ["/v1/topics", "/subjects", "/v3/clusters", "/ui/topics", "/schemas/types"]:
        r = req(b, "GET", path)
        refused(r, 401, 40101)
        assert r.headers["WWW-Authenticate"] == 'Basic realm="sluice", charset="UTF-8"', path
    for user, password in [("bob", "wrong"), ("nobody", "whatever")]:
        refused(req(b, "GET", "/v1/topics", user, password), 401, 40101)
    refused(req(b, "GET", "/v1/topics", headers={"Authorization": "Bearer x"}), 401, 40101)
    assert req(b, "GET", "/v1/topics", "admin").status_code == 200
    assert req(b, "GET", "/subjects", "bob").status_code == 200
    assert req(b, "GET", "/health").status_code == 200
    r = req(b, "GET", "/metrics")
    assert r.status_code == 200 and "sluice_" in r.text


def test_writes_from_another_sites_page_are_refused(secured):
    """A write whose Origin names another site is refused whatever credentials it carries (a
    browser may attach remembered Basic credentials to another site's form); the same write
    from no page or this server's pages goes through."""
    b = secured
    body = {"name": f"origin-{uuid.uuid4().hex[:6]}", "partitions": 1}
    refused(req(b, "POST", "/v1/topics", "admin", json=body,
                headers={"Origin": "http://evil.example"}), 403, 40302)
    r = req(b, "POST", "/v1/topics", "admin", json=body, headers={"Origin": b.http})
    assert r.status_code == 201, r.text


def test_everything_stays_open_without_an_authenticating_listener(broker):
    """A default broker (PLAINTEXT only) asks no one for credentials."""
    for path in ["/v1/topics", "/subjects", "/metrics", "/health"]:
        r = req(broker, "GET", path)
        assert r.status_code == 200, (path, r.text)
        assert "WWW-Authenticate" not in r.headers
    assert req(broker, "GET", "/ui/topics", headers={"Accept": "text/html"}).status_code == 200


def test_metrics_auth_needs_credentials_and_describe_on_the_cluster(broker_factory):
    """With --http-metrics-auth, /metrics is 401 without credentials, 403 for a user without
    DESCRIBE on the cluster (until granted), 200 for the super user; /health stays open."""
    b = broker_factory([*SECURED_ARGS, "--http-metrics-auth"], listeners={SASL: "SASL_PLAINTEXT"},
                       env=users_env())
    refused(req(b, "GET", "/metrics"), 401, 40101)
    assert req(b, "GET", "/metrics", "bob").status_code == 403
    r = req(b, "GET", "/metrics", "admin")
    assert r.status_code == 200 and "sluice_" in r.text
    acl(b, "--principal", "User:bob", "--operation", "DESCRIBE", "--cluster")
    assert req(b, "GET", "/metrics", "bob").status_code == 200
    assert req(b, "GET", "/health").status_code == 200


def test_read_only_console_still_logs_in(broker_factory):
    """--console-read-only refuses admin writes, not logging in and out: a session is opened,
    its page rendered, and a write on it is refused as read-only (40301), not as CSRF."""
    b = broker_factory([*SECURED_ARGS, "--console-read-only"], listeners={SASL: "SASL_PLAINTEXT"},
                       env=users_env())
    cookies = login(b, "admin", "secret")
    r = req(b, "GET", "/ui/topics", cookies=cookies)
    assert r.status_code == 200, r.text
    token = re.search(r'name="csrf-token" content="([0-9a-f]+)"', r.text).group(1)
    refused(req(b, "POST", "/v1/topics", cookies=cookies, headers={"X-Sluice-CSRF": token},
                json={"name": "nope"}), 403, 40301)
    r = req(b, "POST", "/ui/logout", cookies=cookies, headers={"X-Sluice-CSRF": token})
    assert r.status_code == 303, r.text
    refused(req(b, "GET", "/v1/topics", cookies=cookies), 401, 40101)


def test_metrics_auth_without_an_authenticating_listener_refuses_to_start(tmp_root):
    """--http-metrics-auth would do nothing on a broker whose listeners all let anyone in: the
    start is refused, naming the flag."""
    r = subprocess.run([sluice_bin(), "serve", "--http-metrics-auth", "--data-dir",
                        str(tmp_root / f"x-{uuid.uuid4().hex[:6]}"), "--kafka-addr", "127.0.0.1:0",
                        "--http-addr", "127.0.0.1:0"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "--http-metrics-auth" in r.stderr, (r.returncode, r.stderr)


# ---- registry authorization ----

def test_registry_subjects_are_authorized_as_their_topics(secured):
    """Register needs WRITE on the subject's topic; lists show only subjects of topics the
    caller may DESCRIBE; reading another subject, deleting without DELETE and changing the
    global config without ALTER_CONFIGS on the cluster are 403; a schema by id needs DESCRIBE
    on the topic of a subject that has it."""
    b = secured
    mine, other = f"orders-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    refused(register(b, f"{mine}-value", "bob"), 403, 40301)
    acl(b, "--principal", "User:bob", "--producer", "--topic", mine)
    r = register(b, f"{mine}-value", "bob")
    assert r.status_code == 200 and isinstance(r.json()["id"], int), r.text
    mine_id = r.json()["id"]
    # A schema of its own, so that its id is not also under bob's subject.
    enum = json.dumps({"type": "enum", "name": f"E{uuid.uuid4().hex[:8]}", "symbols": ["A"]})
    r = req(b, "POST", f"/subjects/{other}-value/versions", "admin",
            data=json.dumps({"schema": enum}), headers={"Content-Type": REGISTRY_JSON})
    assert r.status_code == 200, r.text
    other_id = r.json()["id"]
    assert other_id != mine_id

    bobs = req(b, "GET", "/subjects", "bob").json()
    assert f"{mine}-value" in bobs and f"{other}-value" not in bobs
    assert {f"{mine}-value", f"{other}-value"} <= set(req(b, "GET", "/subjects", "admin").json())
    refused(req(b, "GET", f"/subjects/{other}-value/versions", "bob"), 403, 40301)
    assert req(b, "GET", f"/subjects/{mine}-value/versions", "bob").json() == [1]
    refused(req(b, "DELETE", f"/subjects/{mine}-value", "bob"), 403, 40301)
    assert req(b, "GET", f"/subjects/{mine}-value/versions", "admin").json() == [1], "not deleted"

    config = {"compatibility": "BACKWARD"}
    refused(req(b, "PUT", "/config", "bob", json=config), 403, 40301)
    r = req(b, "PUT", "/config", "admin", json=config)
    assert r.status_code == 200, r.text
    # A consumer resolves the ids of the topics it may read, and no others.
    r = req(b, "GET", f"/schemas/ids/{mine_id}", "bob")
    assert r.status_code == 200 and r.json()["schema"] == '"string"', r.text
    refused(req(b, "GET", f"/schemas/ids/{other_id}", "bob"), 403, 40301)
    refused(req(b, "GET", f"/schemas/ids/{other_id}/schema", "bob"), 403, 40301)
    assert req(b, "GET", f"/schemas/ids/{other_id}", "admin").status_code == 200
    assert req(b, "GET", "/schemas/ids/999999", "bob").status_code == 404


def test_confluent_registry_client_logs_in_with_basic_auth_user_info(secured):
    """confluent-kafka's SchemaRegistryClient with `basic.auth.user.info` (the setting
    SECURITY.md gives) registers under a subject its user may write; a wrong password is its
    401 (40101), a subject of another topic its 403 (40301)."""
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    b = secured
    topic = f"sr-{uuid.uuid4().hex[:6]}"
    acl(b, "--principal", "User:dave", "--producer", "--topic", topic)
    client = SchemaRegistryClient({"url": b.http, "basic.auth.user.info": "dave:davepw"})
    schema_id = client.register_schema(f"{topic}-value", Schema('"string"', "AVRO"))
    assert client.get_schema(schema_id).schema_str == '"string"'
    with pytest.raises(SchemaRegistryError) as e:
        client.register_schema(f"not-{topic}-value", Schema('"string"', "AVRO"))
    assert e.value.http_status_code == 403 and e.value.error_code == 40301
    wrong = SchemaRegistryClient({"url": b.http, "basic.auth.user.info": "dave:nope"})
    with pytest.raises(SchemaRegistryError) as e:
        wrong.get_subjects()
    assert e.value.http_status_code == 401 and e.value.error_code == 40101


def test_schema_cli_logs_in_with_registry_user(secured):
    """`sluice schema` sends --registry-user with SLUICE_REGISTRY_PASSWORD as HTTP Basic;
    without them the registry's 401 is its error, and a password without a user is refused
    before any request."""
    b = secured
    subject = f"cli-{uuid.uuid4().hex[:6]}-value"
    base = [sluice_bin(), "schema", "register", "--registry-url", b.http, "--subject", subject,
            "--schema", '"string"']
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_REGISTRY")}
    r = subprocess.run(base, env=env, capture_output=True, text=True, timeout=OP_TIMEOUT_S)
    assert r.returncode == 1 and "40101" in r.stderr, (r.returncode, r.stdout, r.stderr)
    r = subprocess.run(base, env={**env, "SLUICE_REGISTRY_PASSWORD": "secret"},
                       capture_output=True, text=True, timeout=OP_TIMEOUT_S)
    assert r.returncode != 0 and "--registry-user" in r.stderr, (r.returncode, r.stderr)
    r = subprocess.run(base + ["--registry-user", "admin"],
                       env={**env, "SLUICE_REGISTRY_PASSWORD": "secret"},
                       capture_output=True, text=True, timeout=OP_TIMEOUT_S)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert subject in req(b, "GET", "/subjects", "admin").json()


# ---- the API as its caller ----

def test_api_acts_as_the_caller_under_kafka_acls(secured):
    """bob sees, writes and reads a topic over /v1 exactly as far as his ACLs let a Kafka client
    of his: hidden and unwritable without ACLs, writable (not readable) with --producer,
    readable with --consumer."""
    b = secured
    t = new_topic(b, "orders", partitions=2)
    assert t in topic_names(req(b, "GET", "/v1/topics", "admin"))
    assert t not in topic_names(req(b, "GET", "/v1/topics", "bob"))
    records = {"records": [{"value": "hi", "partition": 0}]}
    refused(req(b, "POST", f"/v1/topics/{t}/records", "bob", json=records), 403, 40301)

    acl(b, "--principal", "User:bob", "--producer", "--topic", t)
    assert t in topic_names(req(b, "GET", "/v1/topics", "bob"))
    r = req(b, "POST", f"/v1/topics/{t}/records", "bob", json=records)
    assert r.status_code == 200, r.text
    consume = f"/v1/topics/{t}/partitions/0/records?offset=0"
    refused(req(b, "GET", consume, "bob"), 403, 40301)

    acl(b, "--principal", "User:bob", "--consumer", "--topic", t, "--group", f"g-{t}")
    r = req(b, "GET", consume, "bob")
    assert r.status_code == 200, r.text
    assert [rec["value"] for rec in r.json()["records"]] == ["hi"]


def test_api_acts_as_the_caller_over_sasl_ssl(broker_factory, certs):  # noqa: F811
    """With SASL_SSL as the only SASL listener the API connects over TLS, trusting the
    certificate its broker serves (signed by a CA the broker was never told of), and still
    acts as its caller."""
    b = broker_factory([*SECURED_ARGS, *tls_args(certs)], listeners={"SECURE": "SASL_SSL"},
                       env=users_env())
    r = req(b, "GET", "/v1/cluster", "admin")
    assert r.status_code == 200 and r.json()["brokers"], r.text
    topic = f"tls-{uuid.uuid4().hex[:6]}"
    r = req(b, "POST", "/v1/topics", "admin", json={"name": topic, "partitions": 1})
    assert r.status_code == 201, r.text
    refused(req(b, "POST", f"/v1/topics/{topic}/records", "bob",
                json={"records": [{"value": "x"}]}), 403, 40301)


def test_a_changed_password_stops_the_old_one(secured):
    """After `sluice user create` gives carol a new password, her old one is refused (the
    remembered Basic login and her console session alike) and the new one works, over HTTP and
    for the API's own Kafka login."""
    b = secured
    old = USERS["carol"]
    assert req(b, "GET", "/v1/topics", "carol").status_code == 200  # remembered from here on
    session = login(b, "carol", old)
    assert req(b, "GET", "/v1/topics", cookies=session).status_code == 200
    cli(b, "user", "create", "carol", "--password", "carol-new")
    refused(req(b, "GET", "/v1/topics", "carol", old), 401, 40101)
    refused(req(b, "GET", "/v1/topics", cookies=session), 401, 40101)
    assert req(b, "GET", "/v1/topics", "carol", "carol-new").status_code == 200


def test_queue_receive_needs_read_on_group_and_topic(secured):
    """POST /v1/queues/{group}/receive is refused without READ on the group, then without READ
    on the topic, and with both receives what is produced."""
    b = secured
    t, g = new_topic(b, "jobs"), f"workers-{uuid.uuid4().hex[:6]}"
    body = {"topic": t, "max_messages": 1}
    refused(req(b, "POST", f"/v1/queues/{g}/receive", "bob", json=body), 403, 40301)
    acl(b, "--principal", "User:bob", "--operation", "READ", "--group", g)
    refused(req(b, "POST", f"/v1/queues/{g}/receive", "bob", json=body), 403, 40301)
    acl(b, "--principal", "User:bob", "--operation", "READ", "--topic", t)
    r = req(b, "POST", f"/v1/queues/{g}/receive", "bob", json=body)
    # The first receive opens the group's share-partition at the log end (nothing yet).
    assert r.status_code == 200 and r.json()["messages"] == [], r.text
    r = req(b, "POST", f"/v1/topics/{t}/records", "admin", json={"records": [{"value": "job-1"}]})
    assert r.status_code == 200, r.text
    r = req(b, "POST", f"/v1/queues/{g}/receive", "bob", json={**body, "wait_ms": 10000})
    assert r.status_code == 200, r.text
    assert [m["value"] for m in r.json()["messages"]] == ["job-1"]


# ---- console sessions ----

class SessionTail(Tail):
    """test_http_browse's SSE reader, sending a session cookie."""

    def __init__(self, b, topic, cookie):
        self.conn = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=10)
        self.conn.request("GET", f"/v1/topics/{topic}/tail", headers={
            "Accept": "text/event-stream", "Cookie": f"sluice_session={cookie}"})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.last_id = None


def test_console_login_rejects_wrong_passwords_and_foreign_origins(secured):
    """A wrong password gets the login page back with 401 and no cookie; a login form posted
    from another site is 403 with no cookie; a browser asking for a console page without a
    session is sent to the login page, which comes back there."""
    b = secured
    form = {"username": "bob", "password": "wrong", "next": "/ui/topics"}
    r = req(b, "POST", "/ui/login", headers={"Origin": b.http}, data=form)
    assert r.status_code == 401 and "Wrong user name or password" in r.text
    assert "Set-Cookie" not in r.headers
    r = req(b, "POST", "/ui/login", headers={"Origin": "http://evil.example"},
            data={**form, "password": USERS["bob"]})
    assert r.status_code == 403 and "Set-Cookie" not in r.headers
    r = req(b, "GET", "/ui/topics", headers={"Accept": "text/html"})
    assert r.status_code == 303 and r.headers["Location"] == "/ui/login?next=/ui/topics"
    r = req(b, "GET", "/ui/login?next=/ui/topics")
    assert r.status_code == 200
    (back,) = re.findall(r'name="next" value="([^"]*)"', r.text)
    assert html.unescape(back) == "/ui/topics"


def test_console_session_needs_its_csrf_token_for_writes(secured):
    """A login sets an HttpOnly, SameSite=Strict session cookie; pages on the session carry the
    user's name and a CSRF token; a write with the cookie alone is 403 and with the token
    succeeds; a live tail runs on the session; logging out ends it."""
    b = secured
    t = new_topic(b, "orders")
    acl(b, "--principal", "User:bob", "--operation", "WRITE", "--operation", "READ",
        "--operation", "DESCRIBE", "--topic", t)
    r = req(b, "POST", "/ui/login", headers={"Origin": b.http},
            data={"username": "bob", "password": USERS["bob"], "next": "/ui/topics"})
    assert r.status_code == 303 and r.headers["Location"] == "/ui/topics", r.text
    set_cookie = r.headers["Set-Cookie"]
    assert re.match(r"sluice_session=[0-9a-f]{64}; Path=/; HttpOnly; SameSite=Strict",
                    set_cookie), set_cookie
    session = {"sluice_session": r.cookies["sluice_session"]}

    r = req(b, "GET", "/ui/topics", cookies=session, headers={"Accept": "text/html"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    m = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', r.text)
    assert m, r.text[:2000]
    csrf = m.group(1)
    assert '<span class="user" title="Logged in">bob</span>' in r.text
    assert t in r.text, "bob's session sees the topic he may describe"

    produce = f"/v1/topics/{t}/records"
    for headers in [{}, {"X-Sluice-CSRF": "0" * len(csrf)}]:
        r = req(b, "POST", produce, cookies=session, headers=headers,
                json={"records": [{"value": "a"}]})
        assert r.status_code == 403 and "x-sluice-csrf" in r.json()["message"], r.text
    r = req(b, "POST", produce, cookies=session, headers={"X-Sluice-CSRF": csrf},
            json={"records": [{"value": "with-token"}]})
    assert r.status_code == 200, r.text

    tail = SessionTail(b, t, session["sluice_session"])
    try:
        assert tail.status == 200, tail.error()
        assert tail.next()["event"] == "ready"
        r = req(b, "POST", produce, cookies=session, headers={"X-Sluice-CSRF": csrf},
                json={"records": [{"value": "after-open"}]})
        assert r.status_code == 200, r.text
        (ev,) = tail.records(1)
        assert ev["data"]["value"] == "after-open"
    finally:
        tail.close()

    r = req(b, "POST", "/ui/logout", cookies=session, headers={"X-Sluice-CSRF": csrf})
    assert r.status_code == 303 and r.headers["Location"] == "/ui/login"
    refused(req(b, "GET", "/v1/topics", cookies=session), 401, 40101)


def test_console_in_a_browser_logs_in_produces_and_logs_out(secured, page):  # noqa: F811
    """Chromium: a console page sends to the login form; after logging in the page shows the
    user; the produce form writes (console.js sends the CSRF header); Log out ends the session
    and lands on the login page."""
    b = secured
    t = new_topic(b, "console")
    page.goto(f"{b.http}/ui/topics")
    expect(page).to_have_url(f"{b.http}/ui/login?next=/ui/topics")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(USERS["admin"])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{b.http}/ui/topics")
    expect(page.locator("header .user")).to_have_text("admin")
    expect(page.get_by_role("link", name=t, exact=True)).to_be_visible()

    page.goto(f"{b.http}/ui/topics/{t}")
    page.get_by_label("Value", exact=True).fill("from the browser")
    page.get_by_role("button", name="Produce").click()
    expect(page.locator("#produce-status")).to_contain_text("at offset 0")
    r = req(b, "GET", f"/v1/topics/{t}/partitions/0/records?offset=0", "admin")
    assert [rec["value"] for rec in r.json()["records"]] == ["from the browser"]

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{b.http}/ui/login")
    page.goto(f"{b.http}/ui/topics")
    expect(page).to_have_url(f"{b.http}/ui/login?next=/ui/topics")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
