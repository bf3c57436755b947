"""The console in a real browser: Debian's Chromium driven by selenium (chromium-driver).

An agent with fake GPUs and a real llama-server; the page must load with no console errors,
draw its charts (pixels of the first series' colour on the canvas), show a killed server as
down with its alert within one refresh, redraw on the range picker (by click and by key),
fit a phone's width, and stay small. Screenshots are saved beside the test's other files.
"""

import gzip
import os
import json
import threading

import requests

from tests.support.fake_pynvml import FakeNvml, three_gpus
from tests.support.peers import wait_until

SERIES_COLOURS = [(0x2B, 0x6C, 0xB0), (0xDD, 0x6B, 0x20)]  # COLOURS[0] and [1] in console.js


def coloured_pixels(driver, canvas_id, colours=SERIES_COLOURS):
    """Pixels of a series' colour (the fake GPUs read alike, so the second may cover the first)."""
    return sum(_pixels(driver, canvas_id, rgb) for rgb in colours)


def _pixels(driver, canvas_id, rgb):
    return driver.execute_script("""
        const c = document.getElementById(arguments[0]); if (!c || !c.width) return 0;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4)
          if (Math.abs(d[i] - arguments[1]) < 24 && Math.abs(d[i+1] - arguments[2]) < 24
              && Math.abs(d[i+2] - arguments[3]) < 24 && d[i+3] > 128) n++;
        return n;""", canvas_id, *rgb)


def errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_console_in_chromium(serving, llama_server, browser, tmp_path):
    config = ('[agent]\ninterval = "500ms"\n[discovery]\nenabled = false\n[probes]\ninterval = "2s"\n'
              f'[[targets]]\nname = "llama"\nurl = "{llama_server.url}"\n')
    fake = FakeNvml(three_gpus())
    fake.gpus[0].processes = [(llama_server.proc.pid, 2 << 30)]  # the real server's process "on" GPU 0
    drawing = threading.Event()

    def draw_power():  # GPU 0 draws 300 W while the probes make tokens
        while not drawing.wait(0.1):
            fake.gpus[0].energy_mj += 30_000

    threading.Thread(target=draw_power, daemon=True).start()
    running = serving(config, fake)
    url = f"http://127.0.0.1:{running.port}/"
    wait_until(lambda: running.agent.recorder.store.stats.cycles_written >= 4, 15, what="a few cycles stored")
    from agent.perf.benchmark import BenchRun

    book = running.agent.perf_book  # three benchmarks make the baseline; the fourth is 20% slower
    figures = {"generation_tokens_per_second_c1": 50.0, "ttft_p50_seconds": 0.1}
    for at in range(3):
        book.add_run("llama", BenchRun("completed", dict(figures), 100, 1.0, started_at=1000.0 + at))
    book.add_run("llama", BenchRun("completed", dict(figures, generation_tokens_per_second_c1=40.0), 100, 1.0,
                                   started_at=2000.0))
    wait_until(lambda: running.agent.snapshot.samples("llm_agent_bench_slowdown_ratio"), 15, what="the comparison")
    wait_until(lambda: running.agent.snapshot.samples("llm_agent_energy_per_token_joules"), 30,
               what="energy per token from the probes' tokens")
    browser.get(url)
    wait_until(lambda: browser.execute_script("return document.body.dataset.refreshed"), 20, what="the first refresh")
    browser.save_screenshot(str(tmp_path / "console.png"))
    assert errors(browser) == []
    assert browser.find_element("id", "host").text == running.agent.config.hostname
    assert "GPU 0" in browser.find_element("id", "gpus").text and "lost" in browser.find_element("id", "gpus").text
    # one verdict (issue 26): a lost GPU fires GpuLost, critical: the badge says so, never "healthy"
    wait_until(lambda: browser.find_element("id", "verdict").text == "critical", 20, what="the critical verdict")
    assert "alert GpuLost" in browser.find_element("id", "reasons").text
    tile = browser.find_element("css selector", '[data-server="llama"]')
    assert "up" in tile.text and "tiny" in tile.text.lower() or "model" in tile.text
    # issue 30: which model uses GPU 0, and its energy per 1,000 tokens now and today (from the history)
    gpus = browser.find_element("id", "gpus").text
    assert "used by\nllama (" in gpus and " 2.0 GiB" in gpus, gpus
    wait_until(lambda: "today" in browser.find_element("id", "energy").text, 20, what="today's energy per 1K tokens")
    assert "Wh per 1K tokens" in browser.find_element("id", "cost").text and "now" in browser.find_element("id", "energy").text
    drawing.set()
    perf = browser.find_element("id", "performance").text
    assert "regressed" in perf and "generation tokens per second c1" in perf and "-20.0 %" in perf
    assert coloured_pixels(browser, "chart-0") > 10  # GPU utilisation drew its (short) line
    assert coloured_pixels(browser, "spark-gpu-0") > 5  # and the tile its sparkline

    browser.find_element("css selector", '#ranges button[data-range="86400"]').click()
    wait_until(lambda: browser.execute_script("return document.body.dataset.charted") == "86400", 20, what="redraw at 24 h")
    assert browser.find_element("css selector", '#ranges button[data-range="86400"]').get_attribute("aria-pressed") == "true"
    assert coloured_pixels(browser, "chart-0") > 5
    browser.find_element("tag name", "body").send_keys("3")  # the keyboard picks 7 d
    wait_until(lambda: browser.execute_script("return document.body.dataset.charted") == "604800", 20, what="redraw at 7 d")

    refreshes = browser.execute_script("return document.body.dataset.refreshed")
    llama_server.kill()
    wait_until(lambda: "down" in browser.find_element("css selector", '[data-server="llama"]').text, 20,
               what="the killed server shown down")
    wait_until(lambda: browser.find_elements("css selector", '[data-alert="LlmTargetDown"]'), 20, what="its alert shown")
    assert browser.execute_script("return document.body.dataset.refreshed") != refreshes
    browser.save_screenshot(str(tmp_path / "console-down.png"))
    assert errors(browser) == []

    assert not browser.find_element("id", "maintenance").is_displayed()
    from agent.notify.silences import maintenance_silence

    window = maintenance_silence(1800, "", "swapping <b>GPU 3</b>", running.agent.clock())
    assert requests.post(f"{url}api/v2/silences?maintenance=1", json=window, timeout=5).status_code == 200
    wait_until(lambda: browser.find_element("id", "maintenance").is_displayed(), 20, what="the maintenance banner")
    assert "swapping <b>GPU 3</b>" in browser.find_element("id", "maintenance").text, "shown as text, never markup"
    wait_until(lambda: browser.find_element("id", "verdict").text == "maintenance", 20, what="the maintenance verdict")
    wait_until(lambda: "held" in browser.find_element("css selector", '[data-alert="LlmTargetDown"]').get_attribute("class"),
               20, what="the silenced alert shown as held")
    assert "maintenance until" in browser.find_element("css selector", '[data-alert="LlmTargetDown"]').text

    browser.set_window_size(390, 844)  # a phone
    browser.get(url)
    wait_until(lambda: browser.execute_script("return document.body.dataset.refreshed"), 20, what="refresh on a phone")
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    browser.save_screenshot(str(tmp_path / "console-phone.png"))
    assert errors(browser) == []


