"""Hang detection's clock: from the first silent request, re-checked at once, decided at hang_after."""

from agent.collectors.liveness import MIN_RECHECK, Liveness


class AliveProcess:
    local = True
    proc = None

    def alive(self):
        return True


def test_the_hang_clock_starts_when_the_first_silent_request_was_sent():
    now = [103.0]
    rechecks = []
    live = Liveness("llama", lambda: now[0], AliveProcess(), hang_after=5, recheck=lambda: rechecks.append(now[0]))
    assert live.health_deadline(100.0, 103.0) == 103.0, "nothing suspected: the cycle's own deadline"
    live.observe(True, asked_at=100.0)  # sent at 100, timed out at 103
    assert not live.hung and rechecks == [103.0], "a live process that did not answer is checked again at once"
    assert live.health_deadline(103.0, 106.0) == 105.0, "the re-check gives up exactly at hang_after"
    now[0] = 105.0
    live.observe(True, asked_at=103.0)
    assert live.hung, "5 s without an answer from the first silent request"
    assert rechecks == [103.0], "hung: back to the normal cadence"
    assert live.health_deadline(110.0, 113.0) == 113.0


def test_an_answer_resets_the_clock_and_a_late_recheck_still_gets_its_minimum():
    now = [103.0]
    live = Liveness("llama", lambda: now[0], AliveProcess(), hang_after=5)
    live.observe(True, asked_at=100.0)
    now[0] = 104.9
    assert live.health_deadline(104.8, 107.8) == 104.8 + MIN_RECHECK
    live.observe(False)
    assert live.timeout_since is None and not live.hung
    now[0] = 110.0
    live.observe(True, asked_at=107.0)
    assert not live.hung and live.timeout_since == 107.0


def test_a_remote_target_is_not_rechecked_or_called_hung():
    rechecks = []
    live = Liveness("remote", lambda: 200.0, None, hang_after=5, recheck=lambda: rechecks.append(1))
    live.observe(True, asked_at=100.0)
    assert not live.hung and rechecks == [], "no local process: it is down, not hung; the tick is soon enough"
