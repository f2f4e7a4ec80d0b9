"""Writing into a pod through the exec API's stdin (hcp.pod_exec.run_with_input), on the simulated world."""

from __future__ import annotations

import hashlib
import os

import pytest
from kubernetes import client

from hcp import pod_exec
from hcp.etcd_member import list_members

from tests.hcp.conftest import NAMESPACE


def _member(api: client.ApiClient) -> str:
    return list_members(api, NAMESPACE)[0]


def test_bytes_written_to_stdin_arrive_whole(mgmt1_api: client.ApiClient) -> None:
    pod = _member(mgmt1_api)
    data = os.urandom(3 * (1 << 20) + 12345)  # several stdin frames, not a multiple of the frame size
    path = "/var/lib/data/hcp-test-input.bin"
    chunks = [data[i:i + 700_000] for i in range(0, len(data), 700_000)]
    try:
        pod_exec.run_with_input(mgmt1_api, NAMESPACE, pod, "etcd",
                                ["sh", "-c", f"head -c {len(data)} > {path} && sha256sum {path}"], chunks, timeout=120)
        out = pod_exec.run(mgmt1_api, NAMESPACE, pod, "etcd", ["sha256sum", path]).text
        assert out.split()[0] == hashlib.sha256(data).hexdigest()
    finally:
        pod_exec.run(mgmt1_api, NAMESPACE, pod, "etcd", ["rm", "-f", path], check=False)


def test_a_failing_command_raises_with_its_exit_code(mgmt1_api: client.ApiClient) -> None:
    pod = _member(mgmt1_api)
    with pytest.raises(pod_exec.CommandFailed) as info:
        pod_exec.run_with_input(mgmt1_api, NAMESPACE, pod, "etcd", ["sh", "-c", "head -c 3 >/dev/null; exit 7"],
                                [b"abc"], timeout=60)
    assert info.value.exit_code == 7
