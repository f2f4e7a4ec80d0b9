"""The backup's transfer path against the simulated world: etcd-0's snapshot streamed out through the
exec WebSocket and into S3 (multipart, bounded memory, SHA-256 checked against `sha256sum` in the pod),
and the failure paths (a cut stream, a failing part, bytes that differ from the pod's) leave nothing
behind or recover."""

from __future__ import annotations

import gc
import hashlib
import json
import shlex
import tracemalloc
import uuid
from typing import Any

import pytest

from hcp import pod_exec
from hcp.cluster_access import ClusterAccess, ClusterAccessError
from hcp.etcd_member import EtcdMember, EtcdMemberError, remove_snapshot
from hcp.pod_exec import CommandFailed, ExecStreamError
from hcp.s3_transfer import MiB, S3TransferError, download_stream, sha256_of_object, upload_stream
from hcp.snapshot_upload import SnapshotMismatch, save_and_upload_snapshot, upload_snapshot_file

from tests.conformance.util import wait_for

from .conftest import CONTAINER, NAMESPACE, POD

ETCDCTL = ["env", "ETCDCTL_API=3", "/usr/bin/etcdctl", "--cacert", "/etc/etcd/tls/etcd-ca/ca.crt",
           "--cert", "/etc/etcd/tls/client/etcd-client.crt", "--key", "/etc/etcd/tls/client/etcd-client.key",
           "--endpoints=https://localhost:2379"]


def _in_pod(api, *argv: str, timeout: float = 60) -> str:  # type: ignore[no-untyped-def]
    return pod_exec.run(api, NAMESPACE, POD, CONTAINER, list(argv), timeout=timeout).text


def _pod_sha256(api, path: str) -> str:  # type: ignore[no-untyped-def]
    return _in_pod(api, "sha256sum", path).split()[0]


def _key() -> str:
    return f"test/{uuid.uuid4().hex[:8]}/snapshot.db"


def _assert_nothing_left(s3, bucket: str, key: str) -> None:  # type: ignore[no-untyped-def]
    assert s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount", 0) == 0
    uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
    assert uploads == []


@pytest.fixture(scope="module")
def big_file(mgmt1_api) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """40 MiB of random bytes in the etcd pod's data volume, and their sha256sum."""
    path = "/var/lib/data/hcp-test-40m.bin"
    _in_pod(mgmt1_api, "sh", "-c", f"head -c {40 * MiB} /dev/urandom > {path}")
    yield path, _pod_sha256(mgmt1_api, path)
    _in_pod(mgmt1_api, "rm", "-f", path)


