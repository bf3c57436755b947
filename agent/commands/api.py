"""What the commands that talk to the running agent share: its API's address and credentials,
and a wrapper that turns a refused or failed call into the error and exit status 1."""

from __future__ import annotations

import argparse
import functools
import getpass
import os
import sys
from typing import Callable, Optional, Tuple

from ..apiclient import ApiError, local_url
from ..config import Config

Auth = Optional[Tuple[str, str]]


def api_of(args: argparse.Namespace, config: Config) -> Tuple[str, Auth]:
    """(base URL, auth) of the running agent's API, from --url/--user or the configuration."""
    base = (args.url or local_url(config.exporter.listen, bool(config.exporter.tls_cert_file))).rstrip("/")
    auth = None
    if args.user:
        password = os.environ.get("LLM_AGENT_PASSWORD")
        auth = (args.user, password if password is not None else getpass.getpass(f"password for {args.user}: "))
    return base, auth


def through_api(command: Callable[[argparse.Namespace, str, Auth], int]) -> Callable[[argparse.Namespace, Config], int]:
    """A command that talks to the running agent's API: it gets the API's base URL and auth,
    and a refused or failed call ends it with the error on stderr and exit status 1."""
    @functools.wraps(command)
    def run(args: argparse.Namespace, config: Config) -> int:
        base, auth = api_of(args, config)
        try:
            return command(args, base, auth)
        except ApiError as e:
            print(f"llm-agent: {e}", file=sys.stderr)
            return 1
    return run
