"""Silences and maintenance through Alertmanager's API v2 on the agent's port, driven by the
real `amtool` (Debian's prometheus-alertmanager) and by `llm-agent silence|maintenance`: a
silenced alert is not paged, still shows (suppressed, silencedBy), and is paged when the
silence is expired while it still fires; silences survive a restart; writes are protected;
bad input gets 400 with the reason; maintenance turns /healthz to 503."""

import json
import shutil
import subprocess
import sys

import pytest
import requests

from tests.support.agentproc import ONLY_OWN_RULES
from tests.support.httpservers import RouteServer
from tests.support.peers import require, wait_until
from tests.support.receivers import WEBHOOK

FAULTS = {"one": 0, "two": 0}


def config(metrics_url_one, metrics_url_two, hook, extra=""):
    return f'''
[agent]
interval = "200ms"
{ONLY_OWN_RULES}[[rules]]
name = "DemoFault"
expr = "demo_fault > 0"
severity = "critical"
[rules.annotations]
summary = "fault on {{{{ $labels.server }}}}"
[[targets]]
name = "one"
url = "{metrics_url_one}"
kind = "openmetrics"
probe = false
[[targets]]
name = "two"
url = "{metrics_url_two}"
kind = "openmetrics"
probe = false
[[notify]]
name = "hook"
type = "webhook"
url = "{hook}"
group_interval = "0s"  # resolves at once (grouping has its own tests)
{extra}'''


@pytest.fixture
def faulty():
    """Two metric servers whose demo_fault gauge the test sets."""
    servers = {name: RouteServer({"/metrics": lambda h, n=name: (200, f"demo_fault {FAULTS[n]}\n".encode(), "text/plain")})
               for name in FAULTS}
    for name, server in servers.items():
        FAULTS[name] = 0
        server.__enter__()
    yield servers
    for server in servers.values():
        server.__exit__()


