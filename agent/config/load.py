"""TOML configuration -> typed `Config`. Every key is optional; every error names the key
path and the file:line it came from, and all errors are reported at once.

The schema (schema.py) is the single source of truth for keys, defaults, parsers and types;
`agent.toml.example` documents the same keys for people.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

from ..promql.reach import reach_problem
from . import values as v
from .channels import BY_TYPE, KINDS
from .schema import SCHEMA, Field, Settings, build

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10
    import tomli as tomllib

DEFAULT_PATH = "/etc/llm-agent/agent.toml"
ENV_VAR = "LLM_AGENT_CONFIG"
# the shipped rules, read beside the package's files as engines.toml and the XID catalogue are
# (wheel and .deb install files; importlib.resources' zip support cost 0.4 MiB resident)
DEFAULT_RULES_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "rules", "defaults.toml")
Path = Tuple[Union[str, int], ...]


@dataclass(frozen=True)
class Config(Settings):
    """The whole, validated configuration: typed sections (see schema.py), built once."""

    source: str = "(defaults)"
    rule_groups: Tuple[Any, ...] = ()  # rules.rulefile.RuleGroup, from [alerting] rule_files

    @property
    def interval(self) -> float:
        return self.agent.interval

    @property
    def hostname(self) -> str:
        return self.agent.hostname or socket.gethostname()

    @property
    def collector_timeout(self) -> float:
        """Per-collector timeout: configured, or 80% of the interval (never above 10 s)."""
        return self.agent.collector_timeout or min(self.interval * 0.8, 10.0)


class ConfigError(Exception):
    """One or more invalid keys; `str()` lists them one per line, each with file:line."""

    def __init__(self, problems: List[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _closest(word: str, choices: List[str]) -> List[str]:
    """The choice a typo most likely meant (at most one). difflib is imported here, on an error,
    so that the running agent does not keep it resident."""
    import difflib  # memory cost: only a configuration error needs it

    return difflib.get_close_matches(word, choices, n=1)


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def key_lines(text: str) -> Dict[Path, int]:
    """Map each key path to the line it is written on (tomllib keeps no positions)."""
    lines: Dict[Path, int] = {}
    arrays: Dict[Path, int] = {}
    prefix: Path = ()

    def split(name: str) -> Tuple[str, ...]:
        return tuple(p.strip().strip("\"'") for p in name.split("."))

    def with_indexes(parts: Tuple[str, ...]) -> Path:
        # [targets.labels] after [[targets]] belongs to the latest targets element
        out: list = []
        for part in parts:
            out.append(part)
            if tuple(p for p in out if isinstance(p, str)) in arrays:
                out.append(arrays[tuple(p for p in out if isinstance(p, str))])
        return tuple(out)

    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("[["):
            parts = split(line[2:line.find("]]")])
            arrays[parts] = arrays.get(parts, -1) + 1
            prefix = with_indexes(parts)
            lines.setdefault(prefix, no)
            lines.setdefault(prefix[:-1], no)
        elif line.startswith("["):
            prefix = with_indexes(split(line[1:line.find("]")]))
            lines.setdefault(prefix, no)
        else:
            m = re.match(r"^([A-Za-z0-9_\-.\"' ]+?)\s*=", line)
            if m:
                lines.setdefault(prefix + split(m.group(1)), no)
    return lines


class _Validator:
    def __init__(self, source: str, text: str, environ: Optional[Dict[str, str]]):
        self.source = source
        self.lines = key_lines(text) if text else {}
        self.environ = environ
        self.problems: List[str] = []

    def where(self, path: Path) -> str:
        for cut in range(len(path), 0, -1):
            if path[:cut] in self.lines:
                return f"{self.source}:{self.lines[path[:cut]]}"
        return self.source

    def error(self, path: Path, message: str) -> None:
        self.problems.append(f"{self.where(path)}: {format_path(path)}: {message}")

    def table(self, spec: Dict[str, Any], raw: Any, path: Path) -> Dict[str, Any]:
        if not isinstance(raw, dict):
            self.error(path, f"expected a table, got {type(raw).__name__}")
            raw = {}
        for key in raw:
            if key not in spec:
                hint = _closest(key, list(spec))
                near = f"; did you mean {hint[0]!r}?" if hint else f"; known keys: {', '.join(spec)}"
                self.error(path + (key,), f"unknown key{near}")
        return {key: self.node(sub, raw.get(key), path + (key,), key in raw) for key, sub in spec.items()}

    def node(self, spec: Any, raw: Any, path: Path, given: bool) -> Any:
        if isinstance(spec, dict):
            return self.table(spec, raw if given else {}, path)
        if isinstance(spec, list):
            if not given:
                return []
            if not isinstance(raw, list):
                self.error(path, f"expected an array of tables ([[{format_path(path)}]])")
                return []
            return [self.table(spec[0], item, path + (i,)) for i, item in enumerate(raw)]
        return self.field(spec, raw, path, given)

    def field(self, spec: Field, raw: Any, path: Path, given: bool) -> Any:
        if not given:
            if spec.required:
                self.error(path, "is required")
                return None
            raw = spec.default
        written = raw
        try:
            if isinstance(raw, str) and "${" in raw:
                raw = v.expand_secrets(raw, self.environ)
            elif isinstance(raw, list):
                raw = [v.expand_secrets(x, self.environ) if isinstance(x, str) and "${" in x else x for x in raw]
            elif isinstance(raw, dict):  # headers = { Authorization = "${TOKEN}" }
                raw = {k: v.expand_secrets(x, self.environ) if isinstance(x, str) and "${" in x else x
                       for k, x in raw.items()}
        except ValueError as e:
            self.error(path, str(e))
            return None
        try:
            return spec.parse(raw)
        except Exception as e:  # ValueError, or one no parser foresaw: an error with its key, never a traceback
            self.error(path, self._shown(spec, written, raw, e))
            return None

    @staticmethod
    def _shown(spec: Field, written: Any, expanded: Any, e: Exception) -> str:
        """The error to print, never a secret: a secret field's value is not shown; a value that
        came from ${ENV} or ${file:} is shown as the reference the file wrote."""
        if spec.secret:
            return "invalid value (not shown: secret)"
        if written != expanded:
            return f"invalid value from {written!r} (the value is not shown)"
        message = str(e) if isinstance(e, ValueError) else f"cannot be used ({type(e).__name__}): {e}"
        return message[:300]


def _check_unique_names(val: _Validator, section: str, items: List[Dict[str, Any]]) -> None:
    seen: Dict[str, int] = {}
    for i, t in enumerate(items):
        if t.get("name") is None:
            continue
        if t["name"] in seen:
            val.error((section, i, "name"), f"duplicate name {t['name']!r} (also {section}[{seen[t['name']]}])")
        seen.setdefault(t["name"], i)


def _check_channels(val: _Validator, channels: List[Dict[str, Any]]) -> None:
    for i, ch in enumerate(channels):
        kind = BY_TYPE.get(ch.get("type") or "")
        for need in kind.needs if kind is not None else ():
            if not ch.get(need):
                val.error(("notify", i, need), f"an {ch['type']} channel needs {need}" if ch["type"][0] in "aeiou"
                          else f"a {ch['type']} channel needs {need}")
        for j, url in enumerate(([ch["url"]] if ch.get("url") else []) + list(ch.get("urls") or [])):
            try:
                v.parse_url(url)
            except ValueError:
                val.error(("notify", i, "urls" if j or not ch.get("url") else "url"),
                          "invalid URL (not shown: secret): expected http(s)://host[:port]/path")


def _default_rule_names() -> List[str]:
    with open(DEFAULT_RULES_PATH, encoding="utf-8") as f:
        text = f.read()
    return [r["name"] for r in tomllib.loads(text).get("rules", [])]


def _check_disable(val: _Validator, names: Optional[List[str]]) -> None:
    known = _default_rule_names() if names else []
    for name in names or []:
        if name not in known:
            hint = _closest(name, known)
            val.error(("alerting", "disable"), f"no default rule named {name!r}" +
                      (f"; did you mean {hint[0]!r}?" if hint else "; `llm-agent rules export` lists them"))


def parse_config(text: str, source: str = "(string)", environ: Optional[Dict[str, str]] = None) -> Config:
    """Validate TOML text into a Config, or raise ConfigError listing every problem."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise ConfigError([f"{source}:{m.group(1) if m else '?'}: invalid TOML: {e}"]) from None
    val = _Validator(source, text, environ)
    sections = val.table(SCHEMA, raw, ())
    for section in ("targets", "rules", "notify", "reports", "quality"):
        _check_unique_names(val, section, sections[section])
    _check_quality(val, sections["quality"], sections["targets"])
    _check_channels(val, sections["notify"])
    _check_report_channels(val, sections["reports"], sections["notify"])
    _check_disable(val, sections["alerting"]["disable"])
    groups = _rule_files(val, sections["alerting"]["rule_files"] or [], source)
    if not val.problems:
        _check_rule_reach(val, sections, groups)
        _check_history_tiers(val, sections["history"])
    if val.problems:
        raise ConfigError(val.problems)
    return build(Config, sections, source=source, rule_groups=groups)


