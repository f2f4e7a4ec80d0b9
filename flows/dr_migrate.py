"""dr-migrate: move a hosted cluster from one management cluster to another, its workloads
running throughout (HyperShift's disaster-recovery procedure, without its known bugs).

1. Preflight, read-only: both management clusters answer; the API is published through external
   DNS; the destination has neither the HostedCluster nor its control-plane namespace, runs an
   operator that supports the cluster's version, and lets the runner create; the bucket takes
   writes; the Route53 zone can be read.
2. Source: mark the hosted cluster with where it comes from (`mgmt-parent-cluster`), pause the
   HostedCluster and its NodePools, scale the API servers and the control-plane-operator to 0
   (everything recorded for the way back).
3. Back up each etcd member's own snapshot and every object the move needs, under one manifest.
4. Delete the control plane's Routes and wait until the source's external-dns removed the records.
5. Destination: namespaces, secrets, HostedControlPlane, Cluster API and AWS objects, then the
   HostedCluster with one restoreSnapshotURL, then the NodePools.
6. Wait until the destination's HostedCluster is Available and the hosted cluster shows its nodes Ready.
7. Approval, showing the destination's health.
8. Tear down the source (the teardown way: nothing there may terminate an instance).
9. Restart the OVN pods in the hosted cluster, so the nodes connect to the new control plane.

Until step 8 a failure rolls back: the destination's copy goes, then the source is scaled back and
unpaused. A rejection at step 7 stops without undoing anything: the destination serves the cluster
(writes made there since would be lost by going back), the source stays paused and intact; a re-run
asks again, `--rollback` goes back deliberately. From step 8 on the run only goes forward.
"""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hcp import backup_manifest
from hcp.aws_access import AwsAccess
from hcp.member_snapshots import newest
from hcp.naming import BackupLocation, operation_id_time, validate_dns1123_subdomain
from hcp.params import BucketName, HostedClusterName, KeyPrefix, ManagementParams, OperationId
from hcp.plan import PlanStep
from hcp.report import RunReport
from hcp.run_target import RunTarget
from tasks.checkpoint import completed_result
from tasks.cluster_objects import save_cluster_objects
from tasks.dr_migrate import QUIESCE, RUNBOOK, DrPreflight, backup_members, delete_routes, dr_preflight, \
    guard_journal, pause_node_pools, point_of_no_return, record_parent, remove_from_destination, \
    restart_ovn_pods, restore_on_destination, save_objects, teardown_source, wait_destination, wait_dns_released
from tasks.gates import GateRejected, GateSettings, approval_gate, take_lock
from tasks.hosted_cluster import quiesce_control_plane, restore_availability
from tasks.runbook import Runbook, RunbookError, operation_id_for_run, run_parameters, side_by_side
from tasks.storage import Encryption, check_bucket, save_encryption_key, write_manifest

__all__ = ["DrMigrateParams", "dr_migrate", "migrate_command"]

VERSION = "0.1.0"


class DrMigrateParams(BaseModel):
    """Parameters of dr-migrate (the UI's form). No secrets: kubeconfig paths and contexts, the
    standard AWS configuration."""

    model_config = ConfigDict(extra="forbid")

    source: ManagementParams = Field(description="the management cluster the hosted cluster leaves")
    destination: ManagementParams = Field(description="the management cluster it moves to")
    hosted_cluster: HostedClusterName = Field(description="the HostedCluster, NAMESPACE/NAME")
    bucket: BucketName = Field(description="S3 bucket for the backup the move goes through (it stays)")
    prefix: KeyPrefix = Field(default="hcp-backups", description="key prefix inside the bucket")
    route53_zone_id: str = Field(pattern=r"^(/hostedzone/)?[A-Z0-9]{1,32}$", description="the public Route53 zone of "
                                 "the external DNS domain")
    external_dns_domain: str = Field(description="the domain the hosted cluster's API hostname lies in")
    aws: AwsAccess = Field(default_factory=AwsAccess)
    encryption: Encryption = Field(default_factory=Encryption, description="server-side encryption of every object")
    url_expires_seconds: int = Field(default=3600, ge=300, le=604800, description="life of the presigned "
                                     "restoreSnapshotURL (the destination's etcd must start within it)")
    rollback: bool = Field(default=False, description="go back: remove this operation's copy from the destination "
                           "and bring the source back (needs operation_id; refused once the teardown began)")
    dry_run: bool = Field(default=False, description="run the checks, change nothing, return the plan")
    operation_id: OperationId | None = Field(default=None, description="continue (or, with rollback, undo) this "
                                             "operation")
    approval: GateSettings = Field(default_factory=GateSettings)
    break_lock_held_by: str | None = Field(default=None, description="break a lock left by this dead operation "
                                           "(asks for approval)")
    timeout_seconds: float = Field(default=900, gt=0, description="for each wait on a cluster")
    dns_timeout_seconds: float = Field(default=600, gt=0, description="for the source's DNS records to go")

    @model_validator(mode="after")
    def _valid(self) -> DrMigrateParams:
        validate_dns1123_subdomain(self.external_dns_domain.rstrip("."), "external_dns_domain")
        self.route53_zone_id = self.route53_zone_id.removeprefix("/hostedzone/")
        if self.source.management_cluster_name == self.destination.management_cluster_name:
            raise ValueError(f"source and destination are both {self.source.management_cluster_name!r}: the "
                             "destination must be another management cluster")
        if self.rollback and not self.operation_id:
            raise ValueError("rollback needs the operation_id of the migration to undo")
        if self.rollback and self.dry_run:
            raise ValueError("rollback has no dry run")
        return self


