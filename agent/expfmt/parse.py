"""Parse the Prometheus text exposition format (0.0.4), tolerating OpenMetrics extras.

A malformed line is skipped and reported with its line number instead of failing the whole
body: one bad line from a server must not cost every other series it exports.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from ..model import COUNTER, HISTOGRAM, METRIC_TYPES, SUMMARY, UNTYPED, CarryOver, Labels, MetricFamily, Sample

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_SUFFIXES = {
    HISTOGRAM: ("_bucket", "_sum", "_count", "_created"),
    SUMMARY: ("_sum", "_count", "_created"),
    COUNTER: ("_total", "_created"),
}
_TYPE_ALIASES = {"unknown": UNTYPED}  # OpenMetrics spells untyped "unknown"
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass
class ParseResult:
    """What a body yielded: its families, and each line that could not be read."""

    families: List[MetricFamily]
    errors: List[str] = field(default_factory=list)
    exceeded: bool = False  # stopped at max_samples: the rest of the body was not read


class _LineError(ValueError):
    pass


def parse_value(text: str) -> float:
    """A sample value as the format spells it (NaN, +Inf, -Inf, Go float syntax)."""
    try:
        return float(text)
    except ValueError:
        raise _LineError(f"invalid value {text!r}") from None


def _parse_labels(line: str, pos: int) -> Tuple[Labels, int]:
    """Labels starting after the '{' at `pos`; returns them and the index after '}'."""
    labels: List[Tuple[str, str]] = []
    n = len(line)
    while True:
        while pos < n and line[pos] in " \t":
            pos += 1
        if pos < n and line[pos] == "}":
            return tuple(labels), pos + 1
        m = _LABEL_NAME.match(line, pos)
        if not m:
            raise _LineError(f"invalid label name at column {pos + 1}")
        name = m.group(0)
        pos = m.end()
        while pos < n and line[pos] in " \t":
            pos += 1
        if line[pos:pos + 2] != '="':
            raise _LineError(f"expected '=\"' after label {name!r}")
        value, pos = _label_value(line, pos + 2, name)
        labels.append((name, value))
        while pos < n and line[pos] in " \t":
            pos += 1
        if pos < n and line[pos] == ",":
            pos += 1
        elif pos < n and line[pos] != "}":
            raise _LineError(f"expected ',' or '}}' after label {name!r}")


def _label_value(line: str, pos: int, name: str) -> Tuple[str, int]:
    """The quoted value starting at `pos` (after its opening quote) and the index after it."""
    end = line.find('"', pos)
    if end >= 0 and line.find("\\", pos, end) < 0:  # no escape before the quote (nearly every value): a slice
        return line[pos:end], end + 1
    chars: List[str] = []
    n = len(line)
    while True:
        if pos >= n:
            raise _LineError(f"unterminated value for label {name!r}")
        c = line[pos]
        if c == '"':
            return "".join(chars), pos + 1
        if c == "\\":
            if pos + 1 >= n or line[pos + 1] not in _ESCAPES:
                raise _LineError(f"invalid escape in label {name!r}")
            chars.append(_ESCAPES[line[pos + 1]])
            pos += 2
            continue
        chars.append(c)
        pos += 1


class LabelSets(CarryOver[str, Labels]):
    """A target's label sets by their text, from its last body; and the (name, value) pairs
    they are made of, one object each however many series share it (model_name is on every
    series of a vLLM, le on every bucket)."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        super().__init__()
        self.pairs: Dict[Tuple[str, str], Tuple[str, str]] = {}
        # our own credentials for this target (its API key, as sent): a target that echoes them in
        # a label value must not publish them on /metrics, the query API or the history file
        self.secrets = tuple(s for s in secrets if len(s) >= 4)

    def shared(self, labels: Labels) -> Labels:
        if len(self.pairs) > 100_000:
            self.pairs.clear()  # label values churned: start over rather than grow
        return tuple([self.pairs.setdefault(p, p) for p in self.clean(labels)])

    def clean(self, labels: Labels) -> Labels:
        """`labels` with our secrets replaced in every value (a new label set: once)."""
        return scrub(labels, self.secrets)


def scrub(labels: Labels, secrets: Sequence[str]) -> Labels:
    """`labels` with each of `secrets` replaced by <secret> in every value; the same tuple when
    none is there (the common case costs one scan)."""
    if not secrets or not any(s in v for _, v in labels for s in secrets):
        return labels
    out = []
    for k, v in labels:
        for s in secrets:
            v = v.replace(s, "<secret>")
        out.append((k, v))
    return tuple(out)


