"""`llm-agent run`: collect every interval and serve, until SIGTERM (the systemd service)."""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
from typing import Optional, Tuple

from .. import __version__
from ..alerting import resolve_state_dir
from ..config import Config
from ..daemon import Agent, install_signals
from ..heap import limit_malloc_arenas
from ..logformat import handler_for
from ..serve.exporter import Exporter, ExporterError
from ..serve.websecurity import BasicAuth, TLSContext
from ..statelock import StateDirInUse, StateLock

log = logging.getLogger("agent")


def exporter_security(config: Config) -> Tuple[Optional[TLSContext], Optional[BasicAuth]]:
    """(TLSContext or None, BasicAuth or None) from [exporter]."""
    cert, key = config.exporter.tls_cert_file, config.exporter.tls_key_file
    tls = TLSContext(cert, key, config.exporter.tls_client_ca_file) if cert and key else None
    users = config.exporter.basic_auth_users
    return tls, (BasicAuth(users) if users else None)


def setup_logging(level: str, fmt: str = "text") -> None:
    root = logging.getLogger()
    root.setLevel(getattr(logging, level.upper()))
    root.addHandler(handler_for(fmt, sys.stderr))


def run(args: argparse.Namespace, config: Config) -> int:
    limit_malloc_arenas()  # before the exporter's threads allocate
    setup_logging(args.log_level or config.agent.log_level, args.log_format)
    host, port = config.exporter.listen
    try:
        tls, auth = exporter_security(config)
        exporter = Exporter(host, port, config.exporter.max_threads, config.exporter.request_timeout,
                            config_source=config.source if config.source != "(defaults)" else
                            "a config file given with --config (none is in use: the embedded defaults run)",
                            max_connections=config.exporter.max_connections, tls=tls, auth=auth)
    except (ExporterError, OSError) as e:  # ssl.SSLError is an OSError
        print(f"llm-agent: {e}", file=sys.stderr)
        return 1
    lock = None
    try:
        state_dir = resolve_state_dir(config)
        lock = StateLock(state_dir)  # before the database is opened: a second agent must not touch it
        if auth is not None:
            auth.remember_in(state_dir)  # the addresses that verified before, and their own bcrypt budget
        agent = Agent(config, state_dir=state_dir)
    except (OSError, StateDirInUse, sqlite3.Error) as e:
        print(f"llm-agent: {e}", file=sys.stderr)
        exporter.server_close()
        if lock is not None:
            lock.release()
        return 1
    install_signals(agent)
    exporter.start()
    log.info("llm-agent %s serving on http://%s:%d/metrics every %gs (config: %s)",
             __version__, host, exporter.port, config.interval, config.source)
    try:
        agent.serve(exporter)
    finally:
        exporter.stop()
        agent.close()
        lock.release()
    log.info("stopped")
    return 0
