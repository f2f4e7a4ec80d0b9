"""A snapshot file in an etcd member's pod into S3, checked on the way.

The bytes are hashed twice while they travel, by different code on different machines: in the pod
as they stream out (`etcd_member.stream_hashed_snapshot`) and by the uploader as they go up
(`s3_transfer.upload_stream`). The object stays only when the two SHA-256 agree, the size is the
file's, and the SHA-256 agrees with one known before (a snapshot hashed when it was taken), if any;
otherwise it is deleted and `SnapshotMismatch` says what differed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client

from hcp.etcd_member import EtcdMember, EtcdMemberError, stream_hashed_snapshot
from hcp.s3_transfer import S3TransferError, UploadResult, upload_stream

__all__ = ["SnapshotMismatch", "upload_snapshot_file"]

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


def _delete(s3: Any, bucket: str, key: str) -> None:
    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except Exception as e:  # keep the original error; the object is not a backup without a manifest
        log.error("s3://%s/%s: could not delete the unverified object: %s", bucket, key, e)
