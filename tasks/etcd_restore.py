"""Tasks of the in-place etcd restore (hcp.etcd_restore holds the steps themselves).

Which steps are checkpointed, and why: fetching the snapshot (a re-run reuses the checked local
file) and the restore itself (a re-run must never restore twice: after the first restore the
writers may have written again). The others are idempotent and act on what they find, because
the undo of a failed run may have put back what an earlier run of the operation changed."""

from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from kubernetes import client
from prefect import task
from pydantic import BaseModel

from hcp import etcd_restore, snapshot_source
from hcp import hosted_cluster as hc
from hcp.aws_access import AwsAccess
from hcp.backup_catalog import list_backups
from hcp.etcd_member import EtcdMember, MemberStatus
from hcp.etcd_restore import EtcdLayout
from hcp.hosted_cluster import HostedClusterError, read_hosted_cluster
from hcp.naming import BackupLocation
from hcp.restore_render import presign_snapshot, redact_url
from hcp.restore_verify import snapshot_keyspace, verify_restored
from hcp.run_target import RunTarget
from hcp.snapshot_source import LocalSnapshot, SnapshotSourceError, SourceKind
from hcp.undo_journal import UndoAction, UndoJournal
from hcp.waits import WaitTimeout, wait_for_object
from tasks.aws import s3_client
from tasks.checkpoint import checkpointed
from tasks.etcd import snapshot_path
from tasks.runbook import each_with_own_client

__all__ = ["read_etcd_layout", "choose_backup", "fetch_snapshot", "stop_etcd", "wait_etcd_stopped",
           "start_data_pods", "download_snapshot", "copy_snapshot", "restore_data", "remove_data_pods", "start_etcd",
           "verify_restore", "wait_cluster_available", "remove_previous_data", "RestoredData", "Verified", "SnapshotIn",
           "ChosenBackup", "work_dir_for"]

RUNBOOK = "etcd-restore"


class RestoredData(BaseModel):
    at: datetime
    output: str


class Verified(BaseModel):
    lines: list[str]
    members: int
    key_count: int


def work_dir_for(base: str | None, target: RunTarget) -> Path:
    """Where the operation keeps its snapshot on the runner (stable across re-runs of the operation)."""
    root = Path(base) if base else Path(tempfile.gettempdir()) / "hcp-runbooks"
    return root / target.operation_id


@task(name="read-etcd-layout")
def read_etcd_layout(target: RunTarget) -> EtcdLayout:
    return etcd_restore.read_layout(target.api_client(), target.ref.control_plane_namespace)


# choose-backup's entry for fetch-snapshot, which runs right after it in the same process: the
# backups of the cluster are not listed (and every manifest read) twice. A run in another process
# (a resumed operation) lists again; fetch-snapshot checks the object against the manifest either way.
_CHOSEN: dict[str, Any] = {}
_CHOSEN_MAX = 64


class ChosenBackup(BaseModel):
    """The backup to restore: its location and its snapshot object with the manifest's SHA-256 and size
    (what the runner's copy, and each data pod's download, must match)."""

    url: str
    snapshot_object: str  # s3://BUCKET/KEY
    sha256: str
    size_bytes: int


def _chosen(entry: Any) -> ChosenBackup:
    if len(_CHOSEN) >= _CHOSEN_MAX:
        _CHOSEN.clear()
    _CHOSEN[entry.location.url] = entry
    m = entry.manifest
    return ChosenBackup(url=entry.location.url, snapshot_object=f"s3://{entry.location.bucket}/{m.snapshot_key}",
                        sha256=m.sha256, size_bytes=m.size_bytes)


@task(name="choose-backup")
def choose_backup(target: RunTarget, aws: AwsAccess, bucket: str, prefix: str, backup: str | None,
                  cluster_uid: str | None = None) -> ChosenBackup:
    """The backup: the one given (its prefix or its manifest.json), else the newest
    complete backup of this hosted cluster on this management cluster. A backup of another
    HostedCluster (another name, or the same name with another uid: a cluster deleted and created
    again) is refused: restoring it in place would mix two clusters' data. Without `cluster_uid` the
    HostedCluster is read here (so this runs beside the flow's own read of it)."""
    if cluster_uid is None:
        cluster_uid = read_hosted_cluster(target.api_client(), target.ref, management=target.management_cluster).uid
    if backup:
        loc = BackupLocation.parse(backup.removesuffix("manifest.json"))
        entries = list_backups(s3_client(aws), loc.bucket, loc.prefix, management_cluster=loc.management_cluster,
                               hosted_cluster=loc.hosted_cluster)
        entry = next((e for e in entries if e.location.url == loc.url), None)
        if entry is None or not entry.complete or entry.manifest is None:
            raise SnapshotSourceError("not found" if entry is None else entry.status, source=f"backup {loc.url}",
                                      step="choose backup", next_step="list the backups with `hcp-runbooks backups list "
                                      f"--bucket {loc.bucket} --cluster {target.ref}`")
        m = entry.manifest
        if (m.namespace, m.name, m.uid) != (target.ref.namespace, target.ref.name, cluster_uid):
            raise SnapshotSourceError(
                f"it is a backup of HostedCluster {m.namespace}/{m.name} uid {m.uid}, not of {target.ref} uid "
                f"{cluster_uid}", source=f"backup {loc.url}", step="choose backup",
                next_step="choose a backup of this cluster; to start another cluster from it, use the "
                          "restore into a new hosted cluster (etcd-restore-new-cluster)")
        return _chosen(entry)
    entries = [e for e in list_backups(s3_client(aws), bucket, prefix, management_cluster=target.management_cluster,
                                       hosted_cluster=target.ref) if e.complete and e.manifest is not None]
    mine = [e for e in entries if e.manifest is not None and e.manifest.uid == cluster_uid]
    if not mine:
        other = f" ({len(entries)} of an earlier HostedCluster of the same name, another uid)" if entries else ""
        raise SnapshotSourceError(f"no complete backup of {target.ref} (uid {cluster_uid}) from "
                                  f"{target.management_cluster} under s3://{bucket}/{prefix}{other}",
                                  source="latest backup", step="choose backup",
                                  next_step="give a backup's URL (`--backup s3://...`), or use --source snapshot / "
                                            "member-db")
    return _chosen(mine[-1])


