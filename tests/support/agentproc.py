"""The real daemon (`llm-agent run`) as a subprocess, watching a target whose alerts the test
switches on and off, and delivering to a local receiver: the harness for the alert path's
fault tests and benchmark."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, Iterable, List, Optional, Tuple

import requests

from .peers import free_port, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Flapper:
    """A target exposing `flap{id="..."}` gauges; an alert fires while its value is 1."""

    def __init__(self):
        self.values: Dict[str, float] = {}
        self.lock = threading.Lock()
        from .httpservers import RouteServer

        self.server = RouteServer({"/metrics": self._body})
        self.server.__enter__()

    def _body(self, _handler):
        with self.lock:
            lines = [f'flap{{id="{k}"}} {v}' for k, v in sorted(self.values.items())]
        return 200, ("\n".join(lines) + "\n").encode(), "text/plain"

    def set(self, ids: Iterable[str], value: float) -> None:
        with self.lock:
            for i in ids:
                self.values[i] = value

    @property
    def url(self) -> str:
        return self.server.url

    def close(self) -> None:
        self.server.__exit__()


# An agent that watches only what a test gives it and fires only the test's own rules: no
# GPUs, host, discovered servers or default rules to add alerts of their own.
ONLY_OWN_RULES = ('[discovery]\nenabled = false\n[collectors.nvml]\nenabled = false\n[collectors.host]\nenabled = false\n'
                  '[alerting]\ndefault_rules = false\n')


def config_text(state_dir: str, port: int, target_url: str, channel: str, interval: str = "300ms",
                extra: str = "") -> str:
    return (f'[agent]\ninterval = "{interval}"\nstate_dir = "{state_dir}"\n'
            f'[exporter]\nlisten = "127.0.0.1:{port}"\n'
            + ONLY_OWN_RULES + '[probes]\nenabled = false\n[health]\npy_spy = false\n'
            f'[[targets]]\nname = "flapper"\nurl = "{target_url}"\nkind = "openmetrics"\n'
            '[[rules]]\nname = "Flap"\nexpr = "flap > 0"\n'
            'annotations = { summary = "flap {{ $labels.id }} is up" }\n'
            f"{channel}{extra}")


class AgentProcess:
    """`python -m agent.cli run --config FILE`, its stderr kept in a file for the test to read."""

    def __init__(self, workdir: str, config: str, port: int):
        self.workdir = workdir
        self.port = port
        self.config_path = os.path.join(workdir, "agent.toml")
        self.log_path = os.path.join(workdir, "agent.log")
        self.write_config(config)
        self.proc: Optional[subprocess.Popen] = None

    def write_config(self, text: str) -> None:
        """Atomically, as an editor or config management does: a SIGHUP landing mid-write must
        not find a truncated file (an empty file is a valid config with no channels, and a
        removed channel's backlog is dropped)."""
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    def start(self, wait: bool = True) -> "AgentProcess":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", self.config_path],
                                     cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, stdout=self._log,
                                     stderr=self._log)
        if wait:
            wait_until(lambda: self.metrics().get("llm_agent_build_info") is not None or
                       bool(self.metrics()), 30, what="the agent serving /metrics")
        return self

    def metrics(self) -> Dict[str, float]:
        """Every sample on /metrics, keyed by its exposition text before the value."""
        body = requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text
        out = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        total = 0.0
        for key, v in self.metrics().items():
            if key.split("{")[0] == name and all(f'{k}="{val}"' in key for k, val in labels.items()):
                total += v
        return total

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def episodes(alerts: List[dict]) -> Dict[str, List[Tuple[str, str]]]:
    """Per alert (its fingerprint): the (startsAt, status) notifications in the order received."""
    out: Dict[str, List[Tuple[str, str]]] = {}
    for a in alerts:
        out.setdefault(a["fingerprint"], []).append((a["startsAt"], a["status"]))
    return out


def audit(alerts: List[dict]) -> Dict[str, int]:
    """How a receiver saw the alerts: notifications, duplicates, out-of-order ones, and
    episodes that never got their firing or their resolve (the last may still fire)."""
    report = {"received": len(alerts), "duplicates": 0, "out_of_order": 0, "missing": 0}
    for events in episodes(alerts).values():
        report["duplicates"] += len(events) - len(set(events))
        seen: List[Tuple[str, str]] = []
        for ev in events:
            if ev in seen:
                continue
            # order: episodes by start time; within one, firing before resolved
            if seen and (ev[0] < seen[-1][0] or ev[0] == seen[-1][0] and ev[1] == "firing"):
                report["out_of_order"] += 1
            seen.append(ev)
        starts = sorted({s for s, _ in seen})
        for i, start in enumerate(starts):
            have = {st for s, st in seen if s == start}
            need = {"firing", "resolved"} if i < len(starts) - 1 else {"firing"}
            report["missing"] += len(need - have)
    return report


def flap(flapper: Flapper, ids: List[str], seconds: float, period: float) -> int:
    """Switch every id on and off each `period` for `seconds`; returns the switches made."""
    switches, on, end = 0, False, time.monotonic() + seconds
    while time.monotonic() < end:
        on = not on
        flapper.set(ids, 1.0 if on else 0.0)
        switches += 1
        time.sleep(period)
    flapper.set(ids, 0.0)
    return switches


def new_agent(tmp_path, channel: str, state_dir: Optional[str] = None, interval: str = "300ms",
              extra: str = "") -> Tuple[AgentProcess, Flapper]:
    flapper = Flapper()
    port = free_port()
    state = state_dir or str(tmp_path / "state")
    os.makedirs(state, exist_ok=True)
    agent = AgentProcess(str(tmp_path), config_text(state, port, flapper.url, channel, interval, extra), port)
    return agent, flapper


# The fault tests audit each alert's notifications (order, loss, duplicates): one alert per
# message, each change sent at once (grouping has its own tests).
PER_ALERT = 'group_by = ["..."]\ngroup_interval = "0s"\n'


def webhook(url: str, name: str = "hook") -> str:
    return f'[[notify]]\nname = "{name}"\ntype = "webhook"\nurl = "{url}"\n' + PER_ALERT


def pagerduty(url: str, timeout: str = "10s") -> str:
    return (f'[[notify]]\nname = "pd"\ntype = "pagerduty"\nurl = "{url}"\nrouting_key = "{"r" * 32}"\n'
            f'timeout = "{timeout}"\n' + PER_ALERT)


def sighup_every(agent: AgentProcess, period: float, stop: threading.Event) -> threading.Thread:
    def loop():
        while not stop.wait(period):
            agent.signal(signal.SIGHUP)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t
