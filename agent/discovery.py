"""Find inference servers on this host when no targets are configured.

llama-server, vLLM, SGLang, TGI (text-generation-launcher) and `ollama serve` processes are
recognised from their command lines (psutil); their address comes from `--host`/`--port` (or
llama-server's LLAMA_ARG_HOST/PORT, Ollama's OLLAMA_HOST), with
each server's default port otherwise. `parse_server_cmdline()` is pure and table-tested.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple
from urllib.parse import urlsplit

from .config import TargetConfig
import psutil

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Found:
    kind: str  # llamacpp | openmetrics
    flavour: str  # llama-server | vllm | sglang | tgi | ollama
    host: str
    port: int
    pid: int = 0


# (flavour, collector kind, default port)
_LLAMA = ("llama-server", "llamacpp", 8080)
_VLLM = ("vllm", "openmetrics", 8000)
_SGLANG = ("sglang", "openmetrics", 30000)
_TGI = ("tgi", "openmetrics", 3000)  # text-generation-launcher's default --port
_OLLAMA = ("ollama", "ollama", 11434)


def _flavour(argv: Sequence[str]) -> Optional[Tuple[str, str, int]]:
    if not argv:
        return None
    exe = os.path.basename(argv[0])
    if exe == "llama-server" or exe.startswith("llama-server"):
        return _LLAMA
    joined = " ".join(argv[:4])
    if exe == "vllm" and len(argv) > 1 and argv[1] == "serve" or "vllm.entrypoints" in joined:
        return _VLLM
    if "sglang.launch_server" in joined or exe == "sglang" and "serve" in argv[1:2]:
        return _SGLANG
    if exe.startswith("python") and len(argv) > 1 and os.path.basename(argv[1]) in ("vllm",):
        return _VLLM
    if exe == "text-generation-launcher":
        return _TGI
    if exe == "ollama" and argv[1:2] == ["serve"]:
        return _OLLAMA
    return None


def _ollama_host(value: str) -> Tuple[Optional[str], Optional[str]]:
    """(host, port) from OLLAMA_HOST: "0.0.0.0:11434", "127.0.0.1", ":11435", "http://h:p"."""
    value = value.strip()
    if "://" in value:
        parts = urlsplit(value)
        return parts.hostname, str(parts.port) if parts.port else None
    host, sep, port = value.rpartition(":")
    if not sep:
        return value or None, None
    return host.strip("[]") or None, port or None


def _option(argv: Sequence[str], names: Iterable[str]) -> Optional[str]:
    names = tuple(names)
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(name + "="):
                return arg[len(name) + 1:]
    return None


def parse_server_cmdline(argv: Sequence[str], environ: Optional[Dict[str, str]] = None, pid: int = 0) -> Optional[Found]:
    """Recognise an inference server from its argv; None when it is not one."""
    flavour = _flavour(argv)
    if flavour is None:
        return None
    name, kind, port = flavour
    env = environ or {}
    host = _option(argv, ("--host",)) or (env.get("LLAMA_ARG_HOST") if name == "llama-server" else None) or "127.0.0.1"
    port_text = _option(argv, ("--port",)) or (env.get("LLAMA_ARG_PORT") if name == "llama-server" else None)
    if name == "ollama" and env.get("OLLAMA_HOST"):  # `ollama serve` takes its address from the environment only
        env_host, env_port = _ollama_host(env["OLLAMA_HOST"])
        host, port_text = env_host or "127.0.0.1", env_port
    if port_text:
        try:
            port = int(port_text)
        except ValueError:
            log.debug("pid %d: unreadable --port %r", pid, port_text)
    if host in ("0.0.0.0", "::", "", "[::]"):
        host = "127.0.0.1"  # listening everywhere: reach it on loopback
    if host.endswith(".sock"):
        return None  # a UNIX socket: not scrapeable over TCP
    return Found(kind, name, host, port, pid)


def target_name(found: Found, taken: Dict[str, int]) -> str:
    """A stable, readable name: 'llama-server-8080'."""
    base = f"{found.flavour}-{found.port}"
    taken[base] = taken.get(base, 0) + 1
    return base if taken[base] == 1 else f"{base}-{taken[base]}"


def discover_processes() -> List[Found]:
    """Scan running processes (cheap: one /proc walk reading cmdline and environ)."""

    found = []
    for proc in psutil.process_iter(["cmdline", "pid"]):
        argv = proc.info.get("cmdline") or []
        if not argv:
            continue
        if _flavour(argv) is None:
            continue
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            env = {}
        hit = parse_server_cmdline(argv, env, proc.info["pid"])
        if hit is not None:
            found.append(hit)
    return found


def discovered_targets(found: Sequence[Found], fallback_url: str) -> Tuple[TargetConfig, ...]:
    """Targets for what was found (one per address), or the fallback when nothing was."""
    targets: List[TargetConfig] = []
    seen: Set[Tuple[str, int]] = set()
    taken: Dict[str, int] = {}
    for f in sorted(found, key=lambda f: (f.port, f.pid)):
        if (f.host, f.port) in seen:
            continue
        seen.add((f.host, f.port))
        host = f"[{f.host}]" if ":" in f.host else f.host
        targets.append(TargetConfig(name=target_name(f, taken), url=f"http://{host}:{f.port}", kind=f.kind))
    if not targets:
        # same name as a llama-server later found on that port, so its series do not move
        port = urlsplit(fallback_url).port or 80
        targets.append(TargetConfig(name=f"llama-server-{port}", url=fallback_url, kind="llamacpp"))
    return tuple(targets)


@dataclass(frozen=True)
class Held:
    """A discovered target as the agent keeps it: `missing_since` (monotonic) is when discovery
    first did not find it (None: found now); `guessed`: the fallback address, not a process."""

    target: TargetConfig
    missing_since: Optional[float] = None
    guessed: bool = False


def hold_missing(held: Dict[str, Held], fresh: Sequence[TargetConfig], guessed: bool, now: float,
                 gone_after: float) -> Tuple[Dict[str, Held], List[Held]]:
    """This discovery's targets, with the servers it no longer finds kept for `gone_after` (a
    server being restarted comes back under the same name); returns (held now, gone). `fresh`
    is what discovery found, or the guess when it found nothing (`guessed`). The guess is
    watched only while nothing else stands for the host: not beside a missing server still
    held, nor in the discovery that lets one go (it comes at the next)."""
    out: Dict[str, Held] = {} if guessed else {t.name: Held(t) for t in fresh}
    gone: List[Held] = []
    for name, h in held.items():
        now_found = out.get(name)
        if now_found is not None and now_found.target.url == h.target.url:
            continue  # found again (or still)
        if h.guessed:
            if guessed and any(t.name == name and t.url == h.target.url for t in fresh):
                out[name] = h  # still the guess
            else:
                gone.append(h)
            continue
        since = h.missing_since if h.missing_since is not None else now
        if now - since >= gone_after or now_found is not None:  # gone, or its name now means another address
            gone.append(replace(h, missing_since=since))
        else:
            out[name] = replace(h, missing_since=since)
    if guessed and not out and not any(not h.guessed for h in gone):
        out = {t.name: Held(t, None, True) for t in fresh}
    return out, gone