def amtool(port, *args):
    path = shutil.which("amtool")
    require("amtool", path is not None, "apt-get install prometheus-alertmanager")
    out = subprocess.run([path, f"--alertmanager.url=http://127.0.0.1:{port}", *args], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def paged(receiver, server):
    return [a for a in receiver.alerts() if a["labels"].get("server") == server]


def test_amtool_silences_an_alert_which_still_shows_and_is_paged_when_the_silence_expires(serving, faulty, receivers):
    hook = receivers(WEBHOOK)
    running = serving(config(faulty["one"].url, faulty["two"].url, hook.url))
    port = running.port
    sid = amtool(port, "silence", "add", "server=one", "alertname=DemoFault", "--comment=replacing a fan",
                 "--author=ops", "--duration=1h").strip()
    assert len(sid) == 36, sid
    FAULTS["one"] = FAULTS["two"] = 1
    wait_until(lambda: paged(hook, "two"), 10, what="two paged")
    wait_until(lambda: running.value("llm_agent_alert_firing", server="one") == 1, 10, what="one firing")
    assert paged(hook, "one") == [], "silenced: not paged"

    alerts = json.loads(amtool(port, "alert", "query", "--silenced", "-o", "json"))
    assert [(a["labels"]["server"], a["status"]["state"], a["status"]["silencedBy"]) for a in alerts] == \
        [("one", "suppressed", [sid])]
    active = json.loads(amtool(port, "alert", "query", "-o", "json"))
    assert [a["labels"]["server"] for a in active] == ["two"], "amtool's default: active alerts only"
    assert active[0]["receivers"] == [{"name": "hook"}] and active[0]["annotations"]["summary"] == "fault on two"

    silences = json.loads(amtool(port, "silence", "query", "-o", "json"))
    assert [(s["id"], s["createdBy"], s["comment"], s["status"]["state"]) for s in silences] == \
        [(sid, "ops", "replacing a fan", "active")]
    assert sorted((m["name"], m["value"], m["isRegex"]) for m in silences[0]["matchers"]) == \
        [("alertname", "DemoFault", False), ("server", "one", False)]
    assert amtool(port, "silence", "query", "-q", "server=two").strip() == "", "the filter finds no silence on two"
    assert amtool(port, "silence", "query", "-q", "server=one").strip() == sid

    amtool(port, "silence", "expire", sid)
    wait_until(lambda: paged(hook, "one"), 10, what="one paged once its silence ended while it still fires")
    assert [a["status"] for a in paged(hook, "one")] == ["firing"]
    expired = json.loads(amtool(port, "silence", "query", "--expired", "-o", "json"))
    assert [s["status"]["state"] for s in expired] == ["expired"]
    assert running.value("llm_agent_silences", state="expired") == 1


def test_a_silenced_alerts_resolve_is_muted_and_silences_survive_a_restart(serving, faulty, receivers, tmp_path):
    hook = receivers(WEBHOOK)
    text = config(faulty["one"].url, faulty["two"].url, hook.url)
    running = serving(text)
    FAULTS["one"] = 1
    wait_until(lambda: paged(hook, "one"), 10, what="one paged")
    base = f"http://127.0.0.1:{running.port}"
    silence = {"matchers": [{"name": "server", "value": "one", "isRegex": False}], "startsAt": "2020-01-01T00:00:00Z",
               "endsAt": "2099-01-01T00:00:00Z", "createdBy": "ops", "comment": "known"}
    sid = requests.post(base + "/api/v2/silences", json=silence, timeout=5).json()["silenceID"]
    FAULTS["one"] = 0
    wait_until(lambda: running.value("llm_agent_alert_firing", server="one") is None, 10, what="one resolved")
    running.stop()
    assert [a["status"] for a in paged(hook, "one")] == ["firing"], "the resolve is muted, as Alertmanager mutes it"

    again = serving(text)  # a new agent, a new state directory: nothing there
    assert requests.get(f"http://127.0.0.1:{again.port}/api/v2/silences", timeout=5).json() == []
    again.stop()
    from tests.support.running import Running

    restarted = Running(text, running.agent.state_dir)
    try:
        got = requests.get(f"http://127.0.0.1:{restarted.port}/api/v2/silence/{sid}", timeout=5).json()
        assert got["id"] == sid and got["status"]["state"] == "active" and got["comment"] == "known"
    finally:
        restarted.stop()


@pytest.mark.parametrize("body, says", [
    ({"matchers": [], "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z", "createdBy": "a",
      "comment": "c"}, "at least one matcher"),
    ({"matchers": [{"name": "a", "value": "(", "isRegex": True}], "startsAt": "2020-01-01T00:00:00Z",
      "endsAt": "2099-01-01T00:00:00Z", "createdBy": "a", "comment": "c"}, "missing"),
    ({"matchers": [{"name": "a", "value": "b", "isRegex": False}], "startsAt": "2099-01-02T00:00:00Z",
      "endsAt": "2099-01-01T00:00:00Z", "createdBy": "a", "comment": "c"}, "endsAt must be after startsAt"),
    ({"matchers": [{"name": "a", "value": ".*", "isRegex": True}], "startsAt": "2020-01-01T00:00:00Z",
      "endsAt": "2099-01-01T00:00:00Z", "createdBy": "a", "comment": "c"}, "must not match the empty string"),
    ({"matchers": [{"name": "a", "value": "b", "isRegex": False}], "startsAt": "yesterday",
      "endsAt": "2099-01-01T00:00:00Z", "createdBy": "a", "comment": "c"}, "RFC 3339"),
    ({"matchers": [{"name": "a", "value": "b", "isRegex": False}], "startsAt": "2020-01-01T00:00:00Z",
      "endsAt": "2099-01-01T00:00:00Z", "createdBy": "a", "comment": ""}, "comment is required"),
    ("not json", "not JSON"),
])
def test_bad_silences_get_400_with_the_reason(serving, body, says):
    running = serving('[discovery]\nenabled = false\n[collectors.nvml]\nenabled = false\n')
    url = f"http://127.0.0.1:{running.port}/api/v2/silences"
    r = requests.post(url, data=body if isinstance(body, str) else json.dumps(body), timeout=5,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and says in r.json(), r.text


def test_bad_filters_huge_bodies_unknown_ids_and_methods(serving):
    running = serving('[discovery]\nenabled = false\n[collectors.nvml]\nenabled = false\n')
    base = f"http://127.0.0.1:{running.port}/api/v2"
    r = requests.get(base + "/silences", params={"filter": "server=~("}, timeout=5)
    assert r.status_code == 400 and "missing" in r.json()
    r = requests.get(base + "/alerts", params={"filter": "no matcher here"}, timeout=5)
    assert r.status_code == 400 and "invalid matcher" in r.json()
    assert requests.post(base + "/silences", data=b"x" * (10 << 20), timeout=30).status_code == 413
    assert requests.delete(base + "/silence/0000", timeout=5).status_code == 404
    assert requests.get(base + "/silence/0000", timeout=5).status_code == 404
    assert requests.put(base + "/silences", data=b"{}", timeout=5).status_code == 405
    status = requests.get(base + "/status", timeout=5).json()
    assert status["cluster"]["status"] == "disabled" and "versionInfo" in status


def test_with_basic_auth_writes_need_credentials(serving):
    import bcrypt

    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    running = serving('[discovery]\nenabled = false\n[collectors.nvml]\nenabled = false\n'
                      f'[exporter]\nbasic_auth_users = {{ops = "{hashed}"}}\n',
                      auth=__import__("agent.serve.websecurity", fromlist=["BasicAuth"]).BasicAuth({"ops": hashed}))
    url = f"http://127.0.0.1:{running.port}/api/v2/silences"
    silence = {"matchers": [{"name": "server", "value": "x", "isRegex": False}], "startsAt": "2020-01-01T00:00:00Z",
               "endsAt": "2099-01-01T00:00:00Z", "createdBy": "ops", "comment": "c"}
    assert requests.post(url, json=silence, timeout=5).status_code == 401
    assert requests.post(url, json=silence, auth=("ops", "wrong"), timeout=5).status_code == 401
    assert requests.post(url, json=silence, auth=("ops", "pw"), timeout=5).status_code == 200


def cli(port, *args):
    out = subprocess.run([sys.executable, "-m", "agent.cli", *args, "--url", f"http://127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout + out.stderr


def test_llm_agent_silence_and_maintenance_commands(serving, faulty, receivers):
    hook = receivers(WEBHOOK)
    running = serving(config(faulty["one"].url, faulty["two"].url, hook.url))
    port = running.port
    code, out = cli(port, "silence", "add", "server=two", 'alertname=~"Demo.*"', "--for", "2h", "--comment", "load test")
    assert code == 0, out
    sid = out.strip()
    code, out = cli(port, "silence", "list")
    assert code == 0 and sid in out and 'alertname=~"Demo.*"' in out and "load test" in out, out
    code, out = cli(port, "silence", "add", 'server=~"("', "--comment", "x")
    assert code == 2 and "invalid regular expression" in out, out
    code, out = cli(port, "silence", "add", "no-operator", "--comment", "x")
    assert code == 2 and "invalid matcher" in out, out

    assert running.healthz()[0] == 200
    code, out = cli(port, "maintenance", "--for", "30m", "--comment", "driver upgrade")
    assert code == 0 and "until" in out, out
    status, doc = running.healthz()
    assert status == 503 and doc["status"] == "maintenance" and "driver upgrade" in doc["reasons"][0]
    FAULTS["one"] = 1
    wait_until(lambda: running.value("llm_agent_alert_firing", server="one") == 1, 10, what="one firing")
    assert paged(hook, "one") == [], "maintenance silences every alert"
    code, out = cli(port, "maintenance", "--end")
    assert code == 0 and "ended 1" in out, out
    # the window gone, the fault it held back counts: one verdict, critical (503), never "maintenance"
    wait_until(lambda: running.healthz()[1]["status"] == "critical", 10, what="the critical verdict")
    assert running.healthz()[0] == 503 and any("DemoFault" in r for r in running.healthz()[1]["reasons"])
    wait_until(lambda: paged(hook, "one"), 10, what="one paged once the maintenance ended")
