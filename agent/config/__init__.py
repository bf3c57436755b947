"""Configuration: `schema.py` lists every key with its default and parser (the single source
of truth), `values.py` parses values (durations, sizes, URLs, secrets), `load.py` validates a
TOML file against the schema into a Config, every error with its key path and file:line."""

from .load import DEFAULT_PATH, ENV_VAR, Config, ConfigError, default_config, load_config, parse_config, resolve_path
from .schema import (SCHEMA, AgentSettings, AlertingSettings, CollectorSettings, CostSettings, DiscoverySettings,
                     ExporterSettings, Field, HealthSettings, HistorySettings, HostSettings, InhibitSettings, NotifySettings, NvmlSettings,
                     ProbeSettings, RecordingRuleSettings, RemoteWriteSettings, ReportSettings, RuleSettings, Settings,
                     SloSettings, TargetConfig)

__all__ = ["DEFAULT_PATH", "ENV_VAR", "SCHEMA", "AgentSettings", "AlertingSettings", "CollectorSettings", "Config",
           "ConfigError", "CostSettings", "DiscoverySettings", "ExporterSettings", "Field", "HealthSettings",
           "HistorySettings", "HostSettings", "InhibitSettings", "NotifySettings", "NvmlSettings", "ProbeSettings",
           "RecordingRuleSettings", "RemoteWriteSettings", "ReportSettings", "RuleSettings",
           "Settings", "SloSettings", "TargetConfig", "default_config", "load_config", "parse_config", "resolve_path"]
