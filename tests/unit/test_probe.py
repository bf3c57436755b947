"""The completion probe: captured llama-server streams, and failures by kind against local
servers that break the stream on purpose."""

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import threading
from pathlib import Path

import pytest

from agent.probes.collector import ProbeCollector
from agent.probes.completion import ProbeResult, ProbeSpec, parse_event, run_probe
from agent.model import Snapshot
from tests.support.peers import wait_until

FIX = Path(__file__).parent.parent / "fixtures" / "llamacpp"


def events(name):
    return [parse_event(line) for line in (FIX / name).read_text().splitlines() if line.startswith("data:")]


def test_llama_server_completion_stream():
    parsed = events("completion_stream.txt")
    assert parsed[-1][1] is True and parsed[-1][2] == 6  # stop, and the server's own token count
    assert all(not end for _, end, _ in parsed[:-1])
    assert sum(1 for text, _, _ in parsed if text) <= 6  # incomplete UTF-8 merges tokens into fewer events


def test_openai_chat_stream_with_usage():
    parsed = events("chat_stream.txt")
    assert parsed[-1] == ("", True, None)  # data: [DONE]
    assert any(count == 6 for _, _, count in parsed)  # the usage chunk
    assert "".join(t for t, _, _ in parsed)


@pytest.mark.parametrize("line", ['data: {"error": {"message": "boom"}}', "data: [1, 2]", "data: {not json"])
def test_malformed_events_raise(line):
    with pytest.raises(ValueError):
        parse_event(line)


class Scripted(BaseHTTPRequestHandler):
    """POST answers as the server's `mode` says."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        mode = self.server.mode
        if mode == "status":
            self.send_response(503)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"busy")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        if mode == "empty":
            self.wfile.write(b'data: {"content": "", "stop": true, "tokens_predicted": 0}\n\n')
        elif mode == "broken":
            self.wfile.write(b'data: {"content": "a", "stop": false}\n\n')  # then the connection closes
        elif mode == "garbage":
            self.wfile.write(b"data: {garbage\n\n")
        elif mode == "flood":  # bytes and no line end, until the client hangs up
            try:
                while True:
                    self.wfile.write(b"x" * 65536)
            except OSError:
                pass
        elif mode == "endless":  # tokens that never end
            try:
                while True:
                    self.wfile.write(b'data: {"content": "a", "stop": false}\n\n' * 1000)
            except OSError:
                pass
        elif mode == "ok":
            for piece in ("O", "K"):
                self.wfile.write(f'data: {json.dumps({"content": piece, "stop": False})}\n\n'.encode())
            self.wfile.write(b'data: {"content": "", "stop": true, "tokens_predicted": 2}\n\n')


@pytest.fixture
def scripted():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("mode,error", [("ok", ""), ("status", "http_503"), ("empty", "empty"),
                                        ("broken", "broken_stream"), ("garbage", "broken_stream")])
def test_failures_by_kind(scripted, mode, error):
    scripted.mode = mode
    result = run_probe(ProbeSpec(f"http://127.0.0.1:{scripted.server_address[1]}", timeout=3))
    assert result.error == error
    if mode == "ok":
        assert result.success and result.tokens == 2 and result.text == "OK" and result.ttft > 0


@pytest.mark.parametrize("mode,detail", [("flood", "a line over 1 MiB"), ("endless", "the answer ran over 16 MiB")])
def test_a_stream_that_never_ends_is_cut_off_at_its_bound_not_read_into_memory(scripted, mode, detail):
    """A hostile or broken server: a line without end, or tokens without end, is a broken
    stream once past its bound, long before the deadline (a loopback flood would otherwise fill
    memory at a GB a second until it)."""
    scripted.mode = mode
    result = run_probe(ProbeSpec(f"http://127.0.0.1:{scripted.server_address[1]}", timeout=60))
    assert result.error == "broken_stream" and result.detail == detail  # not "timeout": cut at the bound


def test_refused():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert run_probe(ProbeSpec(f"http://127.0.0.1:{port}", timeout=1)).error == "refused"


def test_collector_exports_histograms_errors_and_canary(tmp_path):
    answers = iter([ProbeResult(True, ttft=0.2, tpot=0.02, duration=0.3, tokens=8, text="OK"),
                    ProbeResult(False, "timeout", duration=10),
                    ProbeResult(True, ttft=0.3, tpot=0.03, duration=0.4, tokens=8, text="gibberish")])
    gate = threading.Event()

    def run(spec):
        gate.wait(5)
        gate.clear()
        try:
            return next(answers)
        except StopIteration:
            threading.Event().wait(60)

    c = ProbeCollector("llama", ProbeSpec("http://x"), interval=0.01, canary_regex="^OK$", run=run)
    try:
        for expected_runs in (1, 2, 3):
            gate.set()
            wait_until(lambda n=expected_runs: c.runs >= n, 5, 0.01, what=f"probe run {expected_runs}")
        snap = Snapshot(0.0, tuple(c.collect()))
        assert snap.value("llm_agent_probes_total") == 3
        assert snap.value("llm_agent_probe_ttft_seconds_count") == 2
        assert snap.value("llm_agent_probe_ttft_seconds_bucket", le="0.25") == 1
        assert snap.value("llm_agent_probe_errors_total", kind="timeout") == 1
        assert snap.value("llm_agent_probe_tokens_total") == 16
        assert snap.value("llm_agent_probe_success") == 1
        assert snap.value("llm_agent_probe_canary_match") == 0  # "gibberish" fails ^OK$
    finally:
        c.close()


def test_the_probes_families_are_made_again_only_after_a_probe_and_never_changed_by_a_merge():
    from agent.model import merge_families

    idle = threading.Event()  # the probe threads never run: record() is called as they would call it
    collectors = [ProbeCollector(name, ProbeSpec("http://x"), interval=60,
                                 run=lambda spec: (idle.wait(60), ProbeResult(False, "skipped"))[1]) for name in ("a", "b")]
    try:
        for c in collectors:
            c.record(ProbeResult(True, ttft=0.2, tpot=0.02, duration=0.3, tokens=8, text="OK"))
        first = [c.collect() for c in collectors]
        for _ in range(3):  # three cycles' merges of the same families, as the runner merges them
            merged, conflicts = merge_families(first)
            assert not conflicts
            assert Snapshot(0.0, tuple(merged)).sum_by("llm_agent_probes_total", "server") == {"a": 1, "b": 1}
        again = [c.collect() for c in collectors]
        assert all(x is y for f, g in zip(first, again) for x, y in zip(f, g))  # nothing ran: the same families
        for fams, server in zip(again, "ab"):  # each still holds its own series alone
            assert {s.label("server") for f in fams for s in f.samples} == {server}
        collectors[0].record(ProbeResult(False, "timeout", detail="no answer"))
        after = Snapshot(0.0, tuple(collectors[0].collect()))
        assert after.value("llm_agent_probes_total") == 2 and after.value("llm_agent_probe_success") == 0
        assert after.value("llm_agent_probe_errors_total", kind="timeout") == 1
        assert [p.message for p in collectors[0].problems] and not collectors[1].problems
        assert Snapshot(0.0, tuple(first[0])).value("llm_agent_probes_total") == 1  # the earlier snapshot's unchanged
    finally:
        idle.set()
        for c in collectors:
            c.close()
