"""What `llm-agent run` keeps resident: modules only an error, a rare action or another command
needs are imported where they are used, not by the daemon (each is RSS for the agent's life:
the report package 0.4 MiB, importlib.resources and the zipfile it brings 0.4, decimal 0.2,
calendar 0.2, difflib, uuid, email's ~1 MiB)."""

import subprocess
import sys

AWAY = ("decimal", "difflib", "calendar", "uuid", "email", "email.utils", "_hashlib", "ssl", "importlib.resources",
        "zipfile", "agent.report.compute", "agent.report.render", "agent.report.schedule", "agent.report.svg")


def test_the_daemon_does_not_load_what_it_rarely_needs():
    code = ("import sys, agent.commands.run, agent.daemon, agent.wiring; "
            f"print(sorted(m for m in {AWAY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out

