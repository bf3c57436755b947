"""A target's life (never up, up, restarting, down, gone): only a real loss pages. The state
machine, systemd's word on an exit, and discovery letting go of a server that left."""

import json
import os
import subprocess
import sys
import time

import pytest

from agent.collectors.lifecycle import Exit, Seen, TargetLife
from agent.collectors.unitstate import UnitStates, classify, parse_show
from agent.config import TargetConfig
from agent.discovery import Held, hold_missing


class Clock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t


def test_a_target_that_never_answered_is_never_up_and_one_that_did_is_down_after(tmp_path):
    clock = Clock()
    life = TargetLife("a", "llamacpp", Seen(str(tmp_path)), clock)
    assert life.observe(False) == "never_up"
    assert life.observe(False, answered=False) == "never_up"
    assert life.observe(True) == "up"
    assert life.observe(False) == "down"  # a crash: no exit known, or not planned
    assert life.observe(True) == "up"


def test_an_http_error_is_an_answer(tmp_path):
    life = TargetLife("a", "openmetrics", Seen(str(tmp_path)), Clock())
    assert life.observe(False, answered=True) == "down"


def test_ever_up_survives_a_restart_of_the_agent_and_a_corrupt_file_is_no_crash(tmp_path):
    TargetLife("a", "llamacpp", Seen(str(tmp_path)), Clock()).observe(True)
    again = TargetLife("a", "llamacpp", Seen(str(tmp_path)), Clock())
    assert again.observe(False) == "down"  # the agent restarted while the server was down: still a loss
    assert TargetLife("b", "llamacpp", Seen(str(tmp_path)), Clock()).observe(False) == "never_up"
    (tmp_path / "targets.json").write_text("{not json")
    assert TargetLife("a", "llamacpp", Seen(str(tmp_path)), Clock()).observe(False) == "never_up"


def test_seen_is_bounded_and_forgets_a_gone_target(tmp_path):
    seen = Seen(str(tmp_path), clock=Clock())
    for i in range(300):
        seen.mark(f"t{i}")
    doc = json.loads((tmp_path / "targets.json").read_text())
    assert len(doc["last_up"]) == 256
    seen.forget("t299")
    assert not Seen(str(tmp_path)).has("t299")


def test_a_planned_exit_is_restarting_for_its_grace_then_down(tmp_path):
    clock = Clock()
    exits = []
    life = TargetLife("a", "llamacpp", Seen(str(tmp_path)), clock, lambda: exits[-1] if exits else None, restart_grace=120)
    life.observe(True)
    exits.append(Exit(clock.t, True, "llama.service"))
    assert life.observe(False) == "restarting"
    clock.t += 119
    assert life.observe(False) == "restarting"
    clock.t += 1
    assert life.observe(False) == "down"  # not back within restart_grace: now it pages
    assert life.observe(True) == "up"
    exits.append(Exit(clock.t, False, "llama.service"))
    assert life.observe(False) == "down"  # a crash pages at once
    exits.append(Exit(clock.t, None, ""))
    assert life.observe(False) == "down"  # nobody could tell (no systemd): a crash


def test_the_state_series_has_one_state_set():
    life = TargetLife("a", "llamacpp", Seen(""), Clock())
    fam = life.families()[0]
    assert {s.labels: s.value for s in fam.samples} == {
        (("server", "a"), ("kind", "llamacpp"), ("state", st)): (1 if st == "never_up" else 0)
        for st in ("never_up", "up", "restarting", "down")}


# -- systemd's word on an exit: captured `systemctl show` property sets ---------------------------

SHOW_CASES = [
    ("ActiveState=deactivating\nSubState=stop-sigterm\nResult=success\nLoadState=loaded\n", True),  # systemctl stop/restart
    ("ActiveState=activating\nSubState=start\nResult=success\nLoadState=loaded\n", True),  # restart, starting again
    ("ActiveState=inactive\nSubState=dead\nResult=success\nLoadState=loaded\n", True),  # stopped
    ("ActiveState=active\nSubState=running\nResult=success\nLoadState=loaded\n", False),  # killed behind systemd's back
    ("ActiveState=activating\nSubState=auto-restart\nResult=signal\nLoadState=loaded\n", False),  # Restart=on-failure
    ("ActiveState=failed\nSubState=failed\nResult=exit-code\nLoadState=loaded\n", False),
    ("ActiveState=inactive\nSubState=dead\nResult=oom-kill\nLoadState=loaded\n", False),
    ("ActiveState=inactive\nSubState=dead\nResult=success\nLoadState=not-found\n", None),  # no such unit
    ("", None),
    ("garbage\n=x\n", None),
]


@pytest.mark.parametrize("text,planned", SHOW_CASES)
def test_classify_systemctl_show(text, planned):
    assert classify(parse_show(text)) is planned


