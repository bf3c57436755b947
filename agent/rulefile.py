"""Prometheus rule files, read as Prometheus reads them (rulefmt): groups with name,
interval, limit and rules; each rule `alert` or `record`, `expr`, `for`, `keep_firing_for`,
`labels`, `annotations`. Validated when loaded, every problem reported with file:line and
the key path, as the TOML configuration's are (PyYAML's composer keeps the positions).

Glob patterns are relative to the configuration file's directory, as in Prometheus."""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import yaml

from .timefmt import parse_duration
from .promql.parser import PromQLError, parse
from .templates import Template, TemplateError

_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_GROUP_KEYS = ("name", "interval", "limit", "rules")
_RULE_KEYS = ("alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations")
MAX_FILE_BYTES = 16 << 20
# YAML aliases let a few hundred bytes name the same group or rule thousands of times over;
# far more rules than any real file holds is refused rather than parsed
MAX_RULES_PER_FILE = 20_000


@dataclass(frozen=True)
class FileRule:
    """One rule of a rule file: `alert` or `record` is set."""

    alert: str
    record: str
    expr: str
    for_: float
    keep_firing_for: float
    labels: Tuple[Tuple[str, str], ...]
    annotations: Tuple[Tuple[str, str], ...]
    where: str  # file:line, for messages


@dataclass(frozen=True)
class RuleGroup:
    name: str
    interval: float  # 0: every cycle
    limit: int
    rules: Tuple[FileRule, ...]
    file: str


