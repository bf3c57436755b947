"""Basic auth under a flood: bcrypt's CPU is bounded, unknown users cost what known ones
cost, and the right password keeps working. Real bcrypt (cost 4 to keep the test quick)."""

import base64

import bcrypt

from agent.serve.websecurity import BasicAuth
from tests.support.clock import ManualClock

HASH = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=4)).decode()


def header(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_flood_of_wrong_passwords_runs_bcrypt_a_bounded_number_of_times():
    clock = ManualClock(0.0)
    auth = BasicAuth({"prom": HASH}, clock=clock)
    assert auth.check(header("prom", "right"), "10.0.0.1")  # Prometheus, before the flood
    for i in range(2000):
        clock.now += 0.001  # 2,000 attempts in two seconds
        assert not auth.check(header("prom", f"guess{i}"), "10.6.6.6")
        if i % 100 == 0:
            assert auth.check(header("prom", "right"), "10.0.0.1"), "the right password works all through"
    assert auth.bcrypt_checks <= 1 + 3 + 2 * 4, auth.bcrypt_checks  # a held-off client, and 4 a second in all
    assert auth.throttled > 1900


def test_a_repeated_wrong_pair_costs_no_bcrypt():
    auth = BasicAuth({"prom": HASH}, clock=ManualClock(0.0))
    auth.check(header("prom", "wrong"), "a")
    before = auth.bcrypt_checks
    for _ in range(50):
        assert not auth.check(header("prom", "wrong"), "b")
    assert auth.bcrypt_checks == before


def test_an_unknown_user_costs_a_bcrypt_like_a_known_one():
    auth = BasicAuth({"prom": HASH}, clock=ManualClock(0.0))
    assert not auth.check(header("nobody", "x"), "a")
    assert not auth.check(header("prom", "x"), "b")
    assert auth.bcrypt_checks == 2, "the unknown name went through bcrypt too: no timing difference"


def test_a_held_off_client_is_let_in_again_after_its_backoff():
    clock = ManualClock(0.0)
    auth = BasicAuth({"prom": HASH}, clock=clock)
    for i in range(5):
        auth.check(header("prom", f"no{i}"), "c")
    assert not auth.check(header("prom", "right"), "c"), "held off: not even bcrypt"
    clock.now += 61
    assert auth.check(header("prom", "right"), "c")
