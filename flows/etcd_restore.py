"""etcd-restore: put a snapshot back into a hosted cluster's own etcd, in place (the documented
on-premise procedure, without its mistakes).

Fetch the snapshot and check it (SHA-256, `snapshot status`) before anything changes; while etcd
still runs, start a data pod per member on that member's node, mounting that member's volume only
(HA members' volumes lie in different zones), and put the snapshot in each (downloaded by the pod
from S3, or the runner's file copied in), checked against the verified SHA-256: the transfer is then
out of the API's downtime; approval, showing what will be lost (a rejection removes the data pods);
pause reconciliation and stop the API servers (recording their replicas); stop etcd; restore into
every member's volume, side by side (the old data kept aside; why every member and not, as
documented, the first one with the others' volumes deleted: see hcp/etcd_restore.py); start etcd
and wait until every member is healthy; bring the API servers back to the replicas they had and
resume reconciliation of this HostedCluster; verify every member against the snapshot, key by key
through etcd's keyspace hash; wait until the hosted cluster is Available.

A failure before the restore step puts everything back (etcd on its old data, the data pods gone).
After it, etcd runs on the restored data and the run goes forward only: a re-run with the same
operation id continues.
"""

from __future__ import annotations

import re

from prefect import flow
from pydantic import Field, model_validator

from hcp.aws_access import AwsAccess
from hcp.etcd_member import MemberStatus, choose_member
from hcp.etcd_restore import DATA_POD_APP, EtcdLayout, previous_data_dir
from hcp.hosted_cluster import QUIESCE_DEPLOYMENTS, HostedClusterInfo
from hcp.params import BucketName, HostedClusterName, KeyPrefix, ManagementParams, OperationId
from hcp.plan import PlanStep
from hcp.report import RunReport
from hcp.run_target import RunTarget
from hcp.snapshot_source import LocalSnapshot, SourceKind, check_local_copy
from tasks.checkpoint import completed_result
from tasks.etcd import member_statuses
from tasks.etcd_restore import ChosenBackup, SnapshotIn, choose_backup, copy_snapshot, download_snapshot, \
    fetch_snapshot, read_etcd_layout, remove_data_pods, remove_previous_data, restore_data, start_data_pods, \
    start_etcd, stop_etcd, verify_restore, wait_cluster_available, wait_etcd_stopped
from tasks.gates import GateSettings, approval_gate, take_lock
from tasks.hosted_cluster import pending_undo, quiesce_control_plane, read_cluster, restore_availability
from tasks.runbook import Runbook, RunbookError, operation_id_for_run, run_parameters, side_by_side

__all__ = ["EtcdRestoreParams", "etcd_restore", "restore_command"]

RUNBOOK = "etcd-restore"


