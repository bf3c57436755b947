"""Run the real agent loop and exporter with a fake 8-GPU NVML, as a separate process, for
the benchmark. Usage: agent_process.py PORT INTERVAL [--hour] TARGET_URL...

--hour: before serving, an hour of cycles (720 at the 5 s default) is run at once with a clock
that moves 5 s per cycle, so the rule history, the on-disk history and every cache hold what
they hold after an hour; then the loop serves in real time."""

import os
import tempfile
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from agent.config import parse_config  # noqa: E402
from agent.daemon import Agent, install_signals  # noqa: E402
from agent.heap import limit_malloc_arenas  # noqa: E402
from agent.serve.exporter import Exporter  # noqa: E402
from tests.support.fake_pynvml import FakeGpu, FakeNvml  # noqa: E402


def eight_gpus():
    return [FakeGpu(uuid=f"GPU-{i:08x}-0000-0000-0000-000000000000", pci_bus_id=f"00000000:{0x17 + i:02x}:00.0",
                    minor=i, processes=[(1000 + i, 40 << 30)]) for i in range(8)]


def main():
    limit_malloc_arenas()  # as `llm-agent run` does
    port, interval, urls = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    hour = "--hour" in urls
    urls = [u for u in urls if u != "--hour"]
    targets = "".join(f'[[targets]]\nname = "llama{i}"\nurl = "{u}"\n' for i, u in enumerate(urls))
    config = parse_config(f'[agent]\ninterval = "{interval}"\nhostname = "bench"\n{targets}')
    offset = [0.0]
    agent = Agent(config, nvml=FakeNvml(eight_gpus()), state_dir=tempfile.mkdtemp(),
                  clock=lambda: time.time() + offset[0])
    if hour:
        offset[0] = -3600.0
        for _ in range(720):
            agent.cycle()
            offset[0] += 5.0
    exporter = Exporter("127.0.0.1", port, max_threads=8).start()
    install_signals(agent)
    print("ready", flush=True)
    agent.serve(exporter)
    exporter.stop()
    agent.close()


if __name__ == "__main__":
    main()