@checkpointed(name="fetch-snapshot")
def fetch_snapshot(target: RunTarget, kind: SourceKind, aws: AwsAccess, backup_url: str | None, member: str | None,
                   work_dir: str | None) -> LocalSnapshot:
    dest = work_dir_for(work_dir, target) / "snapshot.db"
    api = target.api_client()
    namespace = target.ref.control_plane_namespace
    if kind in ("latest-backup", "backup"):
        assert backup_url
        loc = BackupLocation.parse(backup_url)
        entry = _CHOSEN.pop(loc.url, None) or next(
            e for e in list_backups(s3_client(aws), loc.bucket, loc.prefix, management_cluster=loc.management_cluster,
                                    hosted_cluster=loc.hosted_cluster) if e.location.url == loc.url)
        return snapshot_source.fetch_backup(s3_client(aws), entry, dest)
    assert member
    if kind == "snapshot":
        return snapshot_source.fetch_member_snapshot(api, EtcdMember(namespace, member),
                                                     snapshot_path(target.operation_id), dest)
    return snapshot_source.fetch_member_db(api, EtcdMember(namespace, member), dest)


@task(name="stop-etcd")
def stop_etcd(target: RunTarget, layout: EtcdLayout) -> bool:
    """Record the member count and scale etcd to 0; its pods go while the data pod starts
    (`wait_etcd_stopped` before the restore). True if it acted now."""
    api = target.api_client()
    journal = UndoJournal(api, target.ref, target.operation_id)
    known = {a.id for a in journal.pending()}
    action = journal.record(UndoAction.scale_statefulset(layout.namespace, etcd_restore.STATEFULSET, layout.replicas))
    etcd_restore.stop_statefulset(api, layout)
    return action.id not in known


@task(name="wait-etcd-stopped")
def wait_etcd_stopped(target: RunTarget, layout: EtcdLayout, timeout_seconds: float) -> None:
    """Every etcd member pod gone: nothing has a member's files open when the restore writes them."""
    etcd_restore.wait_statefulset_stopped(target.api_client(), layout, timeout_seconds)


@task(name="start-data-pods")
def start_data_pods(target: RunTarget, layout: EtcdLayout, timeout_seconds: float) -> dict[str, str]:
    """One data pod per member (member -> pod). Their removal is recorded first: the undo (also
    `hcp-runbooks recover` after a kill) removes them before scaling etcd back, so the members get
    their volumes back."""
    api = target.api_client()
    journal = UndoJournal(api, target.ref, target.operation_id)
    for member in layout.members:
        journal.record(UndoAction.delete_deployment(layout.namespace, layout.data_deployment(member)))
    return etcd_restore.start_data_pods(api, layout, target.operation_id, timeout_seconds)


class SnapshotIn(BaseModel):
    """How the snapshot got into a data pod: already there (a re-run), downloaded by the pod from S3,
    or not (`note` says why: the runner's file is copied in instead)."""

    how: Literal["present", "downloaded", "unavailable"]
    note: str = ""


_PRESIGN_SECONDS = 600  # S3 checks the signature when the GET starts: the URL only has to outlive the start


def _s3_ca_bundle(s3: Any) -> bytes | None:
    """The CA bundle the runner's S3 client verifies S3 with, when it is not the system's (AWS_CA_BUNDLE or
    `ca_bundle` in the AWS config: MinIO, ODF, a proxy): the data pod's curl must trust the same. None: the
    system roots (AWS S3), which the etcd image has. botocore keeps the resolved value on the client's
    HTTP session (no public accessor)."""
    verify = getattr(getattr(getattr(s3, "_endpoint", None), "http_session", None), "_verify", None)
    if isinstance(verify, str) and Path(verify).is_file():
        return Path(verify).read_bytes()
    return None


