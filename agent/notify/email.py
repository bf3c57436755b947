"""Email over SMTP, with Alertmanager's `email_configs` keys where they apply: `smarthost`
(host:port; port 465 means implicit TLS, any other STARTTLS when `require_tls`, the default),
`from`, `to`, `auth_username`/`auth_password`, `require_tls`, `headers`, and a subject
template (`{status}`, `{count}`, `{alertname}`, `{summary}`, `{host}`, `{severity}`). One
message per alert group: a multipart text + HTML body listing every alert (summary,
description, runbook, labels), readable in a terminal mail client as in a browser.

SMTP replies join the shared status table: 4xx retried (451 "try again later"), 5xx failed for
good (535 "authentication failed": fix the channel), connection errors and timeouts retried; a
server that cannot do the TLS that `require_tls` asks for is a configuration error, not retried.
The password never appears in a message: errors carry the server's reply code and text only.
"""

from __future__ import annotations

import html
import smtplib
import socket
import ssl
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Dict, List, Optional, Tuple

from ..config.mail import FIELD, parse_smarthost
from .base import AlertDoc, Channel, NotifyError, redact
from .grouping import Message

DEFAULT_SUBJECT = "[{status}:{count}] {alertname} on {host}"
IMPLICIT_TLS_PORT = 465


def subject_of(batch: List[AlertDoc], template: str, hostname: str) -> str:
    firing = [a for a in batch if a.status == "firing"]
    shown = firing or batch
    names = sorted({a.labels.get("alertname", "alert") for a in shown})
    first = shown[0]
    fields = {"status": first.marker.strip("[] ") + (" " if first.marker else "") + ("FIRING" if firing else "RESOLVED"),
              "count": str(len(shown)), "alertname": ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else ""),
              "summary": first.annotations.get("summary", ""), "host": hostname,
              "severity": first.labels.get("severity", "")}
    text = FIELD.sub(lambda m: fields.get(m.group(1), m.group(0)), template)
    return " ".join(text.split())[:250]  # one line: a newline in a header would end it


def _lines(alert: AlertDoc) -> List[Tuple[str, str]]:
    rows = [("Summary", alert.annotations.get("summary", "")), ("Description", alert.annotations.get("description", "")),
            ("Runbook", alert.annotations.get("runbook_url") or alert.annotations.get("runbook", "")),
            ("Started", time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(alert.starts_at)) if alert.starts_at else ""),
            ("Resolved", time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(alert.ends_at)) if alert.ends_at else ""),
            ("Labels", ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items())))]
    return [(k, v) for k, v in rows if v]


def bodies(batch: List[AlertDoc], hostname: str) -> Tuple[str, str]:
    """(plain text, HTML) listing every alert of the batch, firing first."""
    ordered = sorted(batch, key=lambda a: (a.status != "firing", a.labels.get("alertname", "")))
    firing = sum(1 for a in batch if a.status == "firing")
    head = f"{firing} firing, {len(batch) - firing} resolved on {hostname} (llm-agent)"
    text = [head, ""]
    parts = [f"<p>{html.escape(head)}</p>"]
    for a in ordered:
        title = f"[{a.status.upper()}] {a.labels.get('alertname', 'alert')} ({a.labels.get('severity', '')})"
        text.append(title)
        text += [f"  {k}: {v}" for k, v in _lines(a)]
        text.append("")
        colour = "#2eb886" if a.status == "resolved" else {"critical": "#d63232", "warning": "#e8a317"}.get(
            a.labels.get("severity", ""), "#439fe0")
        rows = "".join(f"<tr><th align=left valign=top>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                       for k, v in _lines(a))
        parts.append(f'<h3 style="color:{colour}">{html.escape(title)}</h3><table>{rows}</table>')
    return "\n".join(text), "<html><body>" + "".join(parts) + "</body></html>"


def _classify(e: BaseException, secrets: List[str]) -> NotifyError:
    """An SMTP outcome as the shared status table sees it."""
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in e.recipients.values()]
        retry = all(400 <= c < 500 for c in codes)
        detail = "; ".join(f"{rcpt}: {code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}"
                           for rcpt, (code, msg) in e.recipients.items())
        return NotifyError(redact(f"recipients refused: {detail}"[:300], secrets), retryable=retry, status=codes[0])
    if isinstance(e, smtplib.SMTPResponseException):
        text = e.smtp_error.decode(errors="replace") if isinstance(e.smtp_error, bytes) else str(e.smtp_error)
        what = "authentication failed" if isinstance(e, smtplib.SMTPAuthenticationError) else "SMTP"
        return NotifyError(redact(f"{what}: {e.smtp_code} {text}"[:300], secrets), retryable=400 <= e.smtp_code < 500,
                           status=e.smtp_code)
    if isinstance(e, ssl.SSLCertVerificationError):
        return NotifyError(f"TLS: the server's certificate is not trusted ({e.verify_message}); set tls_ca_file",
                           retryable=False)
    if isinstance(e, (socket.timeout, TimeoutError)) or "timed out" in str(e):  # smtplib reports a read timeout
        return NotifyError("no answer in time", retryable=True)                 # as "disconnected ... timed out"
    if isinstance(e, smtplib.SMTPServerDisconnected):
        return NotifyError("the server closed the connection", retryable=True)
    if isinstance(e, ConnectionRefusedError):
        return NotifyError("connection refused", retryable=True)
    if isinstance(e, (smtplib.SMTPServerDisconnected, OSError)):
        return NotifyError(f"connection failed: {type(e).__name__}", retryable=True)
    return NotifyError(f"SMTP failed: {type(e).__name__}", retryable=True)


