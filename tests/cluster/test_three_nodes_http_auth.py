"""HTTP authentication in a three-node cluster (issue #13): every node's HTTP port asks for the
same users, and a registry write sent to a node that is not the registry's primary is forwarded
with the caller's credentials, so the primary checks them (and its ACLs) again — for HTTP Basic
and for a console session alike (a session is the node's own: it is forwarded as Basic). The
HTTP API of every node acts as its caller over the SASL listener and follows leaders to the
other nodes.
"""

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request

from cluster import wait_until

CT = "application/vnd.schemaregistry.v1+json"
USERS = "admin:admin-secret,bob:bob-secret"
EXTRA = ["--authorizer", "on", "--superuser", "User:admin"]
WRITE_S = 30.0


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def call(url, method="GET", body=None, headers=None, content_type=CT):
    """(status, headers, parsed body) of one request."""
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        req.add_header("Content-Type", content_type)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with OPENER.open(req, timeout=20) as resp:
            raw = resp.read()
            status, hdrs = resp.status, resp.headers
    except urllib.error.HTTPError as e:
        raw, status, hdrs = e.read(), e.code, e.headers
    try:
        return status, hdrs, json.loads(raw or b"null")
    except ValueError:
        return status, hdrs, raw.decode(errors="replace")


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def register(node, subject, schema, headers):
    """Registers through `node`, retrying (bounded) while the cluster answers 5xx (the registry
    is loading or has no primary yet); returns the final (status, body)."""
    answers = []

    def once():
        status, _, body = call(f"{node.http}/subjects/{subject}/versions", "POST",
                               {"schema": schema}, headers)
        answers.append((status, body))
        return status < 500
    wait_until(once, WRITE_S, f"an answer from node {node.node_id}", interval=0.2)
    return answers[-1]


def login(node, user, password):
    """A console session on `node`: the cookie header and the page's CSRF token."""
    form = urllib.parse.urlencode({"username": user, "password": password}).encode()
    status, hdrs, _ = call(f"{node.http}/ui/login", "POST", form,
                           content_type="application/x-www-form-urlencoded")
    assert status == 303, f"login on node {node.node_id}: {status}"
    cookie = hdrs["Set-Cookie"].split(";")[0]
    assert cookie.startswith("sluice_session=")
    status, _, page = call(f"{node.http}/ui/", headers={"Cookie": cookie})
    assert status == 200, page
    token = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page).group(1)
    return cookie, token


def test_every_node_authenticates_and_forwards_with_the_callers_credentials(cluster_factory,
                                                                           monkeypatch):
    monkeypatch.setenv("SLUICE_BOOTSTRAP_USERS", USERS)
    c = cluster_factory(3, extra_args=EXTRA, sasl=True).start()
    admin, bob = basic("admin", "admin-secret"), basic("bob", "bob-secret")
    schema = json.dumps({"type": "enum", "name": "E", "symbols": ["A"]})

    for node in c.nodes:
        status, hdrs, body = call(f"{node.http}/subjects")
        assert status == 401 and body["error_code"] == 40101, (node.node_id, status, body)
        assert hdrs["WWW-Authenticate"].startswith("Basic")

    # The bootstrap users reach every node's image through the metadata log.
    for node in c.nodes:
        wait_until(lambda: call(f"{node.http}/subjects", headers=admin)[0] == 200, WRITE_S,
                   f"admin logging in on node {node.node_id}", interval=0.2)

    # Basic through every node: two of them forward to the primary, which checks again.
    for node in c.nodes:
        status, body = register(node, f"t{node.node_id}-value", schema, admin)
        assert status == 200 and body["id"] > 0, (node.node_id, status, body)
        # bob may not write t1..t3: refused on every node, forwarded or not.
        status, body = register(node, f"t{node.node_id}-value", schema, bob)
        assert status == 403 and body["error_code"] == 40301, (node.node_id, status, body)

    # A console session on each node: its registry writes are forwarded as the session's user.
    for node in c.nodes:
        cookie, token = login(node, "admin", "admin-secret")
        status, body = register(node, f"s{node.node_id}-value", schema,
                                {"Cookie": cookie, "X-Sluice-CSRF": token})
        assert status == 200 and body["id"] > 0, (node.node_id, status, body)

    # The HTTP API acts as its caller over the SASL listener: a topic created through node 1
    # is described through every node (metadata and offsets from whichever node leads).
    status, _, body = call(f"{c.node(1).http}/v1/topics", "POST",
                           {"name": "orders", "partitions": 3, "replication_factor": 3},
                           admin, content_type="application/json")
    assert status == 201, body
    for node in c.nodes:
        def described():
            status, _, body = call(f"{node.http}/v1/topics/orders", headers=admin)
            return status == 200 and len(body["partitions"]) == 3
        wait_until(described, WRITE_S, f"orders described through node {node.node_id}")
        # bob has no ACL: the topic is hidden from him, as Metadata hides it.
        status, _, listed = call(f"{node.http}/v1/topics", headers=bob)
        assert status == 200 and "orders" not in [t["name"] for t in listed], listed