def test_unit_states_through_a_fake_systemctl(tmp_path):
    fake = tmp_path / "systemctl"
    fake.write_text(f"#!{sys.executable}\nimport sys\nassert sys.argv[1] == 'show' and sys.argv[-1] == 'llama.service'\n"
                    "print('ActiveState=deactivating\\nSubState=stop-sigterm\\nResult=success\\nLoadState=loaded')\n")
    fake.chmod(0o755)
    assert UnitStates(str(fake)).exit_was_planned("llama.service") is True
    assert UnitStates(str(tmp_path / "missing")).exit_was_planned("llama.service") is None  # no systemd: a crash
    assert UnitStates("").exit_was_planned("llama.service") is None
    assert UnitStates(str(fake)).exit_was_planned("") is None  # not a service


def test_a_hanging_systemctl_is_given_up_on(tmp_path):
    fake = tmp_path / "systemctl"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    start = time.monotonic()
    assert UnitStates(str(fake), timeout=0.3).exit_was_planned("x.service") is None
    assert time.monotonic() - start < 5


def test_the_process_collector_asks_systemd_when_its_process_exits(tmp_path):
    from agent.collectors.process import ProcessCollector

    asked = []

    class Units:
        def exit_was_planned(self, unit):
            asked.append(unit)
            return True

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        c = ProcessCollector("a", "http://127.0.0.1:1", finder=lambda port: child.pid, units=Units(), clock=Clock(5.0))
        assert c.alive()
        c.unit = "llama.service"  # this test's child runs in whatever cgroup pytest has
        child.kill()
        child.wait()
        assert not c.alive()
    finally:
        if child.poll() is None:
            child.kill()
    assert asked == ["llama.service"]
    assert (c.last_exit.at, c.last_exit.planned, c.last_exit.unit) == (5.0, True, "llama.service")


# -- discovery lets go of a server that left -----------------------------------------------------

def t(name, port):
    return TargetConfig(name=name, url=f"http://127.0.0.1:{port}", kind="llamacpp")


GUESS = t("llama-server-8080", 8080)


def test_a_missing_server_is_held_for_gone_after_then_let_go():
    held, gone = hold_missing({}, [t("llama-server-8081", 8081)], False, 0.0, 120)
    assert list(held) == ["llama-server-8081"] and gone == []
    held, gone = hold_missing(held, [GUESS], True, 10.0, 120)  # nothing found: held, no guess beside it
    assert list(held) == ["llama-server-8081"] and held["llama-server-8081"].missing_since == 10.0 and gone == []
    held, gone = hold_missing(held, [GUESS], True, 129.0, 120)
    assert list(held) == ["llama-server-8081"]
    held, gone = hold_missing(held, [GUESS], True, 130.0, 120)
    assert held == {} and [g.target.name for g in gone] == ["llama-server-8081"]  # the guess comes at the next
    held, gone = hold_missing(held, [GUESS], True, 160.0, 120)
    assert list(held) == ["llama-server-8080"] and held["llama-server-8080"].guessed and gone == []


def test_a_server_back_within_its_grace_is_kept():
    held, _ = hold_missing({}, [t("a", 1)], False, 0.0, 120)
    held, _ = hold_missing(held, [GUESS], True, 30.0, 120)
    held, gone = hold_missing(held, [t("a", 1)], False, 60.0, 120)
    assert held == {"a": Held(t("a", 1))} and gone == []


def test_the_guess_goes_as_soon_as_a_server_is_found():
    held, _ = hold_missing({}, [GUESS], True, 0.0, 120)
    held, gone = hold_missing(held, [t("vllm-8000", 8000)], False, 30.0, 120)
    assert list(held) == ["vllm-8000"] and [(g.target.name, g.guessed) for g in gone] == [("llama-server-8080", True)]


def test_a_crashed_server_at_the_guessed_address_is_let_go_like_any_other():
    held, _ = hold_missing({}, [t("llama-server-8080", 8080)], False, 0.0, 120)
    held, gone = hold_missing(held, [GUESS], True, 10.0, 120)
    assert not held["llama-server-8080"].guessed and held["llama-server-8080"].missing_since == 10.0
    held, gone = hold_missing(held, [GUESS], True, 200.0, 120)
    assert held == {} and [g.guessed for g in gone] == [False]


def test_seen_file_is_the_state_dirs_own(tmp_path):
    Seen(str(tmp_path)).mark("a")
    assert os.listdir(tmp_path) == ["targets.json"]


@pytest.mark.parametrize("state,probes", [("never_up", False), ("up", True), ("restarting", False), ("down", False)])
def test_the_probe_waits_unless_its_target_is_up(tmp_path, state, probes):
    # a probe of a server that is down could only fail: LlmTargetDown pages for it, and the failed
    # probe would page again minutes later (LlmProbeErrorRate), after the server came back
    from agent.config import parse_config
    from agent.plugins import Context
    from agent.probes.collector import _build

    life = TargetLife("llama", "llamacpp", Seen(str(tmp_path)))
    life.state = state
    probe = _build(Context(parse_config('[probes]\ninterval = "1s"\n')), TargetConfig("llama", "http://127.0.0.1:9"),
                   life)
    try:
        assert probe.waiting() is not probes
    finally:
        probe.close()
