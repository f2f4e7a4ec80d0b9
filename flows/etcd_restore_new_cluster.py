"""etcd-restore into a new hosted cluster: HyperShift's restoreSnapshotURL procedure.

From a backup (the one named, or the newest complete backup of a cluster): fetch the snapshot and
check it against the manifest (SHA-256, `snapshot status`), render the HostedCluster from the
backup's copy (or from a manifest the user gives) with exactly one restoreSnapshotURL, and check
the target, all before anything is created. Then, approved: restore the encryption-key secret with
the AES key the cluster had at backup time, create the HostedCluster with a freshly presigned URL
and its NodePools, wait until it is Available and EtcdAvailable, and verify every member against
the snapshot at the snapshot's revision.

On failure, what the operation created is removed (after its conditions, etcd pods and etcd-init
logs are put in the report), so the target is as it was and a run with the same operation id
starts over with a fresh URL; `keep_on_failure` keeps it for inspection instead, and `remove` with
the operation id removes it afterwards. A killed run, re-run with the same operation id, finds its
own objects (labelled with the operation id) and continues without asking again.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from pydantic import Field, model_validator

from hcp import restore_render
from hcp.aws_access import AwsAccess
from hcp.cluster_objects import ClusterObjectsError
from hcp.naming import BackupLocation, HostedClusterRef, validate_dns1123_subdomain
from hcp.params import BucketName, HostedClusterName, KeyPrefix, ManagementClusterName, ManagementParams, \
    NamespaceName, OperationId
from hcp.plan import PlanStep
from hcp.report import RunReport
from hcp.restore_render import KeyDecision, Rendered, TargetState
from hcp.run_target import RunTarget
from tasks.gates import GateSettings, approval_gate, take_lock
from tasks.new_cluster import SourceBackup, backup_key_digest, create_hosted_cluster, create_node_pools, diagnose, \
    expected_members, fetch_snapshot, find_backup, inspect_target, read_source_objects, remove_created, \
    restore_encryption_key, verify_restored_keys, wait_restored
from tasks.runbook import Runbook, RunbookError, operation_id_for_run, run_parameters

__all__ = ["EtcdRestoreNewClusterParams", "etcd_restore_new_cluster", "restore_plan", "RUNBOOK"]

RUNBOOK = "etcd-restore-new-cluster"
REMOVE_TIMEOUT_SECONDS = 600.0  # the operator's deletion of a control plane (and its cloud resources) takes minutes


class EtcdRestoreNewClusterParams(ManagementParams):
    """Parameters of etcd-restore into a new hosted cluster (the UI's form). The management cluster
    is the target's; the backup may come from another one."""

    backup: str | None = Field(default=None, description="the backup to restore: its s3:// URL (the backup's prefix "
                               "or its manifest.json); default: the newest complete backup of source_cluster")
    source_cluster: HostedClusterName | None = Field(default=None, description="NAMESPACE/NAME whose newest complete "
                                                     "backup to restore (with bucket and prefix)")
    source_management_cluster: ManagementClusterName | None = Field(
        default=None, description="the management cluster the source's backups were taken on; default: this one")
    bucket: BucketName | None = Field(default=None, description="S3 bucket of the backups (with source_cluster)")
    prefix: KeyPrefix = Field(default="hcp-backups", description="key prefix inside the bucket")
    namespace: NamespaceName | None = Field(default=None, description="the new HostedCluster's namespace; default: "
                                            "the backed-up cluster's")
    name: str | None = Field(default=None, description="the new HostedCluster's name; default: the backed-up cluster's")
    hosted_cluster_manifest: str | None = Field(default=None, description="a HostedCluster (and NodePools) file on the "
                                                "runner to create instead of the backup's copy (YAML or JSON)")
    hosted_cluster_manifest_content: str | None = Field(default=None, description="the same, as text")
    presign_expiry_seconds: int = Field(default=restore_render.PRESIGN_DEFAULT_SECONDS,
                                        ge=restore_render.PRESIGN_MIN_SECONDS, le=restore_render.PRESIGN_MAX_SECONDS,
                                        description="how long the snapshot URL given to etcd-init stays valid")
    aws: AwsAccess = Field(default_factory=AwsAccess)
    approval: GateSettings = Field(default_factory=GateSettings)
    dry_run: bool = Field(default=False, description="run the checks, create nothing, return the plan")
    operation_id: OperationId | None = Field(default=None, description="continue this operation (its objects are "
                                             "found and kept)")
    break_lock_held_by: str | None = Field(default=None, description="break a lock left by this dead operation "
                                           "(asks for approval)")
    keep_on_failure: bool = Field(default=False, description="on failure keep what was created, for inspection "
                                  "(default: remove it, so the target is as before)")
    remove: bool = Field(default=False, description="remove what operation_id created on the target, then stop")
    timeout_seconds: float = Field(default=1800, gt=0, description="for the new cluster to become available")

    @model_validator(mode="after")
    def _consistent(self) -> EtcdRestoreNewClusterParams:
        if self.backup is not None:
            if self.source_cluster is not None:
                raise ValueError("give either backup (a backup's URL) or source_cluster (its newest backup), not both")
            url = self.backup.removesuffix("manifest.json")
            BackupLocation.parse(url)  # raises with the reason
            if self.bucket is not None and BackupLocation.parse(url).bucket != self.bucket:
                raise ValueError(f"backup {self.backup} is not in bucket {self.bucket}")
        elif self.source_cluster is None:
            if not (self.remove and self.namespace and self.name):
                raise ValueError("give backup (a backup's s3:// URL) or source_cluster (restore its newest backup)")
        elif self.bucket is None:
            raise ValueError("source_cluster needs bucket (and prefix) to find its backups")
        if self.hosted_cluster_manifest and self.hosted_cluster_manifest_content:
            raise ValueError("give hosted_cluster_manifest or hosted_cluster_manifest_content, not both")
        if self.name is not None:
            validate_dns1123_subdomain(self.name, "name")
        if self.remove and not self.operation_id:
            raise ValueError("remove needs the operation_id whose objects to remove")
        self.target_ref()  # the control-plane namespace name must fit
        return self

    def source_ref(self) -> HostedClusterRef:
        if self.backup is not None:
            return BackupLocation.parse(self.backup.removesuffix("manifest.json")).hosted_cluster
        assert self.source_cluster is not None
        return HostedClusterRef.parse(self.source_cluster)

    def target_ref(self) -> HostedClusterRef:
        if self.namespace and self.name:
            return HostedClusterRef(self.namespace, self.name)
        source = self.source_ref()
        return HostedClusterRef(self.namespace or source.namespace, self.name or source.name)


def _run_name() -> str:
    params, mgmt, dry = run_parameters()
    source = params.get("source_cluster") or params.get("backup") or "?"
    suffix = dry or (" (remove)" if params.get("remove") else "")
    target = f"{params.get('namespace') or ''}/{params.get('name') or ''}".strip("/") or "backup's name"
    return f"{RUNBOOK}/{target}@{mgmt} from {source}{suffix}"


def restore_plan(params: EtcdRestoreNewClusterParams, target: RunTarget, source: SourceBackup, rendered: Rendered,
                 key: KeyDecision) -> list[PlanStep]:
    ref, manifest = target.ref, source.manifest
    ctx = f"--context {params.management.context} " if params.management.context else ""
    snapshot = f"s3://{source.location.bucket}/{manifest.snapshot_key}"
    steps = [PlanStep(step="take the hosted cluster's lock", changes=f"Lease {ref.namespace}/{ref.lease_name}",
                      command=f"oc {ctx}-n {ref.namespace} get lease {ref.lease_name}"),
             PlanStep(step="approval", command="hcp-runbooks approve RUN_ID --approver NAME")]
    key_name = restore_render.encryption_key_name(rendered.hosted_cluster)
    if key == "create":
        steps.append(PlanStep(step="restore the etcd encryption key", changes=f"create secret {ref.namespace}/{key_name} "
                              "with the backup's AES key",
                              command=f"aws s3 cp s3://{source.location.bucket}/{manifest.encryption_key_object} - | "
                                      f"oc {ctx}-n {ref.namespace} create -f -"))
    elif key == "reuse":
        steps.append(PlanStep(step=f"check that secret {ref.namespace}/{key_name} holds the backup's AES key",
                              command=f"oc {ctx}-n {ref.namespace} get secret {key_name} -o jsonpath='{{.data}}'"))
    steps.append(PlanStep(step="create the HostedCluster with one restoreSnapshotURL",
                          changes=f"HostedCluster {ref} (restoreSnapshotURL: a GET of {snapshot} presigned for "
                                  f"{params.presign_expiry_seconds} s)",
                          command=f"aws s3 presign {snapshot} --expires-in {params.presign_expiry_seconds}; "
                                  f"oc {ctx}-n {ref.namespace} create -f hostedcluster.json"))
    if rendered.node_pools:
        names = ", ".join(p["metadata"]["name"] for p in rendered.node_pools)
        steps.append(PlanStep(step="create the NodePools", changes=f"NodePools {names} in {ref.namespace}",
                              command=f"oc {ctx}-n {ref.namespace} create -f nodepools.json"))
    steps += [PlanStep(step="wait until Available and EtcdAvailable, every etcd member healthy",
                       command=f"oc {ctx}-n {ref.namespace} wait hostedcluster/{ref.name} --for=condition=Available "
                               "--for=condition=EtcdAvailable"),
              PlanStep(step=f"verify every member against the snapshot at revision {manifest.revision}",
                       command=f"oc {ctx}-n {ref.control_plane_namespace} exec etcd-0 -c etcd -- etcdctl endpoint "
                               f"hashkv --rev={manifest.revision}")]
    return steps


def _state(source: SourceBackup, rendered: Rendered, key: KeyDecision, target: RunTarget) -> str:
    m = source.manifest
    lines = [f"- backup {source.location_url}: {m.namespace}/{m.name} on {m.management_cluster}, release "
             f"{m.release_version}, {m.mode} snapshot of {m.member} at revision {m.revision} taken "
             f"{m.timings.snapshot_finished_at:%Y-%m-%d %H:%M:%S} UTC ({m.size_bytes} bytes, SHA-256 checked)",
             f"- new HostedCluster {target.ref} on {target.management_cluster}, "
             f"{(rendered.hosted_cluster.get('spec') or {}).get('controllerAvailabilityPolicy', 'HighlyAvailable')}, "
             f"NodePools: {', '.join(p['metadata']['name'] for p in rendered.node_pools) or 'none'}",
             f"- encryption key: {_KEY_TEXT[key]}"]
    lines += [f"- {note}" for note in rendered.notes]
    return "\n".join(lines)


_KEY_TEXT: dict[KeyDecision, str] = {
    "create": "the backup's AES key is restored into a new secret",
    "reuse": "the target's secret already holds a key (checked against the backup's when it has one)",
    "none": "the cluster has no aescbc secret encryption",
}


def _ours(state: TargetState, operation_id: str) -> list[str]:
    """This operation's objects already on the target (a re-run after a kill)."""
    found = []
    if state.hosted_cluster is not None and restore_render.created_by(state.hosted_cluster) == operation_id:
        found.append("HostedCluster")
    found += [f"NodePool {n}" for n, op in state.node_pools.items() if op == operation_id]
    found += [f"secret {n}" for n, s in state.secrets.items() if s.created_by == operation_id]
    return found


def _continue_command(params: EtcdRestoreNewClusterParams, target: RunTarget, extra: str = "") -> str:
    ref = target.ref
    return (f"hcp-runbooks run etcd-restore --into-new-cluster --operation-id {target.operation_id} "
            f"--namespace {ref.namespace} --name {ref.name}{extra}")


def _on_failure(rb: Runbook, params: EtcdRestoreNewClusterParams, target: RunTarget) -> None:
    """After a failure past the first change: diagnostics, then remove (or keep) what was created,
    and say in the report what is left and which command goes on from there."""
    try:
        rb.report.verification += [f"at failure: {line}" for line in diagnose(target)]
    except Exception as exc:  # diagnostics must not stop the cleanup
        rb.report.verification.append(f"diagnostics failed: {exc}")
    if params.keep_on_failure:
        rb.report.undone.append(
            f"kept for inspection (keep_on_failure): everything this operation created on {target.management_cluster} "
            f"is labelled hcp-runbooks/operation-id={target.operation_id}. Continue with `{_continue_command(params, target)}`; "
            f"remove it with `{_continue_command(params, target, ' --remove')}`")
        return
    removed = remove_created(target, max(params.timeout_seconds, REMOVE_TIMEOUT_SECONDS))
    rb.report.undone += removed
    rb.report.undone.append(f"state now: nothing this operation created remains on {target.management_cluster}; run "
                            f"again (same parameters, operation id {target.operation_id}) to start over with a fresh "
                            "snapshot URL")


def _remove_only(rb: Runbook, params: EtcdRestoreNewClusterParams, target: RunTarget) -> RunReport:
    take_lock(rb, params.break_lock_held_by, params.approval)
    for line in rb.step(remove_created, target, max(params.timeout_seconds, REMOVE_TIMEOUT_SECONDS)):
        rb.changed("removed", line)
    if not rb.report.changes:
        rb.report.verification.append(f"nothing of operation {target.operation_id} was found on {target}")
    return rb.report


@flow(name=RUNBOOK, flow_run_name=_run_name, validate_parameters=True)
def etcd_restore_new_cluster(params: EtcdRestoreNewClusterParams) -> RunReport:
    mgmt = params.management_cluster_name
    target = RunTarget(management=params.management, management_cluster=mgmt,
                       hosted_cluster=str(params.target_ref()), operation_id=operation_id_for_run(params.operation_id))
    with Runbook(RUNBOOK, target, dry_run=params.dry_run) as rb:
        if params.remove:
            return _remove_only(rb, params, target)

        # Preflight: read-only. A corrupt snapshot, a target that is taken, a key that cannot be
        # restored: each stops here, before anything is created.
        source = rb.step(find_backup, params.aws, params.bucket or "", params.prefix, params.backup,
                         params.source_cluster, params.source_management_cluster or mgmt)
        manifest = source.manifest
        rb.report.figures.update({"backup": source.location_url, "snapshot revision": str(manifest.revision),
                                  "snapshot taken": f"{manifest.timings.snapshot_finished_at:%Y-%m-%d %H:%M:%S} UTC"})
        snapshot = rb.step(fetch_snapshot, target, params.aws, source)
        rb.cleanup_on_failure("removed the snapshot's copy on the runner",
                              lambda: Path(snapshot.path).unlink(missing_ok=True))
        rb.report.verification.append(f"snapshot {snapshot.sha256} ({snapshot.size_bytes} bytes): SHA-256 and snapshot "
                                      f"status (revision {snapshot.revision}, hash {snapshot.hash}) equal the manifest's")
        objects = rb.step(read_source_objects, params.aws, source, params.hosted_cluster_manifest,
                          params.hosted_cluster_manifest_content)
        try:
            rendered = restore_render.render(objects, target.ref, operation_id=target.operation_id,
                                             backup_url=source.location_url, snapshot_revision=manifest.revision)
        except (restore_render.RestoreRenderError, ClusterObjectsError, ValueError) as exc:
            raise RunbookError(f"{target}: {exc}; nothing was created") from None
        key_digest = rb.step(backup_key_digest, params.aws, source)
        state = rb.step(inspect_target, target, rendered)
        problems = restore_render.refusals(rendered, state, operation_id=target.operation_id,
                                           backup_key_digest=key_digest, management_cluster=mgmt)
        if problems:
            raise RunbookError(f"restore of {source.location_url} into {target} refused; nothing was created:\n- "
                               + "\n- ".join(problems))
        key = restore_render.decide_key(rendered, state, key_digest)
        rb.report.plan = restore_plan(params, target, source, rendered, key)
        rb.report.verification += rendered.notes
        ours = _ours(state, target.operation_id)
        if params.dry_run:
            holder = rb.lock_state()
            if holder is not None and holder.holder and holder.holder != target.operation_id:
                rb.report.verification.append(f"the lock is held by {holder.holder}: a real run would stop")
            Path(snapshot.path).unlink(missing_ok=True)
            return rb.report

        take_lock(rb, params.break_lock_held_by, params.approval)
        if ours:
            rb.report.verification.append(f"continuing operation {target.operation_id}: found its {', '.join(ours)} "
                                          "(approved when they were created)")
        else:
            approval_gate(rb, "create", f"Create hosted cluster {target.ref} from backup {source.location_url}",
                          _state(source, rendered, key, target), rb.report.plan, params.approval)
        # From here on a failure leaves objects behind: report them, then remove (or keep) them.
        rb.cleanup_on_failure(f"{'kept' if params.keep_on_failure else 'removed'} what operation "
                              f"{target.operation_id} created (details above)", lambda: _on_failure(rb, params, target))

        key_name = restore_render.encryption_key_name(rendered.hosted_cluster)
        if key != "none" and key_name:
            if rb.step(restore_encryption_key, target, params.aws, source, key_name):
                rb.changed("encryption-key-restored", f"created secret {target.ref.namespace}/{key_name} with the "
                           "backup's AES key (content not shown)")
            elif manifest.encryption_key_object:
                rb.report.verification.append(f"secret {target.ref.namespace}/{key_name} holds the backup's AES key")
            else:
                rb.report.verification.append(f"the backup holds no copy of the key: secret {key_name} is used as it is")
        hc = rb.step(create_hosted_cluster, target, params.aws, source, rendered, params.presign_expiry_seconds)
        for what in hc.created:
            rb.changed("created", f"created {what} with restoreSnapshotURL {hc.url} (expires "
                       f"{hc.url_expires_at:%Y-%m-%d %H:%M:%S} UTC)" if hc.url_expires_at else f"created {what}")
        pools = rb.step(create_node_pools, target, rendered)
        for what in pools.created:
            rb.changed("created", f"created {what}")
        for what in hc.existing + pools.existing:
            rb.report.verification.append(f"{what}: created by this operation in an earlier run, left as it is")
        members = rb.step(wait_restored, target, params.timeout_seconds)
        rb.report.verification += [f"etcd {m}" for m in members]
        rb.report.verification += rb.step(verify_restored_keys, target, snapshot, expected_members(rendered))
        Path(snapshot.path).unlink(missing_ok=True)
        rb.report.location = source.location_url
        rb.report.figures.update({"new hosted cluster": f"{target.ref} on {mgmt}",
                                  "restoreSnapshotURL": hc.url or "?"})
    return rb.report
