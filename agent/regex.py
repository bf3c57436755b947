"""Regular expressions as Prometheus, Alertmanager and node_exporter run them: RE2 syntax
(Go's regexp), matched in time linear in the input, so a hostile label value or a careless
pattern such as `(a+)+b` can never stall a cycle. google-re2 is the RE2 library itself;
Python's `re` backtracks and accepts syntax (lookarounds, backreferences) Prometheus refuses.

RE2 costs ~4 us a call from Python where `re` costs ~0.1 us, and the same label values are
matched every cycle, so full-match results are cached per pattern (bounded).

RE2, with the libstdc++ under it, is also 2.7 MiB resident for the daemon's life, so it loads
only for a pattern that needs it: plain words joined by `|` (the default rules' `alertname=~A|B`),
`.+` and `.*` are matched here as RE2 matches them, and the patterns the agent ships (the host
collector's excludes, registered with `shipped`) run on Python's `re` in a form written to match
as RE2 does and never backtrack more than once over the input (test_regex: equal on fuzzed text).
"""

from __future__ import annotations

import functools
import re
from typing import Any, Dict, Optional, Pattern

# RE2 reads a repeat count too large for an int as literal text; Go's regexp refuses it
_HUGE_REPEAT = re.compile(r"(?<!\\)\{\d{5,}")
_CACHE_LIMIT = 50_000
_WORDS = re.compile(r"[A-Za-z0-9_:/ -]*(?:\|[A-Za-z0-9_:/ -]*)*")  # no character RE2 reads as an operator
SHIPPED: Dict[str, Pattern[str]] = {}  # a pattern the agent ships -> its equivalent for Python's re


class RegexError(ValueError):
    """A pattern RE2 (and so Prometheus) does not accept; the message says why."""


def shipped(pattern: str, equivalent: str) -> str:
    """Register a pattern the agent ships (a setting's default) with its equivalent for Python's
    re, which `compile` then returns for it; the caller's test shows the two equal."""
    SHIPPED[pattern] = re.compile(equivalent)
    return pattern


def _plain(pattern: str) -> bool:
    return pattern in (".+", ".*") or _WORDS.fullmatch(pattern) is not None


class _Words:
    """A plain pattern (`_plain`) compiled to match whole texts (`whole`): fullmatch and search
    answer as RE2's do, the whole text the match, no groups."""

    groups = 0
    groupindex: Dict[str, int] = {}

    def __init__(self, pattern: str):
        self.pattern = pattern
        self._words = None if pattern in (".+", ".*") else frozenset(pattern.split("|"))

    def fullmatch(self, text: str) -> Optional["_WholeText"]:
        if self._words is not None:
            hit = text in self._words
        else:  # RE2's dot is any character but a newline
            hit = "\n" not in text and (text != "" or self.pattern == ".*")
        return _WholeText(self, text) if hit else None

    search = fullmatch  # anchored at both ends


class _WholeText:
    def __init__(self, regex: _Words, text: str):
        self.re = regex
        self.text = text

    def group(self, index: int = 0) -> str:
        if index != 0:
            raise IndexError("no such group")
        return self.text


@functools.lru_cache(maxsize=1)  # imported once
def _re2() -> Any:
    import re2  # memory cost: loaded on the first pattern that needs it (the module's docstring)

    options = re2.Options()
    options.log_errors = False  # RE2 would print its own copy of every error to stderr
    return re2, options


@functools.lru_cache(maxsize=1024)
def compile(pattern: str) -> Any:  # noqa: A001 - mirrors re.compile
    """Compile `pattern` as RE2 reads it, or raise RegexError."""
    if not isinstance(pattern, str):
        raise RegexError(f"expected a regular expression string, got {type(pattern).__name__}")
    if pattern in SHIPPED:
        return SHIPPED[pattern]
    if _HUGE_REPEAT.search(pattern):
        raise RegexError("invalid repeat count: at most 1000")
    re2, options = _re2()
    try:
        return re2.compile(pattern, options)
    except re2.error as e:
        reason = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise RegexError(reason) from None
    except (TypeError, ValueError, OverflowError) as e:
        raise RegexError(str(e)) from None


# RE2's own words for a bad pattern, and Go's regexp package's for the same mistake
_GO_CODES = {"missing )": "missing closing )", "missing ]": "missing closing ]",
             "bad repetition operator": "invalid nested repetition operator",
             "no argument for repetition operator": "missing argument to repetition operator",
             "invalid repetition size": "invalid repeat count", "invalid perl operator": "invalid or unsupported Perl syntax",
             "invalid named capture group": "invalid named capture", "trailing \\": "trailing backslash at end of expression"}


def go_error(pattern: str, error: "RegexError") -> str:
    """What Go's regexp.Compile says for `pattern`: "error parsing regexp: CODE: `ARG`"."""
    text = str(error)
    if text.startswith("invalid repeat count"):
        found = _HUGE_REPEAT.search(pattern)
        end = pattern.find("}", found.start()) + 1 if found else 0
        return f"error parsing regexp: invalid repeat count: `{pattern[found.start():end] if found else ''}`"
    code, _, arg = text.partition(": ")
    if code == "trailing \\":
        arg = ""
    return f"error parsing regexp: {_GO_CODES.get(code, code)}: `{arg}`"


def whole(pattern: str) -> Any:
    """`pattern` compiled to match whole texts only, as `^(?:pattern)$` (PromQL's label_replace),
    or RegexError."""
    return _Words(pattern) if _plain(pattern) else compile("^(?:" + pattern + ")$")


def check(pattern: str) -> str:
    """`pattern` if RE2 accepts it, else RegexError naming it and why."""
    if isinstance(pattern, str) and _plain(pattern):
        return pattern
    try:
        compile(pattern)
    except RegexError as e:
        raise RegexError(f"invalid regular expression {pattern!r}: {e}") from None
    return pattern


class Anchored:
    """A pattern matched against whole values (PromQL and Alertmanager matchers are anchored)."""

    def __init__(self, pattern: str):
        self.pattern = pattern
        self._regex = _Words(pattern) if _plain(pattern) else compile(pattern)
        self._hits: Dict[str, bool] = {}

    def fullmatch(self, value: str) -> bool:
        hit = self._hits.get(value)
        if hit is None:
            if len(self._hits) >= _CACHE_LIMIT:
                self._hits.clear()  # churned label values: start over rather than grow
            hit = self._hits[value] = self._regex.fullmatch(value) is not None
        return hit


@functools.lru_cache(maxsize=1024)
def anchored(pattern: str) -> Anchored:
    return Anchored(pattern)


def fullmatch(pattern: str, value: str) -> bool:
    return anchored(pattern).fullmatch(value)


def search(pattern: str, text: str) -> bool:
    return compile(pattern).search(text) is not None