def test_snapshot_streamed_to_s3_matches_sha256sum_in_pod(mgmt1_api, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    path = f"/var/lib/data/hcp-test-{uuid.uuid4().hex[:6]}.db"
    _in_pod(mgmt1_api, *ETCDCTL, "snapshot", "save", path)
    try:
        expected = _pod_sha256(mgmt1_api, path)
        key = _key()
        result = upload_stream(s3, bucket, key, pod_exec.stream_stdout(mgmt1_api, NAMESPACE, POD, CONTAINER, ["cat", path],
                                                                       chunk_bytes=256 * 1024))
        assert result.sha256 == expected
        assert result.parts == 0  # a small snapshot: one PutObject
        assert sha256_of_object(s3, bucket, key) == expected
        assert result.size == s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
    finally:
        _in_pod(mgmt1_api, "rm", "-f", path)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_large_file_goes_multipart_with_bounded_memory(mgmt1_api, s3, bucket, big_file, concurrency) -> None:  # type: ignore[no-untyped-def]
    path, expected = big_file
    key = _key()
    gc.collect()
    tracemalloc.start()
    try:
        result = upload_stream(s3, bucket, key, pod_exec.stream_stdout(mgmt1_api, NAMESPACE, POD, CONTAINER, ["cat", path]),
                               part_size=8 * MiB, sse="AES256", concurrency=concurrency)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.size == 40 * MiB
    assert result.parts == 5
    assert result.sha256 == expected
    # At most concurrency + 1 parts of 8 MiB are held (plus a 1 MiB chunk and the clients' buffers),
    # never the file (40 MiB here is 5 parts: with concurrency 4 the bound is loose but real).
    bound = (min(concurrency + 1, 5) * 8 + 8) * MiB
    assert peak < bound, f"peak traced allocations {peak / MiB:.1f} MiB for a 40 MiB transfer"
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentLength"] == 40 * MiB
    assert sha256_of_object(s3, bucket, key) == expected
    assert sum(len(c) for c in download_stream(s3, bucket, key, chunk_bytes=4 * MiB)) == 40 * MiB


def test_cut_exec_stream_raises_and_leaves_nothing_in_the_bucket(hcp_world, mgmt1_api, s3, bucket, big_file) -> None:  # type: ignore[no-untyped-def]
    path, _ = big_file
    key = _key()
    hcp_world.cluster("mgmt1").faults.cut_next_exec(after_bytes=12 * MiB)  # after two 5 MiB parts went up
    with pytest.raises(ExecStreamError) as err:
        upload_stream(s3, bucket, key, pod_exec.stream_stdout(mgmt1_api, NAMESPACE, POD, CONTAINER, ["cat", path]),
                      part_size=5 * MiB)
    assert err.value.exit_code is None
    message = str(err.value)
    assert "mgmt1" in message and f"{NAMESPACE}/{POD}" in message and f"cat {path}" in message
    assert "without an exit status" in message
    _assert_nothing_left(s3, bucket, key)


def test_failed_part_is_retried(hcp_world, mgmt1_api, s3, bucket, big_file) -> None:  # type: ignore[no-untyped-def]
    path, expected = big_file
    key = _key()
    no_retry_client = hcp_world.aws.client("s3", max_attempts=1)  # the retry seen is ours, not botocore's
    hcp_world.aws.faults.reset_stats()
    hcp_world.aws.faults.fail_next(2, 503, method="PUT", path=key)  # UploadPart 1 fails twice
    result = upload_stream(no_retry_client, bucket, key,
                           pod_exec.stream_stdout(mgmt1_api, NAMESPACE, POD, CONTAINER, ["head", "-c", str(12 * MiB), path]),
                           part_size=5 * MiB, retry_delay=0.01)
    assert hcp_world.aws.faults.stats()["injected"] == 2
    assert result.parts == 3 and result.size == 12 * MiB
    assert sha256_of_object(s3, bucket, key) == result.sha256 == _in_pod(
        mgmt1_api, "sh", "-c", f"head -c {12 * MiB} {path} | sha256sum").split()[0]


def test_part_failing_every_time_aborts_the_upload(hcp_world, mgmt1_api, bucket) -> None:  # type: ignore[no-untyped-def]
    key = _key()
    no_retry_client = hcp_world.aws.client("s3", max_attempts=1)
    hcp_world.aws.faults.fail_next(10, 500, method="PUT", path=key)
    chunks = (bytes([i]) * MiB for i in range(7))  # 7 MiB: two parts of 5 MiB
    # both parts are in flight at once: whichever fails its last attempt first stops the upload
    with pytest.raises(S3TransferError, match="UploadPart [12] .* after 3 attempt"):
        upload_stream(no_retry_client, bucket, key, chunks, part_size=5 * MiB, part_attempts=3, retry_delay=0.01)
    _assert_nothing_left(no_retry_client, bucket, key)


def test_small_upload_with_sse_and_split_chunks(s3, bucket) -> None:  # type: ignore[no-untyped-def]
    key = _key()
    data = b"etcd" * 1000
    result = upload_stream(s3, bucket, key, [data[:10], b"", data[10:]], sse="AES256")
    assert (result.size, result.sha256, result.parts) == (len(data), hashlib.sha256(data).hexdigest(), 0)
    assert s3.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"
    # Chunks that straddle part boundaries: parts are exactly part_size but the last.
    key2 = _key()
    blob = bytes(range(256)) * (45 * 1024)  # 11.25 MiB in uneven 3 MiB + 1 chunks
    step = 3 * MiB + 1
    result = upload_stream(s3, bucket, key2, (blob[i:i + step] for i in range(0, len(blob), step)), part_size=5 * MiB)
    assert result.parts == 3
    assert sha256_of_object(s3, bucket, key2) == hashlib.sha256(blob).hexdigest() == result.sha256


def test_run_reports_non_zero_exit_with_context(mgmt1_api) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CommandFailed) as err:
        pod_exec.run(mgmt1_api, NAMESPACE, POD, CONTAINER, ["sh", "-c", "echo boom >&2; exit 3"], timeout=20)
    assert err.value.exit_code == 3
    assert "cluster mgmt1" in str(err.value) and "boom" in str(err.value) and "exit 3" in str(err.value)
    result = pod_exec.run(mgmt1_api, NAMESPACE, POD, CONTAINER, ["sh", "-c", "exit 4"], timeout=20, check=False)
    assert result.exit_code == 4
    with pytest.raises(ExecStreamError, match="non-zero|exited 1"):
        list(pod_exec.stream_stdout(mgmt1_api, NAMESPACE, POD, CONTAINER, ["cat", "/var/lib/data/no-such-file"]))


