"""Regular expressions as Prometheus, Alertmanager and node_exporter run them: RE2 syntax
(Go's regexp), matched in time linear in the input, so a hostile label value or a careless
pattern such as `(a+)+b` can never stall a cycle. google-re2 is the RE2 library itself;
Python's `re` backtracks and accepts syntax (lookarounds, backreferences) Prometheus refuses.

RE2 costs ~4 us a call from Python where `re` costs ~0.1 us, and the same label values are
matched every cycle, so full-match results are cached per pattern (bounded).
"""

from __future__ import annotations

import functools
import re
from typing import Any, Dict

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print its own copy of every error to stderr
# RE2 reads a repeat count too large for an int as literal text; Go's regexp refuses it
_HUGE_REPEAT = re.compile(r"(?<!\\)\{\d{5,}")
_CACHE_LIMIT = 50_000


class RegexError(ValueError):
    """A pattern RE2 (and so Prometheus) does not accept; the message says why."""


@functools.lru_cache(maxsize=1024)
def compile(pattern: str) -> Any:  # noqa: A001 - mirrors re.compile
    """Compile `pattern` with RE2, or raise RegexError."""
    if not isinstance(pattern, str):
        raise RegexError(f"expected a regular expression string, got {type(pattern).__name__}")
    if _HUGE_REPEAT.search(pattern):
        raise RegexError("invalid repeat count: at most 1000")
    try:
        return re2.compile(pattern, _OPTIONS)
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


def check(pattern: str) -> str:
    """`pattern` if RE2 accepts it, else RegexError naming it and why."""
    try:
        compile(pattern)
    except RegexError as e:
        raise RegexError(f"invalid regular expression {pattern!r}: {e}") from None
    return pattern


class Anchored:
    """A pattern matched against whole values (PromQL and Alertmanager matchers are anchored)."""

    def __init__(self, pattern: str):
        self.pattern = pattern
        self._regex = compile(pattern)
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

