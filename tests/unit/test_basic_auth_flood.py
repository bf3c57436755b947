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


def test_a_spray_after_a_restart_cannot_lock_out_a_client_that_verified_before(tmp_path):
    """Issue 27: after a restart the verified pairs are gone, and a password spray from many
    addresses spent the shared bcrypt budget: the right client was locked out as long as the
    spray lasted. An address that verified before has a budget the strangers cannot spend."""
    before = BasicAuth({"prom": HASH}, clock=ManualClock(0.0))
    before.remember_in(str(tmp_path))
    assert before.check(header("prom", "right"), "10.0.0.1")
    assert "right" not in (tmp_path / "auth-clients.json").read_text()  # addresses only
    clock = ManualClock(100.0)
    after = BasicAuth({"prom": HASH}, clock=clock)  # the agent restarted
    after.remember_in(str(tmp_path))
    ok = 0
    for i in range(4000):
        clock.now += 0.0005  # 2,000 guesses a second, each from its own address
        after.check(header("prom", f"guess{i}"), f"203.0.{i // 250}.{i % 250}")
        if i % 400 == 399:  # the shared budget is long spent when it comes
            ok += after.check(header("prom", "right"), "10.0.0.1")
    assert ok == 10, "verified at its first try, and remembered from then on"
    assert after.bcrypt_checks <= 2 * (4 + 4 * 2) + 2
    stranger = BasicAuth({"prom": HASH}, clock=ManualClock(0.0))  # no memory: the shared budget only
    assert stranger.known == {}