def parse_sample(line: str, sets: Optional[LabelSets] = None) -> Sample:
    """One sample line: ``name{labels} value [timestamp]`` (the timestamp is dropped)."""
    m = _NAME.match(line)
    if not m:
        raise _LineError("invalid metric name")
    # one string per metric name, not one per sample: a snapshot holds 60,000 samples at 32 targets
    name, pos = sys.intern(m.group(0)), m.end()
    labels: Labels = ()
    if pos < len(line) and line[pos] == "{":
        close = line.find("}", pos)
        # the text between the braces is the key only when no other '}' can hide in a value
        key = line[pos + 1:close] if sets is not None and close > 0 and line.find("}", close + 1) < 0 else None
        found = sets.get(key) if sets is not None and key is not None else None
        if found is not None:
            labels, pos = found, close + 1
        else:
            labels, pos = _parse_labels(line, pos + 1)
            if sets is not None and key is not None and pos == close + 1:
                labels = sets.put(key, sets.shared(labels))
            elif sets is not None:
                labels = sets.clean(labels)  # not remembered (a '}' in a value): cleaned all the same
    rest = line[pos:].split()
    if not rest or len(rest) > 3:  # value, timestamp, and OpenMetrics' exemplar marker at most
        raise _LineError("expected a value (and optional timestamp) after the series")
    return Sample(name, labels, parse_value(rest[0]))


def _family_for(name: str, families: Dict[str, MetricFamily]) -> Optional[MetricFamily]:
    fam = families.get(name)
    if fam is not None:
        return fam
    for suffix in ("_bucket", "_sum", "_count", "_total", "_created"):
        if name.endswith(suffix):
            fam = families.get(name[: -len(suffix)])
            if fam is not None and suffix in _SUFFIXES.get(fam.type, ()):
                return fam
    return None


def _unescape_help(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\\\", "\\")


def _lines(body: str) -> Iterator[str]:
    """The body's lines one at a time, without a copy of the whole body (StringIO would make
    one at four bytes a character)."""
    start = 0
    while True:
        end = body.find("\n", start)
        if end < 0:
            yield body[start:]
            return
        yield body[start:end]
        start = end + 1


def _comment(line: str, families: Dict[str, MetricFamily], helps: Dict[str, str]) -> str:
    """A HELP or TYPE line into `helps` and `families` (any other comment is skipped); an error
    to report, or ""."""
    parts = line.split(None, 3)
    if len(parts) >= 3 and parts[1] == "HELP":
        helps[parts[2]] = _unescape_help(parts[3]) if len(parts) > 3 else ""
        if parts[2] in families:
            families[parts[2]].help = helps[parts[2]]
    elif len(parts) == 4 and parts[1] == "TYPE":
        mtype = _TYPE_ALIASES.get(parts[3], parts[3])
        if mtype not in METRIC_TYPES or not _NAME.fullmatch(parts[2]):
            return "invalid TYPE line"
        fam = families.get(parts[2])
        if fam is None:
            families[parts[2]] = MetricFamily(parts[2], mtype, helps.get(parts[2], ""))
        elif not fam.samples:
            fam.type = mtype
    return ""


def parse_text(body: str, max_samples: int = 0, sets: Optional[LabelSets] = None) -> ParseResult:
    """Parse an exposition body into families (in first-seen order) and line errors. With
    `max_samples`, stop at the sample after it (`exceeded`): memory stays bounded whatever
    the body holds. With `sets`, the label sets of the target's last body are reused (CarryOver)."""
    if sets is not None:
        sets.next_round()
    families: Dict[str, MetricFamily] = {}
    count = 0
    helps: Dict[str, str] = {}
    errors: List[str] = []
    for lineno, raw in enumerate(_lines(body), 1):  # lazily: a huge body is never a list of lines
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            error = _comment(line, families, helps)
            if error:
                errors.append(f"line {lineno}: {error}")
            continue
        try:
            sample = parse_sample(line, sets)
        except _LineError as e:
            errors.append(f"line {lineno}: {e}")
            continue
        fam = _family_for(sample.name, families)
        if fam is None:
            fam = families[sample.name] = MetricFamily(sample.name, UNTYPED, helps.get(sample.name, ""))
        if not math.isfinite(sample.value) and fam.type == COUNTER and not math.isnan(sample.value):
            errors.append(f"line {lineno}: counter {sample.name} is infinite")
            continue
        fam.samples.append(sample)
        count += 1
        if max_samples and count > max_samples:
            return ParseResult([f for f in families.values() if f.samples], errors, exceeded=True)
    if sets is not None:
        sets.end_round()  # a body cut short at max_samples keeps the last round's sets for next time
    return ParseResult([f for f in families.values() if f.samples], errors)
