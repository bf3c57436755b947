"""The email channel against a real SMTP server (aiosmtpd, in its own process): STARTTLS and
AUTH, implicit TLS, one that answers 451 then accepts (retried by the real dispatcher), one that
refuses authentication (failed, the password never shown), one that hangs, one without the TLS
that require_tls asks for, one whose certificate is not trusted; and `llm-agent test-alert`
through the whole path."""

import email
import email.policy
import subprocess
import sys
import time

import pytest

from agent.notify.base import AlertDoc, Channel, NotifyError
from agent.notify.dispatcher import Dispatcher
from agent.notify.email import EmailNotifier
from agent.notify.outbox import Outbox
from agent.store import Store
from tests.support.httpservers import SilentServer
from tests.support.peers import wait_until
from tests.support.pki import make_pki
from tests.support.smtp import Smtp

PASSWORD = "pa55-never-shown"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def smtp(tmp_path, pki):
    started = []

    def make(**kwargs):
        started.append(Smtp(tmp_path, pki, password=PASSWORD, **kwargs))
        return started[-1]

    yield make
    for s in started:
        s.stop()


def channel(port, pki, **options):
    opts = {"smarthost": f"127.0.0.1:{port}", "from": "llm-agent <agent@gpu-1.example>",
            "to": ["ops@example.com", "oncall@example.com"], "auth_username": "agent", "require_tls": True,
            "tls_ca_file": str(pki / "ca.crt"), "headers": {"X-Team": "inference"}, "subject": ""}
    opts.update(options)
    return Channel("mail", "email", password=PASSWORD, options=opts, timeout=3.0, hostname="gpu-1")


def alerts():
    def doc(name, server, status="firing"):
        labels = {"alertname": name, "severity": "critical", "server": server}
        return AlertDoc(status, labels, {"summary": f"{server} is down", "description": "It stopped answering.",
                                         "runbook_url": "https://runbooks.example/down"},
                        1_800_000_000.0, 1_800_000_060.0 if status == "resolved" else 0.0, 1.0, f"fp-{server}")
    return [doc("LlmTargetDown", "a"), doc("LlmTargetDown", "b"), doc("GpuHot", "c", "resolved")]


def test_starttls_and_auth_deliver_one_multipart_message(smtp, pki):
    server = smtp()
    EmailNotifier(channel(server.port, pki)).send(alerts())
    [got] = server.messages()
    assert got["tls"] and got["auth"] and got["from"] == "agent@gpu-1.example"
    assert got["to"] == ["ops@example.com", "oncall@example.com"]
    msg = email.message_from_string(got["data"], policy=email.policy.default)
    assert msg["Subject"] == "[FIRING:2] LlmTargetDown on gpu-1" and msg["X-Team"] == "inference"
    text = msg.get_body(("plain",)).get_content()
    page = msg.get_body(("html",)).get_content()
    assert "2 firing, 1 resolved on gpu-1" in text and "[RESOLVED] GpuHot" in text
    assert "Runbook: https://runbooks.example/down" in text and "server=b" in text
    assert "<h3" in page and "a is down" in page
    assert PASSWORD not in got["data"]


def test_implicit_tls(smtp, pki):
    server = smtp(tls="implicit")
    notifier = EmailNotifier(channel(server.port, pki, subject="{severity} {alertname}: {summary} ({count})"))
    notifier.implicit_tls = True  # what port 465 means
    notifier.send(alerts()[:1])
    [got] = server.messages()
    assert got["tls"] and got["auth"]
    assert email.message_from_string(got["data"])["Subject"] == "critical LlmTargetDown: a is down (1)"


def test_a_451_is_retried_by_the_dispatcher_and_then_delivered(smtp, pki, tmp_path):
    server = smtp(mode="451-once")
    outbox = Outbox(Store(str(tmp_path / "state.db")))
    ch = channel(server.port, pki)
    dispatcher = Dispatcher(outbox, [ch], base_backoff=0.1, max_backoff=0.2)
    doc = alerts()[0]
    outbox.enqueue("mail", doc.fingerprint, "firing", doc.to_json(), time.time())
    dispatcher.start()
    try:
        wait_until(lambda: dispatcher.results.get(("mail", "delivered")) == 1, 15, what="delivered after the 451")
        assert dispatcher.results[("mail", "retried")] == 1 and len(server.messages()) == 1
        assert not outbox.has("mail")
    finally:
        dispatcher.stop(0)


def test_refused_authentication_fails_for_good_without_the_password(smtp, pki):
    server = smtp(mode="refuse-auth")
    with pytest.raises(NotifyError) as e:
        EmailNotifier(channel(server.port, pki)).send(alerts()[:1])
    assert not e.value.retryable and "535" in str(e.value) and PASSWORD not in str(e.value)
    assert server.messages() == []


def test_a_hung_server_is_retried_after_the_timeout():
    with SilentServer() as hung:
        port = int(hung.url.rsplit(":", 1)[1])
        start = time.monotonic()
        with pytest.raises(NotifyError) as e:
            EmailNotifier(channel(port, pki=__import__("pathlib").Path("/nonexistent"), tls_ca_file="")).send(alerts()[:1])
        assert e.value.retryable and "no answer" in str(e.value)
        assert time.monotonic() - start < 10


def test_require_tls_refuses_a_server_without_starttls_and_an_untrusted_certificate(smtp, pki):
    plain = smtp(tls=None, auth=False)
    with pytest.raises(NotifyError) as e:
        EmailNotifier(channel(plain.port, pki, auth_username="")).send(alerts()[:1])
    assert not e.value.retryable and "require_tls" in str(e.value)
    EmailNotifier(channel(plain.port, pki, auth_username="", require_tls=False)).send(alerts()[:1])
    assert len(plain.messages()) == 1, "require_tls = false: plain SMTP on a trusted network"

    tls = smtp()
    with pytest.raises(NotifyError) as e:
        EmailNotifier(channel(tls.port, pki, tls_ca_file="")).send(alerts()[:1])
    assert not e.value.retryable and "not trusted" in str(e.value)


def test_test_alert_reaches_the_mailbox_through_the_cli(smtp, pki, tmp_path):
    server = smtp()
    config = tmp_path / "agent.toml"
    config.write_text(f'''
[[notify]]
name = "mail"
type = "email"
smarthost = "127.0.0.1:{server.port}"
from = "agent@gpu-1.example"
to = ["ops@example.com"]
auth_username = "agent"
auth_password = "${{SMTP_PASSWORD}}"
tls_ca_file = "{pki / 'ca.crt'}"
''')
    out = subprocess.run([sys.executable, "-m", "agent.cli", "test-alert", "--channel", "mail", "--resolve",
                          "--config", str(config)], capture_output=True, text=True, timeout=60,
                         env={"SMTP_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "test firing delivered to mail (email)" in out.stdout and PASSWORD not in out.stdout + out.stderr
    subjects = [email.message_from_string(m["data"])["Subject"] for m in server.messages()]
    assert subjects == ["[TEST FIRING:1] LlmAgentTestAlert on " + subjects[0].rsplit(" on ", 1)[1],
                        "[TEST RESOLVED:1] LlmAgentTestAlert on " + subjects[0].rsplit(" on ", 1)[1]]