def _run_name() -> str:
    params, _, dry = run_parameters()
    src = (params.get("source") or {}).get("management_cluster") or \
        ((params.get("source") or {}).get("management") or {}).get("context") or "?"
    dst = (params.get("destination") or {}).get("management_cluster") or \
        ((params.get("destination") or {}).get("management") or {}).get("context") or "?"
    way = " (rollback)" if params.get("rollback") else ""
    return f"dr-migrate/{params.get('hosted_cluster', '?')}@{src}->{dst}{way}{dry}"


def migrate_command(params: DrMigrateParams, operation_id: str | None = None, *, rollback: bool = False) -> str:
    """The `hcp-runbooks run dr-migrate` command line that continues (or rolls back) this operation."""
    parts = ["hcp-runbooks run dr-migrate", f"--cluster {params.hosted_cluster}"]
    for side, p in (("source", params.source), ("destination", params.destination)):
        if p.management.kubeconfig:
            parts.append(f"--{side}-kubeconfig {p.management.kubeconfig}")
        if p.management.context:
            parts.append(f"--{side}-context {p.management.context}")
        if p.management_cluster and p.management_cluster != p.management.context:
            parts.append(f"--{side}-name {p.management_cluster}")
    parts += [f"--bucket {params.bucket}", f"--route53-zone-id {params.route53_zone_id}",
              f"--external-dns-domain {params.external_dns_domain}"]
    if params.prefix != "hcp-backups":
        parts.append(f"--prefix {params.prefix}")
    if operation_id:
        parts.append(f"--operation-id {operation_id}")
    if rollback:
        parts.append("--rollback")
    return " ".join(parts)


