"""An agent serving in a thread (its loop and its exporter on a free port), as the daemon
runs it, for tests that need a live endpoint but not a separate process."""

from __future__ import annotations

import threading
from typing import Any, Optional

import requests

from agent.config import Config, parse_config
from agent.daemon import Agent
from agent.serve.exporter import Exporter

from .peers import wait_until


class Running:
    def __init__(self, config: Any, state_dir: str, nvml: Optional[object] = None, **exporter_args: Any):
        if not isinstance(config, Config):
            config = parse_config(config)
        self.agent = Agent(config, nvml=nvml, state_dir=state_dir)
        self.exporter = Exporter("127.0.0.1", 0, **exporter_args).start()
        self.stopped = False
        self.thread = threading.Thread(target=self.agent.serve, args=(self.exporter,), daemon=True)
        self.thread.start()
        wait_until(lambda: self.agent.snapshot is not None, 10, what="first cycle")

    @property
    def port(self) -> int:
        return self.exporter.port

    def value(self, name, **labels):
        return self.agent.snapshot.value(name, **labels)

    def healthz(self, query=""):
        r = requests.get(f"http://127.0.0.1:{self.exporter.port}/healthz{query}", timeout=5)
        return r.status_code, r.json()

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.agent.stop()
        self.thread.join(5)
        self.exporter.stop()
        self.agent.close(drain=0)
