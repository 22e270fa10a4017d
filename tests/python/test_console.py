"""The web console at /ui/ (docs/CONSOLE.md) in a real browser: Playwright drives Debian's
headless Chromium against a real broker holding real data (topics, a consumer group with lag, a
share group with dead letters, registry subjects).

- every page renders that data, with no script error;
- a live tail shows a record produced after the page opened;
- the produce form writes a record a Kafka consumer reads;
- a redrive from the DLQ page puts dead letters back on their topic; discard asks for the
  topic's name first;
- the offset reset shows the dry-run plan and changes nothing until applied;
- `--console-read-only` hides every write control and the API refuses the writes;
- axe-core finds no serious or critical accessibility violation on any page, light or dark;
- the skip link and the theme toggle work from the keyboard.

Chromium: $SLUICE_CHROMIUM (default /usr/bin/chromium-headless-shell, installed by .ci/run).
axe-core: tests/node/node_modules/axe-core (installed by scripts/test's `npm ci`).
Screenshots: into $SLUICE_CONSOLE_SHOTS when set (docs/console/ holds the committed ones)."""

import json
import os
import struct
from io import BytesIO
from pathlib import Path

import fastavro
import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import REPO, sluice_only, wait_until
from kutil import OP_TIMEOUT_S, consume_n, consumer, create_topic, produce_all, producer
from test_http_api import call
from test_http_dlq import dead_letters, wait_job
from test_http_queue import fill, receive, settle
from test_share import queue_group

pytestmark = sluice_only

CHROMIUM = os.environ.get("SLUICE_CHROMIUM", "/usr/bin/chromium-headless-shell")
AXE = REPO / "tests/node/node_modules/axe-core/axe.min.js"
# Playwright's own waits (expect, wait_for) in ms.
WAIT_MS = OP_TIMEOUT_S * 1000

ORDER_V1 = {"type": "record", "name": "Order", "fields": [{"name": "item", "type": "string"},
                                                           {"name": "qty", "type": "int"}]}
ORDER_V2 = {"type": "record", "name": "Order", "fields": [{"name": "item", "type": "string"},
                                                           {"name": "qty", "type": "int"},
                                                           {"name": "note", "type": "string",
                                                            "default": ""}]}


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install chromium-headless-shell (.ci/run does) "
                    "or point SLUICE_CHROMIUM at a Chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page; an uncaught script error, a console error or an asset that fails to load
    fails the test (a page answering 404 on purpose is the test's own business)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    pg.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}")
          if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    pg.on("response", lambda r: errors.append(f"{r.status} {r.url}")
          if r.status >= 400 and "/ui/static/" in r.url else None)
    pg.set_default_timeout(WAIT_MS)
    yield pg
    ctx.close()
    assert not errors, errors


def shot(pg, name):
    where = os.environ.get("SLUICE_CONSOLE_SHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(Path(where) / f"{name}.png"), full_page=True)


def avro_framed(schema_id, schema, value):
    out = BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), value)
    return b"\x00" + struct.pack(">i", schema_id) + out.getvalue()


@pytest.fixture(scope="module")
def world(broker, tmp_path_factory):
    """Real data for every page: a topic with Avro-framed records, a consumer group that
    committed part of it (lag), a share group with three dead letters, a subject with two
    versions."""
    tag = os.urandom(3).hex()
    w = {"topic": f"orders-{tag}", "group": f"billing-{tag}", "queue": f"jobs-{tag}",
         "workers": f"workers-{tag}"}
    create_topic(broker.bootstrap, w["topic"], partitions=2)
    subject = w["topic"] + "-value"
    status, r1 = call(broker, "POST", f"/subjects/{subject}/versions", {"schema": json.dumps(ORDER_V1)})
    assert status == 200, r1
    status, r2 = call(broker, "POST", f"/subjects/{subject}/versions", {"schema": json.dumps(ORDER_V2)})
    assert status == 200, r2
    w["subject"], w["schema_id"] = subject, r2["id"]
    p = producer(broker.bootstrap)
    produce_all(p, w["topic"], [(f"k{i}".encode(), avro_framed(r2["id"], ORDER_V2,
                                {"item": f"widget-{i}", "qty": i, "note": "seed"}))
                               for i in range(40)], partition=0)
    c = consumer(broker.bootstrap, w["group"], enable_auto_commit=False)
    c.subscribe([w["topic"]])
    assert len(consume_n(c, 40)) == 40
    from confluent_kafka import TopicPartition
    c.commit(offsets=[TopicPartition(w["topic"], 0, 25)], asynchronous=False)
    c.close()
    create_topic(broker.bootstrap, w["queue"])
    queue_group(broker.bootstrap, w["workers"])
    fill(broker, w["queue"], 5, prefix="job")
    dead_letters(broker, w["workers"], w["queue"], {1, 2, 3})
    w["dlq"] = "dlq." + w["workers"]
    return w