class EmailNotifier:
    max_batch = 1  # one message per alert group
    min_interval = 0.0

    def __init__(self, channel: Channel, session: object = None, resend: float = 60.0):
        self.channel = channel
        o = channel.options
        self.host, self.port = parse_smarthost(o["smarthost"])
        self.sender: str = o["from"]
        self.to: List[str] = list(o["to"])
        self.username: str = o.get("auth_username", "")
        self.require_tls: bool = o.get("require_tls", True)
        self.headers: Dict[str, str] = dict(o.get("headers", {}))
        self.subject: str = o.get("subject") or DEFAULT_SUBJECT
        self.ca_file: str = o.get("tls_ca_file", "")
        # EHLO name: the agent's hostname, never socket.getfqdn(), whose reverse DNS lookup can
        # hang for seconds on a reload or at start-up when DNS is down (smtplib's default)
        self.hello: str = o.get("hello", "") or channel.hostname or socket.gethostname()
        self.implicit_tls = self.port == IMPLICIT_TLS_PORT  # as Alertmanager: 465 speaks TLS from the first byte

    def message(self, batch: List[AlertDoc]) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = subject_of(batch, self.subject, self.channel.hostname)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain=self.hello)
        msg["X-Mailer"] = "llm-agent"
        for key, value in self.headers.items():
            if key.lower() in ("subject", "from", "to"):
                del msg[key]
            msg[key] = " ".join(value.split())
        text, page = bodies(batch, self.channel.hostname)
        msg.set_content(text)
        msg.add_alternative(page, subtype="html")
        return msg

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file or None)

    def _login(self, smtp: smtplib.SMTP) -> None:
        """One AUTH attempt with the best mechanism both sides speak (smtplib's login() tries
        them all, and a server that drops the connection after the first refusal turns a wrong
        password into a retried "disconnected")."""
        smtp.ehlo_or_helo_if_needed()
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        smtp.user, smtp.password = self.username, self.channel.password
        for name, method in (("CRAM-MD5", smtp.auth_cram_md5), ("PLAIN", smtp.auth_plain), ("LOGIN", smtp.auth_login)):
            if name in offered:
                smtp.auth(name, method)
                return
        raise NotifyError(f"{self.host}:{self.port} offers no AUTH mechanism this agent speaks (PLAIN, LOGIN, "
                          "CRAM-MD5)" + ("" if offered else ": none at all (is it an anonymous relay? then drop "
                                                            "auth_username)"), retryable=False)

    def send(self, batch: List[AlertDoc], group: Optional[Message] = None) -> None:
        msg = self.message(batch)
        secrets = self.channel.secrets()
        timeout = self.channel.timeout
        smtp: Optional[smtplib.SMTP] = None
        try:
            if self.implicit_tls:
                smtp = smtplib.SMTP_SSL(self.host, self.port, local_hostname=self.hello, timeout=timeout,
                                        context=self._context())
            else:
                smtp = smtplib.SMTP(self.host, self.port, local_hostname=self.hello, timeout=timeout)
                smtp.ehlo()
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=self._context())
                    smtp.ehlo()
                elif self.require_tls:
                    raise NotifyError(f"{self.host}:{self.port} does not offer STARTTLS and require_tls is true "
                                      "(set require_tls = false only on a trusted network)", retryable=False)
            if self.username:
                self._login(smtp)
            smtp.send_message(msg, self.sender, self.to)
        except NotifyError:
            raise
        except (smtplib.SMTPException, OSError, ssl.SSLError) as e:
            raise _classify(e, secrets) from None
        finally:
            if smtp is not None:
                try:
                    smtp.quit()
                except (smtplib.SMTPException, OSError):
                    smtp.close()
