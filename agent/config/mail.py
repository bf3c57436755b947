"""The email channel's settings, checked as the config is read: the smarthost and the subject
template (Alertmanager's email_configs names). Pure: notify/email.py sends with them."""

from __future__ import annotations

import re
from typing import Tuple

SUBJECT_FIELDS = ("status", "count", "alertname", "summary", "host", "severity")
FIELD = re.compile(r"\{([a-z_]+)\}")  # {status}: not ${...}, which the config reads as an environment variable


def check_subject(template: str) -> str:
    """`template` if every {field} in it is known; ValueError naming an unknown one."""
    for name in FIELD.findall(template):
        if name not in SUBJECT_FIELDS:
            raise ValueError(f"unknown subject field {{{name}}}: use " + ", ".join("{" + f + "}" for f in SUBJECT_FIELDS))
    return template


def parse_smarthost(value: object) -> Tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise ValueError(f"expected host:port such as \"smtp.example.com:587\", got {value!r}")
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port such as \"smtp.example.com:587\", got {value!r}")
    return host, int(port)
