"""The HTTP endpoint: cached bytes, content negotiation, gzip, bad requests, slow clients."""

import gzip
import socket

import bcrypt
import pytest
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

from agent.serve.exporter import Exporter, ExporterError, accepts_gzip, negotiate
from agent.serve.websecurity import BasicAuth
from agent.model import Snapshot, counter, gauge
from tests.support.peers import wait_until

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


@pytest.fixture
def exporter():
    e = Exporter("127.0.0.1", 0, max_threads=2, request_timeout=0.5, max_connections=8).start()
    e.publish(Snapshot(1.0, (gauge("a_gauge", "A gauge.").add({"x": "1"}, 2.5),
                             counter("a_thing_total", "A counter.").add({}, 7))))
    yield e
    e.stop()


def url(e, path="/metrics"):
    return f"http://127.0.0.1:{e.port}{path}"


def test_negotiation():
    assert negotiate(PROMETHEUS_ACCEPT) == "openmetrics"
    assert negotiate("text/plain;version=0.0.4") == "text"
    assert negotiate("") == "text"
    assert negotiate("application/openmetrics-text;q=0.1,text/plain;q=0.9") == "text"
    assert accepts_gzip("gzip, deflate") and not accepts_gzip("identity") and not accepts_gzip("gzip;q=0")


def test_text_by_default(exporter):
    r = requests.get(url(exporter))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert 'a_gauge{x="1"} 2.5' in r.text and "a_thing_total 7" in r.text


def test_openmetrics_when_prometheus_asks(exporter):
    r = requests.get(url(exporter), headers={"Accept": PROMETHEUS_ACCEPT})
    assert r.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    fams = {f.name: f for f in om_parse(r.text)}
    assert fams["a_thing"].type == "counter"


def test_gzip_on_request(exporter):
    r = requests.get(url(exporter), headers={"Accept-Encoding": "gzip"}, stream=True)
    assert r.headers["Content-Encoding"] == "gzip"
    assert b"a_gauge" in gzip.decompress(r.raw.read())
    plain = requests.get(url(exporter), headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers


def test_serves_the_published_bytes_without_collecting(exporter):
    first = requests.get(url(exporter)).content
    assert requests.get(url(exporter)).content == first
    exporter.publish(Snapshot(2.0, (gauge("b", "B.").add({}, 1),)))
    assert b"b 1" in requests.get(url(exporter)).content


def test_other_paths_and_methods(exporter):
    assert requests.get(url(exporter, "/nope")).status_code == 404
    r = requests.post(url(exporter), data=b"x")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    head = requests.head(url(exporter))
    assert head.status_code == 200 and head.content == b""
    assert requests.get(url(exporter, "/")).status_code == 200
    health = requests.get(url(exporter, "/healthz"))
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_garbage_request_gets_400_and_the_server_lives(exporter):
    with socket.create_connection(("127.0.0.1", exporter.port)) as s:
        s.sendall(b"\x16\x03\x01garbage that is not HTTP\r\n\r\n")  # a TLS hello, say
        answer = b"".join(iter(lambda: s.recv(4096), b""))
        assert answer.startswith(b"HTTP/1.1 400 Bad Request")
    assert requests.get(url(exporter)).status_code == 200


def test_silent_clients_hold_no_worker():
    e = Exporter("127.0.0.1", 0, max_threads=2, request_timeout=30, max_connections=64).start()
    e.publish(Snapshot(1.0, (gauge("a_gauge", "A gauge.").add({}, 1),)))
    idle = [socket.create_connection(("127.0.0.1", e.port)) for _ in range(20)]  # 10x the workers
    slow = socket.create_connection(("127.0.0.1", e.port))
    slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # half a request, then silence
    try:
        for _ in range(5):
            # answered at once, not after the 30 s request timeout the idle ones are allowed
            assert requests.get(url(e), timeout=2).status_code == 200
        assert e.rejected == 0
    finally:
        for s in idle + [slow]:
            s.close()
        e.stop()


def test_past_max_connections_the_longest_idle_makes_room_for_a_scrape(exporter):
    idle = [socket.create_connection(("127.0.0.1", exporter.port)) for _ in range(20)]  # max_connections is 8
    try:
        for _ in range(3):
            assert requests.get(url(exporter), timeout=2).status_code == 200
        wait_until(lambda: exporter.rejected >= 12, 3, what="the oldest idle connections dropped")
        first_alive = idle[0].recv(1) if idle[0].fileno() >= 0 else b""
        assert first_alive == b"", "the longest idle connection was the one dropped"
    finally:
        for s in idle:
            s.close()


def test_an_oversized_request_head_is_refused_with_bounded_memory(exporter):
    with socket.create_connection(("127.0.0.1", exporter.port)) as s:
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 40000 + b"\r\n\r\n")
        except OSError:
            pass  # the server may close before reading it all
        answer = b"".join(iter(lambda: s.recv(4096), b""))
    assert answer.startswith(b"HTTP/1.1 431")


