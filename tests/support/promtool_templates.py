"""Templates rendered by Prometheus itself: each case becomes an alert rule whose annotation is
the template, fed one series (the case's labels and value) through `promtool test rules`,
which prints what Prometheus expanded when the expected annotation (a sentinel) differs.

    rendered = promtool_render([("{{ $value }}", {"job": "x"}, "42")])  # -> ["42"]

Used by the template differential test and the docs' agreement count.
"""

import os
import re
import shutil
import subprocess
import tempfile
from typing import Dict, List, Sequence, Tuple

import yaml

from agent.gotemplate.strconv import unquote

SENTINEL = "\u2063never"
Case = Tuple[str, Dict[str, str], str]  # template, the series' labels, its value as promtool reads it


def have_promtool() -> bool:
    return shutil.which("promtool") is not None


def rule_file(cases: Sequence[Case], ids: Sequence[int]) -> dict:
    """Case i is rule T{i} reading series case_{i}: the names stay when refused cases are left out."""
    return {"groups": [{"name": "templates", "rules": [
        {"alert": f"T{i}", "expr": f"case_{i}", "annotations": {"s": text}} for i, (text, _, _) in zip(ids, cases)]}]}


def _selector(i: int, labels: Dict[str, str]) -> str:
    inner = ", ".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"case_{i}{{{inner}}}"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def test_file(cases: Sequence[Case], ids: Sequence[int]) -> dict:
    return {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": _selector(i, labels), "values": value} for i, (_, labels, value) in zip(ids, cases)],
        "alert_rule_test": [{"eval_time": "0m", "alertname": f"T{i}",
                             "exp_alerts": [{"exp_labels": labels, "exp_annotations": {"s": SENTINEL}}]}
                            for i, (_, labels, _) in zip(ids, cases)]}]}


_BLOCK = re.compile(r"alertname: T(\d+), time: [^,]*, \n\s*exp:.*?got:\[(.*?)\n\s*\]", re.S)


def _quoted_after(text: str, marker: str) -> str:
    start = text.index(marker) + len(marker)
    i = start + 1
    while text[i] != '"':
        i += 2 if text[i] == "\\" else 1
    return unquote(text[start:i + 1])


def parse_output(output: str, ids: Sequence[int]) -> Dict[int, str]:
    """What promtool printed for each alert T{id}: the expanded annotation, or a marker when the
    alert did not fire at all."""
    got = {i: "<no alert>" for i in ids}
    for m in _BLOCK.finditer(output):
        body = m.group(2)
        if "Annotations:{" in body:
            got[int(m.group(1))] = _quoted_after(body, 'Annotations:{s=')
    return got


_REFUSED = re.compile(r'rule (\d+), "T\d+": annotation "s": (.*)')


def _write(tmp: str, cases: Sequence[Case], ids: Sequence[int]) -> None:
    with open(os.path.join(tmp, "rules.yml"), "w") as f:
        yaml.safe_dump(rule_file(cases, ids), f, allow_unicode=True)
    with open(os.path.join(tmp, "test.yml"), "w") as f:
        yaml.safe_dump(test_file(cases, ids), f, allow_unicode=True)


def promtool_render(cases: Sequence[Case]) -> List[str]:
    """Each case's annotation as Prometheus 2.42 expands it, or "<refused: ...>" with promtool's
    words for a template it refuses to load (one refused template stops a whole file, so those
    are found with `promtool check rules` first and left out of the run)."""
    return _render(cases, ["promtool", "check", "rules"], ["promtool", "test", "rules"], _refused_by_promtool)


def _refused_by_promtool(output: str) -> Dict[int, str]:
    return {int(m.group(1)) - 1: m.group(2) for m in _REFUSED.finditer(output)}


def _refused_by_agent(output: str) -> Dict[int, str]:
    refused = {}
    for line in output.splitlines():
        m = re.search(r"rules\[(\d+)\]\.annotations\.s: (.*)", line)
        if m:
            refused[int(m.group(1))] = m.group(2)
    return refused


def _render(cases: Sequence[Case], check_cmd: Sequence[str], test_cmd: Sequence[str], refused_in) -> List[str]:
    out = [""] * len(cases)
    ids = list(range(len(cases)))
    with tempfile.TemporaryDirectory() as tmp:
        _write(tmp, cases, ids)
        check = subprocess.run([*check_cmd, "rules.yml"], cwd=tmp, capture_output=True, text=True,
                               timeout=120)
        refused = refused_in(check.stdout + check.stderr)
        for i, why in refused.items():
            out[i] = f"<refused: {why}>"
        kept = [i for i in ids if i not in refused]
        _write(tmp, [cases[i] for i in kept], kept)
        run = subprocess.run([*test_cmd, "test.yml"], cwd=tmp, capture_output=True, text=True,
                             timeout=300)
        for i, text in parse_output(run.stdout + run.stderr, kept).items():
            out[i] = text
    return out


def load_cases(path: str) -> List[Case]:
    """The cases of a fixture file (tests/fixtures/templates/cases.yaml)."""
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    default = doc.get("defaults", {})
    return [(c["t"], dict(c.get("l", default.get("l", {}))), str(c.get("v", default.get("v", "1"))))
            for c in doc["cases"]]


def agent_render(cases: Sequence[Case], agent: Sequence[str]) -> List[str]:
    """The same cases through `llm-agent rules check` and `llm-agent rules test`."""
    return _render(cases, [*agent, "rules", "check"], [*agent, "rules", "test"], _refused_by_agent)


CASES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "templates", "cases.yaml")
EXPECTED = os.path.join(os.path.dirname(CASES), "prometheus-2.42.yaml")


def record() -> None:
    """Capture what promtool (Prometheus 2.42) expands for every case, for the unit tests."""
    cases = load_cases(CASES)
    rendered = promtool_render(cases)
    with open(EXPECTED, "w", encoding="utf-8") as f:
        f.write("# Captured from promtool 2.42 by `python -m tests.support.promtool_templates`: what Prometheus\n"
                "# expands for each case of cases.yaml (same order). Regenerate after adding cases.\n")
        yaml.safe_dump([{"t": c[0], "got": r} for c, r in zip(cases, rendered)], f, allow_unicode=True, width=200)


if __name__ == "__main__":
    record()
