"""A snapshot file in an etcd member's pod into S3, checked on the way.

`upload_snapshot_file`: a snapshot already saved in the pod. The bytes are hashed twice while they
travel, by different code on different machines: in the pod as they stream out
(`etcd_member.stream_hashed_snapshot`) and by the uploader as they go up (`s3_transfer.upload_stream`).
The object stays only when the two SHA-256 agree, the size is the file's, and the SHA-256 agrees
with one known before (a snapshot hashed when it was taken), if any; otherwise it is deleted and
`SnapshotMismatch` says what differed.

`save_and_upload_snapshot`: the snapshot taken and uploaded at once, its bytes streamed out of the
pod while etcdctl writes them (`etcd_member.save_and_stream_snapshot`). The object stays only when
etcdctl succeeded and the uploader's SHA-256 and size equal those the pod computed over the saved
file afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from hcp.etcd_member import EtcdMember, EtcdMemberError, SnapshotInfo, save_and_stream_snapshot, stream_hashed_snapshot
from hcp.s3_transfer import S3TransferError, UploadResult, upload_stream

__all__ = ["SnapshotMismatch", "upload_snapshot_file", "save_and_upload_snapshot", "SavedUpload"]

log = logging.getLogger("hcp.snapshot_upload")


class SnapshotMismatch(S3TransferError):
    """The uploaded bytes are not the pod's file (the object was deleted)."""


def upload_snapshot_file(api: client.ApiClient | client.CoreV1Api, member: EtcdMember, path: str, s3: Any,
                         bucket: str, key: str, *, size_bytes: int, sha256: str | None = None,
                         wrap: Callable[[Iterator[bytes]], Iterator[bytes]] | None = None,
                         **upload_args: Any) -> UploadResult:
    """Stream `path` out of the member's pod into s3://bucket/key (`upload_args` go to upload_stream:
    sse, kms_key_id, metadata, part_size, concurrency...). `wrap` sees the chunks on their way (a
    progress report). Returns the upload, whose `sha256` is also the pod's."""
    stream = stream_hashed_snapshot(api, member, path)
    result = upload_stream(s3, bucket, key, wrap(stream) if wrap else stream, **upload_args)
    try:
        pod_sha256 = stream.sha256
    except EtcdMemberError:
        _delete(s3, bucket, key)
        raise
    problems = []
    if result.sha256 != pod_sha256:
        problems.append(f"SHA-256 {result.sha256} uploaded, {pod_sha256} computed in the pod")
    if result.size != size_bytes:
        problems.append(f"{result.size} bytes uploaded, the file has {size_bytes}")
    if sha256 and sha256 != pod_sha256:
        problems.append(f"SHA-256 {pod_sha256} now, {sha256} when the snapshot was taken")
    if problems:
        _delete(s3, bucket, key)
        raise SnapshotMismatch(f"s3://{bucket}/{key}: the upload is not the snapshot file {path} in pod {member} "
                               f"({'; '.join(problems)}); the object was deleted. Next: retry the backup (a new "
                               "stream); if it happens again, take a new snapshot")
    return result


@dataclass(frozen=True)
class SavedUpload:
    info: SnapshotInfo          # the saved file in the pod; its sha256 the pod's, equal to the upload's
    upload: UploadResult
    save_seconds: float | None  # how long etcdctl snapshot save ran (the pod's clock)
    removed: bool = False       # the file was removed from the pod once its facts were known


def save_and_upload_snapshot(api: client.ApiClient | client.CoreV1Api, member: EtcdMember, path: str, s3: Any,
                             bucket: str, key: str, *,
                             wrap: Callable[[Iterator[bytes]], Iterator[bytes]] | None = None,
                             remove_after: bool = False, **upload_args: Any) -> SavedUpload:
    """`etcdctl snapshot save <path>` in the member's pod, streamed into s3://bucket/key while it is
    written (`upload_args` and `wrap` as for `upload_snapshot_file`). If etcdctl, the stream or the
    facts fail, the upload is aborted (EtcdMemberError); if the uploaded bytes are not the saved
    file (SHA-256 or size), the object is deleted (SnapshotMismatch). The file stays in the pod,
    or with `remove_after` is removed by the same exec once the pod has hashed it (for a caller
    whose retry takes a new snapshot anyway)."""
    stream = save_and_stream_snapshot(api, member, path, remove_after=remove_after)
    result = upload_stream(s3, bucket, key, wrap(stream) if wrap else stream, **upload_args)
    try:
        info = stream.info
    except BaseException:
        _delete(s3, bucket, key)
        raise
    problems = []
    if result.sha256 != info.sha256:
        problems.append(f"SHA-256 {result.sha256} uploaded, {info.sha256} computed in the pod over the saved file")
    if result.size != info.size_bytes:
        problems.append(f"{result.size} bytes uploaded, the saved file has {info.size_bytes}")
    if problems:
        _delete(s3, bucket, key)
        raise SnapshotMismatch(f"s3://{bucket}/{key}: the upload is not the snapshot file {path} in pod {member} "
                               f"({'; '.join(problems)}); the object was deleted. Next: retry the backup (a new "
                               "snapshot and stream)")
    return SavedUpload(info=info, upload=result, save_seconds=stream.save_seconds, removed=stream.removed)


def _delete(s3: Any, bucket: str, key: str) -> None:
    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except Exception as e:  # keep the original error; the object is not a backup without a manifest
        log.error("s3://%s/%s: could not delete the unverified object: %s", bucket, key, e)
