"""Hostile clients against :9400, beside node_exporter in the same run:

1. N idle connections (default 1,000) held open, then 50 scrapes: how long each scrape takes
   and how many fail, for the agent and for prometheus-node-exporter.
2. A basic-auth flood: 2,000 requests with wrong passwords from one client (and, meanwhile,
   the right password every 100th request): the agent's CPU seconds, bcrypt runs, and whether
   the right password kept working.

    python tests/bench/bench_clients.py [IDLE]
"""

import base64
import os
import resource
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import bcrypt  # noqa: E402
import requests  # noqa: E402

from agent.serve.exporter import Exporter  # noqa: E402
from agent.model import Snapshot, gauge  # noqa: E402
from agent.serve.websecurity import BasicAuth  # noqa: E402
from tests.bench.common import pct  # noqa: E402
from tests.support.peers import free_port, wait_until  # noqa: E402


def scrapes_under_idle(port: int, idle: int) -> tuple:
    held = []
    for _ in range(idle):
        try:
            held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            break
    times, failed = [], 0
    try:
        for _ in range(50):
            start = time.monotonic()
            try:
                ok = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=15).status_code == 200
            except requests.RequestException:
                ok = False
            times.append(time.monotonic() - start)
            failed += not ok
    finally:
        for s in held:
            s.close()
    return len(held), statistics.median(times), pct(times, 95), failed


def main(idle: int) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the client side holds the idle sockets too
    snap = Snapshot(1.0, tuple(gauge(f"g{i}", "A gauge.").add({"x": str(i)}, i) for i in range(200)))
    agent = Exporter("127.0.0.1", 0, request_timeout=10.0).start()
    agent.publish(snap)
    node_port = free_port()
    node = subprocess.Popen(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{node_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{node_port}/metrics", timeout=1).ok, 10)
        print(f"{idle} idle connections held, then 50 scrapes (median / p95 / failed):")
        for name, port in (("llm-agent", agent.port), ("node_exporter", node_port)):
            held, med, p95, failed = scrapes_under_idle(port, idle)
            print(f"  {name:14s} {held} held: {med * 1000:.1f} ms / {p95 * 1000:.1f} ms / {failed} failed")
    finally:
        node.terminate()
        agent.stop()

    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=10)).decode()
    secured = Exporter("127.0.0.1", 0, auth=BasicAuth({"prom": hashed})).start()
    secured.publish(snap)
    url = f"http://127.0.0.1:{secured.port}/metrics"

    def auth(password):
        return {"Authorization": "Basic " + base64.b64encode(f"prom:{password}".encode()).decode()}

    session = requests.Session()
    cpu0 = time.process_time()
    wall0 = time.monotonic()
    right_ok = 0
    for i in range(2000):
        session.get(url, headers=auth(f"guess{i}"), timeout=10)
        if i % 100 == 0:
            right_ok += session.get(url, headers=auth("right"), timeout=10).status_code == 200
    cpu = time.process_time() - cpu0
    print(f"basic-auth flood, 2,000 wrong passwords from one client (bcrypt cost 10): "
          f"{cpu:.1f} CPU-s in this process (client included) over {time.monotonic() - wall0:.1f} s; "
          f"bcrypt ran {secured.auth.bcrypt_checks} times; right password {right_ok}/20 accepted")
    secured.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
