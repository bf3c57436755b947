"""A real SMTP server (aiosmtpd, tests/support/smtp_server.py) in its own process, for the email
channel's tests and the grouping benchmark."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Smtp:
    """The server in its own process (`mode`: ok, 451-once, refuse-auth; `tls`: "starttls",
    "implicit" or None, the certificates from `pki`); `messages()` is what it accepted."""

    def __init__(self, tmp_path, pki=None, mode="ok", tls="starttls", auth=True, password="pw"):
        self.out = tmp_path / f"mail-{mode}-{tls}.jsonl"
        args = [sys.executable, "-m", "tests.support.smtp_server", "--out", str(self.out), "--mode", mode]
        if tls:
            args += ["--cert", str(pki / "server.crt"), "--key", str(pki / "server.key")]
        if tls == "implicit":
            args.append("--implicit-tls")
        if auth:
            args += ["--user", "agent", "--password", password]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        line = self.proc.stdout.readline()
        assert line.strip().isdigit(), self.proc.stderr.read()
        self.port = int(line)

    def messages(self):
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines()]

    def stop(self):
        self.proc.kill()
        self.proc.wait(10)