class EtcdRestoreParams(ManagementParams):
    """Parameters of etcd-restore (the UI's form)."""

    hosted_cluster: HostedClusterName = Field(description="the HostedCluster, NAMESPACE/NAME")
    source: SourceKind = Field(default="latest-backup", description="latest-backup: the newest complete backup of "
                               "this cluster; backup: the one in `backup`; snapshot: a fresh snapshot of a running "
                               "member; member-db: a copy of a member's member/snap/db (when no member can take a "
                               "snapshot; may miss the newest writes)")
    bucket: BucketName | None = Field(default=None, description="S3 bucket of the backups (latest-backup)")
    prefix: KeyPrefix = Field(default="hcp-backups", description="key prefix of the backups")
    backup: str | None = Field(default=None, description="source backup: s3://BUCKET/.../<timestamp>-<op>/ (or its "
                               "manifest.json)")
    member: str | None = Field(default=None, pattern=r"^etcd-\d+$", description="snapshot / member-db: the member "
                               "to read (default: a healthy follower / the member whose pod runs with the highest "
                               "revision)")
    aws: AwsAccess = Field(default_factory=AwsAccess)
    work_dir: str | None = Field(default=None, description="where the runner keeps the snapshot (room for it once); "
                                 "default: the system temp dir")
    pod_download: bool = Field(default=True, description="a backup's snapshot is downloaded by the data pod itself "
                               "from S3 (a presigned GET, its SHA-256 checked there against the runner's verified "
                               "copy); off, or when the pod cannot reach S3: the runner's copy is streamed in over exec")
    keep_previous_data: bool = Field(default=False, description="keep the old data directory on data-etcd-0 "
                                     "(data.before-<operation>) after a verified restore")
    dry_run: bool = Field(default=False, description="fetch and check the snapshot, change nothing, return the plan")
    operation_id: OperationId | None = Field(default=None, description="continue this operation")
    approval: GateSettings = Field(default_factory=GateSettings)
    break_lock_held_by: str | None = None
    timeout_seconds: float = Field(default=900, gt=0, description="for each wait (scaling, etcd health, Available)")

    @model_validator(mode="after")
    def _source_needs(self) -> EtcdRestoreParams:
        if self.source == "latest-backup" and not self.bucket:
            raise ValueError("source latest-backup needs `bucket`")
        if self.source == "backup" and not self.backup:
            raise ValueError("source backup needs `backup` (the backup's s3:// URL)")
        if self.source != "backup" and self.backup:
            raise ValueError("`backup` is only used with source backup")
        if self.source in ("latest-backup", "backup") and self.member:
            raise ValueError("`member` is only used with source snapshot or member-db")
        if self.backup and not re.match(r"^s3://[^/]+/.+", self.backup):
            raise ValueError("`backup` must be an s3:// URL of a backup prefix or its manifest.json")
        return self


def _run_name() -> str:
    params, mgmt, dry = run_parameters()
    return f"etcd-restore/{params.get('hosted_cluster', '?')}@{mgmt}/{params.get('source', 'latest-backup')}{dry}"


def restore_command(params: EtcdRestoreParams, operation_id: str | None = None) -> str:
    """The `hcp-runbooks run etcd-restore` command line for these parameters."""
    parts = ["hcp-runbooks run etcd-restore", f"--cluster {params.hosted_cluster}"]
    if params.management.kubeconfig:
        parts.append(f"--kubeconfig {params.management.kubeconfig}")
    if params.management.context:
        parts.append(f"--context {params.management.context}")
    parts.append(f"--source {params.source}")
    for flag, value in (("--bucket", params.bucket), ("--backup", params.backup), ("--member", params.member)):
        if value:
            parts.append(f"{flag} {value}")
    if params.prefix != "hcp-backups":
        parts.append(f"--prefix {params.prefix}")
    if operation_id:
        parts.append(f"--operation-id {operation_id}")
    return " ".join(parts)


def _source_member(params: EtcdRestoreParams, members: list[MemberStatus]) -> str | None:
    if params.source in ("latest-backup", "backup"):
        return None
    if params.member:
        return params.member
    if params.source == "snapshot":
        return choose_member(members).pod
    # member-db: the member most likely to hold the newest data whose pod runs (exec needs it)
    readable = [m for m in members if m.revision is not None] or members
    if not readable:
        raise RunbookError("no etcd member pod to copy member/snap/db from; give --member or restore from a backup")
    return max(readable, key=lambda m: (m.revision or 0, m.pod == "etcd-0")).pod


