"""Who a GPU process belongs to, from /proc: its systemd unit, its container and, under
Kubernetes, its pod and namespace, so per-process GPU memory and utilisation can be read as
"the vllm pod in namespace inference uses 70 GiB of GPU 3", the request dcgm-exporter users
file most often.

`parse_cgroup` is pure (tested on captured /proc/PID/cgroup contents: cgroup v2 and v1,
systemd services, Docker, containerd and CRI-O under the systemd and cgroupfs drivers). The
cgroup path has the pod's UID, not its name: the name is the container's HOSTNAME (its
environment) and the namespace is in the service-account mount, both read through /proc as
the agent runs as root or with CAP_SYS_PTRACE; whatever cannot be read is left out.
"""

from __future__ import annotations

import os
import re
from typing import Dict

from .kernelfiles import read_small

_UNIT = re.compile(r"/([^/]+\.service)(?:/|$)")
_CONTAINER = re.compile(r"(?:docker|cri-containerd|crio|libpod|containerd)[-:]([0-9a-f]{64})(?:\.scope)?(?:/|$)|"
                        r"/(?:docker|containerd|crio)/([0-9a-f]{64})(?:/|$)|/([0-9a-f]{64})(?:/|$)")
_POD = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")


def parse_cgroup(text: str) -> Dict[str, str]:
    """{"unit", "container_id" (12 characters, as docker ps shows it), "pod_uid"}: those found."""
    out: Dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        path = parts[2]
        if "unit" not in out:
            m = _UNIT.search(path)
            if m:
                out["unit"] = m.group(1)
        if "container_id" not in out:
            m = _CONTAINER.search(path)
            if m:
                out["container_id"] = next(g for g in m.groups() if g)[:12]
        if "pod_uid" not in out:
            m = _POD.search(path)
            if m:
                out["pod_uid"] = m.group(1).replace("_", "-")
    if "container_id" in out or "pod_uid" in out:
        out.pop("unit", None)  # a container's scope is no service an operator restarts
    return out


def owner(pid: int, proc: str = "/proc") -> Dict[str, str]:
    """Labels for a process: unit, container_id, and for a pod: pod, namespace, pod_uid."""
    found = parse_cgroup(read_small(f"{proc}/{pid}/cgroup"))
    if "pod_uid" in found:
        env = dict(kv.split("=", 1) for kv in read_small(f"{proc}/{pid}/environ").split("\0") if "=" in kv)
        if env.get("HOSTNAME"):
            found["pod"] = env["HOSTNAME"]
        namespace = read_small(os.path.join(proc, str(pid), "root/var/run/secrets/kubernetes.io/serviceaccount/namespace"),
                          256).strip()
        if namespace:
            found["namespace"] = namespace
    return found