def test_console_weighs_little_and_keeps_to_itself(serving):
    running = serving('[agent]\ninterval = "500ms"\n[discovery]\nenabled = false\n', FakeNvml(three_gpus()))
    total = 0
    for path in ("/", "/console.js", "/console.css"):
        r = requests.get(f"http://127.0.0.1:{running.port}{path}", headers={"Accept-Encoding": "gzip"}, stream=True)
        body = r.raw.read()
        assert r.headers["Content-Encoding"] == "gzip" and gzip.decompress(body)
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        total += len(body)
        text = gzip.decompress(body).decode()
        assert "http://" not in text.replace("http://127", "") and "https://" not in text.replace("https?:", "")
    assert total < 150 * 1024
    state = requests.get(f"http://127.0.0.1:{running.port}/api/v1/console").json()
    assert state["gpus"][0]["gpu"] == "0" and state["health"]["status"] in ("ok", "warning", "critical")


def test_a_host_without_gpus_shows_no_gpu_section_and_no_label_is_cut_at_three_widths(serving, llama_server, browser,
                                                                                       tmp_path):
    """Issue 33: only the sections the host has; at a phone's, a laptop's and a wide screen's
    width every chart's time labels lie inside it, none over another, and no tile's text
    overflows its box."""
    config = ('[agent]\ninterval = "500ms"\n[discovery]\nenabled = false\n[collectors.nvml]\nenabled = false\n'
              f'[[targets]]\nname = "llama"\nurl = "{llama_server.url}"\n')
    running = serving(config)
    wait_until(lambda: running.agent.recorder.store.stats.cycles_written >= 4, 15, what="a few cycles stored")
    for width in (390, 900, 1600):
        browser.set_window_size(width, 1400)
        browser.get(f"http://127.0.0.1:{running.port}/")
        wait_until(lambda: browser.execute_script("return document.body.dataset.refreshed"), 20, what="a refresh")
        titles = [h.text for h in browser.find_elements("css selector", "#charts h3")]
        assert titles and not any(t.startswith("GPU") for t in titles), titles
        assert not browser.find_element("id", "gpus-h").is_displayed(), "no GPU section at all"
        assert "Generated tokens/s" in titles
        labels = browser.execute_script(
            "return [...document.querySelectorAll('#charts canvas')].map(c => c.dataset.labels).filter(Boolean)")
        assert labels, "every chart drew its time labels"
        for doc in labels:
            spans = json.loads(doc)
            bounds = spans["spans"]
            assert all(0 <= a and b <= spans["width"] + 0.5 for a, b in bounds), (width, spans)
            assert all(b1 + 4 <= a2 for (_, b1), (a2, _) in zip(bounds, bounds[1:])), (width, spans)
        clipped = browser.execute_script("""
            return [...document.querySelectorAll('.tile dd, .tile dt, .tile h3, #charts h3')]
              .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent);""")
        assert clipped == [], (width, clipped)
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        browser.save_screenshot(str(tmp_path / f"console-no-gpu-{width}.png"))
        if os.environ.get("LLM_AGENT_UPDATE_SCREENSHOTS"):
            browser.save_screenshot(os.path.join(os.path.dirname(__file__), "..", "..", "docs", f"console-{width}.png"))
        assert errors(browser) == []