def _rule_files(val: _Validator, patterns: List[str], source: str) -> Tuple[Any, ...]:
    """[alerting] rule_files, read and validated now so that `config validate` and a reload
    report their errors (file:line) with the rest."""
    if not patterns:
        return ()
    from ..rulefile import RuleFileError, load_files  # start-up cost: PyYAML, which only rule files need

    base = os.path.dirname(os.path.abspath(source)) if os.path.exists(source) else os.getcwd()
    try:
        return load_files(patterns, base)
    except RuleFileError as e:
        for problem in e.problems:  # the config's key and line first, then the rule file's own file:line
            val.error(("alerting", "rule_files"), problem)
        return ()


def _check_rule_reach(val: _Validator, sections: Dict[str, Any], groups: Tuple[Any, ...]) -> None:
    """Rules that read further back than the in-memory history holds are refused, with why."""

    limit = sections["alerting"]["memory_history"]
    for kind in ("rules", "recording_rules"):
        for i, rule in enumerate(sections[kind]):
            problem = reach_problem(rule["expr"], limit)
            if problem:
                val.error((kind, i, "expr"), problem)
    for group in groups:
        for rule in group.rules:
            problem = reach_problem(rule.expr, limit)
            if problem:
                val.error(("alerting", "rule_files"), f"{rule.where}: {rule.alert or rule.record}: {problem}")