def test_a_client_that_does_not_read_its_answer_is_cut_off(exporter):
    big = gauge("big", "Big.")
    for i in range(50_000):
        big.add({"i": str(i)}, i)
    exporter.publish(Snapshot(1.0, (big,)))
    s = socket.create_connection(("127.0.0.1", exporter.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
    try:
        assert requests.get(url(exporter), timeout=2).status_code == 200, "others are served meanwhile"
        wait_until(lambda: not exporter._conns or all(c.sock is not s for c in exporter._conns.values()), 3,
                   what="the non-reader dropped after the request timeout")
    finally:
        s.close()


def test_port_in_use_names_the_port_and_the_key():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ExporterError) as e:
            Exporter("127.0.0.1", port, config_source="/etc/llm-agent/agent.toml")
    assert str(e.value) == (f"cannot listen on 127.0.0.1:{port}: the port is already in use; "
                            "set [exporter] listen in /etc/llm-agent/agent.toml to a free port")


def test_the_event_loop_outlives_an_unexpected_error(exporter, caplog):
    calls = {"n": 0}
    real = exporter._expire

    def flaky(now):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        real(now)

    exporter._expire = flaky
    # the loop sleeps until a socket wakes it: the request's accept is the turn that raises, and
    # the turns after it serve the request
    assert requests.get(url(exporter), timeout=2).status_code == 200
    assert calls["n"] >= 2
    assert "event loop error (RuntimeError: boom)" in caplog.text


def test_an_exposition_serves_either_format_first_and_cuts_the_other_from_it():
    """Each format, asked first or second, gzipped or not, is exactly what render_both writes:
    the second is cut from the first one's body (the spans live with the exposition, not the
    renderer, which holds no snapshot)."""
    from agent.expfmt import render_both
    from agent.expfmt.render import Renderer
    from agent.serve.exporter import Exposition

    renderer = Renderer()
    for cycle in range(4):
        snap = Snapshot(float(cycle), (gauge("g", 'a "help"').add({"gpu": "0", "v": "é"}, cycle),
                                       counter("c_total", "h").add({}, 2 * cycle), gauge("empty", "h")))
        text, om = render_both(snap.families)
        expo = Exposition(snap, renderer)
        order = ("openmetrics", "text") if cycle % 2 else ("text", "openmetrics")
        got = {fmt: expo.body(fmt, gzipped=bool(cycle & 2)) for fmt in order}
        if cycle & 2:
            got = {fmt: gzip.decompress(body) for fmt, body in got.items()}
        assert got == {"text": text, "openmetrics": om}, cycle
    assert not hasattr(renderer, "_last")


def gauge_at(v):
    return (gauge("g", "G.").add({}, v),)


def cycles(e, now, n, families, scrape):
    """`n` cycles 5 s apart from now[0], each as the daemon runs it (publish, then the render
    ahead once its own work is done); every third, `scrape(i)` 1 s after it."""
    for i in range(n):
        e.publish(Snapshot(now[0], families(i)))
        e.render_ahead()
        if i % 3 == 0:
            now[0] += 1
            scrape(i)
            now[0] -= 1
        now[0] += 5


def scrape_expecting(e, code_of):
    """A scrape for `cycles` that asserts its status: `code_of(i)`."""
    def scrape(i):
        assert requests.get(url(e)).status_code == code_of(i), f"scrape {i}"
    return scrape


@pytest.fixture
def clocked():
    """`clocked(**exporter_args)`: (an exporter whose scrape clock is `now[0]`, now)."""
    made = []

    def make(**kwargs):
        now = [0.0]
        made.append(Exporter("127.0.0.1", 0, max_threads=2, clock=lambda: now[0], **kwargs).start())
        return made[-1], now
    yield make
    for e in made:
        e.stop()


def test_the_snapshot_a_scraper_will_take_is_rendered_at_publish_and_served_by_the_event_loop(clocked):
    e, now = clocked()

    def scrape(v):
        r = requests.get(url(e), headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
        assert r.status_code == 200 and r.headers["Content-Encoding"] == "gzip"
        assert f"g {v}\n" in r.text and r.text.endswith("# EOF\n")

    cycles(e, now, 9, gauge_at, scrape)
    # scrapes at 1 and 16 taught the clock; the one at 31 found its body made at 30
    assert (e.rendered_ahead, e.answered_by_loop) == (1, 1)
    requests.get(url(e))  # someone asks for text now: rendered on request, by a worker
    assert e.answered_by_loop == 1
    assert e.stats.copy()[("/metrics", "200")] == 4


def test_with_basic_auth_a_body_rendered_ahead_is_still_answered_by_a_worker(clocked):
    e, now = clocked(auth=BasicAuth({"prom": bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode()}))

    def scrape(i):
        r = requests.get(url(e), auth=("prom", "secret" if i < 6 else "wrong"))
        assert r.status_code == (200 if i < 6 else 401)

    cycles(e, now, 7, gauge_at, scrape)
    assert e.rendered_ahead == 1 and e.answered_by_loop == 0


def test_a_render_that_fails_ahead_does_not_stop_the_cycle_and_the_scrape_says_500(clocked):
    e, now = clocked()

    class Broken:
        name, type, help = "broken", "gauge", "B."

        @property
        def samples(self):
            raise RuntimeError("a render bug")

    cycles(e, now, 7, lambda i: gauge_at(i) if i < 5 else (Broken(),),
           scrape_expecting(e, lambda i: 200 if i < 6 else 500))
    assert e.rendered_ahead == 0 and e.answered_by_loop == 0


def test_two_scrapers_on_one_host_are_told_apart_by_user_agent(clocked):
    e, now = clocked()

    def scrape(i):  # Prometheus 1 s after a cycle; vmagent 2 s later, from the same address
        for offset, agent in ((0, "Prometheus/2.42.0"), (2, "vm_promscrape")):
            now[0] += offset
            assert requests.get(url(e), headers={"User-Agent": agent}).status_code == 200
            now[0] -= offset

    cycles(e, now, 9, gauge_at, scrape)
    # vmagent's scrapes take the body Prometheus' made 2 s before them; the third scrape of
    # each found its body made at publish: one render ahead for both, four answers by the loop
    assert (e.rendered_ahead, e.answered_by_loop) == (1, 4)


def test_a_body_over_a_megabyte_is_left_to_its_scrape(clocked):
    e, now = clocked()
    big = gauge("g", "G.")
    for i in range(25_000):
        big.add({"series": f"{i:08d}", "pad": "x" * 20}, i)
    # the host grows at 20 s: its bodies are over a megabyte from then on
    cycles(e, now, 12, lambda i: (big,) if i >= 4 else gauge_at(i),
           scrape_expecting(e, lambda i: 200))
    # at 30 the last body was small: rendered ahead (and found over a megabyte); at 45, not
    assert (e.rendered_ahead, e.answered_by_loop) == (1, 1)