def test_cluster_access_errors_name_the_context(hcp_world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ClusterAccessError, match="nope.*not in kubeconfig.*mgmt1"):
        ClusterAccess(kubeconfig=hcp_world.kubeconfig_path, context="nope").api_client()
    with pytest.raises(ClusterAccessError, match="mgmt1.*does not exist"):
        ClusterAccess(kubeconfig=tmp_path / "missing", context="mgmt1").api_client()
    # A context whose server does not answer.
    text = hcp_world.kubeconfig_path.read_text()
    import yaml

    cfg = yaml.safe_load(text)
    for c in cfg["clusters"]:
        c["cluster"]["server"] = "https://127.0.0.1:9"
    (tmp_path / "kc").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ClusterAccessError, match="cluster mgmt1: API https://127.0.0.1:9 is unreachable"):
        ClusterAccess(kubeconfig=tmp_path / "kc", context="mgmt1", request_timeout=2).api_client()
    with pytest.raises(ValueError):
        ClusterAccess(in_cluster=True, context="mgmt1")


def test_s3_failure_closes_the_exec_stream(hcp_world, mgmt1_api, bucket, big_file) -> None:  # type: ignore[no-untyped-def]
    path, _ = big_file
    key = _key()
    no_retry_client = hcp_world.aws.client("s3", max_attempts=1)
    hcp_world.aws.faults.fail_next(5, 403, method="PUT", path=key)  # AccessDenied: not retried
    chunks = pod_exec.stream_stdout(mgmt1_api, NAMESPACE, POD, CONTAINER, ["cat", path])
    with pytest.raises(S3TransferError, match="after 1 attempt"):
        upload_stream(no_retry_client, bucket, key, chunks, part_size=5 * MiB)
    assert chunks.gi_frame is None  # the generator was closed (its WebSocket with it)
    _assert_nothing_left(no_retry_client, bucket, key)


def test_checked_upload_keeps_the_pods_bytes_only(mgmt1_api, s3, bucket, big_file) -> None:  # type: ignore[no-untyped-def]
    path, expected = big_file
    member = EtcdMember(NAMESPACE, POD, CONTAINER)
    key = _key()
    result = upload_snapshot_file(mgmt1_api, member, path, s3, bucket, key, size_bytes=40 * MiB, sse="AES256")
    assert result.sha256 == expected == sha256_of_object(s3, bucket, key) and result.parts == 5

    small = f"/var/lib/data/hcp-test-{uuid.uuid4().hex[:6]}.bin"
    _in_pod(mgmt1_api, "sh", "-c", f"head -c {MiB} /dev/urandom > {small}")
    try:
        def flip_a_byte(chunks):  # type: ignore[no-untyped-def]
            """A byte changed on the way: after the pod hashed it, before the uploader did."""
            for i, chunk in enumerate(chunks):
                yield bytes([chunk[0] ^ 1]) + chunk[1:] if i == 0 else chunk

        key = _key()
        with pytest.raises(SnapshotMismatch, match="computed in the pod.*the object was deleted"):
            upload_snapshot_file(mgmt1_api, member, small, s3, bucket, key, size_bytes=MiB, wrap=flip_a_byte)
        _assert_nothing_left(s3, bucket, key)
        # the pod's bytes, but not the file the snapshot step described (size, SHA-256)
        with pytest.raises(SnapshotMismatch, match=f"{MiB} bytes uploaded, the file has {MiB + 1}"):
            upload_snapshot_file(mgmt1_api, member, small, s3, bucket, key, size_bytes=MiB + 1)
        with pytest.raises(SnapshotMismatch, match="when the snapshot was taken"):
            upload_snapshot_file(mgmt1_api, member, small, s3, bucket, key, size_bytes=MiB, sha256="0" * 64)
        _assert_nothing_left(s3, bucket, key)
    finally:
        _in_pod(mgmt1_api, "rm", "-f", small)


