"""The configuration schema: every key, its default and the parser for its value.

This table is the single source of truth for what agent.toml may contain; config.py walks it
to validate a file, and agent.toml.example documents the same keys for people.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict

from . import values as v


@dataclass(frozen=True)
class Field:
    """One key: its default (None means absent unless given) and the parser for its value."""

    default: Any
    parse: Callable[[Any], Any]
    required: bool = False
    secret: bool = False


_TARGET = {
    "name": Field(None, v.typed(str), required=True),
    "url": Field(None, v.parse_url, required=True),
    "kind": Field("llamacpp", v.one_of(("llamacpp", "openmetrics"))),
    "metrics_path": Field("/metrics", v.typed(str)),
    "timeout": Field("3s", v.positive(v.parse_duration)),
    "api_key": Field("", v.typed(str), secret=True),
    "labels": Field({}, v.str_table),
    "probe": Field(True, v.typed(bool)),
    "slo_availability": Field(0.0, lambda x: _fraction(x, allow_zero=True)),
    "sample_limit": Field(50_000, v.typed(int, 0, 10_000_000)),
    "label_limit": Field(64, v.typed(int, 0, 10_000)),
    "label_name_length_limit": Field(256, v.typed(int, 0, 1_000_000)),
    "label_value_length_limit": Field(4096, v.typed(int, 0, 10_000_000)),
}

def _regex(value: Any) -> str:
    """An RE2 pattern (Prometheus and node_exporter use the same syntax)."""
    from .. import regex

    if not isinstance(value, str):
        raise ValueError(f"expected a regular expression string, got {value!r}")
    return regex.check(value)  # RegexError is a ValueError


def _bcrypt_users(value: Any) -> Dict[str, str]:
    users = v.str_table(value)
    for name, hashed in users.items():
        if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ValueError(f"the password of {name!r} must be a bcrypt hash ($2y$...), as in Prometheus' web config "
                             "(make one with: htpasswd -nBC 10 '' | tr -d ':')")
    return users


def _expr(value: Any) -> Any:
    from ..rules.parser import parse

    if not isinstance(value, str):
        raise ValueError(f"expected a PromQL expression string, got {value!r}")
    parse(value)  # PromQLError is a ValueError: reported with the key and file:line
    return value


def _templates(value: Any) -> Dict[str, str]:
    from ..rules.templates import Template

    table = v.str_table(value)
    for text in table.values():
        Template(text)  # TemplateError is a ValueError
    return table


def _matchers(value: Any) -> list:
    from ..rules.parser import parse_matcher

    items = v.str_list(value)
    for item in items:
        parse_matcher(item)  # PromQLError is a ValueError
    return items


def _fraction(value: Any, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < 1 or allow_zero and value == 0):
        raise ValueError(f"expected a fraction between 0 and 1 such as 0.995, got {value!r}")
    return float(value)


_RULE = {
    "name": Field(None, v.typed(str), required=True),
    "expr": Field(None, _expr, required=True),
    "for": Field("0s", v.parse_duration),
    "keep_firing_for": Field("0s", v.parse_duration),
    "cooldown": Field("4h", v.parse_duration),
    "severity": Field("warning", v.one_of(("critical", "warning", "info"))),
    "labels": Field({}, _templates),
    "annotations": Field({}, _templates),
}
_INHIBIT = {
    "source_matchers": Field(None, _matchers, required=True),
    "target_matchers": Field(None, _matchers, required=True),
    "equal": Field([], v.str_list),
}
_NOTIFY = {
    "name": Field(None, v.typed(str), required=True),
    "type": Field(None, v.one_of(("slack", "pagerduty", "webhook", "alertmanager")), required=True),
    "url": Field("", v.typed(str), secret=True),
    "urls": Field([], v.str_list, secret=True),
    "routing_key": Field("", v.typed(str), secret=True),
    "severities": Field([], v.str_list),
    "matchers": Field([], _matchers),
    "send_resolved": Field(True, v.typed(bool)),
    "timeout": Field("10s", v.positive(v.parse_duration)),
    "max_age": Field("24h", v.positive(v.parse_duration)),
}

SCHEMA: Dict[str, Any] = {
    "agent": {
        "interval": Field("5s", v.positive(v.parse_duration)),
        "state_dir": Field("/var/lib/llm-agent", v.typed(str)),
        "hostname": Field("", v.typed(str)),
        "collector_timeout": Field("", lambda x: v.parse_duration(x) if x else 0.0),
        "max_response_bytes": Field("16MiB", v.positive(v.parse_size)),
        "log_level": Field("info", v.one_of(("debug", "info", "warning", "error"))),
    },
    "exporter": {
        "listen": Field("0.0.0.0:9400", v.parse_listen),
        "max_threads": Field(8, v.typed(int, 1, 256)),
        "max_connections": Field(1024, v.typed(int, 1, 65536)),
        "request_timeout": Field("10s", v.positive(v.parse_duration)),
        "tls_cert_file": Field("", v.typed(str)),
        "tls_key_file": Field("", v.typed(str)),
        "tls_client_ca_file": Field("", v.typed(str)),
        "basic_auth_users": Field({}, _bcrypt_users),
    },
    "targets": [_TARGET],
    "alerting": {
        "default_rules": Field(True, v.typed(bool)),
        "disable": Field([], v.str_list),
        "no_data_timeout": Field("10m", v.positive(v.parse_duration)),
        "alertmanager_resend": Field("1m", v.positive(v.parse_duration)),
        "evaluation_budget": Field("1s", v.positive(v.parse_duration)),
    },
    "rules": [_RULE],
    "inhibit": [_INHIBIT],
    "notify": [_NOTIFY],
    "probes": {
        "enabled": Field(True, v.typed(bool)),
        "interval": Field("60s", v.positive(v.parse_duration)),
        "timeout": Field("10s", v.positive(v.parse_duration)),
        "prompt": Field("Reply with the single word OK.", v.typed(str)),
        "max_tokens": Field(8, v.typed(int, 1, 4096)),
        "api": Field("auto", v.one_of(("auto", "completion", "chat"))),
        "model": Field("", v.typed(str)),
        "canary_regex": Field("", _regex),
        "canary_baseline": Field(False, v.typed(bool)),
    },
    "health": {
        "hang_after": Field("10s", v.positive(v.parse_duration)),
        "stall_after": Field("60s", v.positive(v.parse_duration)),
        "watch_processes": Field(True, v.typed(bool)),
        "py_spy": Field(True, v.typed(bool)),
        "py_spy_timeout": Field("10s", v.positive(v.parse_duration)),
    },
    "slo": {
        "availability": Field(0.995, _fraction),
        "ttft_seconds": Field("1s", v.positive(v.parse_duration)),
        "ttft_objective": Field(0.95, _fraction),
    },
    "cost": {
        "gpu_hour_price": Field(0.0, v.typed((int, float), 0)),
        "host_hour_price": Field(0.0, v.typed((int, float), 0)),
        "currency": Field("USD", v.typed(str)),
        "month_budget": Field(0.0, v.typed((int, float), 0)),
    },
    "discovery": {
        "enabled": Field(True, v.typed(bool)),
        "interval": Field("30s", v.positive(v.parse_duration)),
        "fallback_url": Field("http://127.0.0.1:8080", v.parse_url),
    },
    "collectors": {
        "nvml": {
            "enabled": Field(True, v.typed(bool)),
            "xid_events": Field(True, v.typed(bool)),
            "process_memory": Field(True, v.typed(bool)),
            "retry_max": Field("5m", v.positive(v.parse_duration)),
        },
        "host": {
            "enabled": Field(True, v.typed(bool)),
            "fs_types_exclude": Field(["tmpfs", "devtmpfs", "squashfs", "overlay", "nsfs", "ramfs"], v.str_list),
            "mount_points_exclude": Field("^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/kubelet/.+)($|/)",
                                          _regex),
            "net_devices_exclude": Field("^(lo|veth.*|docker.*|br-.*)$", _regex),
        },
    },
}
