"""Silences: the store (persistence, a full disk, retention), the engine's muting (a silenced
alert is announced when the silence ends, its resolve is muted), the API's write protection
and filters, with fuzzed input."""

import json
import random
import sqlite3

import pytest

from agent.model import Snapshot, gauge
from agent.notify.silences import RETENTION, Silences, maintenance_silence, parse_postable
from agent.rules.engine import Engine, InhibitRule, Rule
from agent.rules.history import History
from agent.promql.parser import PromQLError, parse, parse_matcher
from agent.serve.alertmanager_api import AlertmanagerAPI, parse_filter
from agent.store import Store
from tests.support.clock import ManualClock

T0 = 1_800_000_000.0


def postable(**over):
    doc = {"matchers": [{"name": "server", "value": "one", "isRegex": False}], "startsAt": "2020-01-01T00:00:00Z",
           "endsAt": "2099-01-01T00:00:00Z", "createdBy": "ops", "comment": "why"}
    doc.update(over)
    return doc


def silences(tmp_path, clock):
    return Silences(Store(str(tmp_path / "state.db")), clock)


def test_silences_persist_expire_and_are_forgotten_after_the_retention(tmp_path):
    clock = ManualClock(T0)
    store = silences(tmp_path, clock)
    _, s = parse_postable(postable(), clock())
    sid = store.add(s)
    assert store.silencing({"server": "one", "alertname": "X"}, clock()) == (sid,)
    assert store.silencing({"server": "two"}, clock()) == ()
    store.expire(sid)
    clock.now += 1
    assert store.silencing({"server": "one"}, clock()) == ()
    again = silences(tmp_path, clock)  # a restart
    assert again.get(sid).state(clock()) == "expired"
    clock.now += RETENTION + 1
    again.sync()
    assert again.get(sid) is None and silences(tmp_path, clock).get(sid) is None


def test_an_update_keeps_the_id_and_an_unknown_id_is_refused(tmp_path):
    clock = ManualClock(T0)
    store = silences(tmp_path, clock)
    sid = store.add(parse_postable(postable(), clock())[1])
    update, s = parse_postable(postable(id=sid, comment="longer"), clock())
    assert store.add(s, update) == sid and store.get(sid).comment == "longer"
    with pytest.raises(KeyError):
        store.add(s, "no-such-id")


def test_a_full_disk_keeps_silences_in_memory_and_saves_them_later(tmp_path):
    clock = ManualClock(T0)
    db = Store(str(tmp_path / "state.db"))
    store = Silences(db, clock)
    real = db.write
    db.write = lambda kind, work: False  # the disk refuses every write
    sid = store.add(parse_postable(postable(), clock())[1])
    assert store.silencing({"server": "one"}, clock()) == (sid,), "active at once, from memory"
    store.sync()
    db.write = real
    store.sync()
    assert Silences(Store(str(tmp_path / "state.db")), clock).get(sid) is not None


def engine_with(store, clock, inhibit=()):
    history = History()
    rule = Rule("Fault", parse("fault > 0"), severity="critical")
    engine = Engine([rule], history, inhibit)
    engine.silencing = store.silencing
    return engine, history


def cycle(engine, history, t, **values):
    fam = gauge("fault", "")
    for server, v in values.items():
        fam.add({"server": server}, v)
    history.ingest(Snapshot(t, (fam,)))
    return [(n.status, n.alert.labels["server"]) for n in engine.evaluate(t)]


def test_a_silenced_alert_is_announced_when_the_silence_ends_and_its_resolve_is_muted(tmp_path):
    clock = ManualClock(T0)
    store = silences(tmp_path, clock)
    engine, history = engine_with(store, clock)
    sid = store.add(parse_postable(postable(), clock())[1])
    assert cycle(engine, history, clock(), one=1, two=1) == [("firing", "two")]
    alert = next(a for a in engine.active() if a.labels["server"] == "one")
    assert alert.state == "firing" and alert.silenced_by == (sid,)
    clock.now += 5
    store.expire(sid)
    clock.now += 1
    assert cycle(engine, history, clock(), one=1, two=1) == [("firing", "one")]
    store.add(parse_postable(postable(), clock())[1])  # silenced again, after it was announced
    clock.now += 5
    assert cycle(engine, history, clock(), one=0, two=0) == [("resolved", "two")], "one's resolve is muted"


