"""Every HTTP channel against local receivers that answer as Slack, PagerDuty, Teams' Workflows
and Opsgenie document (and a webhook endpoint): the whole status table decides retry-or-not;
payloads have the documented shape; secrets never reach a log line, an error or the outbox.
(Email has its own real SMTP server: test_email.py.)"""

import json
import logging
import socket

import pytest

from agent.notify.base import AlertDoc, Channel
from agent.notify.dispatcher import Dispatcher
from agent.notify.grouping import Message
from agent.notify.outbox import Outbox
from agent.notify.pagerduty import MAX_BYTES
from agent.store import Store
from tests.support.clock import ManualClock
from tests.support.receivers import OPSGENIE, PAGERDUTY, SLACK, TEAMS, WEBHOOK, Receiver

SECRET = "sekrit-T0KEN-0123456789abcdef"


def doc(status="firing", summary="GPU 0 is on fire", description="Runbook text.", severity="critical"):
    labels = {"alertname": "GpuHot", "severity": severity, "gpu": "0", "Hostname": "h1"}
    return AlertDoc(status, labels, {"summary": summary, "description": description}, 1000.0,
                    1060.0 if status == "resolved" else 0.0, 91.0, "0123456789abcdef")


@pytest.fixture
def wired(tmp_path):
    """`wired(kind, receiver_url, timeout=2.0, sub="")`: a store, outbox, channel, dispatcher and
    manual clock for one channel; the stores are closed after the test."""
    stores = []

    def make(kind, receiver_url, timeout=2.0, sub=""):
        made = setup(tmp_path / sub if sub else tmp_path, kind, receiver_url, timeout)
        stores.append(made[0])
        return made

    yield make
    for store in stores:
        store.close()


def setup(tmp_path, kind, receiver_url, timeout=2.0):
    store = Store(str(tmp_path / "state.db"))
    outbox = Outbox(store)
    if kind == "pagerduty":
        channel = Channel("pd", "pagerduty", urls=[receiver_url], routing_key=SECRET, timeout=timeout, hostname="h1")
    elif kind == "opsgenie":
        base = receiver_url[:-len("/hook")] if receiver_url.endswith("/hook") else receiver_url  # its API root
        channel = Channel("og", "opsgenie", urls=[base], password=SECRET, timeout=timeout,
                          hostname="h1")
    else:
        channel = Channel(kind, kind, urls=[receiver_url + "/" + SECRET], timeout=timeout, hostname="h1")
    clock = ManualClock(1000.0)
    dispatcher = Dispatcher(outbox, [channel], clock=clock, jitter=lambda: 0.5)
    return store, outbox, channel, dispatcher, clock


def outcome(store, outbox, dispatcher, channel, clock):
    """(result, (attempts, when the channel is tried next, stored error)) of one delivery."""
    outbox.enqueue(channel.name, "0123456789abcdef", "firing", doc().to_json(), clock())
    dispatcher.deliver_once(channel.name)
    rows = store.db.execute("SELECT attempts, last_error FROM outbox").fetchall()
    if rows:
        assert outbox.depth() == {channel.name: 1}
        return "retried", (rows[0][0], dispatcher.next_attempt(channel.name), rows[0][1])
    assert outbox.depth() == {}
    (result, _), = dispatcher.results.items()
    return result[1], None


CASES = [(kind, table, mode, expected) for kind, table in (("slack", SLACK), ("pagerduty", PAGERDUTY))
         for mode, expected in (("ok", "delivered"), ("invalid_payload", "failed"), ("rate_limited", "retried"),
                                ("server_error", "retried"), ("unavailable", "retried"))]
CASES += [(kind, table, mode, expected) for kind, table in (("teams", TEAMS), ("opsgenie", OPSGENIE))
          for mode, expected in (("ok", "delivered"), ("invalid_payload", "failed"), ("rate_limited", "retried"),
                                 ("server_error", "retried"), ("unavailable", "retried"))]