class RuleFileError(ValueError):
    """Problems in one or more rule files, one per line, each with file:line."""

    def __init__(self, problems: List[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def expand(patterns: Sequence[str], base_dir: str) -> Tuple[List[str], List[str]]:
    """(files, problems): each pattern's matches, sorted; a plain path that does not exist is a problem."""
    files: List[str] = []
    problems: List[str] = []
    for pattern in patterns:
        full = pattern if os.path.isabs(pattern) else os.path.join(base_dir, pattern)
        matched = sorted(glob.glob(full))
        if not matched and not glob.has_magic(full):
            problems.append(f"{full}: rule file not found")
        files.extend(m for m in matched if m not in files)
    return files, problems


def load_files(patterns: Sequence[str], base_dir: str) -> Tuple[RuleGroup, ...]:
    """Every group of every file the patterns name, or RuleFileError listing every problem."""
    files, problems = expand(patterns, base_dir)
    groups: List[RuleGroup] = []
    for path in files:
        try:
            groups.extend(load_file(path))
        except RuleFileError as e:
            problems.extend(e.problems)
    if problems:
        raise RuleFileError(problems)
    return tuple(groups)


def load_file(path: str) -> List[RuleGroup]:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise RuleFileError([f"{path}: cannot read rule file: {e.strerror}"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise RuleFileError([f"{path}: rule file larger than {MAX_FILE_BYTES >> 20} MiB"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RuleFileError([f"{path}: not UTF-8 text: {e.reason} at byte {e.start}"]) from None
    return parse_text(text, path)


def parse_text(text: str, path: str = "(rules)") -> List[RuleGroup]:
    """The groups of one rule file's text, or RuleFileError."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f"{mark.line + 1}" if mark is not None else "?"
        raise RuleFileError([f"{path}:{line}: invalid YAML: {getattr(e, 'problem', None) or e}"]) from None
    reader = _Reader(path)
    groups = reader.file(root)
    if reader.problems:
        raise RuleFileError(reader.problems)
    return groups


class _Reader:
    def __init__(self, path: str):
        self.path = path
        self.problems: List[str] = []
        self.rules = 0

    def error(self, node: Optional[yaml.Node], keys: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        self.problems.append(f"{self.path}:{line}: {keys}: {message}" if keys else f"{self.path}:{line}: {message}")

    def mapping(self, node: yaml.Node, keys: str, allowed: Sequence[str]) -> Dict[str, Tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, keys, "expected a mapping")
            return {}
        out: Dict[str, Tuple[yaml.Node, yaml.Node]] = {}
        for k, v in node.value:
            name = k.value if isinstance(k, yaml.ScalarNode) else str(k)
            if allowed and name not in allowed:
                self.error(k, keys, f"field {name} not found (known: {', '.join(allowed)})")
            elif name in out:
                self.error(k, keys, f"field {name} given twice")
            else:
                out[name] = (k, v)
        return out

    def scalar(self, node: yaml.Node, keys: str) -> Optional[str]:
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, keys, "expected a string")
            return None
        return node.value

    def string_map(self, node: yaml.Node, keys: str, template_name: Optional[str]) -> Tuple[Tuple[str, str], ...]:
        """A map of label names to strings; each a template, named as Prometheus names it, when
        `template_name` is given."""
        out = []
        if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
            return ()
        for name, (k, v) in self.mapping(node, keys, ()).items():
            value = self.scalar(v, f"{keys}.{name}")
            if value is None:
                continue
            if not _LABEL.match(name):
                self.error(k, keys, f"invalid label name {name!r}")
                continue
            if template_name is not None:
                try:
                    Template(value, template_name)
                except TemplateError as e:
                    self.error(v, f"{keys}.{name}", str(e))
                    continue
            out.append((name, value))
        return tuple(out)

    def duration(self, node: yaml.Node, keys: str) -> float:
        text = self.scalar(node, keys)
        if text is None:
            return 0.0
        try:
            return parse_duration(text)
        except ValueError as e:
            self.error(node, keys, str(e))
            return 0.0

    def file(self, root: Optional[yaml.Node]) -> List[RuleGroup]:
        if root is None:
            return []  # an empty file: no groups, as Prometheus takes it
        top = self.mapping(root, "", ("groups",))
        if "groups" not in top:
            return []
        _, groups_node = top["groups"]
        if not isinstance(groups_node, yaml.SequenceNode):
            self.error(groups_node, "groups", "expected a list of groups")
            return []
        out, seen = [], set()
        for i, node in enumerate(groups_node.value):
            if self.rules > MAX_RULES_PER_FILE:
                break
            group = self.group(node, f"groups[{i}]")
            if group is None:
                continue
            if group.name in seen:
                self.error(node, f"groups[{i}].name", f"{group.name!r}: repeated in the same file")
            seen.add(group.name)
            out.append(group)
        return out

    def group(self, node: yaml.Node, keys: str) -> Optional[RuleGroup]:
        fields = self.mapping(node, keys, _GROUP_KEYS)
        name = self.scalar(fields["name"][1], f"{keys}.name") if "name" in fields else None
        if not name:
            self.error(node, f"{keys}.name", "a group needs a name")
        interval = self.duration(fields["interval"][1], f"{keys}.interval") if "interval" in fields else 0.0
        limit = 0
        if "limit" in fields:
            text = self.scalar(fields["limit"][1], f"{keys}.limit") or "0"
            if not text.isdigit():
                self.error(fields["limit"][1], f"{keys}.limit", f"expected a whole number, got {text!r}")
            else:
                limit = int(text)
        rules: List[FileRule] = []
        if "rules" in fields:
            rules_node = fields["rules"][1]
            if isinstance(rules_node, yaml.SequenceNode):
                for j, rule_node in enumerate(rules_node.value):
                    self.rules += 1
                    if self.rules > MAX_RULES_PER_FILE:
                        self.error(rule_node, f"{keys}.rules[{j}]", f"more than {MAX_RULES_PER_FILE:,} rules in one file")
                        break
                    rule = self.rule(rule_node, f"{keys}.rules[{j}]")
                    if rule is not None:
                        rules.append(rule)
            elif not (isinstance(rules_node, yaml.ScalarNode) and rules_node.value in ("", "~", "null")):
                self.error(rules_node, f"{keys}.rules", "expected a list of rules")
        return RuleGroup(name or "", interval, limit, tuple(rules), self.path)

    def rule(self, node: yaml.Node, keys: str) -> Optional[FileRule]:
        before = len(self.problems)
        fields = self.mapping(node, keys, _RULE_KEYS)
        values = {k: self.scalar(v, f"{keys}.{k}") for k, (_, v) in fields.items()
                  if k not in ("labels", "annotations")}
        alert, record = values.get("alert") or "", values.get("record") or ""
        if bool(alert) == bool(record):
            self.error(node, keys, "one of 'record' or 'alert' must be set" if not (alert or record)
                       else "only one of 'record' and 'alert' may be set")
        if record and not _METRIC.match(record):
            self.error(fields["record"][1], f"{keys}.record", f"invalid recording rule name: {record}")
        expr = values.get("expr") or ""
        if not expr:
            self.error(node, f"{keys}.expr", "field 'expr' must be set")
        else:
            try:
                tree = parse(expr)
                if tree.type not in ("vector", "scalar"):
                    raise PromQLError(f"a rule's expression must be an instant vector or a scalar, not a {tree.type}")
            except PromQLError as e:
                self.error(fields["expr"][1], f"{keys}.expr", str(e))
        if record:
            for key in ("for", "keep_firing_for", "annotations"):
                if key in fields:
                    self.error(fields[key][0], f"{keys}.{key}", f"invalid field '{key}' in recording rule")
        name = "__alert_" + (alert or "")
        labels = self.string_map(fields["labels"][1], f"{keys}.labels", name if alert else None) \
            if "labels" in fields else ()
        if record and any(k == "__name__" for k, _ in labels):
            self.error(node, f"{keys}.labels", "invalid recording rule label name: __name__")
        annotations = self.string_map(fields["annotations"][1], f"{keys}.annotations", name) \
            if "annotations" in fields else ()
        for_ = self.duration(fields["for"][1], f"{keys}.for") if "for" in fields else 0.0
        keep = self.duration(fields["keep_firing_for"][1], f"{keys}.keep_firing_for") if "keep_firing_for" in fields else 0.0
        if len(self.problems) > before:
            return None
        return FileRule(alert, record, expr, for_, keep, labels, annotations, f"{self.path}:{node.start_mark.line + 1}")


def count_rules(groups: Sequence[RuleGroup]) -> int:
    return sum(len(g.rules) for g in groups)