def restore_plan(params: EtcdRestoreParams, target: RunTarget, layout: EtcdLayout, snapshot: LocalSnapshot | None,
                 source: str) -> list[PlanStep]:
    ref, cp = target.ref, layout.namespace
    ctx = f"--context {params.management.context} " if params.management.context else ""
    oc = f"oc {ctx}-n {cp}"
    claims = ", ".join(layout.claims)
    steps = [PlanStep(step="fetch and check the snapshot", changes=f"a file on the runner ({source})",
                      command="aws s3 cp ... snapshot.db && sha256sum snapshot.db && etcdutl snapshot status snapshot.db"),
             PlanStep(step="take the hosted cluster's lock", changes=f"Lease {ref.namespace}/{ref.lease_name}"),
             PlanStep(step="start a data pod per member, on its member's node and volume (etcd still running)",
                      changes=f"deployments {', '.join(f'{cp}/{layout.data_deployment(m)}' for m in layout.members)} "
                              f"({layout.image}; each mounts its member's claim at {layout.member_dir('<member>')}: "
                              f"{claims}); removed again on rejection",
                      command=f"{oc} apply -f etcd-data-<member>.yaml  # one per member"),
             _snapshot_in_step(params, layout, snapshot, oc),
             PlanStep(step="approval", command="hcp-runbooks approve RUN_ID --approver NAME"),
             PlanStep(step="pause reconciliation", changes=f"spec.pausedUntil of {ref} to 'true'", lowers_availability=True,
                      command=f"oc {ctx}-n {ref.namespace} patch hostedcluster/{ref.name} --type=merge "
                              "-p '{\"spec\":{\"pausedUntil\":\"true\"}}'")]
    steps += [PlanStep(step=f"scale {name} to 0", changes=f"deployment {cp}/{name} to 0 (replicas recorded)",
                       lowers_availability=True, command=f"{oc} scale deployment/{name} --replicas=0")
              for name in QUIESCE_DEPLOYMENTS]
    first = layout.first_member
    steps += [
        PlanStep(step="stop etcd", changes=f"statefulset {cp}/etcd from {layout.replicas} to 0", lowers_availability=True,
                 command=f"{oc} scale statefulset/etcd --replicas=0"),
        PlanStep(step="restore into every member's volume", changes=f"the data directory on {claims} replaced (old "
                 f"data kept in {previous_data_dir(target.operation_id)})", destructive=True,
                 command=f"{oc} exec {layout.data_deployment(first)}-POD -- etcdutl snapshot restore "
                         f"{layout.snapshot_in_pod} --data-dir "
                         f"{layout.member_dir(first)}/data --name {first} --initial-cluster {layout.initial_cluster} "
                         f"--initial-cluster-token {layout.token} --initial-advertise-peer-urls "
                         f"{layout.peer_urls[first]}" + _hash_check_flag(snapshot)
                         + (" (and the same for each member in its own data pod, side by side)"
                            if layout.replicas > 1 else "")),
        PlanStep(step="remove the data pods", changes=f"the deployments {cp}/{DATA_POD_APP}-* deleted (the snapshot "
                 "copies in their emptyDirs go with them)", command=f"{oc} delete deployment -l app={DATA_POD_APP}"),
        PlanStep(step="start etcd and wait until every member is healthy",
                 changes=f"statefulset {cp}/etcd back to {layout.replicas}",
                 command=f"{oc} scale statefulset/etcd --replicas={layout.replicas}"),
        PlanStep(step="scale the API servers back and resume reconciliation",
                 changes="the replica counts and pausedUntil recorded before",
                 command=f"{oc} scale deployment/kube-apiserver --replicas=N ...; oc {ctx}-n {ref.namespace} patch "
                         f"hostedcluster/{ref.name} --type=merge -p '{{\"spec\":{{\"pausedUntil\":null}}}}'"),
        PlanStep(step="verify every member against the snapshot",
                 command="etcdctl endpoint hashkv --rev=R; etcdctl get '' --prefix --count-only --rev=R"),
        PlanStep(step="wait until the hosted cluster is Available"),
    ]
    if not params.keep_previous_data:
        steps.append(PlanStep(step="remove the old data directories", changes=f"{previous_data_dir(target.operation_id)}"
                              " on each member", command=f"{oc} exec etcd-N -c etcd -- rm -rf "
                                                         f"{previous_data_dir(target.operation_id)}"))
    return steps