def test_inhibited_alerts_name_their_source():
    history = History()
    rules = [Rule("Down", parse("down > 0"), severity="critical"), Rule("Slow", parse("slow > 0"), severity="warning")]
    inhibit = [InhibitRule((parse_matcher("alertname=Down"),), (parse_matcher("alertname=Slow"),), ("server",))]
    engine = Engine(rules, history, inhibit)
    history.ingest(Snapshot(T0, (gauge("down", "").add({"server": "a"}, 1), gauge("slow", "").add({"server": "a"}, 1))))
    engine.evaluate(T0)
    by = {a.labels["alertname"]: a for a in engine.active()}
    assert by["Slow"].inhibited and by["Slow"].inhibited_by == by["Down"].fingerprint


AMTOOL = {"content-type": "application/json", "host": "127.0.0.1:9093"}  # what amtool's requests carry


def api(tmp_path, write_from=(), auth=False):
    clock = ManualClock(T0)
    alerts = [{"labels": {"alertname": "Fault", "server": "one"}, "annotations": {}, "startsAt": "", "updatedAt": "",
               "endsAt": "", "fingerprint": "f1", "receivers": ["hook"], "inhibited_by": ""},
              {"labels": {"alertname": "Fault", "server": "two"}, "annotations": {}, "startsAt": "", "updatedAt": "",
               "endsAt": "", "fingerprint": "f2", "receivers": ["pager"], "inhibited_by": "f9"}]
    return AlertmanagerAPI(silences(tmp_path, clock), lambda: alerts, lambda: ["hook", "pager"], clock, "host",
                           auth, write_from)


def test_writes_from_elsewhere_are_refused_unless_listed_and_counted(tmp_path):
    a = api(tmp_path)
    body = json.dumps(postable()).encode()
    assert a.handle("POST", "/api/v2/silences", body, "127.0.0.1", AMTOOL)[0] == 200
    assert a.handle("POST", "/api/v2/silences", body, "::1", AMTOOL)[0] == 200
    assert a.handle("POST", "/api/v2/silences", body, "::ffff:127.0.0.1", AMTOOL)[0] == 200
    code, text, _ = a.handle("POST", "/api/v2/silences", body, "192.0.2.7", AMTOOL)
    assert code == 403 and "api_write_from" in json.loads(text)
    assert a.handle("DELETE", "/api/v2/silence/x", b"", "192.0.2.7", AMTOOL)[0] == 403
    assert a.refused == {"not_allowed": 2}
    assert a.handle("GET", "/api/v2/silences", b"", "192.0.2.7")[0] == 200, "reads are open (basic auth guards them)"
    listed = api(tmp_path, write_from=["192.0.2.0/24"])
    assert listed.handle("POST", "/api/v2/silences", body, "192.0.2.7", AMTOOL)[0] == 200
    assert listed.handle("POST", "/api/v2/silences", body, "198.51.100.1", AMTOOL)[0] == 403
    assert api(tmp_path, auth=True).handle("POST", "/api/v2/silences", body, "198.51.100.1", AMTOOL)[0] == 200


def test_alert_filters_states_and_receivers(tmp_path):
    a = api(tmp_path)

    def servers(query):
        code, body, _ = a.handle("GET", "/api/v2/alerts?" + query, b"", "127.0.0.1")
        assert code == 200, body
        return [(x["labels"]["server"], x["status"]["state"]) for x in json.loads(body)]

    assert servers("") == [("one", "active"), ("two", "suppressed")]
    assert servers("inhibited=false") == [("one", "active")]
    assert servers("active=false") == [("two", "suppressed")]
    assert servers("filter=server%3D%22two%22") == [("two", "suppressed")]
    assert servers("filter=%7Bserver%3D~%22t.*%22%2Calertname%3D%22Fault%22%7D") == [("two", "suppressed")]
    assert servers("receiver=pag.*") == [("two", "suppressed")]
    a.handle("POST", "/api/v2/silences", json.dumps(postable()).encode(), "127.0.0.1", AMTOOL)
    assert servers("silenced=false") == [("two", "suppressed")], "one is silenced now, two inhibited"
    assert servers("silenced=false&inhibited=false") == []
    assert a.handle("GET", "/api/v2/alerts?active=maybe", b"", "127.0.0.1")[0] == 400


