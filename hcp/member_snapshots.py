"""Every etcd member's own snapshot, each streamed into S3 under the member's name and checked.

The DR procedure backs up each member (contrib/migration/migrate-hcp.sh runs `curl` in etcd-0 for
every member, so all its objects hold etcd-0's file: fixed here, each member streams its own file
out of its own pod). With the API servers scaled to 0 the members hold the same revision; the
restore uses the one with the highest revision, in case a member lagged.

The members are snapshotted side by side, an ApiClient each (the client's exec patches its
ApiClient while it runs, so overlapping execs must not share one).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client
from pydantic import BaseModel

from hcp.etcd_member import EtcdMember, remove_snapshot, save_snapshot
from hcp.snapshot_upload import upload_snapshot_file

__all__ = ["MemberSnapshot", "snapshot_members", "newest", "member_object_name"]


class MemberSnapshot(BaseModel):
    member: str
    key: str  # object key in the bucket
    revision: int
    hash: int
    total_keys: int
    size_bytes: int
    db_size_bytes: int
    sha256: str
    etcd_version: str | None = None


def member_object_name(member: str) -> str:
    return f"{member}-snapshot.db"


def newest(snapshots: list[MemberSnapshot]) -> MemberSnapshot:
    """The snapshot with the highest revision (ties: the lowest member ordinal)."""
    if not snapshots:
        raise ValueError("no member snapshots")
    return max(snapshots, key=lambda s: (s.revision, -_ordinal(s.member)))


def _ordinal(member: str) -> int:
    tail = member.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def snapshot_members(api_for: Callable[[], client.ApiClient], namespace: str, members: list[str], path: str, s3: Any,
                     bucket: str, key_for: Callable[[str], str], **upload_args: Any) -> list[MemberSnapshot]:
    """Snapshot each member in its pod, stream it to s3://bucket/key_for(member) (SHA-256 in the pod
    and on the way compared; a mismatch deletes the object), remove the file from the pod."""
    def one(pod: str) -> MemberSnapshot:
        api = api_for()
        member = EtcdMember(namespace, pod)
        try:
            info = save_snapshot(api, member, path, hash_file=False)
            try:
                result = upload_snapshot_file(api, member, path, s3, bucket, key_for(pod), size_bytes=info.size_bytes,
                                              **upload_args)
            finally:
                remove_snapshot(api, member, path)
            return MemberSnapshot(member=pod, key=key_for(pod), revision=info.revision, hash=info.hash,
                                  total_keys=info.total_keys, size_bytes=info.size_bytes,
                                  db_size_bytes=info.db_size_bytes, sha256=result.sha256,
                                  etcd_version=info.etcd_version)
        finally:
            api.close()

    with ThreadPoolExecutor(max_workers=max(1, len(members)), thread_name_prefix="member-snapshot") as pool:
        return list(pool.map(one, members))
