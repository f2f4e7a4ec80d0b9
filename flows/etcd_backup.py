"""etcd-backup: snapshot one hosted cluster's etcd into S3.

online (default): snapshot a healthy member while the cluster runs; no API downtime.
quiesced: the documented procedure for a consistent backup: approval, pause reconciliation, scale
the API servers to 0, snapshot, scale back, unpause; the API downtime is measured.
Then: stream the snapshot to S3 (SHA-256 compared with the pod's), save the encryption key,
remove the file from the pod, optionally restore it in a scratch etcd (verify: full), and write
the manifest last: a prefix without a manifest is not a backup.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Literal

import kubernetes
import prefect
from prefect import flow
from pydantic import Field

from hcp import backup_manifest
from hcp.aws_access import AwsAccess
from hcp.etcd_member import MemberStatus, choose_member
from hcp.etcd_tools import tool_versions
from hcp.hosted_cluster import QUIESCE_DEPLOYMENTS, HostedClusterInfo
from hcp.naming import BackupLocation, operation_id_time
from hcp.params import BucketName, HostedClusterName, KeyPrefix, ManagementParams, OperationId
from hcp.plan import PlanStep
from hcp.report import RunReport, StepRecord
from hcp.run_target import RunTarget
from tasks.checkpoint import completed_result
from tasks.cluster_objects import CLUSTER_OBJECTS_FILE, save_cluster_objects
from tasks.etcd import member_statuses, remove_snapshot_file, snapshot_file_present, snapshot_path, take_snapshot
from tasks.gates import GateSettings, approval_gate, take_lock
from tasks.hosted_cluster import pending_undo, quiesce_control_plane, read_cluster, restore_availability
from tasks.runbook import Runbook, RunbookError, operation_id_for_run, run_parameters, side_by_side
from tasks.storage import ENCRYPTION_KEY_FILE, SNAPSHOT_FILE, Encryption, Uploaded, check_bucket, save_encryption_key, \
    snapshot_and_upload, upload_snapshot, verify_backup, write_manifest

__all__ = ["EtcdBackupParams", "etcd_backup", "backup_plan"]

VERSION = "0.1.0"


class EtcdBackupParams(ManagementParams):
    """Parameters of etcd-backup (the UI's form). No secrets: access is a kubeconfig path and
    context (or in-cluster) and the standard AWS configuration."""

    hosted_cluster: HostedClusterName = Field(description="the HostedCluster, NAMESPACE/NAME (e.g. clusters/prod-east-1)")
    bucket: BucketName = Field(description="S3 bucket for the backups")
    prefix: KeyPrefix = Field(default="hcp-backups", description="key prefix inside the bucket")
    aws: AwsAccess = Field(default_factory=AwsAccess)
    encryption: Encryption = Field(default_factory=Encryption, description="server-side encryption of every object")
    mode: Literal["online", "quiesced"] = "online"
    verify: Literal["sha256", "full"] = Field(default="sha256", description="full: also restore the uploaded "
                                              "snapshot into a throwaway etcd and count its keys")
    dry_run: bool = Field(default=False, description="run the checks, change nothing, return the plan")
    operation_id: OperationId | None = Field(default=None, description="continue this operation (skips its "
                                             "finished steps)")
    approval: GateSettings = Field(default_factory=GateSettings)
    break_lock_held_by: str | None = Field(default=None, description="break a lock left by this dead operation "
                                           "(asks for approval)")
    timeout_seconds: float = Field(default=600, gt=0, description="for scaling the API servers down and up")


def _run_name() -> str:
    params, mgmt, dry = run_parameters()
    return f"etcd-backup/{params.get('hosted_cluster', '?')}@{mgmt}/{params.get('mode', 'online')}{dry}"


def backup_plan(params: EtcdBackupParams, target: RunTarget, member: MemberStatus, location: BackupLocation,
                cluster: HostedClusterInfo) -> list[PlanStep]:
    ref, cp = target.ref, target.ref.control_plane_namespace
    ctx = f"--context {params.management.context} " if params.management.context else ""
    etcdctl = ("env ETCDCTL_API=3 /usr/bin/etcdctl --cacert /etc/etcd/tls/etcd-ca/ca.crt --cert "
               "/etc/etcd/tls/client/etcd-client.crt --key /etc/etcd/tls/client/etcd-client.key "
               "--endpoints=https://localhost:2379")
    path = snapshot_path(target.operation_id)
    steps = [PlanStep(step="take the hosted cluster's lock", changes=f"Lease {ref.namespace}/{ref.lease_name}",
                      command=f"oc {ctx}-n {ref.namespace} get lease {ref.lease_name}")]
    if params.mode == "quiesced":
        steps.append(PlanStep(step="approval", command="hcp-runbooks approve RUN_ID --approver NAME"))
        steps.append(PlanStep(step="pause reconciliation", changes=f"spec.pausedUntil of {ref} to 'true' "
                              f"(now {cluster.paused_until!r})", lowers_availability=True,
                              command=f"oc {ctx}-n {ref.namespace} patch hostedcluster/{ref.name} --type=merge "
                                      "-p '{\"spec\":{\"pausedUntil\":\"true\"}}'"))
        for name in QUIESCE_DEPLOYMENTS:
            steps.append(PlanStep(step=f"scale {name} to 0", changes=f"deployment {cp}/{name} replicas to 0",
                                  lowers_availability=True,
                                  command=f"oc {ctx}-n {cp} scale deployment/{name} --replicas=0"))
    steps.append(PlanStep(step="snapshot etcd", changes=f"file {path} in pod {cp}/{member.pod}",
                          command=f"oc {ctx}-n {cp} exec {member.pod} -c etcd -- {etcdctl} snapshot save {path}"))
    if params.mode == "quiesced":
        steps.append(PlanStep(step="scale the API servers back and unpause",
                              changes="the replica counts and pausedUntil recorded before quiescing",
                              command=f"oc {ctx}-n {cp} scale deployment/kube-apiserver --replicas=N ... ; "
                                      f"oc {ctx}-n {ref.namespace} patch hostedcluster/{ref.name} --type=merge "
                                      "-p '{\"spec\":{\"pausedUntil\":null}}'"))
    sse = params.encryption.sse
    steps.append(PlanStep(step="upload the snapshot", changes=f"object {location.url}{SNAPSHOT_FILE} ({sse})",
                          command=f"oc {ctx}-n {cp} exec {member.pod} -c etcd -- cat {path} | aws s3 cp - "
                                  f"{location.url}{SNAPSHOT_FILE} --sse {sse}"))
    if cluster.encryption_key_secret:
        steps.append(PlanStep(step="save the etcd encryption key",
                              changes=f"object {location.url}{ENCRYPTION_KEY_FILE} ({sse})",
                              command=f"oc {ctx}-n {ref.namespace} get secret {cluster.encryption_key_secret} -o json "
                                      f"| aws s3 cp - {location.url}{ENCRYPTION_KEY_FILE} --sse {sse}"))
    steps.append(PlanStep(step="save the HostedCluster and its NodePools (cleaned for re-creation)",
                          changes=f"object {location.url}{CLUSTER_OBJECTS_FILE} ({sse})",
                          command=f"oc {ctx}-n {ref.namespace} get hostedcluster/{ref.name} nodepools -o json | "
                                  f"aws s3 cp - {location.url}{CLUSTER_OBJECTS_FILE} --sse {sse}"))
    steps.append(PlanStep(step="remove the snapshot file from the pod", changes=f"file {path} in {cp}/{member.pod}",
                          command=f"oc {ctx}-n {cp} exec {member.pod} -c etcd -- rm -f {path}"))
    if params.verify == "full":
        steps.append(PlanStep(step="verify: restore into a scratch etcd and count keys",
                              command="etcdutl snapshot restore snapshot.db --data-dir scratch && etcd ..."))
    steps.append(PlanStep(step="write the manifest (the commit point)", changes=f"object {location.url}manifest.json",
                          command=f"aws s3 cp manifest.json {location.url}manifest.json --sse {sse}"))
    return steps


def _state(cluster: HostedClusterInfo, members: list[MemberStatus], member: MemberStatus) -> str:
    lines = [f"- HostedCluster {cluster.namespace}/{cluster.name} (uid {cluster.uid}, resourceVersion "
             f"{cluster.resource_version}): Available={cluster.conditions.get('Available', '?')}, "
             f"release {cluster.release_version}, pausedUntil {cluster.paused_until!r}"]
    lines += [f"- etcd {m.describe()}" for m in members]
    lines.append(f"- snapshot from: {member.pod}")
    return "\n".join(lines)


def _as_snapshot_then_upload(rb: Runbook, uploaded: Uploaded) -> None:
    """The timeline shows the online backup's one step as the two it overlaps, so that every mode's
    report and manifest name the same steps: snapshot-etcd (until etcdctl finished; the bytes were
    going up meanwhile), then upload-snapshot (the rest of the upload)."""
    index = max(i for i, r in enumerate(rb.report.steps) if r.name == snapshot_and_upload.name)
    record = rb.report.steps.pop(index)
    snap = uploaded.snapshot
    saving = min(record.seconds, max(0.0, (snap.finished_at - snap.started_at).total_seconds()))
    detail = record.detail
    rb.report.steps[index:index] = [
        StepRecord(name=take_snapshot.name, started_at=record.started_at, seconds=saving, outcome=record.outcome,
                   detail=detail or "etcdctl snapshot save in the pod, streamed to S3 as it was written"),
        StepRecord(name=upload_snapshot.name, started_at=record.started_at + timedelta(seconds=saving),
                   seconds=record.seconds - saving, outcome=record.outcome,
                   detail=detail or "the rest of the upload (it started with the snapshot); SHA-256 and size "
                                    "checked against the saved file's"),
    ]


def _preflight_checks(params: EtcdBackupParams, cluster: HostedClusterInfo, target: RunTarget) -> None:
    if params.mode == "quiesced" and not cluster.available:
        raise RunbookError(f"{target}: a quiesced backup needs an Available hosted cluster (Available="
                           f"{cluster.conditions.get('Available', 'unknown')}); take an online backup instead, or "
                           "fix the cluster first")


@flow(name="etcd-backup", flow_run_name=_run_name, validate_parameters=True)
def etcd_backup(params: EtcdBackupParams) -> RunReport:
    target = RunTarget(management=params.management, management_cluster=params.management_cluster_name,
                       hosted_cluster=params.hosted_cluster, operation_id=operation_id_for_run(params.operation_id))
    # The location derives from the operation id, so a re-run of the operation writes to the same prefix.
    location = BackupLocation.new(params.bucket, params.prefix, target.management_cluster, target.ref,
                                  target.operation_id, when=operation_id_time(target.operation_id))
    with Runbook("etcd-backup", target, dry_run=params.dry_run) as rb:
        # Preflight: read-only; anything wrong stops here, before the first change. The members'
        # status and the bucket probe are independent of the cluster reads: they run beside them.
        def cluster_reads() -> tuple[HostedClusterInfo, list[str]]:
            # pending_undo: this operation's own earlier run, killed while quiesced
            return rb.step(read_cluster, target), rb.step(pending_undo, target)

        (cluster, lowered), members, _ = side_by_side(
            cluster_reads, lambda: rb.step(member_statuses, target),
            lambda: rb.step(check_bucket, params.aws, params.bucket, params.prefix, target.operation_id,
                            params.encryption))
        if lowered:
            rb.report.verification.append("continuing an operation that left the cluster lowered: " + "; ".join(lowered))
        else:
            _preflight_checks(params, cluster, target)
        member = choose_member(members)
        rb.report.plan = backup_plan(params, target, member, location, cluster)
        rb.report.figures["backup location"] = location.url
        if params.dry_run:
            holder = rb.lock_state()
            if holder is not None and holder.holder and holder.holder != target.operation_id:
                rb.report.verification.append(f"the lock is held by {holder.holder}: a real run would stop")
            return rb.report

        take_lock(rb, params.break_lock_held_by, params.approval)

        quiesced = params.mode == "quiesced"
        downtime = 0.0

        def save_cluster_state() -> tuple[str | None, str]:
            """The encryption key and the HostedCluster + NodePools, beside the snapshot in the prefix."""
            return (rb.step(save_encryption_key, target, params.aws, location.url, cluster.encryption_key_secret,
                            params.encryption),
                    rb.step(save_cluster_objects, target, params.aws, location.url, params.encryption))
        if quiesced:
            # The downtime ends right after the snapshot: save first, scale back, then upload.
            snapshot = completed_result(take_snapshot, target)
            retake = False
            if snapshot is not None and completed_result(upload_snapshot, target) is None and \
                    not rb.step(snapshot_file_present, target, snapshot.info.member):
                # the earlier run's snapshot file is gone (removed after a failure, or the pod was replaced)
                snapshot, retake = None, True
            if snapshot is None:
                if not lowered:  # already quiesced by this operation: approved then
                    approval_gate(rb, "quiesce", f"Quiesce {target.ref} for a consistent etcd backup",
                                  _state(cluster, members, member), rb.report.plan, params.approval)
                q = rb.step(quiesce_control_plane, target, list(QUIESCE_DEPLOYMENTS), params.timeout_seconds)
                for change in q.changes:
                    rb.report.changes.append(change)
            snapshot = rb.step(take_snapshot.with_options(refresh_cache=retake), target, member.pod)
            info = snapshot.info
            rb.cleanup_on_failure(f"removed the snapshot file from pod {info.member}",
                                  lambda: remove_snapshot_file(target, info.member))
            rb.report.changes.append(f"snapshot of {info.member} at revision {info.revision} ({info.size_bytes} bytes)")
            restored = rb.step(restore_availability, target, params.timeout_seconds)
            rb.report.changes += restored.restored
            downtime = restored.downtime_seconds
            rb.report.figures["API downtime"] = f"{downtime:.1f} s"
            uploaded = rb.step(upload_snapshot, target, params.aws, location.url, snapshot, params.encryption)
            key_object, objects_key = save_cluster_state()
        else:
            # Online: the snapshot streams into S3 while etcdctl writes it (one step, checkpointed as one;
            # its retry takes a new snapshot), and the file is removed from the pod by the same exec.
            done = completed_result(snapshot_and_upload, target)
            pod = done.snapshot.info.member if done is not None else member.pod
            rb.cleanup_on_failure(f"removed the snapshot file from pod {pod}", lambda: remove_snapshot_file(target, pod))
            # The encryption key and the cluster's objects go beside it (a failed snapshot leaves them
            # in a prefix without a manifest: not a backup, and retention removes it).
            uploaded, (key_object, objects_key) = side_by_side(
                lambda: rb.step(snapshot_and_upload, target, params.aws, location.url, pod, params.encryption,
                                (member.db_size or 0) + 32),
                save_cluster_state)
            _as_snapshot_then_upload(rb, uploaded)
            info = uploaded.snapshot.info
            rb.report.changes.append(f"snapshot of {info.member} at revision {info.revision} ({info.size_bytes} bytes)")
        snapshot, info = uploaded.snapshot, uploaded.snapshot.info  # with the SHA-256 computed in the pod on the way
        rb.changed("uploaded", f"uploaded {uploaded.result.url} ({uploaded.result.size} bytes, "
                   f"{uploaded.result.parts or 1} part(s), {params.encryption.sse})", url=uploaded.result.url)
        rb.report.verification.append(f"SHA-256 in the pod equals SHA-256 of the upload: {info.sha256}")
        if key_object:
            rb.changed("encryption-key-saved", f"saved the encryption key secret {cluster.encryption_key_secret} "
                       f"(content not shown) to s3://{location.bucket}/{key_object}")
        rb.changed("cluster-objects-saved", f"saved the HostedCluster and its NodePools to s3://{location.bucket}/"
                   f"{objects_key}")
        if quiesced:  # online: the snapshot step removed it once hashed
            rb.step(remove_snapshot_file, target, info.member)

        verified_keys = None
        if params.verify == "full":
            result = rb.step(verify_backup, target, params.aws, location.url, snapshot)
            verified_keys = result.total_keys
            rb.report.verification.append(f"restored in a scratch etcd: {result.total_keys} live keys at revision "
                                          f"{result.revision} ({result.seconds:.1f} s)")

        finished = datetime.now(timezone.utc)
        start = min(operation_id_time(target.operation_id), snapshot.started_at, rb.report.started_at)
        versions = {"hcp-runbooks": VERSION, "prefect": prefect.__version__, "kubernetes-client": kubernetes.__version__,
                    "etcd-server": info.etcd_version or member.version or "unknown"}
        if params.verify == "full":
            versions.update(tool_versions())
        manifest = backup_manifest.build(
            location, uid=cluster.uid, release_image=cluster.release_image, release_version=cluster.release_version,
            member=info.member, revision=info.revision, hash=info.hash, total_keys=info.total_keys,
            size_bytes=info.size_bytes, sha256=info.sha256, snapshot_key=location.key(SNAPSHOT_FILE),
            object_keys=[location.key(SNAPSHOT_FILE)] + ([key_object] if key_object else []) + [objects_key],
            encryption_key_object=key_object, cluster_objects_key=objects_key, verification=params.verify,
            verified_total_keys=verified_keys,
            mode=params.mode, downtime_seconds=round(downtime, 3), tool_versions=versions,
            timings=backup_manifest.Timings(
                started_at=start, snapshot_started_at=snapshot.started_at, snapshot_finished_at=snapshot.finished_at,
                upload_finished_at=max(uploaded.finished_at, snapshot.finished_at),
                finished_at=max(finished, uploaded.finished_at),
                steps_seconds={s.name: round(s.seconds, 3) for s in rb.report.steps if s.outcome == "done"}))
        manifest_url = rb.step(write_manifest, target, params.aws, location.url, manifest, params.encryption)
        rb.changed("backup-written", f"wrote the manifest {manifest_url}: the backup is complete", url=location.url)
        rb.report.location, rb.report.size_bytes = location.url, info.size_bytes
        rb.report.figures.update({"member": info.member, "revision": str(info.revision),
                                  "keys (snapshot status)": str(info.total_keys), "size": f"{info.size_bytes} bytes",
                                  "sha256": info.sha256, "mode": params.mode})
    return rb.report
