"""The quality set: fixed prompts at temperature 0 with a fixed seed, each answer checked
against what is expected (a regex, an exact text, or a number within a tolerance). The score
is the fraction that pass; a drop below its baseline is LlmQualityDrop. The probe's canary
is one case of the set."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import regex
from ..probes.completion import ProbeResult, ProbeSpec, run_probe

_NUMBER = re.compile(r"[-+]?(?:\d+(?:[.,]\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class QualityCase:
    name: str
    prompt: str
    regex: str = ""  # RE2, searched in the answer
    exact: Optional[str] = None  # the whole answer, surrounding whitespace ignored
    number: Optional[float] = None  # the first number in the answer
    tolerance: float = 0.0  # absolute, for `number`
    max_tokens: int = 64

    @classmethod
    def from_settings(cls, q: Any) -> "QualityCase":
        return cls(q.name, q.prompt, q.expect_regex, q.expect_exact, q.expect_number, q.tolerance, q.max_tokens)


def check(case: QualityCase, answer: str) -> Tuple[bool, str]:
    """Whether `answer` passes `case`, and why not."""
    if case.exact is not None:
        ok = answer.strip() == case.exact.strip()
        return ok, "" if ok else f"expected exactly {case.exact.strip()[:60]!r}"
    if case.number is not None:
        found = first_number(answer)
        if found is None:
            return False, "no number in the answer"
        ok = math.isclose(found, case.number, abs_tol=case.tolerance, rel_tol=0.0)
        return ok, "" if ok else f"{found:g} is not {case.number:g} (tolerance {case.tolerance:g})"
    if case.regex:
        ok = regex.compile(case.regex).search(answer) is not None
        return ok, "" if ok else f"no match for /{case.regex[:60]}/"
    return bool(answer.strip()), "" if answer.strip() else "empty answer"


def first_number(text: str) -> Optional[float]:
    """The first number in `text` ("The answer is 1,234." -> 1234; "3.5" -> 3.5)."""
    for m in _NUMBER.finditer(text):
        raw = m.group(0)
        if "," in raw and "." not in raw and re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+", raw):
            raw = raw.replace(",", "")
        else:
            raw = raw.replace(",", ".")
        try:
            return float(raw)
        except ValueError:
            continue
    return None


def run_quality(base: ProbeSpec, cases: List[QualityCase],
                probe: Callable[[ProbeSpec], ProbeResult] = run_probe) -> Tuple[float, Dict[str, bool], int]:
    """(score, each case's result, tokens spent); a case whose request fails counts as failed."""
    if not cases:
        return 1.0, {}, 0
    results: Dict[str, bool] = {}
    tokens = 0
    for case in cases:
        result = probe(dataclasses.replace(base, prompt=case.prompt, max_tokens=case.max_tokens))
        tokens += result.tokens + (result.prompt_tokens or 0)
        results[case.name] = result.success and check(case, result.text)[0]
    return sum(results.values()) / len(results), results, tokens