# -- the snapshot saved and uploaded at once (the online backup's path) ---------------------------

def _exists(api, path: str) -> bool:  # type: ignore[no-untyped-def]
    return pod_exec.run(api, NAMESPACE, POD, CONTAINER, ["test", "-e", path], check=False).exit_code == 0


def _listing(api) -> list[str]:  # type: ignore[no-untyped-def]
    return _in_pod(api, "ls", "-a", "/var/lib/data").split()


@pytest.fixture
def bulky_etcd(mgmt1_api) -> None:  # type: ignore[no-untyped-def]
    """24 MB more in etcd-0, so that its snapshot takes long enough to be interrupted; deleted,
    compacted and defragmented afterwards (the session's other tests keep a small snapshot)."""
    put = shlex.join([*ETCDCTL, "put"])
    _in_pod(mgmt1_api, "sh", "-c", f"for i in $(seq 24); do head -c 1000000 /dev/zero | tr '\\0' x | "
                                   f"{put} /hcp-test/bulky/$i >/dev/null || exit 1; done", timeout=120)
    yield
    revision = json.loads(_in_pod(mgmt1_api, *ETCDCTL, "del", "--prefix", "/hcp-test/bulky/", "-w", "json"))
    _in_pod(mgmt1_api, *ETCDCTL, "compact", str(revision["header"]["revision"]))
    _in_pod(mgmt1_api, *ETCDCTL, "defrag", timeout=120)


def test_saved_and_uploaded_at_once(mgmt1_api, s3, bucket, bulky_etcd) -> None:  # type: ignore[no-untyped-def]
    member = EtcdMember(NAMESPACE, POD, CONTAINER)
    path = f"/var/lib/data/hcp-runbooks-test-{uuid.uuid4().hex[:6]}.db"
    key = _key()
    seen = []

    def count(chunks):  # type: ignore[no-untyped-def]
        for chunk in chunks:
            seen.append(len(chunk))
            yield chunk
    try:
        saved = save_and_upload_snapshot(mgmt1_api, member, path, s3, bucket, key, wrap=count, part_size=5 * MiB,
                                         sse="AES256")
        assert saved.info.sha256 == saved.upload.sha256 == _pod_sha256(mgmt1_api, path) == sha256_of_object(s3, bucket, key)
        assert saved.upload.size == saved.info.size_bytes == sum(seen) > 24_000_000
        assert saved.upload.parts >= 5 and saved.save_seconds and saved.save_seconds > 0
        assert s3.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"
    finally:
        remove_snapshot(mgmt1_api, member, path)


def _save_and_upload_cut(hcp_world, mgmt1_api, s3, bucket, **cut: Any) -> None:  # type: ignore[no-untyped-def]
    """save_and_upload_snapshot with its exec cut as `cut` says (faults.cut_next_exec): the stream
    fails without an exit status, and nothing is left in S3 or in the pod."""
    member = EtcdMember(NAMESPACE, POD, CONTAINER)
    path = f"/var/lib/data/hcp-runbooks-test-{uuid.uuid4().hex[:6]}.db"
    key = _key()
    before = _listing(mgmt1_api)
    hcp_world.cluster("mgmt1").faults.cut_next_exec(command=f"snapshot save {path}", **cut)
    try:
        with pytest.raises(EtcdMemberError) as err:
            save_and_upload_snapshot(mgmt1_api, member, path, s3, bucket, key, part_size=5 * MiB)
        assert err.value.step == "stream snapshot" and "without an exit status" in str(err.value)
        _assert_nothing_left(s3, bucket, key)
    finally:
        remove_snapshot(mgmt1_api, member, path)
    assert _listing(mgmt1_api) == before


