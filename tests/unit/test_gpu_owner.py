"""Who a GPU process belongs to, from captured /proc/PID/cgroup contents (tests/fixtures/cgroup),
and the whole lookup against a fake /proc tree with a pod's environment and namespace mount."""

import random
from pathlib import Path

import pytest

from agent.collectors.gpu_owner import owner, parse_cgroup

FIX = Path(__file__).parent.parent / "fixtures" / "cgroup"


@pytest.mark.parametrize("name, expected", [
    ("systemd-v2.txt", {"unit": "llama-server.service"}),
    ("docker-v2.txt", {"container_id": "4f3c2a1b9d8e"}),
    ("k8s-containerd-systemd-v2.txt", {"container_id": "0123456789ab", "pod_uid": "8d5c1f2e-3a4b-4c5d-9e8f-0a1b2c3d4e5f"}),
    ("k8s-cgroupfs-v1.txt", {"container_id": "fedcba987654", "pod_uid": "1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d"}),
    ("podman-v2.txt", {"container_id": "a1b2c3d4e5f6"}),
    ("session-v2.txt", {}),
])
def test_parse_cgroup(name, expected):
    assert parse_cgroup((FIX / name).read_text()) == expected


def test_a_pods_name_and_namespace_come_from_its_environment_and_mount(tmp_path):
    pid = tmp_path / "4242"
    (pid / "root/var/run/secrets/kubernetes.io/serviceaccount").mkdir(parents=True)
    (pid / "cgroup").write_text((FIX / "k8s-containerd-systemd-v2.txt").read_text())
    (pid / "environ").write_bytes(b"PATH=/usr/bin\0HOSTNAME=vllm-7d9f8-abcde\0MODEL=llama\0")
    (pid / "root/var/run/secrets/kubernetes.io/serviceaccount/namespace").write_text("inference\n")
    assert owner(4242, str(tmp_path)) == {"container_id": "0123456789ab", "pod_uid": "8d5c1f2e-3a4b-4c5d-9e8f-0a1b2c3d4e5f",
                                          "pod": "vllm-7d9f8-abcde", "namespace": "inference"}
    assert owner(999, str(tmp_path)) == {}, "a process gone (or not ours to read): no labels"


def test_fuzzed_cgroup_files_never_raise():
    rng = random.Random(5)
    pieces = ["0::", "12:memory:", "/", "system.slice", ".service", "docker-", "pod", "_", "-", "kubepods",
              "0123456789abcdef" * 4, "\n", ":", "cri-containerd-", ".scope", "é", "\x00"]
    for _ in range(3000):
        parse_cgroup("".join(rng.choice(pieces) for _ in range(rng.randint(0, 15))))
