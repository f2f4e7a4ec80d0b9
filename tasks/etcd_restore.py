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
           "start_data_pods", "copy_snapshot", "restore_data", "remove_data_pods", "start_etcd", "verify_restore",
           "wait_cluster_available", "remove_previous_data", "RestoredData", "Verified", "SnapshotIn", "work_dir_for"]

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


def _chosen(entry: Any) -> str:
    if len(_CHOSEN) >= _CHOSEN_MAX:
        _CHOSEN.clear()
    _CHOSEN[entry.location.url] = entry
    return str(entry.location.url)


@task(name="choose-backup")
def choose_backup(target: RunTarget, aws: AwsAccess, bucket: str, prefix: str, backup: str | None,
                  cluster_uid: str | None = None) -> str:
    """The backup's location URL: the one given (its prefix or its manifest.json), else the newest
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
    """How the snapshot got into the data pod: already there (a re-run), downloaded by the pod from
    S3, or copied in from the runner's verified file (`note` says why not downloaded)."""

    how: Literal["present", "downloaded", "copied"]
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


@task(name="copy-snapshot-in", retries=1, retry_delay_seconds=2)
def copy_snapshot(target: RunTarget, layout: EtcdLayout, pods: dict[str, str], snapshot: LocalSnapshot,
                  timeout_seconds: float, aws: AwsAccess | None = None, pod_download: bool = True) -> SnapshotIn:
    """Put the verified snapshot into every data pod, side by side. A backup's snapshot is downloaded
    by each pod itself from S3 (a presigned GET; SHA-256 and size checked in the pod against the
    runner's verified file before it takes its name: bytes that differ fail the step, nothing
    restored). Otherwise (a fresh snapshot or a member/snap/db copy exists only on the runner;
    `pod_download` off; no curl in the image or no way to S3 from the pod) the runner's file is
    streamed in over exec, checked the same."""
    url, ca_bundle, why_not = None, None, ""
    if snapshot.snapshot_object and pod_download and aws is not None:
        bucket, _, key = snapshot.snapshot_object.removeprefix("s3://").partition("/")
        s3 = s3_client(aws)
        url, ca_bundle = presign_snapshot(s3, bucket, key, _PRESIGN_SECONDS), _s3_ca_bundle(s3)
    elif not snapshot.snapshot_object:
        why_not = f"{snapshot.source} exists only on the runner"
    else:
        why_not = "download by the data pod turned off"

    def put_in(api: client.ApiClient, member: str, pod: str) -> SnapshotIn:
        note = why_not
        if url is not None:
            try:
                present = etcd_restore.download_into_pod(api, layout, pod, url, snapshot.sha256, snapshot.size_bytes,
                                                         ca_bundle=ca_bundle, timeout=timeout_seconds)
                return SnapshotIn(how="present") if present else SnapshotIn(how="downloaded", note=f"from {redact_url(url)}")
            except etcd_restore.DownloadUnavailable as e:
                note = f"the data pod could not download it from S3 ({e})"
        if etcd_restore.snapshot_in_pod(api, layout, pod) == snapshot.sha256:
            return SnapshotIn(how="present")
        etcd_restore.copy_into_pod(api, layout, pod, Path(snapshot.path), snapshot.sha256, timeout=timeout_seconds)
        return SnapshotIn(how="copied", note=note)

    results = each_with_own_client(target, lambda api, member: put_in(api, member, pods[member]), pods)
    for how in ("copied", "downloaded"):  # the report names the slowest way any pod got it
        notes = sorted({r.note for r in results if r.how == how and r.note})
        if any(r.how == how for r in results):
            return SnapshotIn(how=how, note="; ".join(notes))
    return SnapshotIn(how="present")


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
