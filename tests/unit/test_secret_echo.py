"""Secrets stay secret: config errors print a `${ENV}` reference and never a URL's password,
and a target that echoes our Authorization header back in its errors cannot put its own
api_key into logs, `check` or /metrics."""

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.check import build_report
from agent.config import ConfigError, parse_config
from agent.daemon import Agent

KEY = "sk-echoed-back-0123456789"


def problems(text, environ=None):
    with pytest.raises(ConfigError) as e:
        parse_config(text, "agent.toml", environ or {})
    return "\n".join(e.value.problems)


def test_a_password_in_a_target_url_is_never_printed():
    text = problems('[[targets]]\nname = "a"\nurl = "ftp://admin:hunter2@10.0.0.1:8080"\n')
    assert "hunter2" not in text and "admin:***@10.0.0.1" in text
    text = problems('[[targets]]\nname = "a"\nurl = "http://admin:hunter2@host:99999"\n')
    assert "hunter2" not in text and "agent.toml:3: targets[0].url" in text


def test_a_value_from_the_environment_is_shown_as_its_reference():
    text = problems('[[targets]]\nname = "a"\nurl = "${TARGET_URL}"\n', {"TARGET_URL": "ftp://u:hunter2@x"})
    assert "hunter2" not in text and "${TARGET_URL}" in text
    text = problems('[agent]\ninterval = "${IV}"\n', {"IV": "hunter2"})
    assert "hunter2" not in text and "invalid value from '${IV}'" in text


class Echo(BaseHTTPRequestHandler):
    """A server that is up (/health and /metrics answer) and answers every other request (the
    probe's POST, llama.cpp's /props and /slots) with a 500 whose body repeats the request's
    headers. (Up, because a probe waits while its target is down.)"""

    def log_message(self, *args):
        pass

    def _echo(self):
        body = json.dumps({"error": {"message": f"bad auth: {self.headers.get('Authorization')}"}}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith(("/health", "/metrics")):
            body = b'{"status": "ok"}' if self.path.startswith("/health") else b"up_and_running 1\n"
            self.send_response(200)
            self.send_header("Content-Type", "application/json" if self.path.startswith("/health") else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self._echo()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._echo()


@pytest.mark.parametrize("kind", ["llamacpp", "openmetrics"])
def test_a_target_echoing_our_authorization_header_cannot_leak_the_key(tmp_path, caplog, kind):
    caplog.set_level(logging.DEBUG)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    config = parse_config('[collectors.nvml]\nenabled = false\n[collectors.host]\nenabled = false\n'
                          f'[probes]\ninterval = "100ms"\n[[targets]]\nname = "echo"\nurl = "{url}"\nkind = "{kind}"\n'
                          'api_key = "${KEY}"\n', "agent.toml", {"KEY": KEY})
    agent = Agent(config, alerting=False)
    try:
        snapshots = [agent.cycle() for _ in range(3)]
        deadline = time.monotonic() + 5
        while "probe echo failed: HTTP 500" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)  # the probe runs in its own thread
        report = json.dumps(build_report(snapshots[-1], "h", "agent.toml"))
    finally:
        agent.close(drain=0)
        httpd.shutdown()
        httpd.server_close()
    assert "probe echo failed: HTTP 500" in caplog.text and "bad auth: Bearer <secret>" in caplog.text, \
        "the echo was seen, redacted: the test exercised both paths"
    assert KEY not in caplog.text and KEY not in report
    assert all(KEY not in repr(f) for s in snapshots for f in s.families)


class LabelEcho(BaseHTTPRequestHandler):
    """A /metrics that puts the request's Authorization header into label values (and a '}' so
    the label set cannot be remembered by its text)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        body = (f'echo{{who="{auth}"}} 1\nbraced{{x="}}",who="key {auth.split()[-1]}"}} 1\n').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_target_echoing_our_key_in_a_label_cannot_publish_it(tmp_path):
    """Issue 27: a target that echoed our API key in a label published it on /metrics, the query
    API and the history file."""
    from agent.expfmt.render import render_both

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), LabelEcho)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    config = parse_config('[collectors.nvml]\nenabled = false\n[collectors.host]\nenabled = false\n'
                          f'[probes]\nenabled = false\n[[targets]]\nname = "echo"\nurl = "{url}"\nkind = "openmetrics"\n'
                          'api_key = "${KEY}"\n', "agent.toml", {"KEY": KEY})
    agent = Agent(config, state_dir=str(tmp_path))
    try:
        snapshots = [agent.cycle() for _ in range(3)]
    finally:
        agent.close(drain=0)
        httpd.shutdown()
        httpd.server_close()
    text, om = render_both(snapshots[-1].families)
    assert snapshots[-1].value("echo", server="echo", who="<secret>") == 1
    assert snapshots[-1].value("braced", server="echo", who="key <secret>") == 1
    assert KEY.encode() not in text and KEY.encode() not in om
    history = (tmp_path / "history.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("history.db-*"))
    assert KEY.encode() not in history