def migrate_plan(params: DrMigrateParams, source: RunTarget, destination: RunTarget, pre: DrPreflight,
                 location: BackupLocation) -> list[PlanStep]:
    ref, cp = source.ref, source.ref.control_plane_namespace

    def oc(side: ManagementParams) -> str:
        return f"oc --context {side.management.context} " if side.management.context else "oc "
    src, dst = oc(params.source), oc(params.destination)
    hosts = ", ".join(sorted(pre.hostnames.values()))
    steps = [
        PlanStep(step="take the hosted cluster's lock", changes=f"Lease {ref.namespace}/{ref.lease_name} on "
                 f"{source.management_cluster}"),
        PlanStep(step="record where the cluster comes from", changes=f"ConfigMap default/mgmt-parent-cluster in the "
                 f"hosted cluster: from={source.management_cluster}",
                 command="oc --kubeconfig HOSTED create configmap mgmt-parent-cluster -n default "
                         f"--from-literal=from={source.management_cluster}"),
        PlanStep(step="pause the HostedCluster and its NodePools", lowers_availability=True,
                 changes="spec.pausedUntil 'true' (originals recorded)",
                 command=f"{src}-n {ref.namespace} patch hostedcluster/{ref.name} nodepools --type=merge "
                         "-p '{\"spec\":{\"pausedUntil\":\"true\"}}'"),
        PlanStep(step=f"scale {', '.join(QUIESCE)} to 0", lowers_availability=True,
                 changes=f"deployments in {cp} on {source.management_cluster} (replicas recorded); the hosted API "
                         "is unavailable from here until the destination serves it",
                 command=f"{src}-n {cp} scale deployment --replicas=0 {' '.join(QUIESCE)}"),
        PlanStep(step="back up every etcd member's own snapshot and the objects", changes=f"objects under "
                 f"{location.url}, manifest.json last",
                 command=f"{src}-n {cp} exec etcd-N -c etcd -- etcdctl snapshot save ...; aws s3 cp - "
                         f"{location.url}etcd-N-snapshot.db"),
        PlanStep(step="delete the control plane's Routes and wait until their DNS records are gone",
                 lowers_availability=True, changes=f"Routes in {cp} on {source.management_cluster}; Route53 records "
                 f"of {hosts} removed by its external-dns",
                 command=f"{src}-n {cp} delete routes --all; aws route53 list-resource-record-sets --hosted-zone-id "
                         f"{params.route53_zone_id}"),
        PlanStep(step="restore on the destination", changes=f"namespaces {ref.namespace} (if missing) and {cp}, "
                 "secrets, HostedControlPlane, Cluster API and AWS objects, the HostedCluster with one presigned "
                 f"restoreSnapshotURL, NodePools, on {destination.management_cluster}",
                 command=f"{dst}create -f objects/ (in the documented order)"),
        PlanStep(step="wait until the destination serves the hosted cluster",
                 command=f"{dst}-n {ref.namespace} wait hostedcluster/{ref.name} --for=condition=Available; "
                         "oc --kubeconfig HOSTED get nodes"),
        PlanStep(step="approval before deleting anything from the source",
                 command="hcp-runbooks approve RUN_ID --approver NAME"),
        PlanStep(step="tear down the source", destructive=True,
                 changes=f"NodePools, Machines, MachineSets, Cluster, AWSMachines, HostedControlPlane, namespace {cp} "
                         f"and HostedCluster {ref} deleted on {source.management_cluster} (finalizers removed, "
                         "control plane scaled to 0 first); the backup stays",
                 command=f"{src}-n {cp} scale deployment,statefulset --all --replicas=0; ... {src}delete ns {cp}; "
                         f"{src}-n {ref.namespace} delete hostedcluster/{ref.name}"),
        PlanStep(step="restart the OVN pods in the hosted cluster", changes="ovnkube-node pods recreated",
                 command="oc --kubeconfig HOSTED -n openshift-ovn-kubernetes delete pods --all"),
    ]
    return steps


def _preflight(rb: Runbook, params: DrMigrateParams, source: RunTarget, destination: RunTarget) -> DrPreflight:
    pre = rb.step(dr_preflight, source, destination, params.external_dns_domain, params.route53_zone_id, params.aws)
    if pre.problems:
        raise RunbookError(f"{source}: cannot move it to {destination.management_cluster}; nothing was changed:\n- "
                           + "\n- ".join(pre.problems))
    return pre


def _nodes_kept(before: dict[str, str | None] | None, after: dict[str, str | None]) -> str:
    if before is None:
        return "unknown (the hosted API did not answer before the move)"
    lost = [n for n, since in before.items() if since and after.get(n) != since]
    if lost:
        return f"NO: {', '.join(sorted(lost))} changed Ready state during the move"
    return f"yes: {len(before)} node(s), none changed Ready state during the move"