CASES += [("teams", TEAMS, "gone", "failed"), ("opsgenie", OPSGENIE, "unauthorized", "failed")]
CASES += [("slack", SLACK, "revoked", "failed"), ("slack", SLACK, "archived", "failed"),
          ("webhook", WEBHOOK, "ok", "delivered"), ("webhook", WEBHOOK, "unavailable", "retried")]


@pytest.mark.parametrize("kind,table,mode,expected", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_status_table(tmp_path, kind, table, mode, expected, receivers, wired):
    receiver = receivers(table, mode)
    store, outbox, channel, dispatcher, clock = wired(kind, receiver.url)
    result, row = outcome(store, outbox, dispatcher, channel, clock)
    assert result == expected
    if mode == "rate_limited" and "Retry-After" in table[mode][2]:
        assert row[1] >= clock() + 30, "Retry-After honoured"
    elif result == "retried":
        assert row[0] == 1 and clock() + 0.9 <= row[1] <= clock() + 1.1, "first backoff ~1s"
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("kind", ["slack", "pagerduty", "webhook", "alertmanager", "teams", "opsgenie"])
def test_refused_and_hanging_receivers_are_retried(tmp_path, kind):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{s.getsockname()[1]}"
    store, outbox, channel, dispatcher, clock = setup(tmp_path, kind, dead_url)
    assert outcome(store, outbox, dispatcher, channel, clock)[0] == "retried"
    store.close()
    hang = Receiver(SLACK, "hang")
    store, outbox, channel, dispatcher, clock = setup(tmp_path / "h", kind, hang.url.rsplit("/", 1)[0], timeout=0.5)
    try:
        result, row = outcome(store, outbox, dispatcher, channel, clock)
        assert result == "retried" and "no answer within 0.5s" in row[2]
    finally:
        hang.close()
        store.close()


def test_backoff_grows_and_gives_up_after_max_age(tmp_path, receivers, wired):
    receiver = receivers(SLACK, "server_error")
    store, outbox, channel, dispatcher, clock = wired("slack", receiver.url)
    channel.max_age = 100
    outbox.enqueue("slack", "k", "firing", doc().to_json(), clock())
    delays = []
    for _ in range(4):
        clock.now = max(clock.now, dispatcher.next_attempt("slack"))
        dispatcher.deliver_once("slack")
        delays.append(round(dispatcher.next_attempt("slack") - clock.now, 3))
    assert delays == [1.0, 2.0, 4.0, 8.0]
    clock.now += 200
    dispatcher.deliver_once("slack")
    assert outbox.depth() == {}
    assert dispatcher.results[("slack", "dead")] == 1


def test_slack_payload(tmp_path, receivers, wired):
    receiver = receivers(SLACK, "ok")
    store, outbox, channel, dispatcher, clock = wired("slack", receiver.url)
    for status in ("firing", "resolved"):
        outbox.enqueue("slack", "k", status, doc(status).to_json(), clock())
        dispatcher.deliver_once("slack")
    firing, resolved = (r["body"] for r in receiver.requests)
    assert firing["text"] == "[CRITICAL] GpuHot: GPU 0 is on fire"
    assert firing["attachments"][0]["color"] == "#d63232"
    assert resolved["text"].startswith("[RESOLVED]") and resolved["attachments"][0]["color"] == "#2eb886"
    assert firing["attachments"][0]["blocks"][1]["text"]["text"] == "Runbook text."


def test_pagerduty_payload_trigger_then_resolve_with_one_dedup_key(tmp_path, receivers, wired):
    receiver = receivers(PAGERDUTY, "ok")
    store, outbox, channel, dispatcher, clock = wired("pagerduty", receiver.url)
    huge = doc(summary="x" * 5000, description="y" * 600_000)
    outbox.enqueue("pd", "k", "firing", huge.to_json(), clock())
    outbox.enqueue("pd", "k", "resolved", doc("resolved").to_json(), clock())
    dispatcher.deliver_once("pd")
    dispatcher.deliver_once("pd")
    trigger, resolve = (r["body"] for r in receiver.requests)
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "llm-agent/0123456789abcdef"
    assert len(trigger["payload"]["summary"]) == 1024
    assert trigger["payload"]["severity"] == "critical" and trigger["payload"]["source"] == "h1"
    assert len(json.dumps(trigger).encode()) < MAX_BYTES


def test_webhook_payload_is_alertmanager_v4(tmp_path, receivers, wired):
    receiver = receivers(WEBHOOK, "ok")
    store, outbox, channel, dispatcher, clock = wired("webhook", receiver.url)
    outbox.enqueue("webhook", "k", "firing", doc().to_json(), clock())
    dispatcher.deliver_once("webhook")
    body = receiver.requests[0]["body"]
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "webhook"
    alert = body["alerts"][0]
    assert alert["labels"]["alertname"] == "GpuHot" and alert["startsAt"] == "1970-01-01T00:16:40.000Z"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z" and alert["fingerprint"] == "0123456789abcdef"
    assert body["commonLabels"]["gpu"] == "0"


def test_teams_payload_is_an_adaptive_card_listing_the_batch(tmp_path, receivers, wired):
    receiver = receivers(TEAMS, "ok")
    store, outbox, channel, dispatcher, clock = wired("teams", receiver.url)
    other = doc("resolved")
    other.fingerprint, other.labels = "fedcba9876543210", {**other.labels, "gpu": "1"}
    message = Message('{}:{alertname="GpuHot"}', {"alertname": "GpuHot"}, [doc(), other], (other.fingerprint,))
    outbox.enqueue("teams", "group:x", "firing", message.to_json(), clock())
    dispatcher.deliver_once("teams")
    [request] = receiver.requests
    body = request["body"]
    assert body["type"] == "message" and len(body["attachments"]) == 1
    attachment = body["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4" and card["$schema"].endswith("adaptive-card.json")
    text = json.dumps(card)
    assert "1 firing, 1 resolved on h1" in text and "CRITICAL: GpuHot" in text and "RESOLVED: GpuHot" in text
    assert "Runbook text." in text
    for container in card["body"][1:]:
        assert container["type"] == "Container" and container["items"][0]["type"] == "TextBlock"


def test_opsgenie_creates_with_an_alias_and_closes_it(tmp_path, receivers, wired):
    receiver = receivers(OPSGENIE, "ok")
    store, outbox, channel, dispatcher, clock = wired("opsgenie", receiver.url)
    outbox.enqueue("og", "k", "firing", doc(summary="s" * 500).to_json(), clock())
    outbox.enqueue("og", "k", "resolved", doc("resolved").to_json(), clock())
    dispatcher.deliver_once("og")
    dispatcher.deliver_once("og")
    create, close = receiver.requests
    assert create["path"] == "/v2/alerts" and create["headers"]["Authorization"] == f"GenieKey {SECRET}"
    body = create["body"]
    assert body["alias"] == "llm-agent-0123456789abcdef" and len(body["message"]) == 130
    assert body["priority"] == "P1" and body["source"] == "h1" and body["details"]["gpu"] == "0"
    assert close["path"] == "/v2/alerts/llm-agent-0123456789abcdef/close?identifierType=alias"
    assert dispatcher.results[("og", "delivered")] == 2


def test_opsgenie_closing_an_alert_it_no_longer_has_is_done(tmp_path, receivers, wired):
    receiver = receivers(OPSGENIE, "not_found")
    store, outbox, channel, dispatcher, clock = wired("opsgenie", receiver.url)
    outbox.enqueue("og", "k", "resolved", doc("resolved").to_json(), clock())
    dispatcher.deliver_once("og")
    assert dispatcher.results == {("og", "delivered"): 1} and outbox.depth() == {}


ECHO = {"echo": (400, "bad request for " + SECRET, {}), "down": (503, "upstream " + SECRET + " failed", {})}


@pytest.mark.parametrize("kind", ["slack", "pagerduty", "webhook", "alertmanager", "teams", "opsgenie"])
def test_secrets_never_leak(tmp_path, kind, caplog):
    caplog.set_level(logging.DEBUG)
    for mode in ("echo", "down"):
        receiver = Receiver(ECHO, mode)
        store, outbox, channel, dispatcher, clock = setup(tmp_path / mode, kind, receiver.url)
        try:
            outbox.enqueue(channel.name, "k", "firing", doc().to_json(), clock())
            caplog.clear()
            dispatcher.deliver_once(channel.name)
            assert "<secret>" in caplog.text, "the receiver's echo reached the log, redacted"
            stored = store.db.execute("SELECT payload || last_error FROM outbox").fetchall()
            assert all(SECRET not in row[0] for row in stored)
            if mode == "down":  # retried: the error is kept with the row
                assert stored and "<secret>" in stored[0][0]
            assert SECRET not in repr(channel)
        finally:
            receiver.close()
            store.close()
        assert SECRET not in caplog.text


def group_message(*docs, changed=None):
    return Message('{}:{alertname="GpuHot"}', {"alertname": "GpuHot"}, list(docs),
                   tuple(changed if changed is not None else (d.fingerprint for d in docs)))


def gpu(i, status="firing"):
    d = doc(status)
    d.fingerprint, d.labels = f"{i:016x}", {**d.labels, "gpu": str(i)}
    return d


def test_pagerduty_sends_only_what_changed_in_a_group_or_one_incident_for_it(tmp_path, receivers, wired):
    receiver = receivers(PAGERDUTY, "ok")
    store, outbox, channel, dispatcher, clock = wired("pagerduty", receiver.url)
    outbox.enqueue("pd", "group:x", "firing", group_message(gpu(0), gpu(1, "resolved"), changed=[gpu(1).fingerprint])
                   .to_json(), clock())
    dispatcher.deliver_once("pd")
    assert [(r["body"]["event_action"], r["body"]["dedup_key"]) for r in receiver.requests] == \
        [("resolve", "llm-agent/0000000000000001")], "GPU 0 did not change: not sent again"

    channel.one_incident_per_group = True
    receiver.requests.clear()
    outbox.enqueue("pd", "group:x", "firing", group_message(gpu(0), gpu(1)).to_json(), clock())
    outbox.enqueue("pd", "group:x", "resolved", group_message(gpu(0, "resolved"), gpu(1, "resolved")).to_json(), clock())
    dispatcher.deliver_once("pd")
    dispatcher.deliver_once("pd")
    trigger, resolve = (r["body"] for r in receiver.requests)
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] and trigger["dedup_key"].startswith("llm-agent/group-")
    assert trigger["payload"]["summary"].startswith("GpuHot: 2 firing")


def test_webhook_carries_the_group_as_alertmanager_fills_it(tmp_path, receivers, wired):
    receiver = receivers(WEBHOOK, "ok")
    store, outbox, channel, dispatcher, clock = wired("webhook", receiver.url)
    outbox.enqueue("webhook", "group:x", "firing", group_message(gpu(0), gpu(1)).to_json(), clock())
    dispatcher.deliver_once("webhook")
    body = receiver.requests[0]["body"]
    assert body["groupKey"] == '{}:{alertname="GpuHot"}' and body["groupLabels"] == {"alertname": "GpuHot"}
    assert "gpu" not in body["commonLabels"] and body["commonLabels"]["severity"] == "critical"
    assert [a["labels"]["gpu"] for a in body["alerts"]] == ["0", "1"]


HOSTILE = "<!channel> <https://evil.example|click here> [click here](https://evil.example) **urgent** & more"


def hostile_doc():
    """An alert whose labels and annotations carry what a target controls (its model name)."""
    d = doc(summary=f"model {HOSTILE} is slow", description=f"model {HOSTILE}")
    d.labels = {**d.labels, "model": HOSTILE}
    d.annotations = {**d.annotations, "runbook_url": "https://runbooks.example/gpu?a=1&b=2"}
    return d


def test_slack_escapes_what_a_target_controls(tmp_path, receivers, wired):
    """Issue 27: `model_name="<!channel> <https://evil.example|click here>"` reached Slack's text
    as-is: on real Slack it pings the whole channel behind a disguised link. Slack's mrkdwn
    escaping (&, <, >) everywhere, alone and in a group; the agent's own runbook link stays one."""
    receiver = receivers(SLACK, "ok")
    store, outbox, channel, dispatcher, clock = wired("slack", receiver.url)
    outbox.enqueue("slack", "k", "firing", hostile_doc().to_json(), clock())
    other = hostile_doc()
    other.fingerprint = "fedcba9876543210"
    group = Message('{}:{alertname="GpuHot"}', {"alertname": "GpuHot"}, [hostile_doc(), other], (other.fingerprint,))
    outbox.enqueue("slack", "group:x", "firing", group.to_json(), clock())
    dispatcher.deliver_once("slack")
    clock.now += 2
    dispatcher.deliver_once("slack")
    for request in receiver.requests:
        text = json.dumps(request["body"])
        assert "<!channel>" not in text and "<https://evil.example" not in text
        assert "&lt;!channel&gt; &lt;https://evil.example|click here&gt;" in text and "&amp; more" in text
    grouped = json.dumps(receiver.requests[1]["body"])
    assert "<https://runbooks.example/gpu?a=1&amp;b=2|runbook>" in grouped


def test_teams_escapes_what_a_target_controls(tmp_path, receivers, wired):
    """An Adaptive Card renders markdown links and formats: a target's `[click here](https://...)`
    is shown as typed (CommonMark backslash escapes), in text blocks and facts."""
    receiver = receivers(TEAMS, "ok")
    store, outbox, channel, dispatcher, clock = wired("teams", receiver.url)
    outbox.enqueue("teams", "k", "firing", hostile_doc().to_json(), clock())
    dispatcher.deliver_once("teams")
    card = receiver.requests[0]["body"]["attachments"][0]["content"]
    texts = [item.get("text", "") for c in card["body"][1:] for item in c["items"]]
    facts = [f["value"] for c in card["body"][1:] for item in c["items"] if item["type"] == "FactSet" for f in item["facts"]]
    for text in texts + facts:
        assert "[click here](" not in text and "**urgent**" not in text
    assert any(r"\[click here\]\(https://evil.example\) \*\*urgent\*\*" in t for t in texts + facts)


def test_email_escapes_what_a_target_controls():
    from agent.notify.email import bodies

    _, html = bodies([hostile_doc()], "h1")
    assert "<!channel>" not in html and "&lt;!channel&gt;" in html and "<a href=\"https://evil" not in html


def test_a_receiver_echoing_our_basic_credential_cannot_put_it_in_a_log(tmp_path, caplog):
    """Issue 27: a receiver that echoed our request headers put the Basic credential (base64 of
    the URL's user:password) in the log and in `test-alert` output."""
    import base64

    caplog.set_level(logging.DEBUG)
    receiver = Receiver({"echo": (400, "who are you, {authorization}?", {})}, "echo")
    store = Store(str(tmp_path / "state.db"))
    outbox = Outbox(store)
    url = receiver.url.replace("http://", "http://ops:pa55-w0rd-xyz@")
    channel = Channel("hook", "webhook", urls=[url], hostname="h1")
    dispatcher = Dispatcher(outbox, [channel], clock=ManualClock(1000.0), jitter=lambda: 0.5)
    try:
        outbox.enqueue("hook", "k", "firing", doc().to_json(), 1000.0)
        dispatcher.deliver_once("hook")
    finally:
        receiver.close()
        store.close()
    basic = base64.b64encode(b"ops:pa55-w0rd-xyz").decode()
    assert receiver.requests[0]["headers"]["Authorization"] == "Basic " + basic, "the receiver saw it"
    assert "who are you, Basic <secret>?" in caplog.text
    assert basic not in caplog.text and "pa55-w0rd-xyz" not in caplog.text
