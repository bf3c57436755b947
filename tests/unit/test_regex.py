"""agent/regex.py answers without RE2 for plain patterns and the shipped ones: each answer is
RE2's own, compared on fuzzed patterns and text (newlines, non-ASCII, prefixes of the words)."""

import random

import re2

from agent import regex
from agent.config import parse_config
from agent.promql.vectorfuncs import expand

WORDS = ["", "a", "ab", "lo", "veth0", "LlmTargetDown", "hw_slowdown", "gpu:0", "br-x", "a b", "/dev", "-"]
NOISE = ["", "a", "\n", "é", "/", ".", "x", " ", "\n/"]
TEMPLATES = ["$0", "${0}!", "$1", "${1}", "$name", "a$$b", "$", "${", "set"]


def texts(rng, words):
    for _ in range(60):
        yield rng.choice(NOISE) + rng.choice(words) + rng.choice(NOISE) if rng.random() < 0.5 else rng.choice(words)


def test_plain_patterns_match_as_re2_does():
    rng = random.Random(7)
    for _ in range(400):
        pattern = rng.choice([".+", ".*"]) if rng.random() < 0.1 else "|".join(rng.sample(WORDS, rng.randint(1, 4)))
        assert regex.check(pattern) == pattern
        plain = regex.whole(pattern)
        real = re2.compile("^(?:" + pattern + ")$")
        assert not isinstance(plain, type(real)), pattern  # answered without RE2
        for text in texts(rng, WORDS + [pattern]):
            want = real.search(text)
            assert regex.fullmatch(pattern, text) is (re2.fullmatch(pattern, text) is not None), (pattern, text)
            got = plain.search(text)
            assert (got is None) is (want is None), (pattern, text)
            if want is not None:
                for template in TEMPLATES:
                    assert expand(template, got, plain.groupindex) == expand(template, want, real.groupindex)


def test_a_pattern_with_an_operator_is_re2s():
    for pattern in ["a.b", "a|b+", "(a|b)", "^(?:a|b)$|c", "[ab]", "a\\|b"]:
        assert isinstance(regex.whole(pattern), type(re2.compile("a")))
    assert isinstance(regex.compile("a|b"), type(re2.compile("a")))  # search needs RE2's semantics
    assert regex.fullmatch("a.c", "abc") and not regex.fullmatch("a|b+", "c")


def test_the_shipped_patterns_search_as_re2_does():
    host = parse_config("").collectors.host
    assert set(regex.SHIPPED) == {host.mount_points_exclude, host.net_devices_exclude}
    parts = ["/", "dev", "proc", "sys", "run", "credentials", "var", "lib", "docker", "kubelet", "lo", "veth", "br-",
             "eth0", "\n", "é", "x", "", "devices", "/dev/", "systemd"]
    rng = random.Random(11)
    for pattern, equivalent in regex.SHIPPED.items():
        real = re2.compile(pattern)
        assert regex.compile(pattern) is equivalent
        for _ in range(5000):
            text = "".join(rng.choice(parts) for _ in range(rng.randint(0, 6)))
            if rng.random() < 0.5:
                text = "/" + text
            assert (equivalent.search(text) is None) is (real.search(text) is None), (pattern, text)
