"""The configuration schema: every key, its default, its parser and its type, as frozen
dataclasses. They are the single source of truth: `load.py` walks them to validate a file
(every error with its key path and file:line) and builds them once; each part of the agent is
handed the section it needs (`config.probes`, `config.collectors.nvml`) and reads typed
attributes, so a misspelt key is a type checker's error, not a KeyError at 3 a.m.;
agent.toml.example documents the same keys for people.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple

from .. import regex
from ..promql.ast import VectorSelector
from ..promql.parser import parse, parse_matcher
from ..templates import Template
from . import values as v
from .channels import TYPES as CHANNEL_TYPES
from .mail import check_subject, parse_smarthost
from .schedule import parse_schedule


@dataclass(frozen=True)
class Field:
    """One key: its default as written in TOML (None: absent unless given) and the parser
    that turns what the file says into the typed value."""

    default: Any
    parse: Callable[[Any], Any]
    required: bool = False
    secret: bool = False


def setting(default: Any, parse: Callable[[Any], Any], required: bool = False, secret: bool = False,
            key: str = "") -> Any:
    """A dataclass field that is a config key: its typed default is `parse(default)`; `key` is
    the TOML name where it is not a Python name (`for`)."""
    meta = {"field": Field(default, parse, required, secret), "key": key}
    if required:
        return dataclasses.field(metadata=meta, repr=not secret)  # a secret never shows in a repr
    value = parse(default)
    if isinstance(value, (list, dict)):
        frozen = tuple(value) if isinstance(value, list) else value
        return dataclasses.field(default_factory=lambda: type(value)(frozen), metadata=meta, repr=not secret)
    return dataclasses.field(default=value, metadata=meta, repr=not secret)


def section(cls: type) -> Any:
    """A nested table ([collectors.nvml])."""
    return dataclasses.field(default_factory=cls, metadata={"section": cls})


def array(cls: type) -> Any:
    """An array of tables ([[targets]])."""
    return dataclasses.field(default_factory=tuple, metadata={"array": cls})


def _regex(value: Any) -> str:
    """An RE2 pattern (Prometheus and node_exporter use the same syntax)."""
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


def _networks(value: Any) -> List[str]:
    out = []
    for item in v.str_list(value):
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ValueError(f"{item!r} is not a network: use CIDR notation such as 10.0.0.0/8 or 192.0.2.7/32") from None
    return out


def _smarthost(value: Any) -> str:
    parse_smarthost(value)  # ValueError says what a smarthost looks like
    return value


def _address(value: Any) -> str:
    from email.utils import parseaddr  # memory cost: only a config with mail loads the email package (~1 MiB)

    if not isinstance(value, str) or "@" not in parseaddr(value)[1] or "\n" in value or "\r" in value:
        raise ValueError(f"expected an email address such as \"ops@example.com\" or \"Ops <ops@example.com>\", got {value!r}")
    return value


def _mail_headers(value: Any) -> Dict[str, str]:
    table = v.str_table(value)
    for name, text in table.items():
        if not re.match(r"^[A-Za-z0-9-]+$", name) or "\n" in text or "\r" in text:
            raise ValueError(f"header {name!r}: a header name is letters, digits and '-', its value one line")
    return table


def _subject(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return check_subject(value)


def _group_by(value: Any) -> List[str]:
    names = v.str_list(value)
    if "..." in names and names != ["..."]:
        raise ValueError('"..." (every label) stands alone: group_by = ["..."]')
    for name in names:
        if name != "..." and not re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", name):
            raise ValueError(f"{name!r} is not a label name")
    return names


def _priorities(value: Any) -> Dict[str, str]:
    table = v.str_table(value)
    for severity, priority in table.items():
        if priority not in ("P1", "P2", "P3", "P4", "P5"):
            raise ValueError(f"{severity} = {priority!r}: Opsgenie's priorities are P1 to P5")
    return table


def _expr(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"expected a PromQL expression string, got {value!r}")
    parse(value)  # PromQLError is a ValueError: reported with the key and file:line
    return value


def _templates(value: Any) -> Dict[str, str]:
    table = v.str_table(value)
    for key, text in table.items():
        Template(text, key)  # TemplateError (a ValueError) names the key: "template: summary:1: ..."
    return table


def _matchers(value: Any) -> list:
    items = v.str_list(value)
    for item in items:
        parse_matcher(item)  # PromQLError is a ValueError
    return items


def _fraction(value: Any, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < 1 or allow_zero and value == 0):
        raise ValueError(f"expected a fraction between 0 and 1 such as 0.995, got {value!r}")
    return float(value)




@dataclass(frozen=True)
class AgentSettings:
    interval: float = setting("5s", v.positive(v.parse_duration))
    state_dir: str = setting("/var/lib/llm-agent", v.typed(str))
    hostname: str = setting("", v.typed(str))
    collector_timeout: float = setting("", lambda x: v.parse_duration(x) if x else 0.0)
    max_response_bytes: int = setting("16MiB", v.positive(v.parse_size))
    log_level: str = setting("info", v.one_of(("debug", "info", "warning", "error")))


@dataclass(frozen=True)
class ExporterSettings:
    listen: Tuple[str, int] = setting("0.0.0.0:9400", v.parse_listen)
    max_threads: int = setting(8, v.typed(int, 1, 256))
    max_connections: int = setting(1024, v.typed(int, 1, 65536))
    request_timeout: float = setting("10s", v.positive(v.parse_duration))
    tls_cert_file: str = setting("", v.typed(str))
    tls_key_file: str = setting("", v.typed(str))
    tls_client_ca_file: str = setting("", v.typed(str))
    basic_auth_users: Dict[str, str] = setting({}, _bcrypt_users)
    # without basic auth, silences (POST/DELETE /api/v2/...) are accepted from loopback and these
    api_write_from: List[str] = setting([], _networks)
    # names (besides IP addresses, localhost and the host's own names) a write's Host may carry
    allowed_hosts: List[str] = setting([], v.str_list)


def _unit_name(value: object) -> str:
    text = v.typed(str)(value)
    if text and (not re.fullmatch(r"[A-Za-z0-9:_.@\\-]+", text) or text.startswith("-")):
        raise ValueError(f"{text!r} is not a systemd unit name (like llama-server.service)")
    return text


@dataclass(frozen=True)
class TargetConfig:
    """An inference server to scrape."""

    name: str = setting(None, v.typed(str), required=True)
    url: str = setting(None, v.parse_url, required=True)
    kind: str = setting("llamacpp", v.one_of(("llamacpp", "openmetrics", "ollama")))
    metrics_path: str = setting("/metrics", v.url_path)
    timeout: float = setting("3s", v.positive(v.parse_duration))
    api_key: str = setting("", v.header_value, secret=True)
    labels: Dict[str, str] = setting({}, v.str_table)
    probe: bool = setting(True, v.typed(bool))
    unit: str = setting("", _unit_name)  # the systemd service running it ("": read from its process's cgroup)
    slo_availability: float = setting(0.0, lambda x: _fraction(x, allow_zero=True))  # 0: the [slo] default
    # Prometheus' per-target limits; 0: none
    sample_limit: int = setting(50_000, v.typed(int, 0, 10_000_000))
    label_limit: int = setting(64, v.typed(int, 0, 10_000))
    label_name_length_limit: int = setting(256, v.typed(int, 0, 1_000_000))
    label_value_length_limit: int = setting(4096, v.typed(int, 0, 10_000_000))


@dataclass(frozen=True)
class AlertingSettings:
    default_rules: bool = setting(True, v.typed(bool))
    disable: List[str] = setting([], v.str_list)
    no_data_timeout: float = setting("10m", v.positive(v.parse_duration))
    alertmanager_resend: float = setting("1m", v.positive(v.parse_duration))
    evaluation_budget: float = setting("1s", v.positive(v.parse_duration))
    rule_files: List[str] = setting([], v.str_list)
    # how far back a rule may read (range + offset, subqueries included) from the in-memory
    # history: the default rules reach 6h; further is refused at load (memory grows with it)
    memory_history: float = setting("7h", v.positive(v.parse_duration))
    # added to alerts sent to Alertmanager (as Prometheus' external_labels), with `Hostname` (as
    # dcgm-exporter's label) = the hostname unless set here, so a fleet's alerts from different hosts never merge
    external_labels: Dict[str, str] = setting({}, v.str_table)
    # what templates read as $externalURL (Prometheus' --web.external-url); empty: this agent's own
    # console, http://<hostname>:<port>/
    external_url: str = setting("", v.typed(str))


@dataclass(frozen=True)
class RuleSettings:
    name: str = setting(None, v.typed(str), required=True)
    expr: str = setting(None, _expr, required=True)
    for_: float = setting("0s", v.parse_duration, key="for")
    keep_firing_for: float = setting("0s", v.parse_duration)
    # evaluated every `interval` rather than every cycle (0s): for slow conditions with long windows
    interval: float = setting("0s", v.parse_duration)
    cooldown: float = setting("0s", v.parse_duration)  # deprecated: [[notify]] repeat_interval
    severity: str = setting("warning", v.one_of(("critical", "warning", "info")))
    labels: Dict[str, str] = setting({}, _templates)
    annotations: Dict[str, str] = setting({}, _templates)


def _metric_name(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", value):
        raise ValueError(f"invalid recording rule name {value!r}: use a metric name such as job:requests:rate5m")
    return value


def _record_labels(value: Any) -> Dict[str, str]:
    table = v.str_table(value)
    if "__name__" in table:
        raise ValueError("a recording rule's labels cannot set __name__ (that is `record`)")
    return table


@dataclass(frozen=True)
class RecordingRuleSettings:
    record: str = setting(None, _metric_name, required=True)
    expr: str = setting(None, _expr, required=True)
    labels: Dict[str, str] = setting({}, _record_labels)


@dataclass(frozen=True)
class InhibitSettings:
    source_matchers: List[str] = setting(None, _matchers, required=True)
    target_matchers: List[str] = setting(None, _matchers, required=True)
    equal: List[str] = setting([], v.str_list)


@dataclass(frozen=True)
class NotifySettings:
    name: str = setting(None, v.typed(str), required=True)
    type: str = setting(None, v.one_of(CHANNEL_TYPES), required=True)
    url: str = setting("", v.typed(str), secret=True)
    urls: List[str] = setting([], v.str_list, secret=True)
    routing_key: str = setting("", v.typed(str), secret=True)
    # email, with Alertmanager's email_configs names
    smarthost: str = setting("", lambda x: x if x == "" else _smarthost(x))
    from_: str = setting("", lambda x: x if x == "" else _address(x), key="from")
    to: List[str] = setting([], lambda x: [_address(a) for a in v.str_list(x)])
    auth_username: str = setting("", v.typed(str))
    auth_password: str = setting("", v.typed(str), secret=True)
    require_tls: bool = setting(True, v.typed(bool))
    tls_ca_file: str = setting("", v.typed(str))
    headers: Dict[str, str] = setting({}, _mail_headers)
    subject: str = setting("", lambda x: x if x == "" else _subject(x))
    # opsgenie
    api_key: str = setting("", v.header_value, secret=True)
    region: str = setting("us", v.one_of(("us", "eu")))
    priorities: Dict[str, str] = setting({}, _priorities)
    # Alertmanager's grouping: one message per group of alerts with the same group_by values
    group_by: List[str] = setting(["alertname"], _group_by)
    group_wait: float = setting("0s", v.parse_duration)
    group_interval: float = setting("1m", v.parse_duration)
    repeat_interval: float = setting("4h", v.positive(v.parse_duration))
    one_incident_per_group: bool = setting(False, v.typed(bool))
    severities: List[str] = setting([], v.str_list)
    matchers: List[str] = setting([], _matchers)
    send_resolved: bool = setting(True, v.typed(bool))
    timeout: float = setting("10s", v.positive(v.parse_duration))
    max_age: float = setting("24h", v.positive(v.parse_duration))


def _schedule(value: Any) -> Any:
    return parse_schedule(value)  # ValueError names what is wrong


@dataclass(frozen=True)
class ReportSettings:
    name: str = setting(None, v.typed(str), required=True)
    schedule: Any = setting(None, _schedule, required=True)
    channels: List[str] = setting(None, v.str_list, required=True)
    period: float = setting("", lambda x: v.positive(v.parse_duration)(x) if x else 0.0)  # 0: the schedule's
    format: str = setting("md", v.one_of(("text", "md", "html", "json")))


@dataclass(frozen=True)
class ProbeSettings:
    enabled: bool = setting(True, v.typed(bool))
    interval: float = setting("60s", v.positive(v.parse_duration))
    timeout: float = setting("10s", v.positive(v.parse_duration))
    prompt: str = setting("Reply with the single word OK.", v.typed(str))
    max_tokens: int = setting(8, v.typed(int, 1, 4096))
    api: str = setting("auto", v.one_of(("auto", "completion", "chat", "ollama")))
    model: str = setting("", v.typed(str))
    canary_regex: str = setting("", _regex)
    canary_baseline: bool = setting(False, v.typed(bool))
    only_loaded_models: bool = setting(True, v.typed(bool))


def _optional_number(value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def _optional_text(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


@dataclass(frozen=True)
class BenchSettings:
    enabled: bool = setting(True, v.typed(bool))
    interval: float = setting("6h", v.at_least(60, v.parse_duration))
    idle_for: float = setting("2m", v.positive(v.parse_duration))
    prompt_tokens: int = setting(512, v.typed(int, 16, 32768))
    generate_tokens: int = setting(128, v.typed(int, 2, 4096))
    requests: int = setting(8, v.typed(int, 2, 100))
    max_concurrency: int = setting(4, v.typed(int, 1, 64))
    timeout: float = setting("60s", v.positive(v.parse_duration))
    tolerance: float = setting(0.15, _fraction)
    baseline_runs: int = setting(3, v.typed(int, 1, 50))
    quality_interval: float = setting("1h", v.at_least(60, v.parse_duration))


@dataclass(frozen=True)
class QualitySettings:
    name: str = setting(None, v.typed(str), required=True)
    prompt: str = setting(None, v.typed(str), required=True)
    expect_regex: str = setting("", _regex)
    expect_exact: Any = setting(None, _optional_text)
    expect_number: Any = setting(None, _optional_number)
    tolerance: float = setting(0.0, lambda x: float(v.typed((int, float), 0)(x)))
    max_tokens: int = setting(64, v.typed(int, 1, 4096))
    targets: List[str] = setting([], v.str_list)


@dataclass(frozen=True)
class HealthSettings:
    hang_after: float = setting("5s", v.positive(v.parse_duration))
    stall_after: float = setting("60s", v.positive(v.parse_duration))
    wedge_after: float = setting("30s", v.positive(v.parse_duration))
    watch_processes: bool = setting(True, v.typed(bool))
    py_spy: bool = setting(True, v.typed(bool))
    py_spy_timeout: float = setting("10s", v.positive(v.parse_duration))
    restart_grace: float = setting("2m", v.parse_duration)
    systemctl: str = setting("systemctl", v.typed(str))


@dataclass(frozen=True)
class SloSettings:
    availability: float = setting(0.995, _fraction)
    ttft_seconds: float = setting("1s", v.positive(v.parse_duration))
    ttft_objective: float = setting(0.95, _fraction)
    short_lived_share: float = setting(0.05, lambda x: _fraction(x, allow_zero=True))


@dataclass(frozen=True)
class CostSettings:
    gpu_hour_price: float = setting(0.0, v.typed((int, float), 0))
    host_hour_price: float = setting(0.0, v.typed((int, float), 0))
    currency: str = setting("USD", v.typed(str))
    month_budget: float = setting(0.0, v.typed((int, float), 0))
    electricity_per_kwh: float = setting(0.0, v.typed((int, float), 0))


@dataclass(frozen=True)
class DiscoverySettings:
    enabled: bool = setting(True, v.typed(bool))
    interval: float = setting("30s", v.positive(v.parse_duration))
    fallback_url: str = setting("http://127.0.0.1:8080", v.parse_url)
    gone_after: float = setting("2m", v.parse_duration)


@dataclass(frozen=True)
class NvmlSettings:
    enabled: bool = setting(True, v.typed(bool))
    xid_events: bool = setting(True, v.typed(bool))
    process_memory: bool = setting(True, v.typed(bool))
    retry_max: float = setting("5m", v.positive(v.parse_duration))
    expected_gpus: int = setting(0, v.typed(int, 0, 1024))  # 0: learn them (state_dir/gpus.json)


# node_exporter's defaults, and the same for Python's re (`\Z`: RE2's `$` is the end only; each
# `.+` or `.*` is the only repetition on its path, so the match never backtracks over the text
# more than once): RE2 is loaded only for an operator's own pattern (agent/regex.py)
MOUNT_POINTS_EXCLUDE = regex.shipped("^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/kubelet/.+)($|/)",
                                     r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/kubelet/.+)(\Z|/)")
NET_DEVICES_EXCLUDE = regex.shipped("^(lo|veth.*|docker.*|br-.*)$", r"^(lo|veth.*|docker.*|br-.*)\Z")


@dataclass(frozen=True)
class HostSettings:
    enabled: bool = setting(True, v.typed(bool))
    fs_types_exclude: List[str] = setting(["tmpfs", "devtmpfs", "squashfs", "overlay", "nsfs", "ramfs"], v.str_list)
    mount_points_exclude: str = setting(MOUNT_POINTS_EXCLUDE, _regex)
    net_devices_exclude: str = setting(NET_DEVICES_EXCLUDE, _regex)


@dataclass(frozen=True)
class KernelSettings:
    enabled: bool = setting(True, v.typed(bool))
    kmsg_path: str = setting("/dev/kmsg", v.typed(str))


@dataclass(frozen=True)
class FabricSettings:
    enabled: bool = setting(True, v.typed(bool))
    sysfs_root: str = setting("/sys", v.typed(str))
    dev_root: str = setting("/dev", v.typed(str))  # where NVSwitch device nodes show (Fabric Manager)


def _series_selectors(value: Any) -> list:
    items = v.str_list(value)
    for item in items:
        if not isinstance(parse(item), VectorSelector):  # PromQLError is a ValueError
            raise ValueError(f"{item!r} is not a series selector such as node_cpu_seconds_total or "
                             "{__name__=~\"go_.*\"}")
    return items


@dataclass(frozen=True)
class HistorySettings:
    enabled: bool = setting(True, v.typed(bool))
    raw_retention: float = setting("24h", v.at_least(3600, v.parse_duration))
    rollup_1m_retention: float = setting("30d", v.at_least(3600, v.parse_duration))
    rollup_1h_retention: float = setting("400d", v.at_least(3600, v.parse_duration))
    alert_retention: float = setting("400d", v.at_least(3600, v.parse_duration))
    exclude: List[str] = setting([], _series_selectors)
    max_series: int = setting(20_000, v.typed(int, 100, 10_000_000))
    max_disk: int = setting("1GiB", v.at_least(64 << 20, v.parse_size))
    query_max_samples: int = setting(500_000, v.typed(int, 1000, 100_000_000))
    query_timeout: float = setting("30s", v.positive(v.parse_duration))


_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED_HEADERS = {"content-encoding", "content-type", "x-prometheus-remote-write-version", "user-agent"}


def _external_labels(value: Any) -> Dict[str, str]:
    table = v.str_table(value)
    for name in table:
        if not _LABEL_NAME.match(name) or name.startswith("__"):
            raise ValueError(f"{name!r} is not a label name (letters, digits and _, not starting with __)")
    return table


def _remote_headers(value: Any) -> Dict[str, str]:
    table = v.str_table(value)
    for name, text in table.items():
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is the protocol's own: it cannot be set")
        v.header_value(text)
    return table


RELABEL_ACTIONS = ("keep", "drop", "labeldrop", "labelkeep")


def _write_relabel(value: Any) -> List[Dict[str, Any]]:
    """Prometheus' write_relabel_configs, the four actions a box needs, as tables; each error
    names the rule and its key."""
    if not isinstance(value, list):
        raise ValueError('expected a list of tables such as [{action = "drop", regex = "go_.*"}]')
    rules = []
    for i, item in enumerate(value, 1):
        if not isinstance(item, dict):
            raise ValueError(f"rule {i}: expected a table with action and regex")
        unknown = set(item) - {"action", "regex", "source_labels", "separator"}
        if unknown:
            raise ValueError(f"rule {i}: unknown key {sorted(unknown)[0]!r}")
        if item.get("action") not in RELABEL_ACTIONS:
            raise ValueError(f"rule {i}: action must be one of {', '.join(RELABEL_ACTIONS)}, not {item.get('action')!r}")
        pattern = item.get("regex", "(.*)")
        if not isinstance(pattern, str):
            raise ValueError(f"rule {i}: regex must be a string")
        regex.check(pattern)  # RegexError is a ValueError
        sources = item.get("source_labels", ["__name__"])
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            raise ValueError(f"rule {i}: source_labels must be a list of label names")
        rules.append({"action": item["action"], "regex": pattern, "source_labels": list(sources),
                      "separator": str(item.get("separator", ";"))})
    return rules


@dataclass(frozen=True)
class RemoteWriteSettings:
    """[[remote_write]]: Prometheus' remote write 1.0 to one receiver, from the history file."""
    url: str = setting(None, v.parse_url, required=True, secret=True)  # it may carry credentials
    name: str = setting("", v.typed(str))  # "": the URL's host and port
    basic_auth_username: str = setting("", v.typed(str))
    basic_auth_password: str = setting("", v.typed(str), secret=True)
    bearer_token: str = setting("", v.header_value, secret=True)
    headers: Dict[str, str] = setting({}, _remote_headers, secret=True)
    tls_ca_file: str = setting("", v.typed(str))
    tls_cert_file: str = setting("", v.typed(str))
    tls_key_file: str = setting("", v.typed(str))
    tls_server_name: str = setting("", v.typed(str))
    tls_insecure_skip_verify: bool = setting(False, v.typed(bool))
    timeout: float = setting("30s", v.positive(v.parse_duration))
    external_labels: Dict[str, str] = setting({}, _external_labels)
    write_relabel: list = setting([], _write_relabel)
    # the queue: defaults a user never needs to touch
    max_backlog: float = setting("24h", v.positive(v.parse_duration))
    max_samples_per_send: int = setting(5000, v.typed(int, 100, 1_000_000))
    min_backoff: float = setting("500ms", v.positive(v.parse_duration))
    max_backoff: float = setting("30s", v.positive(v.parse_duration))
    metadata_interval: float = setting("1m", v.positive(v.parse_duration))


