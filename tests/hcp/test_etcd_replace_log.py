"""What the member-recovery runbook tells about a replacement whose reset-member failed once: the
failed run's words first (from `logs --previous`), then the retry's, read over HTTP from a
simulated cluster."""

from __future__ import annotations

import time
from pathlib import Path

from kubernetes import client

from hcp.etcd_replace import _init_log
from hcpsim.runtime.pod_runtime import CommandRunner


def _initialized(core: client.CoreV1Api, namespace: str, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = core.read_namespaced_pod(name, namespace).status
        if any(c.type == "Initialized" and c.status == "True" for c in status.conditions or []):
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} did not initialize: {status}")


def _pod(name: str, script: str) -> dict:
    return {"metadata": {"name": name}, "spec": {
        "initContainers": [{"name": "reset-member", "image": "example.com/reset:1", "command": ["sh", "-c", script]}],
        "containers": [{"name": "etcd", "image": "example.com/reset:1", "command": ["sh", "-c", "exec sleep 300"]}]}}


def test_a_reset_member_that_failed_once_is_quoted_with_its_failed_run_first(
        api_client: client.ApiClient, namespace: str, cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cluster.runtime.register_runner("example.com/reset", CommandRunner())
    core = client.CoreV1Api(api_client)
    runs = tmp_path / "runs"
    core.create_namespaced_pod(namespace, _pod("etcd-2", (
        f"if [ -f {runs} ]; then echo 'A member does not exist with name (etcd-2), nothing to do'; exit 0; fi; "
        f"touch {runs}; echo 'Adding new member'; echo 'Error: etcdserver: member not found'; exit 1")))
    _initialized(core, namespace, "etcd-2")
    said = _init_log(api_client, namespace, "etcd-2")
    assert said == ("(failed run) Adding new member / Error: etcdserver: member not found // then: "
                    "A member does not exist with name (etcd-2), nothing to do"), said

    core.create_namespaced_pod(namespace, _pod("etcd-1", "echo 'Snapshot db exists, member has data'"))
    _initialized(core, namespace, "etcd-1")
    assert _init_log(api_client, namespace, "etcd-1") == "Snapshot db exists, member has data"