def test_cut_while_saving_and_uploading_leaves_nothing(hcp_world, mgmt1_api, s3, bucket, bulky_etcd) -> None:  # type: ignore[no-untyped-def]
    _save_and_upload_cut(hcp_world, mgmt1_api, s3, bucket, after_bytes=11 * MiB)


def test_cut_after_the_last_byte_while_the_pod_says_its_facts_leaves_nothing(hcp_world, mgmt1_api, s3, bucket,  # type: ignore[no-untyped-def]
                                                                             bulky_etcd) -> None:
    """The upload completes with the snapshot's last byte while the pod computes the facts: a stream
    cut then (the size said, the facts not) removes the object the upload had completed."""
    _save_and_upload_cut(hcp_world, mgmt1_api, s3, bucket, after_stderr="--- hcp-runbooks: snapshot facts ---")


def test_etcdctl_killed_mid_save_leaves_no_object(mgmt1_api, s3, bucket, bulky_etcd) -> None:  # type: ignore[no-untyped-def]
    """etcdctl dies after it has written part of the file (and some of it has gone up): the upload
    is aborted, whatever tail had streamed."""
    member = EtcdMember(NAMESPACE, POD, CONTAINER)
    path = f"/var/lib/data/hcp-runbooks-test-{uuid.uuid4().hex[:6]}.db"
    key = _key()
    before = _listing(mgmt1_api)
    # In the pod, beside the backup: as soon as etcdctl has written its first MiB, kill it. The killer
    # runs in the background of an exec that returns at once (a second exec held open beside the
    # backup's once took longer than its timeout to start on a loaded CI machine); it says it is
    # watching with a file, and gives up after 120 s.
    ready = f"{path}.killer-ready"
    killer = (f"touch {ready}; end=$(( $(date +%s) + 120 )); "
              f"while [ \"$(stat -c %s {path}.part 2>/dev/null || echo 0)\" -lt {MiB} ] && [ $(date +%s) -lt $end ]; "
              f"do :; done; pkill -KILL -f '^[^ ]*etcdctl .*snapshot save {path}$'; rm -f {ready}")
    _in_pod(mgmt1_api, "sh", "-c", f"nohup sh -c {shlex.quote(killer)} >/dev/null 2>&1 &")
    wait_for(lambda: _exists(mgmt1_api, ready), "the killer to watch", timeout=90)
    try:
        with pytest.raises(EtcdMemberError) as err:
            save_and_upload_snapshot(mgmt1_api, member, path, s3, bucket, key, part_size=5 * MiB)
        # etcdctl was killed, not the script: it saw etcdctl fail and said so
        assert err.value.step == "snapshot save" and "exited 137" in str(err.value)
        assert "failed at snapshot save" in str(err.value)
        _assert_nothing_left(s3, bucket, key)
    finally:
        # the killer, if it still waits (a bracket in the pattern: pkill's own command line must not match)
        pod_exec.run(mgmt1_api, NAMESPACE, POD, CONTAINER, ["pkill", "-KILL", "-f", f"{path}.[k]iller-ready"],
                     check=False)
        _in_pod(mgmt1_api, "rm", "-f", ready)
        remove_snapshot(mgmt1_api, member, path)
    assert _listing(mgmt1_api) == before


def test_saved_and_uploaded_bytes_that_differ_from_the_saved_file_are_deleted(mgmt1_api, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    member = EtcdMember(NAMESPACE, POD, CONTAINER)
    path = f"/var/lib/data/hcp-runbooks-test-{uuid.uuid4().hex[:6]}.db"
    key = _key()

    def flip_a_byte(chunks):  # type: ignore[no-untyped-def]
        """A byte changed after it left the pod, before the uploader hashed it."""
        for i, chunk in enumerate(chunks):
            yield bytes([chunk[0] ^ 1]) + chunk[1:] if i == 0 else chunk
    try:
        with pytest.raises(SnapshotMismatch, match="computed in the pod over the saved file.*the object was deleted"):
            save_and_upload_snapshot(mgmt1_api, member, path, s3, bucket, key, wrap=flip_a_byte)
        _assert_nothing_left(s3, bucket, key)
    finally:
        remove_snapshot(mgmt1_api, member, path)