@dataclass(frozen=True)
class CollectorSettings:
    nvml: NvmlSettings = section(NvmlSettings)
    host: HostSettings = section(HostSettings)
    fabric: FabricSettings = section(FabricSettings)
    kernel: KernelSettings = section(KernelSettings)


@dataclass(frozen=True)
class Settings:
    """The whole file, as the schema: `load.Config` is this plus where it came from."""

    agent: AgentSettings = section(AgentSettings)
    exporter: ExporterSettings = section(ExporterSettings)
    targets: Tuple[TargetConfig, ...] = array(TargetConfig)
    alerting: AlertingSettings = section(AlertingSettings)
    rules: Tuple[RuleSettings, ...] = array(RuleSettings)
    recording_rules: Tuple[RecordingRuleSettings, ...] = array(RecordingRuleSettings)
    inhibit: Tuple[InhibitSettings, ...] = array(InhibitSettings)
    notify: Tuple[NotifySettings, ...] = array(NotifySettings)
    reports: Tuple[ReportSettings, ...] = array(ReportSettings)
    probes: ProbeSettings = section(ProbeSettings)
    bench: BenchSettings = section(BenchSettings)
    quality: Tuple[QualitySettings, ...] = array(QualitySettings)
    health: HealthSettings = section(HealthSettings)
    slo: SloSettings = section(SloSettings)
    cost: CostSettings = section(CostSettings)
    discovery: DiscoverySettings = section(DiscoverySettings)
    collectors: CollectorSettings = section(CollectorSettings)
    history: HistorySettings = section(HistorySettings)
    remote_write: Tuple[RemoteWriteSettings, ...] = array(RemoteWriteSettings)


def toml_key(f: "dataclasses.Field") -> str:
    return f.metadata.get("key") or f.name


def spec_of(cls: type) -> Dict[str, Any]:
    """The validator's view of a settings class: key -> Field, nested dict, or [item dict]."""
    out: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if "section" in f.metadata:
            out[toml_key(f)] = spec_of(f.metadata["section"])
        elif "array" in f.metadata:
            out[toml_key(f)] = [spec_of(f.metadata["array"])]
        else:
            out[toml_key(f)] = f.metadata["field"]
    return out


def build(cls: type, values: Dict[str, Any], **extra: Any) -> Any:
    """The typed object for validated `values` (keyed by TOML names)."""
    kwargs = dict(extra)
    for f in dataclasses.fields(cls):
        if f.name in extra:
            continue
        raw = values[toml_key(f)]
        if "section" in f.metadata:
            kwargs[f.name] = build(f.metadata["section"], raw)
        elif "array" in f.metadata:
            kwargs[f.name] = tuple(build(f.metadata["array"], item) for item in raw)
        else:
            kwargs[f.name] = raw
    return cls(**kwargs)


SCHEMA: Dict[str, Any] = spec_of(Settings)