@task(name="download-snapshot-in-pods", retries=1, retry_delay_seconds=2)
def download_snapshot(target: RunTarget, layout: EtcdLayout, pods: dict[str, str], backup: ChosenBackup,
                      aws: AwsAccess, timeout_seconds: float) -> dict[str, SnapshotIn]:
    """Every data pod downloads the backup's snapshot itself from S3, side by side (a presigned GET),
    and checks it against the manifest's SHA-256 and size (the ones the runner's copy is checked
    against) before it takes its name: bytes that differ fail the step. A pod that cannot fetch it
    (no curl in the image, no way to S3) is marked "unavailable": the runner's file is copied into it."""
    bucket, _, key = backup.snapshot_object.removeprefix("s3://").partition("/")
    s3 = s3_client(aws)
    url, ca_bundle = presign_snapshot(s3, bucket, key, _PRESIGN_SECONDS), _s3_ca_bundle(s3)

    def one(api: client.ApiClient, member: str) -> SnapshotIn:
        try:
            present = etcd_restore.download_into_pod(api, layout, pods[member], url, backup.sha256, backup.size_bytes,
                                                     ca_bundle=ca_bundle, timeout=timeout_seconds)
        except etcd_restore.DownloadUnavailable as e:
            return SnapshotIn(how="unavailable", note=f"the data pod could not download it from S3 ({e})")
        return SnapshotIn(how="present") if present else SnapshotIn(how="downloaded", note=f"from {redact_url(url)}")

    return dict(zip(pods, each_with_own_client(target, one, pods)))


@task(name="copy-snapshot-in", retries=1, retry_delay_seconds=2)
def copy_snapshot(target: RunTarget, layout: EtcdLayout, pods: dict[str, str], snapshot: LocalSnapshot,
                  timeout_seconds: float) -> None:
    """Stream the runner's checked file into these data pods, side by side (a fresh snapshot or a
    member/snap/db copy exists only on the runner; a pod that could not download it), checked in the
    pod by SHA-256 before it takes its name. A pod that has it already (a retry) is not copied to again."""
    def put_in(api: client.ApiClient, member: str) -> None:
        if etcd_restore.snapshot_in_pod(api, layout, pods[member]) != snapshot.sha256:
            etcd_restore.copy_into_pod(api, layout, pods[member], Path(snapshot.path), snapshot.sha256,
                                       timeout=timeout_seconds)

    each_with_own_client(target, put_in, pods)


@checkpointed(name="restore-data")
def restore_data(target: RunTarget, layout: EtcdLayout, pods: dict[str, str], snapshot: LocalSnapshot,
                 timeout_seconds: float) -> RestoredData:
    """Every member's restore in its own data pod, side by side."""
    outputs = each_with_own_client(target, lambda api, member: etcd_restore.run_restore(
        api, layout, pods[member], target.operation_id, members=[member], skip_hash_check=snapshot.restore_skips_hash_check,
        timeout=timeout_seconds), pods)
    return RestoredData(at=datetime.now(timezone.utc), output="\n".join(outputs)[-2000:])


@task(name="remove-data-pods")
def remove_data_pods(target: RunTarget, layout: EtcdLayout, timeout_seconds: float) -> bool:
    return etcd_restore.remove_data_pods(target.api_client(), layout.namespace, timeout_seconds)


@task(name="start-etcd")
def start_etcd(target: RunTarget, layout: EtcdLayout, timeout_seconds: float) -> list[MemberStatus]:
    api = target.api_client()
    etcd_restore.start_statefulset(api, layout, timeout_seconds)
    return etcd_restore.wait_members_healthy(api, layout, timeout_seconds, new_api=target.api_client)


@task(name="verify-restore")
def verify_restore(target: RunTarget, layout: EtcdLayout, snapshot: LocalSnapshot) -> Verified:
    """Every member against the snapshot file, at the snapshot's revision (hcp.restore_verify)."""
    facts = snapshot_keyspace(Path(snapshot.path), snapshot.revision, skip_hash_check=snapshot.skip_hash_check)
    check = verify_restored(target.api_client(), layout.namespace, facts, snapshot.revision,
                            expected_members=layout.replicas)
    return Verified(lines=check.lines(), members=len(check.members), key_count=facts.keys_at_snapshot)


@task(name="wait-hosted-cluster-available")
def wait_cluster_available(target: RunTarget, timeout_seconds: float) -> None:
    def available(obj: dict | None) -> bool:
        conditions = ((obj or {}).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)
    ref = target.ref
    try:
        wait_for_object(client.CustomObjectsApi(target.api_client()).list_namespaced_custom_object, ref.name,
                        available, timeout=timeout_seconds, what=f"hosted cluster {ref} Available", group=hc.GROUP,
                        version=hc.VERSION, namespace=ref.namespace, plural=hc.PLURAL)
    except WaitTimeout as exc:
        info = read_hosted_cluster(target.api_client(), ref, management=target.management_cluster)
        raise HostedClusterError(f"{target}: {exc}; its conditions: {info.conditions}; etcd was restored and "
                                 "verified, look at the control plane pods") from None


@task(name="remove-previous-data")
def remove_previous_data(target: RunTarget, layout: EtcdLayout) -> str:
    etcd_restore.remove_previous_data(target.api_client(), layout, target.operation_id)
    return etcd_restore.previous_data_dir(target.operation_id)
