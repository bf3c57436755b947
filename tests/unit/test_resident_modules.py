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



def test_a_running_cycle_loads_neither_the_idna_codec_nor_unicode_tables_nor_re2(tmp_path):
    """A str host name given to the resolver goes through the idna codec, whose first use
    imports stringprep and unicodedata (0.3 MiB for good); the templates' lexer needs no
    tables for ASCII. RE2 and libstdc++ (2.7 MiB) wait for a pattern that needs them: the
    default rules', inhibitions' and host excludes' do not. A cycle connects to a target,
    makes the alerting API (this host's names, its FQDN), expands the default rules'
    templates and evaluates every default rule (a GPU clocked down by a reason matched by
    `=~`)."""
    code = f"""
import socket, sys
from agent.config import parse_config
from agent.daemon import Agent
from tests.support.fake_pynvml import FakeNvml, three_gpus
closed = socket.socket(); closed.bind(("127.0.0.1", 0)); port = closed.getsockname()[1]; closed.close()
config = parse_config('[agent]\\nhostname = "h"\\n[discovery]\\nenabled = false\\n'
                      '[[targets]]\\nname = "gone"\\nurl = "http://localhost:' + str(port) + '"\\n')
agent = Agent(config, nvml=FakeNvml(three_gpus()), state_dir={str(tmp_path)!r})
agent.endpoints()
for _ in range(3):
    agent.cycle()
agent.close()
print(sorted(m for m in ("encodings.idna", "stringprep", "unicodedata", "re2") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def test_this_hosts_names_are_those_socket_getfqdn_gives():
    import socket

    from agent.serve.websecurity import local_names

    hostname = socket.gethostname()
    assert set(local_names()) == {n for n in {"localhost", hostname.lower(), socket.getfqdn().lower()} if n}
