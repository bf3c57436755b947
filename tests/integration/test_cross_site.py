"""No cross-site writes (issue 27): a web page served on the same host created a silence until
2099 with a text/plain fetch and with an auto-submitted form (loopback was trusted, no Origin
or Content-Type check), and a DNS-rebinding page could write through its own domain. Here a
page served by another local server, driven in Chromium, tries both; a request with a foreign
Host tries the third; amtool-shaped requests still work."""

import json
import time

import requests

from agent.serve.websecurity import cross_site_refusal
from tests.support.httpservers import RouteServer
from tests.support.peers import wait_until

SILENCE = {"matchers": [{"name": "alertname", "value": ".+", "isRegex": True, "isEqual": True}],
           "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z", "createdBy": "llm-agent maintenance",
           "comment": "pwned"}
CONFIG = '[agent]\ninterval = "500ms"\n[discovery]\nenabled = false\n[collectors.nvml]\nenabled = false\n'


def attacker_page(agent_port: int) -> bytes:
    body = json.dumps(SILENCE)
    return f"""<!doctype html><html><body>
<form id="f" method="POST" enctype="text/plain" action="http://127.0.0.1:{agent_port}/api/v2/silences">
<input name='{body[:-1]}, "x": "' value='"}}'></form>
<script>
fetch("http://127.0.0.1:{agent_port}/api/v2/silences", {{method: "POST", mode: "no-cors",
      headers: {{"Content-Type": "text/plain"}}, body: {json.dumps(body)}}})
  .finally(() => {{ document.body.dataset.fetched = "1"; document.getElementById("f").submit(); }});
</script></body></html>""".encode()


def test_a_page_elsewhere_cannot_write_through_a_browser(serving, browser):
    running = serving(CONFIG)
    port = running.port
    page = RouteServer({"/": lambda handler: (200, attacker_page(port), "text/html")})
    page.__enter__()
    try:
        browser.get(page.url + "/")
        wait_until(lambda: browser.current_url.startswith(f"http://127.0.0.1:{port}/"), 20, what="the form posted")
        time.sleep(0.5)
    finally:
        page.__exit__()
    assert requests.get(f"http://127.0.0.1:{port}/api/v2/silences", timeout=5).json() == []
    assert running.agent.alerting.api.refused.get("cross_site", 0) >= 2


def test_a_rebinding_domain_and_a_form_body_are_refused_but_amtool_is_not(serving):
    running = serving(CONFIG)
    url = f"http://127.0.0.1:{running.port}/api/v2/silences"
    ok = dict(SILENCE, createdBy="alice", comment="ok", matchers=[{"name": "server", "value": "a", "isRegex": False}])
    assert requests.post(url, json=ok, headers={"Host": "evil.example:9400"}, timeout=5).status_code == 403
    assert requests.post(url, data=json.dumps(ok), headers={"Content-Type": "text/plain"}, timeout=5).status_code == 403
    assert requests.post(url, json=ok, headers={"Origin": "http://evil.example"}, timeout=5).status_code == 403
    r = requests.post(url, json=ok, timeout=5)  # what amtool sends: JSON, no Origin, the address as Host
    assert r.status_code == 200, r.text
    sid = r.json()["silenceID"]
    assert requests.delete(url.replace("silences", f"silence/{sid}"), timeout=5).status_code == 200


def test_the_rules_of_a_cross_site_write():
    json_ = {"content-type": "application/json", "host": "127.0.0.1:9400"}
    assert cross_site_refusal("POST", json_, ("localhost",)) is None
    assert cross_site_refusal("GET", {}, ()) is None, "reads are not writes"
    assert cross_site_refusal("POST", {**json_, "host": "[::1]:9400"}, ()) is None
    assert cross_site_refusal("POST", {**json_, "host": "gpu-17:9400"}, ("gpu-17",)) is None
    assert "allowed_hosts" in cross_site_refusal("POST", {**json_, "host": "rebind.example:9400"}, ("gpu-17",))
    assert "Origin" in cross_site_refusal("POST", {**json_, "origin": "null"}, ())
    assert cross_site_refusal("POST", {**json_, "origin": "http://127.0.0.1:9400"}, ()) is None, "the console itself"
    assert "application/json" in cross_site_refusal("POST", {"host": "127.0.0.1:9400"}, ())
    assert cross_site_refusal("DELETE", {"host": "127.0.0.1:9400"}, ()) is None, "amtool's expire has no body"