def _check_report_channels(val: _Validator, reports: List[Dict[str, Any]], channels: List[Dict[str, Any]]) -> None:
    """A report goes to chat and webhook channels by name; a pager is for incidents."""
    kinds = {c["name"]: c["type"] for c in channels}
    for i, report in enumerate(reports):
        if not report["channels"]:
            val.error(("reports", i, "channels"), "name at least one [[notify]] channel")
        for name in report["channels"] or []:
            if name not in kinds:
                val.error(("reports", i, "channels"), f"no [[notify]] channel is named {name!r}")
            elif kinds[name] in BY_TYPE and not BY_TYPE[kinds[name]].reports:
                takers = " or ".join(k.type for k in KINDS if k.reports)
                val.error(("reports", i, "channels"), f"{name!r} is a {kinds[name]} channel: reports go to {takers} "
                                                      "channels (a pager is for incidents)")


def _check_quality(val: _Validator, cases: List[Dict[str, Any]], targets: List[Dict[str, Any]]) -> None:
    """A quality case checks its answer one way, and names only targets that exist."""
    names = {t.get("name") for t in targets}
    for i, case in enumerate(cases):
        given = [k for k in ("expect_regex", "expect_exact", "expect_number") if case.get(k) not in (None, "")]
        if len(given) > 1:
            val.error(("quality", i, given[1]), f"give one of expect_regex, expect_exact, expect_number (also {given[0]})")
        if case.get("tolerance") and case.get("expect_number") is None:
            val.error(("quality", i, "tolerance"), "tolerance is for expect_number")
        for name in case.get("targets") or []:
            if targets and name not in names:
                val.error(("quality", i, "targets"), f"no [[targets]] entry is named {name!r}")


def _check_history_tiers(val: _Validator, history: Dict[str, Any]) -> None:
    """Each rollup tier is made from the finer one: it must keep at least as long."""
    tiers = ("raw_retention", "rollup_1m_retention", "rollup_1h_retention")
    for finer, coarser in zip(tiers, tiers[1:]):
        if history[coarser] < history[finer]:
            val.error(("history", coarser), f"must keep at least as long as {finer} "
                                            f"({history[finer] / 86400:g} days), got {history[coarser] / 86400:g} days")


def default_config() -> Config:
    """The embedded defaults, as if an empty file had been given."""
    return parse_config("", "(defaults)")


def resolve_path(cli_path: Optional[str], environ: Optional[Dict[str, str]] = None) -> Optional[str]:
    """--config, else $LLM_AGENT_CONFIG, else /etc/llm-agent/agent.toml if present, else None."""
    env = os.environ if environ is None else environ
    if cli_path:
        return cli_path
    if env.get(ENV_VAR):
        return env[ENV_VAR]
    return DEFAULT_PATH if os.path.exists(DEFAULT_PATH) else None


def load_config(path: Optional[str], environ: Optional[Dict[str, str]] = None) -> Config:
    """Read and validate the file at `path` (None: embedded defaults)."""
    if path is None:
        return default_config()
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError([f"{path}: cannot read config: {e.strerror}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: config is not UTF-8 text: {e.reason} at byte {e.start}"]) from None
    return parse_config(text, path, environ)