def ui(broker, path=""):
    return f"{broker.http}/ui{path}"


def test_every_page_renders_real_data(broker, world, page):
    w = world
    page.goto(ui(broker, "/"))
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_role("link", name=w["topic"], exact=True)).to_be_visible()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=w["dlq"], exact=True))
    # The DLQ table's row (the topics table lists the DLQ topic too): 3 waiting.
    expect(page.locator("#live table").nth(1).get_by_role("row").filter(
        has=page.get_by_role("link", name=w["dlq"], exact=True)).locator("td").nth(2)).to_have_text("3")
    expect(row.first).to_be_visible()
    shot(page, "overview")
    page.emulate_media(color_scheme="dark")
    shot(page, "overview-dark")
    page.emulate_media(color_scheme="light")

    page.goto(ui(broker, "/topics"))
    expect(page.get_by_role("link", name=w["topic"], exact=True)).to_be_visible()

    page.goto(ui(broker, f"/topics/{w['topic']}"))
    expect(page.get_by_role("heading", name=w["topic"])).to_be_visible()
    # Partition 0 holds all 40 records: log end 40.
    rows = page.locator("#partitions tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("40")
    expect(rows.nth(0)).to_contain_text("KiB")  # its size on disk, from DescribeLogDirs
    expect(page.get_by_role("cell", name="retention.ms", exact=True)).to_be_visible()
    shot(page, "topic")

    # The message browser decodes the Avro values through the registry.
    page.goto(ui(broker, f"/topics/{w['topic']}/messages?partition=0&offset=5&max=3"))
    records = page.locator("#records tbody tr")
    expect(records).to_have_count(3)
    expect(records.nth(0)).to_contain_text('"item": "widget-5"')
    expect(records.nth(0)).to_contain_text(f"schema {w['schema_id']}")
    shot(page, "messages")
    # From a time (a datetime-local value, taken as UTC): long ago is the log start.
    page.goto(ui(broker, f"/topics/{w['topic']}/messages?partition=0&time=2000-01-01T00:00&max=1"))
    expect(page.locator("#records tbody tr").first.locator("td").first).to_have_text("0")
    # Filters: the value search reaches records past the first fetch.
    page.goto(ui(broker, f"/topics/{w['topic']}/messages?partition=0&key_contains=k37&decode=registry"))
    expect(page.locator("#records tbody tr")).to_have_count(1)
    expect(page.locator("#records tbody tr").first).to_contain_text("widget-37")

    page.goto(ui(broker, "/groups"))
    page.get_by_role("link", name=w["group"], exact=True).click()
    expect(page.get_by_role("heading", name=w["group"])).to_be_visible()
    lag_cells = page.locator("#lag-by-partition tbody tr").first.locator("td")
    # committed 25, log end 40, lag 15
    expect(lag_cells.nth(2)).to_have_text("25")
    expect(lag_cells.nth(3)).to_have_text("40")
    expect(lag_cells.nth(4)).to_have_text("15")
    # The lag chart: uPlot draws on a canvas once the history answered.
    expect(page.locator("#lag-chart canvas").first).to_be_attached()
    shot(page, "group")

    page.goto(ui(broker, f"/share-groups/{w['workers']}"))
    expect(page.get_by_role("heading", name=w["workers"])).to_be_visible()
    expect(page.get_by_role("link", name=w["dlq"])).to_be_visible()
    expect(page.locator("svg.hist rect.bar")).to_have_count(12)
    shot(page, "share-group")

    page.goto(ui(broker, "/share-groups"))
    expect(page.get_by_role("link", name=w["workers"], exact=True)).to_be_visible()

    page.goto(ui(broker, "/dlqs"))
    expect(page.get_by_role("link", name=w["dlq"], exact=True)).to_be_visible()
    page.goto(ui(broker, f"/dlqs/{w['dlq']}"))
    letters = page.locator("#dead-letters tbody tr")
    expect(letters).to_have_count(3)
    expect(letters.first).to_contain_text("rejected")
    expect(letters.first).to_contain_text(f"{w['queue']}-0@1")
    shot(page, "dlq")

    page.goto(ui(broker, "/schemas"))
    expect(page.get_by_role("link", name=w["subject"], exact=True)).to_be_visible()
    page.goto(ui(broker, f"/schemas/{w['subject']}?version=2&against=1"))
    # Version 2 added the field "note": it is on an inserted line.
    expect(page.locator("#schema-diff tr.ins", has_text='"note"')).to_have_count(1)
    shot(page, "schema-diff")


def test_overview_rates_follow_produce(broker, world, page):
    """The overview refreshes itself; a topic written to since the last look shows a rate."""
    page.goto(ui(broker, "/"))
    produce_all(producer(broker.bootstrap), world["topic"], [(None, b"rate")] * 50, partition=1)
    page.wait_for_function(
        """topic => {
            const row = [...document.querySelectorAll('#live tbody tr')]
                .find(r => r.cells[0].textContent.trim() === topic);
            return row && parseFloat(row.cells[4].textContent) > 0;
        }""", arg=world["topic"], timeout=WAIT_MS)


def test_unknown_things_show_an_error_page(broker, page):
    resp = page.goto(ui(broker, "/topics/no-such-topic-here"))
    assert resp.status == 404
    expect(page.get_by_role("alert")).to_contain_text("no-such-topic-here")
    resp = page.goto(ui(broker, "/topics/__consumer_offsets/messages?time=yesterday"))
    assert resp.status == 400
    expect(page.get_by_role("alert")).to_contain_text("not an ISO 8601 date-time")


def test_live_tail_shows_a_record_produced_after_the_page_opened(broker, world, page):
    page.goto(ui(broker, f"/topics/{world['topic']}/messages?partition=1"))
    page.get_by_role("button", name="Start live tail").click()
    expect(page.locator("#tail-status")).to_contain_text("running")
    p = producer(broker.bootstrap)
    produce_all(p, world["topic"], [(b"tail-key", b"appeared-after-open")], partition=1)
    row = page.locator("#tail-rows tr").first
    expect(row).to_contain_text("appeared-after-open")
    expect(row).to_contain_text("tail-key")
    page.get_by_role("button", name="Stop live tail").click()
    expect(page.locator("#tail-status")).to_contain_text("stopped")


def test_produce_form_writes_a_record(broker, unique, page):
    t = create_topic(broker.bootstrap, unique("t"))
    page.goto(ui(broker, f"/topics/{t}"))
    page.get_by_label("Key", exact=True).fill("from-console")
    page.get_by_label("Value", exact=True).fill("hello from the browser")
    page.get_by_label("Headers, one").fill("origin=console")
    page.get_by_role("button", name="Produce").click()
    expect(page.locator("#produce-status")).to_contain_text("at offset 0")
    c = consumer(broker.bootstrap, unique("g"))
    c.subscribe([t])
    (m,) = consume_n(c, 1)
    c.close()
    assert (m.key(), m.value(), m.headers()) == (b"from-console", b"hello from the browser",
                                                  [("origin", b"console")])


def test_dlq_redrive_puts_records_back_and_discard_asks_first(broker, unique, page):
    t = create_topic(broker.bootstrap, unique("t"))
    g = queue_group(broker.bootstrap, unique("g"))
    fill(broker, t, 4, prefix="r")
    dead_letters(broker, g, t, {0, 1, 3})
    dlq = "dlq." + g
    page.goto(ui(broker, f"/dlqs/{dlq}"))
    page.get_by_label("Select dead letter 0:0").check()
    page.get_by_label("Select dead letter 0:2").check()
    page.get_by_role("button", name="Requeue selected").click()
    page.get_by_role("button", name="Confirm").click()
    expect(page.locator("#redrive-status")).to_contain_text("done")
    expect(page.locator("#job-progress progress")).to_have_attribute("value", "2")
    # The two requeued records are back on their topic, after the four originals.
    status, got = call(broker, "GET", f"/v1/topics/{t}/partitions/0/records?offset=4")
    assert status == 200, got
    assert sorted(r["value"] for r in got["records"]) == ["r0", "r3"]
    status, rows = call(broker, "GET", "/v1/dlqs")
    assert [r["depth"] for r in rows if r["topic"] == dlq] == [1]

    # Discard all: the confirmation wants the topic's name typed before it enables.
    page.reload()
    page.get_by_role("button", name="Discard all…").click()
    confirm = page.get_by_role("button", name="Confirm")
    expect(confirm).to_be_disabled()
    page.locator("#confirm input").fill(dlq)
    expect(confirm).to_be_enabled()
    confirm.click()
    expect(page.locator("#redrive-status")).to_contain_text("done")
    status, rows = call(broker, "GET", "/v1/dlqs")
    assert [r["depth"] for r in rows if r["topic"] == dlq] == [0]


def test_paced_requeue_shows_progress_and_cancels(broker, unique, page):
    t = create_topic(broker.bootstrap, unique("t"))
    g = queue_group(broker.bootstrap, unique("g"))
    n = 200
    fill(broker, t, n, prefix="p")
    rejected = set()

    def reject_more():
        for m in receive(broker, g, t, n=100):
            assert settle(broker, g, m["receipt"], "reject") == (204, None)
            rejected.add(m["offset"])
        return len(rejected) == n

    wait_until(reject_more, OP_TIMEOUT_S, f"all {n} records rejected")
    dlq = "dlq." + g
    wait_until(lambda: [r["depth"] for r in call(broker, "GET", "/v1/dlqs")[1] if r["topic"] == dlq] == [n],
               OP_TIMEOUT_S, f"{dlq} to hold {n} dead letters")
    page.goto(ui(broker, f"/dlqs/{dlq}"))
    # 5 a second: the job would take 40 s, so it is still running when Cancel is pressed
    # however slow the machine.
    page.get_by_label("Requeue pace").fill("5")
    page.get_by_role("button", name="Requeue all…").click()
    page.get_by_role("button", name="Confirm").click()
    bar = page.locator("#job-progress progress")
    expect(bar).to_have_attribute("max", str(n))
    page.wait_for_function("() => Number(document.querySelector('#job-progress progress').value) > 0",
                           timeout=WAIT_MS)
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#redrive-status")).to_contain_text("cancelled")
    status, jobs = call(broker, "GET", "/v1/jobs")
    (job,) = [j for j in jobs if j["topic"] == dlq]
    assert job["state"] == "cancelled" and job["max_per_second"] == 5, job
    assert 0 < job["requeued"] < n, job
    # What the job requeued is on the topic and marked handled; the rest still waits.
    status, rows = call(broker, "GET", "/v1/dlqs")
    assert [r["depth"] for r in rows if r["topic"] == dlq] == [n - job["requeued"]]
    status, got = call(broker, "GET", f"/v1/topics/{t}/partitions/0/records?offset={n}&max_records=1000")
    assert len(got["records"]) == job["requeued"]


def test_offset_reset_plans_then_applies(broker, unique, page):
    t = create_topic(broker.bootstrap, unique("t"))
    g = unique("g")
    produce_all(producer(broker.bootstrap), t, [(None, b"x")] * 10)
    c = consumer(broker.bootstrap, g, enable_auto_commit=False)
    c.subscribe([t])
    consume_n(c, 10)
    c.commit(asynchronous=False)
    c.close()

    def committed():
        status, d = call(broker, "GET", f"/v1/groups/{g}")
        assert status == 200, d
        return [o["committed_offset"] for o in d["offsets"]]

    wait_until(lambda: committed() == [10], OP_TIMEOUT_S, "the group's commit")
    page.goto(ui(broker, f"/groups/{g}"))
    page.locator("#reset select[name=to]").select_option("offset")
    page.get_by_label("Value", exact=True).fill("3")
    page.get_by_role("button", name="Plan (dry run)").click()
    plan = page.locator("#reset-plan tbody tr")
    expect(plan).to_have_count(1)
    expect(plan.first.locator("td").nth(2)).to_have_text("10")  # current
    expect(plan.first.locator("td").nth(3)).to_have_text("3")  # new
    assert committed() == [10], "a dry run changes nothing"
    page.get_by_role("button", name="Apply plan…").click()
    page.get_by_role("button", name="Confirm").click()
    expect(page.locator("#reset-status")).to_contain_text("Applied")
    assert committed() == [3]


def test_read_only_hides_and_refuses_writes(broker_factory, unique, browser):
    ro = broker_factory(extra_args=["--initial-rebalance-delay-ms", "300", "--console-read-only"])
    t = create_topic(ro.bootstrap, unique("t"))
    g = queue_group(ro.bootstrap, unique("g"))
    fill(ro, t, 2)
    dead_letters(ro, g, t, {0})
    ctx = browser.new_context()
    pg = ctx.new_page()
    pg.set_default_timeout(WAIT_MS)
    for path, gone in [("/topics", "#create-topic"), (f"/topics/{t}", "#produce"),
                       (f"/topics/{t}", "#delete-topic"), (f"/dlqs/dlq.{g}", "[data-redrive]"),
                       (f"/dlqs/dlq.{g}", "input[name=sel]")]:
        pg.goto(ui(ro, path))
        expect(pg.get_by_text("Read-only", exact=True)).to_be_visible()
        expect(pg.locator(gone)).to_have_count(0)
    ctx.close()
    for method, path, body in [("POST", "/v1/topics", {"name": unique("t")}),
                               ("DELETE", f"/v1/topics/{t}", None),
                               ("POST", f"/v1/topics/{t}/records", {"records": [{"value": "x"}]}),
                               ("POST", f"/v1/dlqs/dlq.{g}/requeue", {}),
                               ("POST", "/v3/clusters/x/topics", {"topic_name": "y"}),
                               ("DELETE", f"/subjects/{t}-value", None),
                               ("PUT", "/config", {"compatibility": "NONE"}),
                               ("PUT", "/mode", {"mode": "READONLY"})]:
        status, err = call(ro, method, path, body)
        assert (status, err["error_code"]) == (403, 40301), (method, path, err)
    # Reads, the queue API and the registry still work.
    assert call(ro, "GET", "/v1/topics")[0] == 200
    assert call(ro, "POST", f"/v1/queues/{g}/receive", {"topic": t, "max_messages": 1})[0] == 200
    status, _ = call(ro, "POST", f"/subjects/{t}-value/versions",
                     {"schema": json.dumps({"type": "string"})})
    assert status == 200
    status, rows = call(ro, "GET", "/v1/dlqs")
    assert [r["depth"] for r in rows if r["topic"] == f"dlq.{g}"] == [1], "nothing was requeued"


PAGES = ["/", "/topics", "/topics/{topic}", "/topics/{topic}/messages?partition=0",
         "/groups", "/groups/{group}", "/share-groups", "/share-groups/{workers}", "/dlqs",
         "/dlqs/{dlq}", "/schemas", "/schemas/{subject}?version=2&against=1"]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_accessibility_violations(broker, world, browser, scheme):
    axe = AXE.read_text()
    # The console's CSP forbids inline scripts, which is how axe is injected.
    ctx = browser.new_context(color_scheme=scheme, bypass_csp=True)
    pg = ctx.new_page()
    pg.set_default_timeout(WAIT_MS)
    found = {}
    for path in PAGES:
        pg.goto(ui(broker, path.format(**world)))
        pg.wait_for_load_state("networkidle")
        pg.add_script_tag(content=axe)
        result = pg.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
        bad = [f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
               for v in result["violations"] if v["impact"] in ("serious", "critical")]
        if bad:
            found[path] = bad
    ctx.close()
    assert not found, json.dumps(found, indent=1)


def test_keyboard_skip_link_and_theme_toggle(broker, page):
    page.goto(ui(broker, "/"))
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    page.keyboard.press("Enter")
    assert page.url.endswith("#main")
    toggle = page.get_by_role("button", name="Change theme")
    toggle.focus()
    page.keyboard.press("Enter")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark", "the choice persists"
    page.keyboard.press("Tab")  # skip link
    toggle.focus()
    page.keyboard.press("Enter")
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