def _snapshot_in_step(params: EtcdRestoreParams, layout: EtcdLayout, snapshot: LocalSnapshot | None,
                      oc: str) -> PlanStep:
    changes = (f"file {layout.snapshot_in_pod} in each data pod (its emptyDir), SHA-256 equal to the verified "
               "copy's")
    copy = f"{oc} cp snapshot.db DATA_POD:{layout.snapshot_in_pod}  # each data pod"
    if params.pod_download and params.source in ("latest-backup", "backup"):
        where = (snapshot.snapshot_object if snapshot is not None else None) or "s3://BUCKET/SNAPSHOT_KEY"
        return PlanStep(step="download the snapshot in each data pod", changes=changes,
                        command=f"{oc} exec DATA_POD -- curl --fail -o {layout.snapshot_in_pod} \"$(aws s3 presign "
                                f"{where} --expires-in 600)\" && sha256sum {layout.snapshot_in_pod} (else: {copy})")
    return PlanStep(step="copy the snapshot in", changes=changes, command=copy)


def _hash_check_flag(snapshot: LocalSnapshot | None) -> str:
    if snapshot is None or not snapshot.restore_skips_hash_check:
        return ""
    if snapshot.skip_hash_check:
        return " --skip-hash-check (a member/snap/db copy has no integrity hash)"
    return " --skip-hash-check (its integrity hash was checked on the runner; the copy's SHA-256 is compared in the pod)"


def _state(cluster: HostedClusterInfo, members: list[MemberStatus], snapshot: LocalSnapshot) -> str:
    current = max((m.revision or 0 for m in members), default=0)
    taken = f"{snapshot.taken_at:%Y-%m-%d %H:%M:%S} UTC" if snapshot.taken_at else "unknown time"
    lines = [f"- HostedCluster {cluster.namespace}/{cluster.name} (uid {cluster.uid}): Available="
             f"{cluster.conditions.get('Available', '?')}, pausedUntil {cluster.paused_until!r}"]
    lines += [f"- etcd {m.describe()}" for m in members]
    lines.append(f"- snapshot: {snapshot.source}, revision {snapshot.revision}, taken {taken}, SHA-256 "
                 f"{snapshot.sha256}" + (" (no integrity hash: member/snap/db copy)" if snapshot.skip_hash_check else ""))
    lines.append(f"- **data lost by this restore**: {_loss(current, snapshot)}")
    return "\n".join(lines)


def _loss(current_revision: int, snapshot: LocalSnapshot) -> str:
    if not current_revision:
        return "unknown (no member could tell its revision): every write after the snapshot"
    if current_revision <= snapshot.revision:
        return f"none visible (the cluster is at revision {current_revision}, the snapshot at {snapshot.revision})"
    since = f" since {snapshot.taken_at:%Y-%m-%d %H:%M:%S} UTC" if snapshot.taken_at else ""
    return (f"{current_revision - snapshot.revision} revisions of writes{since} (cluster at revision "
            f"{current_revision}, snapshot at {snapshot.revision})")


def _copy_where_not_downloaded(rb: Runbook, target: RunTarget, layout: EtcdLayout, params: EtcdRestoreParams,
                               pods: dict[str, str], downloads: dict[str, SnapshotIn], snapshot: LocalSnapshot) -> None:
    """Say what the data pods downloaded themselves; stream the runner's checked file into the others."""
    have = [m for m, d in downloads.items() if d.how in ("downloaded", "present")]
    fresh = [m for m in have if downloads[m].how == "downloaded"]
    if fresh:
        rb.changed("snapshot-downloaded", f"the data pods ({', '.join(pods[m] for m in fresh)}) downloaded the snapshot "
                   f"{downloads[fresh[0]].note} to {layout.snapshot_in_pod}, SHA-256 equal to the verified copy's")
    left = {m: pod for m, pod in pods.items() if m not in have}
    if not left:
        return
    if snapshot.snapshot_object is None:
        why = {f"{snapshot.source} exists only on the runner"}
    elif not params.pod_download:
        why = {"download by the data pod turned off"}
    else:
        why = {downloads[m].note for m in left if m in downloads and downloads[m].note}
    rb.step(copy_snapshot, target, layout, left, snapshot, params.timeout_seconds)
    rb.changed("snapshot-copied", f"copied the snapshot into {layout.snapshot_in_pod} of the data pods "
               f"({', '.join(left.values())})" + (f" ({'; '.join(sorted(why))})" if why else ""))