@flow(name="dr-migrate", flow_run_name=_run_name, validate_parameters=True)
def dr_migrate(params: DrMigrateParams) -> RunReport:
    op = operation_id_for_run(params.operation_id)
    source = RunTarget(management=params.source.management, management_cluster=params.source.management_cluster_name,
                       hosted_cluster=params.hosted_cluster, operation_id=op)
    destination = RunTarget(management=params.destination.management,
                            management_cluster=params.destination.management_cluster_name,
                            hosted_cluster=params.hosted_cluster, operation_id=op)
    location = BackupLocation.new(params.bucket, params.prefix, source.management_cluster, source.ref, op,
                                  when=operation_id_time(op))
    with Runbook(RUNBOOK, source, dry_run=params.dry_run) as rb:
        rb.report.next_command = migrate_command(params, op)
        committed = completed_result(point_of_no_return, source)
        if params.rollback:
            return _rollback(rb, params, source, destination, committed is not None)
        if committed is None:
            pre, _ = side_by_side(lambda: _preflight(rb, params, source, destination),
                                  lambda: rb.step(check_bucket, params.aws, params.bucket, params.prefix, op,
                                                  params.encryption))
            rb.report.plan = migrate_plan(params, source, destination, pre, location)
            rb.report.figures["backup location"] = location.url
            if params.dry_run:
                rb.report.verification.append(f"preflight passed on {source.management_cluster} and "
                                              f"{destination.management_cluster}; published: "
                                              + ", ".join(f"{s} {h}" for s, h in sorted(pre.hostnames.items())))
                return rb.report
            take_lock(rb, params.break_lock_held_by, params.approval)
            rb.step(guard_journal, source, f"dr-migrate moved (part of) it to {destination.management_cluster}: "
                    f"go back with `{migrate_command(params, op, rollback=True)}` or forward with "
                    f"`{migrate_command(params, op)}`")
            _move(rb, params, source, destination, pre, location)
        else:
            take_lock(rb, params.break_lock_held_by, params.approval)
            rb.skipped("preflight", f"the teardown of the source began at {committed:%H:%M:%S} UTC: only forward")
        rb.report.cluster_state = (f"served from {destination.management_cluster}; the source "
                                   f"{source.management_cluster} is being torn down: re-run the same operation to finish")
        saved = completed_result(save_objects, source)
        removed = rb.step(teardown_source, source, saved.secrets if saved else [], params.timeout_seconds)
        rb.report.changes += [f"source {source.management_cluster}: {line}" for line in removed]
        restarted = rb.step(restart_ovn_pods, destination, params.timeout_seconds)
        rb.changed("ovn-restarted", f"restarted {len(restarted)} ovnkube-node pod(s) in the hosted cluster")
        rb.report.cluster_state = f"on {destination.management_cluster}; nothing of it left on {source.management_cluster}"
        rb.report.figures["cluster now on"] = destination.management_cluster
        rb.report.location = location.url
    return rb.report


