"""Tasks on the hosted cluster's etcd members, all through the exec API of their pods."""

from __future__ import annotations

from datetime import datetime, timezone

from prefect import task
from pydantic import BaseModel

from hcp import etcd_member
from hcp.etcd_member import EtcdMember, MemberStatus, SnapshotInfo
from hcp.run_target import RunTarget
from tasks.checkpoint import checkpointed
from tasks.runbook import each_with_own_client

__all__ = ["member_statuses", "take_snapshot", "remove_snapshot_file", "snapshot_file_present", "Snapshot", "snapshot_path"]


class Snapshot(BaseModel):
    info: SnapshotInfo
    started_at: datetime
    finished_at: datetime


def snapshot_path(operation_id: str) -> str:
    """On the member's data volume: it survives a container restart until it is streamed out."""
    return f"/var/lib/data/hcp-runbooks-{operation_id.lower()}.db"


@task(name="etcd-member-status")
def member_statuses(target: RunTarget) -> list[MemberStatus]:
    namespace = target.ref.control_plane_namespace
    api = target.api_client()
    try:
        pods = etcd_member.list_members(api, namespace)
    finally:
        api.close()

    return each_with_own_client(target, lambda api, pod: etcd_member.member_status(api, EtcdMember(namespace, pod)),
                                pods)


@checkpointed(name="snapshot-etcd")
def take_snapshot(target: RunTarget, pod: str) -> Snapshot:
    started = datetime.now(timezone.utc)
    member = EtcdMember(target.ref.control_plane_namespace, pod)
    # No SHA-256 here: the upload hashes the file in the pod as it streams out (one read, not two,
    # and in quiesced mode not while the API is down).
    info = etcd_member.save_snapshot(target.api_client(), member, snapshot_path(target.operation_id), hash_file=False)
    return Snapshot(info=info, started_at=started, finished_at=datetime.now(timezone.utc))


@task(name="snapshot-file-present")
def snapshot_file_present(target: RunTarget, pod: str) -> bool:
    member = EtcdMember(target.ref.control_plane_namespace, pod)
    return etcd_member.snapshot_exists(target.api_client(), member, snapshot_path(target.operation_id))


@task(name="remove-snapshot-file", retries=2, retry_delay_seconds=2)
def remove_snapshot_file(target: RunTarget, pod: str) -> None:
    member = EtcdMember(target.ref.control_plane_namespace, pod)
    etcd_member.remove_snapshot(target.api_client(), member, snapshot_path(target.operation_id))