@flow(name="etcd-restore", flow_run_name=_run_name, validate_parameters=True)
def etcd_restore(params: EtcdRestoreParams) -> RunReport:
    target = RunTarget(management=params.management, management_cluster=params.management_cluster_name,
                       hosted_cluster=params.hosted_cluster, operation_id=operation_id_for_run(params.operation_id))
    with Runbook(RUNBOOK, target, dry_run=params.dry_run) as rb:
        rb.report.next_command = restore_command(params, target.operation_id)
        # Read-only first: anything wrong stops here. Independent lines of reads run side by side:
        # the HostedCluster; the backup to restore; etcd's layout, its members and what an earlier run of
        # the operation lowered and did not put back.
        restored = completed_result(restore_data, target)
        snapshot = completed_result(fetch_snapshot, target)
        stale = snapshot is not None and restored is None and not check_local_copy(snapshot)
        if stale:
            snapshot = None  # the earlier run's file is gone (another runner, a cleaned temp dir): fetch again
        refetch = snapshot is None and restored is None
        from_backup = params.source in ("latest-backup", "backup")

        def hosted_cluster() -> HostedClusterInfo:
            return rb.step(read_cluster, target)

        def chosen_backup() -> ChosenBackup | None:
            if not from_backup:
                return None
            # a re-run keeps to the backup its earlier run fetched (a newer one may exist by now);
            # choose-backup reads the HostedCluster's uid itself: it does not wait for read-hosted-cluster
            chosen = snapshot.manifest_url if snapshot is not None else params.backup
            return rb.step(choose_backup, target, params.aws, params.bucket or "", params.prefix, chosen)

        def etcd_state() -> tuple[EtcdLayout, list[MemberStatus], list[str]]:
            return rb.step(read_etcd_layout, target), rb.step(member_statuses, target), rb.step(pending_undo, target)

        cluster, backup, (layout, members, lowered) = side_by_side(hosted_cluster, chosen_backup, etcd_state)
        if stale and params.source in ("snapshot", "member-db") and lowered:
            raise RunbookError(f"{target}: the snapshot this operation took is no longer on this runner and etcd "
                               "may already be stopped; restore from a backup instead: "
                               + restore_command(params.model_copy(update={"source": "latest-backup",
                                                                            "member": None}), None))
        member = _source_member(params, members)
        source = backup.url if backup else f"{params.source} of {member}"
        rb.report.plan = restore_plan(params, target, layout, snapshot, source)
        if params.dry_run and params.source in ("snapshot", "member-db"):
            # taking a snapshot writes a file in the member's pod: a dry run only says what it would read
            rb.report.verification.append(f"a real run reads the snapshot from {source} first and checks it")
            return rb.report
        if not params.dry_run:
            take_lock(rb, params.break_lock_held_by, params.approval)

        # The snapshot, side by side: the runner fetches and checks it (the check before any change),
        # and, when this run restores, a data pod per member starts on that member's node, beside the
        # running member, and downloads the backup's snapshot itself, checked in the pod against the
        # manifest's SHA-256 and size, the ones the runner's file is checked against. The transfer into
        # the pods is then done before the approval, out of the API's downtime; nothing of the cluster
        # changes (a failure or a rejection removes the data pods).
        prepare = not params.dry_run and restored is None

        def runner_copy() -> LocalSnapshot:
            return rb.step(fetch_snapshot.with_options(refresh_cache=refetch), target, params.source, params.aws,
                           backup.url if backup else None, member, params.work_dir)

        def data_pods() -> tuple[dict[str, str], dict[str, SnapshotIn]]:
            if not prepare:
                return {}, {}
            pods = rb.step(start_data_pods, target, layout, params.timeout_seconds)
            if backup is None or not params.pod_download:
                return pods, {}
            return pods, rb.step(download_snapshot, target, layout, pods, backup, params.aws, params.timeout_seconds)

        snapshot, (pods, downloads) = side_by_side(runner_copy, data_pods)
        if backup is not None and (backup.sha256, backup.size_bytes) != (snapshot.sha256, snapshot.size_bytes):
            raise RunbookError(f"{target}: the runner's snapshot ({snapshot.source}, SHA-256 {snapshot.sha256}) is not "
                               f"the backup the data pods downloaded ({backup.url}, SHA-256 {backup.sha256}); nothing "
                               "changed: run again with a new operation id")
        rb.report.verification.append(f"snapshot checked before any change: {snapshot.source}, SHA-256 "
                                      f"{snapshot.sha256}, revision {snapshot.revision}, {snapshot.size_bytes} bytes")
        rb.report.plan = restore_plan(params, target, layout, snapshot, source)
        rb.report.figures.update({"snapshot": snapshot.source, "snapshot revision": str(snapshot.revision),
                                  "data lost": _loss(max((m.revision or 0 for m in members), default=0), snapshot)})
        if params.dry_run:
            return rb.report

        if restored is None:
            rb.report.cluster_state = "running on its old data (nothing changed yet)"
            _copy_where_not_downloaded(rb, target, layout, params, pods, downloads, snapshot)
            if not lowered:  # a re-run whose earlier run was approved and stopped the cluster asks no more
                approval_gate(rb, "restore", f"Restore etcd of {target.ref} from a snapshot (API downtime; writes "
                              "after the snapshot are lost)", _state(cluster, members, snapshot), rb.report.plan,
                              params.approval)
            q = rb.step(quiesce_control_plane, target, list(QUIESCE_DEPLOYMENTS), params.timeout_seconds, RUNBOOK)
            rb.report.changes += q.changes
            if rb.step(stop_etcd, target, layout):
                rb.changed("etcd-stopped", f"scaled statefulset {layout.namespace}/etcd from {layout.replicas} to 0")
            rb.report.cluster_state = ("etcd stopped, its data untouched; a failure before the restore scales etcd "
                                       "and the API servers back on the old data")
            rb.step(wait_etcd_stopped, target, layout, params.timeout_seconds)
            restored = rb.step(restore_data, target, layout, pods, snapshot, params.timeout_seconds)
            rb.changed("restored", f"restored the snapshot into {', '.join(layout.claims)} (old data kept in "
                       f"{previous_data_dir(target.operation_id)} on each)")
        else:
            rb.skipped("restore", f"done by an earlier run of this operation at {restored.at:%H:%M:%S} UTC; never "
                       "restored twice")
        if rb.step(remove_data_pods, target, layout, params.timeout_seconds):
            rb.changed("data-pods-removed", f"removed the data pod deployments {layout.namespace}/{DATA_POD_APP}-* "
                       "(one per member)")
        rb.report.cluster_state = (f"etcd data restored on {', '.join(layout.claims)} (revision {snapshot.revision}); old data "
                                   f"in {previous_data_dir(target.operation_id)}; etcd and the API servers are being "
                                   "started: re-run the same operation to continue")
        statuses = rb.step(start_etcd, target, layout, params.timeout_seconds)
        rb.report.verification.append("every member healthy: " + "; ".join(s.describe() for s in statuses))
        back = rb.step(restore_availability, target, params.timeout_seconds, RUNBOOK)
        for line in back.restored:
            rb.changed("restored-availability", line)
        if back.down_since:
            rb.report.figures["API downtime"] = f"{back.downtime_seconds:.1f} s"
        verified = rb.step(verify_restore, target, layout, snapshot)
        rb.report.verification += verified.lines
        rb.step(wait_cluster_available, target, params.timeout_seconds)
        rb.report.verification.append(f"HostedCluster {target.ref} is Available")
        if not params.keep_previous_data:
            removed = rb.step(remove_previous_data, target, layout)
            rb.changed("previous-data-removed", f"removed the old data directory {removed} (verified restore)")
        rb.report.cluster_state = f"running on the restored data (revision {snapshot.revision}), verified"
        rb.report.figures.update({"members": str(verified.members), "keys at snapshot revision": str(verified.key_count)})
    return rb.report