def _move(rb: Runbook, params: DrMigrateParams, source: RunTarget, destination: RunTarget, pre: DrPreflight,
          location: BackupLocation) -> None:
    """Steps 2 to 7: everything before the point of no return, which a failure rolls back."""
    src, dst = source.management_cluster, destination.management_cluster
    rb.report.cluster_state = f"on {src}, untouched"
    if rb.step(record_parent, source):
        rb.changed("parent-recorded", f"recorded mgmt-parent-cluster from={src} in the hosted cluster")
    rb.report.changes += rb.step(pause_node_pools, source)
    quiesced = rb.step(quiesce_control_plane, source, list(QUIESCE), params.timeout_seconds, RUNBOOK)
    rb.report.changes += quiesced.changes
    rb.report.cluster_state = (f"on {src}, paused and scaled down (hosted API unavailable, nodes and workloads "
                               f"running); a failure scales it back")

    # The snapshots and the objects are independent writes into the backup's prefix: side by side.
    backup, key_object, cluster_objects_key, saved = side_by_side(
        lambda: rb.step(backup_members, source, params.aws, location.url, params.encryption),
        lambda: rb.step(save_encryption_key, source, params.aws, location.url, pre.cluster.encryption_key_secret,
                        params.encryption),
        lambda: rb.step(save_cluster_objects, source, params.aws, location.url, params.encryption),
        lambda: rb.step(save_objects, source, params.aws, location.url, params.encryption))
    chosen = newest(backup.members)
    rb.changed("etcd-backed-up", "backed up " + ", ".join(f"{m.member} (revision {m.revision}, {m.size_bytes} bytes, "
                                                          f"SHA-256 checked)" for m in backup.members)
               + f"; restoring {chosen.member}'s")
    rb.changed("objects-saved", "saved " + ", ".join(f"{n} {k}" for k, n in saved.counts.items())
               + f" to s3://{location.bucket}/{saved.key}")
    manifest = backup_manifest.build(
        location, uid=pre.cluster.uid, release_image=pre.cluster.release_image,
        release_version=pre.cluster.release_version, member=chosen.member, revision=chosen.revision,
        hash=chosen.hash, total_keys=chosen.total_keys, size_bytes=chosen.size_bytes, sha256=chosen.sha256,
        snapshot_key=chosen.key, object_keys=[m.key for m in backup.members] + ([key_object] if key_object else [])
        + [cluster_objects_key, saved.key], encryption_key_object=key_object, cluster_objects_key=cluster_objects_key,
        migration_objects_key=saved.key, member_snapshot_keys={m.member: m.key for m in backup.members},
        mode="quiesced", downtime_seconds=round(max(0.0, (backup.finished_at - quiesced.down_since).total_seconds()), 3),
        tool_versions={"hcp-runbooks": VERSION, "etcd-server": chosen.etcd_version or "unknown"},
        timings=backup_manifest.Timings(started_at=min(rb.report.started_at, backup.started_at),
                                        snapshot_started_at=backup.started_at, snapshot_finished_at=backup.finished_at,
                                        upload_finished_at=backup.finished_at,
                                        finished_at=max(backup.finished_at, rb.report.started_at)))
    manifest_url = rb.step(write_manifest, source, params.aws, location.url, manifest, params.encryption)
    rb.changed("backup-written", f"wrote {manifest_url}: the backup is complete", url=location.url)

    deleted = rb.step(delete_routes, source)
    if deleted:
        rb.changed("routes-deleted", f"deleted {len(deleted)} Route(s) on {src}: " + "; ".join(deleted))
    waited = rb.step(wait_dns_released, source, params.aws, params.route53_zone_id, sorted(pre.hostnames.values()),
                     params.dns_timeout_seconds)
    rb.report.figures["DNS records removed after"] = f"{waited:.1f} s"

    def remove_copy() -> None:
        try:
            removed = remove_from_destination.fn(destination, saved.secrets, params.timeout_seconds)
        except BaseException as exc:
            rb.hold(f"the copy on {dst} could not be removed ({exc}); the source stays paused and scaled down so "
                    f"that the two never run at once. Once {dst} answers: "
                    f"{migrate_command(params, source.operation_id, rollback=True)}")
            raise
        rb.report.undone += [f"destination {dst}: {line}" for line in removed]

    rb.cleanup_on_failure(f"removed this operation's copy from {dst}", remove_copy)
    rb.report.cluster_state = f"on {src} (paused, scaled down); being restored on {dst}; a failure removes the copy"
    created = rb.step(restore_on_destination, destination, params.aws, f"s3://{location.bucket}/{saved.key}",
                      f"s3://{location.bucket}/{chosen.key}", params.url_expires_seconds)
    rb.report.changes += [f"destination {dst}: created {what}" for what in created]
    health = rb.step(wait_destination, destination, pre.node_replicas, chosen.revision, params.timeout_seconds)
    outage = (health.api_back_at - quiesced.down_since).total_seconds()
    rb.report.figures["hosted API unavailable"] = f"{outage:.1f} s (from scaling the source down to the destination " \
                                                  "serving it)"
    rb.report.figures["nodes Ready throughout"] = _nodes_kept(pre.nodes, health.nodes)
    rb.report.verification.append(f"{dst}: {health.describe()}; etcd revision {health.revision} >= backup revision "
                                  f"{chosen.revision}")
    rb.report.cluster_state = (f"served from {dst}; {src} holds the paused, scaled-down original (nothing deleted)")

    try:
        approval_gate(rb, "teardown", f"Delete {source.ref} from {src} (it now runs on {dst})",
                      f"- destination {dst}: {health.describe()}\n- source {src}: paused, API servers and "
                      f"control-plane-operator at 0, Routes deleted\n- backup: {location.url}",
                      rb.report.plan, params.approval)
    except GateRejected as exc:
        rb.hold(f"the teardown was not approved: {dst} keeps serving the cluster and {src} keeps the paused "
                f"original. Go on: `{migrate_command(params, source.operation_id)}`; go back (writes made on {dst} "
                f"since the move are lost): `{migrate_command(params, source.operation_id, rollback=True)}`")
        raise RunbookError(str(exc)) from None
    rb.step(point_of_no_return, source)
    rb.drop_cleanups()
    rb.changed("point-of-no-return", f"from here the move only goes forward: {src} is torn down")


def _rollback(rb: Runbook, params: DrMigrateParams, source: RunTarget, destination: RunTarget,
              committed: bool) -> RunReport:
    if committed:
        raise RunbookError(f"{source}: the teardown of the source began; there is no way back. Finish the move: "
                           f"{migrate_command(params, source.operation_id)}")
    take_lock(rb, params.break_lock_held_by, params.approval)
    rb.attach_journal()
    saved = completed_result(save_objects, source)
    removed = rb.step(remove_from_destination, destination, saved.secrets if saved else [], params.timeout_seconds)
    rb.report.changes += [f"destination {destination.management_cluster}: {line}" for line in removed]
    back = rb.step(restore_availability, source, params.timeout_seconds, RUNBOOK)
    rb.report.changes += [f"source {source.management_cluster}: {line}" for line in back.restored]
    rb.report.cluster_state = f"on {source.management_cluster}, as before the move"
    rb.report.figures["cluster now on"] = source.management_cluster
    return rb.report