def test_maintenance_silences_every_alert_or_one_target(tmp_path):
    whole = parse_postable(maintenance_silence(1800, "", "upgrade", T0), T0)[1]
    one = parse_postable(maintenance_silence(1800, "llama", "", T0), T0)[1]
    assert whole.target == "" and one.target == "llama" and one.comment == "maintenance"
    assert all(m.op == "=~" for m in whole.matchers)
    a = api(tmp_path)
    body = json.dumps(maintenance_silence(1800, "", "upgrade", T0)).encode()
    assert a.handle("POST", "/api/v2/silences?maintenance=1", body, "127.0.0.1", AMTOOL)[0] == 200
    assert [s.maintenance for s in a.silences.all()] == [True]


RULES = [{"alertname": "LlmTargetDown", "severity": "critical"}, {"alertname": "GpuHot", "severity": "warning"},
         {"alertname": "CostTrend", "severity": "info", "team": "finance"}]


def test_a_silence_of_every_alert_is_refused_unless_forced_on_the_host(tmp_path):
    """Issue 27: `alertname=~".+"` and `severity=~"critical|warning|info"` were accepted though the
    README said they were refused."""
    a = api(tmp_path, write_from=["192.0.2.0/24"])
    a.rule_labels = lambda: RULES

    def post(matchers, client="127.0.0.1", query=""):
        doc = dict(postable(), matchers=[{"name": n, "value": v, "isRegex": r} for n, v, r in matchers])
        return a.handle("POST", "/api/v2/silences" + query, json.dumps(doc).encode(), client, AMTOOL)

    for everything in ([("alertname", ".+", True)], [("severity", "critical|warning|info", True)]):
        code, text, _ = post(everything)
        assert code == 400 and "every alert of this host" in json.loads(text)
        assert post(everything, query="?force=1")[0] == 200, "forced on the host itself"
        assert post(everything, "192.0.2.7", "?force=1")[0] == 403, "not from an allowed network"
    assert post([("severity", "critical|warning", True)])[0] == 200, "not the info alerts"
    assert post([("alertname", "GpuHot", False)], "192.0.2.7")[0] == 200


def test_a_silence_through_the_api_cannot_pose_as_maintenance(tmp_path):
    """createdBy is any client's to write: a window that drains the box is made on the host."""
    a = api(tmp_path, write_from=["192.0.2.0/24"])
    posing = json.dumps(dict(postable(), createdBy="llm-agent maintenance")).encode()
    code, text, _ = a.handle("POST", "/api/v2/silences", posing, "192.0.2.7", AMTOOL)
    assert code == 400 and "reserved" in json.loads(text)
    assert a.handle("POST", "/api/v2/silences?maintenance=1", posing, "192.0.2.7", AMTOOL)[0] == 403
    assert a.silences.maintenance() == []


def test_fuzzed_silences_and_filters_never_raise_anything_but_their_errors(tmp_path):
    rng = random.Random(7)
    pieces = ['"', "{", "}", "=", "=~", "!~", "!=", ",", "a", "server", "(", ")", ".*", "\\", "é", " ", "\x00", "[",
              "1", "null", "true", ":", "matchers", "startsAt"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        try:
            parse_filter(text)
        except PromQLError:
            pass
        try:
            doc = json.loads(text)
        except ValueError:
            doc = {"matchers": [{"name": text, "value": text, "isRegex": rng.random() < 0.5}],
                   "startsAt": text, "endsAt": "2099-01-01T00:00:00Z", "createdBy": text, "comment": text}
        try:
            parse_postable(doc, T0)
        except ValueError:
            pass


def test_the_store_schema_has_the_silences_table(tmp_path):
    db = Store(str(tmp_path / "state.db"))
    assert db.db.execute("SELECT count(*) FROM silences").fetchone() == (0,)
    with pytest.raises(sqlite3.IntegrityError):
        db.db.execute("INSERT INTO silences (id, doc) VALUES (NULL, NULL)")
