"""`llm-agent config validate`: every problem of a config file, with its key and file:line."""

from __future__ import annotations

import argparse
import sys

from ..config import ConfigError, load_config, resolve_path


def validate(args: argparse.Namespace) -> int:
    path = resolve_path(args.file)
    if path is None:
        print("llm-agent: no config file given or found; the embedded defaults are valid")
        return 0
    try:
        load_config(path)
    except ConfigError as e:
        print(f"llm-agent: invalid configuration:\n{e}", file=sys.stderr)
        return 2
    print(f"{path}: valid")
    return 0
