"""Benchmark: what the agent costs the inference server it watches.

A steady completion load (closed loop: CLIENTS threads, each sending the next request as soon
as the last one is answered) runs against a real llama-server, and the server's generated
tokens per second and request latency (median, p95) are measured with no agent, with the agent
at the default 5 s interval, and at a 1 s interval, in rounds (none, default, 1 s, none, ...)
so that drift on a shared machine falls on every arm alike. The agent runs as `llm-agent run`
with the default configuration plus the target (probes included). Also printed: which of the
agent's requests reach the server per cycle, from the server's own request counters.

    python tests/bench/bench_server_cost.py [--seconds 30] [--rounds 3]
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.bench.common import agent_process, pct  # noqa: E402
from tests.support.peers import LlamaServer  # noqa: E402
from tests.support.tinymodel import write_tiny_llama  # noqa: E402

CLIENTS = 2
TOKENS = 32
BODY = json.dumps({"prompt": "The quick brown fox", "n_predict": TOKENS, "temperature": 0, "seed": 1,
                   "ignore_eos": True, "cache_prompt": False}).encode()


def load(url, seconds):
    """Closed-loop completions for `seconds`: (generated tokens/s, latencies in s)."""
    host, port = url.split("//", 1)[1].split(":")
    stop = time.monotonic() + seconds
    tokens, latencies, lock = [0], [], threading.Lock()

    def client():
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        while time.monotonic() < stop:
            t0 = time.monotonic()
            conn.request("POST", "/completion", BODY, {"Content-Type": "application/json"})
            doc = json.loads(conn.getresponse().read())
            took = time.monotonic() - t0
            with lock:
                tokens[0] += int(doc.get("tokens_predicted", 0))
                latencies.append(took)
        conn.close()

    start = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tokens[0] / (time.monotonic() - start), latencies


def start_agent(tmp, url, interval):
    proc, _ = agent_process(tmp, f'[[targets]]\nname = "llama"\nurl = "{url}"\n', f'interval = "{interval}"\n')
    time.sleep(2)  # past its first cycles and first probe
    return proc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    model = write_tiny_llama(os.path.join(tmp, "tiny.gguf"))
    server = LlamaServer(model, log_dir=tmp).start()
    arms = {"no agent": None, "agent, 5 s (default)": "5s", "agent, 1 s": "1s"}
    results = {arm: ([], []) for arm in arms}
    try:
        load(server.url, 3)  # warm up
        for r in range(args.rounds):
            for arm, interval in arms.items():
                agent = start_agent(tmp, server.url, interval) if interval else None
                try:
                    tps, lat = load(server.url, args.seconds)
                finally:
                    if agent is not None:
                        agent.send_signal(signal.SIGTERM)
                        agent.wait(15)
                results[arm][0].append(tps)
                results[arm][1].extend(lat)
                print(f"round {r + 1} {arm}: {tps:.1f} tokens/s, p95 {pct(lat, 95) * 1000:.1f} ms", flush=True)
        base_tps = statistics.median(results["no agent"][0])
        base_p95 = pct(results["no agent"][1], 95)
        print(f"\n{CLIENTS} clients, {TOKENS} tokens per request, {args.rounds} rounds of {args.seconds} s per arm, "
              f"real llama-server (tiny model, CPU)")
        for arm, (tps, lat) in results.items():
            m, p95 = statistics.median(tps), pct(lat, 95)
            print(f"{arm:22s} generated {m:8.1f} tokens/s ({(m / base_tps - 1) * 100:+.2f}%), request median "
                  f"{statistics.median(lat) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms ({(p95 / base_p95 - 1) * 100:+.2f}%)")
        spread = (max(results["no agent"][0]) - min(results["no agent"][0])) / base_tps * 100
        print(f"noise floor: the no-agent rounds spread {spread:.2f}% in tokens/s")
    finally:
        server.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
