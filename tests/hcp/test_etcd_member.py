"""hcp.etcd_member against the simulated world's hosted cluster clusters/demo (SingleReplica: one
real etcd member, etcd-0): member status, choice, snapshot save/status/sha256, streaming, removal.
Sick members are made in a namespace of their own, so the shared world is never broken."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from kubernetes import client

from hcp import pod_exec
from hcp.etcd_member import (
    EtcdMember, EtcdMemberError, MemberStatus, choose_member, etcdctl_argv, list_members, member_status,
    remove_snapshot, save_and_stream_snapshot, save_snapshot, stream_hashed_snapshot, stream_snapshot,
)
from hcp.etcd_tools import etcd_tool

from .conftest import CONTAINER, NAMESPACE, POD

MEMBER = EtcdMember(NAMESPACE, POD, CONTAINER)


def _status(pod: str, *, healthy: bool = True, leader: bool = False, revision: int | None = 100,
            error: str | None = None) -> MemberStatus:
    return MemberStatus(pod=pod, endpoint="https://localhost:2379", member_id=hash(pod) & 0xFFFF, is_leader=leader,
                        revision=revision, db_size=1 << 20, raft_term=2, healthy=healthy, error=error,
                        namespace="clusters-x")


def _exists(api: client.ApiClient, path: str) -> bool:
    return pod_exec.run(api, NAMESPACE, POD, CONTAINER, ["test", "-e", path], check=False).exit_code == 0


# choose_member: synthetic statuses (a 3-member cluster's cases without breaking the shared world)

def test_choose_prefers_a_follower_then_the_highest_revision() -> None:
    statuses = [_status("etcd-0", leader=True, revision=500), _status("etcd-1", revision=480),
                _status("etcd-2", revision=490)]
    assert choose_member(statuses).pod == "etcd-2"
    # An unhealthy follower is never chosen, whatever its revision.
    statuses[2] = _status("etcd-2", healthy=False, revision=900, error="endpoint unhealthy")
    assert choose_member(statuses).pod == "etcd-1"
    # Followers at the same revision: the first by name, so repeated runs pick the same member.
    assert choose_member([_status("etcd-2"), _status("etcd-1"), _status("etcd-0", leader=True)]).pod == "etcd-1"


def test_choose_falls_back_to_the_leader() -> None:
    statuses = [_status("etcd-0", leader=True), _status("etcd-1", healthy=False, error="pod is Pending, not Running"),
                _status("etcd-2", healthy=False, error="endpoint status failed: exited 1")]
    assert choose_member(statuses).pod == "etcd-0"


def test_choose_without_a_healthy_member_lists_each_state() -> None:
    statuses = [_status("etcd-0", healthy=False, error="pod is Pending, not Running"),
                _status("etcd-1", healthy=False, error="endpoint unhealthy: context deadline exceeded")]
    with pytest.raises(EtcdMemberError) as err:
        choose_member(statuses)
    message = str(err.value)
    assert "clusters-x" in message and "choose member" in message
    assert "etcd-0: unhealthy (pod is Pending, not Running)" in message
    assert "etcd-1: unhealthy (endpoint unhealthy: context deadline exceeded)" in message
    assert "Next:" in message and "recovery" in message
    with pytest.raises(EtcdMemberError, match="no members found"):
        choose_member([])


# the real member

def test_list_members(mgmt1_api: client.ApiClient) -> None:
    assert list_members(mgmt1_api, NAMESPACE) == ["etcd-0"]
    assert list_members(mgmt1_api, "no-such-namespace") == []


def test_member_status_of_the_running_member(mgmt1_api: client.ApiClient) -> None:
    status = member_status(mgmt1_api, MEMBER)
    assert status.healthy and status.error is None, status
    assert status.pod == POD and status.namespace == NAMESPACE
    assert status.endpoint == "https://localhost:2379"
    assert status.is_leader  # the only member of a SingleReplica control plane leads
    assert status.member_id and status.raft_term and status.raft_term >= 1
    assert status.revision and status.revision >= 1 and status.db_size and status.db_size > 0
    assert status.version and status.version.startswith("3.5.")
    assert choose_member([status]) == status


def test_missing_pod_or_container_is_unhealthy_not_raised(mgmt1_api: client.ApiClient) -> None:
    missing = member_status(mgmt1_api, EtcdMember(NAMESPACE, "etcd-7"))
    assert not missing.healthy and "404" in (missing.error or "")
    wrong = member_status(mgmt1_api, EtcdMember(NAMESPACE, POD, container="no-such-container"))
    assert not wrong.healthy and "endpoint status failed" in (wrong.error or "")
    assert "no-such-container" in (wrong.error or "")


@pytest.fixture(scope="module")
def sick_namespace(mgmt1_api: client.ApiClient) -> Iterator[str]:
    """A namespace with two app=etcd pods that are not working members: etcd-0 runs no etcd (and has
    no certificates), etcd-1 cannot start (its PVC does not exist)."""
    core = client.CoreV1Api(mgmt1_api)
    namespace = f"hcp-test-sick-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    labels = {"app": "etcd"}
    core.create_namespaced_pod(namespace, {"metadata": {"name": "etcd-0", "labels": labels},
                                           "spec": {"containers": [{"name": "etcd", "image": "example.com/not-etcd:1"}]}})
    core.create_namespaced_pod(namespace, {"metadata": {"name": "etcd-1", "labels": labels}, "spec": {
        "containers": [{"name": "etcd", "image": "example.com/not-etcd:1",
                        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/data"}]}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "missing"}}]}})
    deadline = time.monotonic() + 30
    while core.read_namespaced_pod("etcd-0", namespace).status.phase != "Running":
        assert time.monotonic() < deadline, "etcd-0 of the sick namespace never ran"
        time.sleep(0.1)
    yield namespace
    core.delete_namespace(namespace)


def test_sick_members_are_reported_and_none_is_chosen(mgmt1_api: client.ApiClient, sick_namespace: str) -> None:
    names = list_members(mgmt1_api, sick_namespace)
    assert names == ["etcd-0", "etcd-1"]
    statuses = [member_status(mgmt1_api, EtcdMember(sick_namespace, n), timeout=20) for n in names]
    assert [s.healthy for s in statuses] == [False, False]
    assert "endpoint status failed: exited" in (statuses[0].error or "")
    assert statuses[1].error == "pod is Pending, not Running"
    with pytest.raises(EtcdMemberError) as err:
        choose_member(statuses)
    assert f"etcd {sick_namespace}" in str(err.value)
    assert "etcd-0: unhealthy (endpoint status failed" in str(err.value)
    assert "etcd-1: unhealthy (pod is Pending, not Running)" in str(err.value)


def test_save_stream_and_remove_snapshot(mgmt1_api: client.ApiClient, tmp_path: Path) -> None:
    path = f"/var/lib/data/hcp-runbooks-test-{uuid.uuid4().hex[:6]}.db"
    before = member_status(mgmt1_api, MEMBER).revision or 0
    try:
        info = save_snapshot(mgmt1_api, MEMBER, path)
        assert info.path == path and info.member == POD
        assert info.revision >= before and info.total_keys > 0 and info.hash > 0
        assert info.etcd_version and info.etcd_version.startswith("3.5.")
        # The file is the database plus the 32-byte SHA-256 that `snapshot save` appends.
        assert info.size_bytes == info.db_size_bytes + 32

        local = tmp_path / "snapshot.db"
        digest = hashlib.sha256()
        with local.open("wb") as f:
            for chunk in stream_snapshot(mgmt1_api, MEMBER, path, chunk_bytes=64 * 1024):
                digest.update(chunk)
                f.write(chunk)
        assert digest.hexdigest() == info.sha256
        assert local.stat().st_size == info.size_bytes
        status = json.loads(subprocess.run([str(etcd_tool("etcdutl")), "snapshot", "status", str(local), "-w", "json"],
                                           capture_output=True, text=True, check=True).stdout)
        assert (status["revision"], status["hash"], status["totalKey"], status["totalSize"]) == \
            (info.revision, info.hash, info.total_keys, info.db_size_bytes)
    finally:
        remove_snapshot(mgmt1_api, MEMBER, path)
    assert not _exists(mgmt1_api, path)
    remove_snapshot(mgmt1_api, MEMBER, path)  # idempotent


def _listing(api: client.ApiClient) -> list[str]:
    return pod_exec.run(api, NAMESPACE, POD, CONTAINER, ["ls", "-a", "/var/lib/data"]).text.split()


def test_snapshot_hashed_in_the_pod_while_it_streams(mgmt1_api: client.ApiClient) -> None:
    path = f"/var/lib/data/hcp-runbooks-test-{uuid.uuid4().hex[:6]}.db"
    before = _listing(mgmt1_api)
    try:
        info = save_snapshot(mgmt1_api, MEMBER, path, hash_file=False)
        assert info.sha256 is None and info.size_bytes == info.db_size_bytes + 32
        assert info.etcd_version and info.etcd_version.startswith("3.5.")
        stream = stream_hashed_snapshot(mgmt1_api, MEMBER, path, chunk_bytes=64 * 1024)
        with pytest.raises(RuntimeError, match="read to the end"):
            stream.sha256
        digest, size = hashlib.sha256(), 0
        for chunk in stream:
            digest.update(chunk)
            size += len(chunk)
        in_pod = pod_exec.run(mgmt1_api, NAMESPACE, POD, CONTAINER, ["sha256sum", path]).text.split()[0]
        assert stream.sha256 == digest.hexdigest() == in_pod
        assert size == info.size_bytes
        # nothing left beside the snapshot
        assert sorted(set(_listing(mgmt1_api)) - set(before)) == [path.rsplit("/", 1)[1]]
    finally:
        remove_snapshot(mgmt1_api, MEMBER, path)
    assert _listing(mgmt1_api) == before


def test_snapshot_streamed_while_etcdctl_writes_it(mgmt1_api: client.ApiClient, tmp_path: Path) -> None:
    """One exec: snapshot save, the bytes streamed out as they are written, then the saved file's
    facts. The streamed bytes restore (etcdutl, on the runner) to a database holding a key written
    just before; they hash to what the pod computed over the saved file."""
    from tests.runbooks.etcd_local import keys_in_snapshot

    path = f"/var/lib/data/hcp-runbooks-test-{uuid.uuid4().hex[:6]}.db"
    marker = f"/hcp-test/live-{uuid.uuid4().hex[:8]}"
    pod_exec.run(mgmt1_api, NAMESPACE, POD, CONTAINER, etcdctl_argv("put", marker, "before-the-snapshot"))
    before = _listing(mgmt1_api)
    revision = member_status(mgmt1_api, MEMBER).revision or 0
    try:
        stream = save_and_stream_snapshot(mgmt1_api, MEMBER, path, chunk_bytes=64 * 1024)
        with pytest.raises(RuntimeError, match="read to the end"):
            stream.info
        local = tmp_path / "live.db"
        digest = hashlib.sha256()
        with local.open("wb") as f:
            for chunk in stream:
                digest.update(chunk)
                f.write(chunk)
        info = stream.info
        assert info.path == path and info.member == POD and info.revision >= revision and info.total_keys > 0
        assert info.sha256 == digest.hexdigest() == pod_exec.run(
            mgmt1_api, NAMESPACE, POD, CONTAINER, ["sha256sum", path]).text.split()[0]
        assert info.size_bytes == local.stat().st_size == info.db_size_bytes + 32
        assert info.etcd_version and info.etcd_version.startswith("3.5.")
        assert stream.save_seconds is not None and 0 < stream.save_seconds < 60
        status = json.loads(subprocess.run([str(etcd_tool("etcdutl")), "snapshot", "status", str(local), "-w", "json"],
                                           capture_output=True, text=True, check=True).stdout)
        assert (status["revision"], status["hash"], status["totalKey"]) == (info.revision, info.hash, info.total_keys)
        assert keys_in_snapshot(local, tmp_path, marker)[marker] == "before-the-snapshot"
        # the saved file stays (removed by remove_snapshot); nothing else: no .part, hash or version file
        assert sorted(set(_listing(mgmt1_api)) - set(before)) == [path.rsplit("/", 1)[1]] and not stream.removed
        # remove_after: the same exec removes the file once it has described it
        again = save_and_stream_snapshot(mgmt1_api, MEMBER, path, remove_after=True)
        assert hashlib.sha256(b"".join(again)).hexdigest() == again.info.sha256 and again.removed
        assert _listing(mgmt1_api) == before
    finally:
        remove_snapshot(mgmt1_api, MEMBER, path)
        pod_exec.run(mgmt1_api, NAMESPACE, POD, CONTAINER, etcdctl_argv("del", marker))
    assert _listing(mgmt1_api) == before


def test_live_stream_failing_save_names_the_step(mgmt1_api: client.ApiClient) -> None:
    before = _listing(mgmt1_api)
    path = "/var/lib/data/no-such-dir/hcp-runbooks-x.db"
    with pytest.raises(EtcdMemberError) as err:
        list(save_and_stream_snapshot(mgmt1_api, MEMBER, path))
    e = err.value
    assert (e.namespace, e.pod, e.step) == (NAMESPACE, POD, "snapshot save")
    assert "etcdctl" in " ".join(e.command or []) and "snapshot save" in " ".join(e.command or [])
    assert "No such file or directory" in str(e) and "Next:" in str(e)
    assert _listing(mgmt1_api) == before
    with pytest.raises(ValueError, match="absolute file path"):
        save_and_stream_snapshot(mgmt1_api, MEMBER, "relative.db")


def test_hashed_stream_of_a_missing_file_fails_and_leaves_nothing(mgmt1_api: client.ApiClient) -> None:
    before = _listing(mgmt1_api)
    stream = stream_hashed_snapshot(mgmt1_api, MEMBER, "/var/lib/data/hcp-runbooks-missing.db")
    with pytest.raises(pod_exec.ExecStreamError, match="exited 1") as err:
        list(stream)
    assert "cat /var/lib/data/hcp-runbooks-missing.db" in str(err.value)
    assert "No such file or directory" in str(err.value)
    assert _listing(mgmt1_api) == before


def test_save_failure_names_the_member_and_the_step(mgmt1_api: client.ApiClient) -> None:
    path = "/var/lib/data/no-such-dir/hcp-runbooks-x.db"
    with pytest.raises(EtcdMemberError) as err:
        save_snapshot(mgmt1_api, MEMBER, path)
    e = err.value
    assert (e.namespace, e.pod, e.step) == (NAMESPACE, POD, "snapshot save")
    message = str(e)
    assert f"etcd {NAMESPACE}/{POD} (cluster mgmt1), step snapshot save: exited" in message
    assert "no such file or directory" in message and "Next:" in message
    with pytest.raises(ValueError, match="absolute file path"):
        save_snapshot(mgmt1_api, MEMBER, "relative.db")


def test_stream_of_a_missing_snapshot_raises(mgmt1_api: client.ApiClient) -> None:
    with pytest.raises(pod_exec.ExecStreamError, match="exited 1"):
        list(stream_snapshot(mgmt1_api, MEMBER, "/var/lib/data/hcp-runbooks-missing.db"))


def test_etcdctl_argv_is_the_documented_command(mgmt1_api: client.ApiClient) -> None:
    out: Any = pod_exec.run(mgmt1_api, NAMESPACE, POD, CONTAINER, etcdctl_argv("endpoint", "health")).text
    assert "https://localhost:2379 is healthy" in out
