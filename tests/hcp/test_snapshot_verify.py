"""hcp.snapshot_verify (a backup's `verify: full`) on a real snapshot of clusters/demo's etcd: taken in
etcd-0, streamed to S3, read back, restored and served by a throwaway etcd. The world keeps writing
keys while its API servers run, so the expected numbers are the snapshot's own (its revision and the
live key count at that revision), never a later count."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from kubernetes import client

from hcp import pod_exec, snapshot_verify
from hcp.etcd_member import EtcdMember, SnapshotInfo, etcdctl_argv, member_status, remove_snapshot, save_snapshot, stream_snapshot
from hcp.s3_transfer import upload_stream
from hcp.snapshot_verify import SnapshotVerifyError, verify_snapshot

from .conftest import CONTAINER, NAMESPACE, POD

MEMBER = EtcdMember(NAMESPACE, POD, CONTAINER)


@dataclass(frozen=True)
class Uploaded:
    info: SnapshotInfo
    key: str
    live_keys: int  # `etcdctl get "" --prefix --count-only` at the snapshot's revision, on the live member
    data: bytes


def _verify_processes() -> list[str]:
    """Command lines of live processes started by a verification (their etcd's name says so)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if "--name hcp-verify-" in cmdline and state != "Z":
            found.append(f"{entry}: {cmdline}")
    return found


@pytest.fixture(scope="module")
def uploaded(mgmt1_api: client.ApiClient, s3: Any, bucket: str) -> Iterator[Uploaded]:
    # Wait for some updates (the writer updates every third write), so the snapshot holds old
    # revisions of keys and its totalKey is larger than its live key count.
    deadline = time.monotonic() + 30
    while (member_status(mgmt1_api, MEMBER).revision or 0) < 40:
        assert time.monotonic() < deadline, "clusters/demo's etcd is not being written to"
        time.sleep(0.2)
    path = f"/var/lib/data/hcp-runbooks-verify-{uuid.uuid4().hex[:6]}.db"
    try:
        info = save_snapshot(mgmt1_api, MEMBER, path)
        fields = pod_exec.run(mgmt1_api, NAMESPACE, POD, CONTAINER, etcdctl_argv(
            "get", "", "--prefix", "--count-only", f"--rev={info.revision}", "-w", "fields")).text
        live = int(re.search(r'"Count" : (\d+)', fields).group(1))  # type: ignore[union-attr]
        key = f"test/verify-{uuid.uuid4().hex[:8]}/snapshot.db"
        result = upload_stream(s3, bucket, key, stream_snapshot(mgmt1_api, MEMBER, path))
        assert result.sha256 == info.sha256 and result.size == info.size_bytes
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    finally:
        remove_snapshot(mgmt1_api, MEMBER, path)
    yield Uploaded(info, key, live, data)


@pytest.fixture
def work_dir(tmp_path: Path) -> Iterator[Path]:
    """The verification's work_dir; afterwards it must be empty and no throwaway etcd may run."""
    d = tmp_path / "work"
    d.mkdir()
    yield d
    assert list(d.iterdir()) == []
    assert _verify_processes() == []


def _put(s3: Any, bucket: str, data: bytes) -> tuple[str, str]:
    key = f"test/verify-{uuid.uuid4().hex[:8]}/snapshot.db"
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    return key, hashlib.sha256(data).hexdigest()


def test_full_verification_counts_the_snapshots_keys(s3: Any, bucket: str, uploaded: Uploaded, work_dir: Path) -> None:
    info = uploaded.info
    result = verify_snapshot(s3, bucket, uploaded.key, expected_sha256=info.sha256, expected_total_keys=info.total_keys,
                             expected_revision=info.revision, expected_hash=info.hash, work_dir=work_dir)
    assert result.total_keys == uploaded.live_keys  # the live count at the snapshot's revision, exactly
    assert result.revision == info.revision
    assert (result.hash, result.sha256, result.size_bytes) == (info.hash, info.sha256, info.size_bytes)
    assert result.snapshot_total_keys == info.total_keys
    # totalKey counts every database entry (each revision of each key, the other buckets): with
    # updates in the history it exceeds the live keys.
    assert 0 < result.total_keys < result.snapshot_total_keys
    assert 0 < result.seconds < 30


def test_wrong_sha256_fails_before_anything_runs(s3: Any, bucket: str, uploaded: Uploaded, work_dir: Path) -> None:
    data = bytearray(uploaded.data)
    data[len(data) // 2] ^= 0xFF
    key, _ = _put(s3, bucket, bytes(data))
    with pytest.raises(SnapshotVerifyError) as err:
        verify_snapshot(s3, bucket, key, expected_sha256=uploaded.info.sha256, work_dir=work_dir)
    assert err.value.step == "sha256" and (err.value.bucket, err.value.key) == (bucket, key)
    assert f"verify s3://{bucket}/{key}, step sha256" in str(err.value)
    assert uploaded.info.sha256 in str(err.value) and "Next:" in str(err.value)


def test_corruption_is_caught_even_with_a_matching_sha256(s3: Any, bucket: str, uploaded: Uploaded,
                                                          work_dir: Path) -> None:
    # A byte of key data flipped, checked against the corrupted object's own SHA-256: the integrity
    # hash `snapshot save` appends (checked by restore) or bolt's own checks must refuse it.
    data = bytearray(uploaded.data)
    data[len(data) - 4096 - 100] ^= 0xFF
    key, sha = _put(s3, bucket, bytes(data))
    with pytest.raises(SnapshotVerifyError) as err:
        verify_snapshot(s3, bucket, key, expected_sha256=sha, work_dir=work_dir)
    assert err.value.step in ("snapshot status", "snapshot restore"), err.value
    assert "take a new backup" in str(err.value)


def test_a_file_that_is_not_a_snapshot_fails_clearly(s3: Any, bucket: str, work_dir: Path) -> None:
    key, sha = _put(s3, bucket, b"this is not an etcd snapshot\n" * 1000)
    with pytest.raises(SnapshotVerifyError) as err:
        verify_snapshot(s3, bucket, key, expected_sha256=sha, work_dir=work_dir)
    assert err.value.step == "snapshot status"
    assert "etcdutl snapshot status exited" in str(err.value) and "not a readable etcd snapshot" in str(err.value)


def test_expectations_that_differ_fail(s3: Any, bucket: str, uploaded: Uploaded, work_dir: Path) -> None:
    info = uploaded.info
    with pytest.raises(SnapshotVerifyError) as err:
        verify_snapshot(s3, bucket, uploaded.key, expected_sha256=info.sha256, expected_revision=info.revision + 1,
                        expected_total_keys=info.total_keys, work_dir=work_dir)
    assert f"revision is {info.revision}, expected {info.revision + 1}" in str(err.value)
    assert err.value.step == "snapshot status"


def test_missing_object_fails(s3: Any, bucket: str, work_dir: Path) -> None:
    with pytest.raises(SnapshotVerifyError, match="step download: GetObject .*NoSuchKey"):
        verify_snapshot(s3, bucket, "test/no-such-object.db", expected_sha256="0" * 64, work_dir=work_dir)


def test_a_taken_port_is_retried(s3: Any, bucket: str, uploaded: Uploaded, work_dir: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    real = snapshot_verify._free_ports
    calls: list[list[int]] = []

    def ports(n: int) -> list[int]:
        picked = real(n)
        if not calls:  # the first attempt gets a client port someone else listens on
            picked[0] = taken.getsockname()[1]
        calls.append(picked)
        return picked

    monkeypatch.setattr(snapshot_verify, "_free_ports", ports)
    try:
        result = verify_snapshot(s3, bucket, uploaded.key, expected_sha256=uploaded.info.sha256, work_dir=work_dir)
    finally:
        taken.close()
    assert len(calls) == 2 and result.total_keys == uploaded.live_keys


def test_start_timeout_stops_the_etcd(s3: Any, bucket: str, uploaded: Uploaded, work_dir: Path) -> None:
    with pytest.raises(SnapshotVerifyError, match="step start etcd: the restored etcd was not healthy after 0s"):
        verify_snapshot(s3, bucket, uploaded.key, expected_sha256=uploaded.info.sha256, work_dir=work_dir,
                        start_timeout=0)
    # the work_dir fixture checks that the etcd it started is gone and nothing is left
