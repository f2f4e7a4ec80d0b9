"""fleet-backup: back up the etcd of every hosted cluster on a management cluster, then apply retention.

The nightly job. It finds the HostedClusters (optionally in one namespace and/or matching a label
selector), runs the etcd-backup flow for each as a subflow, at most `concurrency` at a time, and
carries on past a cluster's failure. Every backup is ONLINE: a nightly job must never take a
hosted cluster's API servers down; a quiesced backup is a planned, approved, single-cluster
etcd-backup run. All clusters share the fleet's operation id: checkpoints, lock holder, undo
journal and backup location all include the cluster, so that is safe, and a retry of the fleet
resumes each cluster where it stopped.

Then a table artifact (one row per cluster), retention (after the backups, so tonight's count:
keep the last N and one per day for D days per cluster, never the newest complete backup, delete
orphans without a manifest once they are old enough) and a markdown report. The run ends Failed,
naming the failed clusters, if any cluster failed or retention had an error; the artifacts and
retention happen first either way. A dry run plans each cluster's backup and lists what
retention would delete; it changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field, ValidationError

from flows.etcd_backup import EtcdBackupParams, etcd_backup
from hcp.aws_access import AwsAccess
from hcp.params import BucketName, KeyPrefix, ManagementParams, NamespaceName, OperationId
from hcp.report import RunReport
from hcp.retention import RetentionPolicy
from tasks.fleet import ClusterBackup, FleetReport, apply_backup_retention, discover_hosted_clusters, \
    publish_backup_table, publish_fleet_report
from tasks.gates import GateSettings
from tasks.runbook import RunbookError, describe_error, operation_id_for_run, run_parameters
from tasks.storage import Encryption

__all__ = ["FleetBackupParams", "fleet_backup", "FleetBackupFailed", "backup_one"]


class FleetBackupFailed(RunbookError):
    """At least one hosted cluster was not backed up, or retention had an error."""


class FleetBackupParams(ManagementParams):
    """Parameters of fleet-backup (the UI's form). No mode: every backup is online (see the module)."""

    namespace: NamespaceName | None = Field(default=None, description="only HostedClusters in this namespace; default: all")
    label_selector: str | None = Field(default=None, description="only HostedClusters matching this label selector, "
                                       "e.g. 'backup=nightly'")
    bucket: BucketName = Field(description="S3 bucket for the backups")
    prefix: KeyPrefix = Field(default="hcp-backups", description="key prefix inside the bucket")
    aws: AwsAccess = Field(default_factory=AwsAccess)
    encryption: Encryption = Field(default_factory=Encryption, description="server-side encryption of every object")
    verify: Literal["sha256", "full"] = Field(default="sha256", description="full: also restore each uploaded "
                                              "snapshot into a throwaway etcd and count its keys")
    concurrency: int = Field(default=4, ge=1, le=32, description="hosted clusters backed up at the same time")
    retention: RetentionPolicy = Field(default_factory=RetentionPolicy)
    apply_retention: bool = Field(default=True, description="after the backups, apply `retention` to every hosted "
                                  "cluster's backups of this management cluster under the prefix (also of clusters "
                                  "outside the filters or deleted since: the newest complete backup always stays)")
    dry_run: bool = Field(default=False, description="plan each backup and list what retention would delete; "
                          "change nothing")
    operation_id: OperationId | None = Field(default=None, description="continue this operation (each cluster skips its "
                                     "finished steps)")
    approval: GateSettings = Field(default_factory=GateSettings, description="passed to each cluster's etcd-backup")

    def cluster_params(self, hosted_cluster: str, operation_id: str) -> EtcdBackupParams:
        """One hosted cluster's etcd-backup: always online, under the fleet's operation id."""
        return EtcdBackupParams(hosted_cluster=hosted_cluster, bucket=self.bucket, prefix=self.prefix,
                                management=self.management, management_cluster=self.management_cluster_name,
                                aws=self.aws, encryption=self.encryption, mode="online", verify=self.verify,
                                dry_run=self.dry_run, operation_id=operation_id, approval=self.approval)


def _run_name() -> str:
    params, mgmt, dry = run_parameters()
    scope = "/".join(str(p) for p in (params.get("namespace"), params.get("label_selector")) if p) or "all"
    return f"fleet-backup@{mgmt}/{scope}{dry}"


# A task (so that a thread pool bounds how many run at once) defined here, not in tasks/, because it
# runs a flow. NO_CACHE: every fleet run must run the subflow, which resumes from its own checkpoints.
@task(name="backup-hosted-cluster", task_run_name="backup-{hosted_cluster}", cache_policy=NO_CACHE)
def backup_one(params: FleetBackupParams, hosted_cluster: str, operation_id: str) -> ClusterBackup:
    """Run etcd-backup for one hosted cluster as a subflow (its own report artifact and checkpoints).
    Never raises for the cluster's failure: the row carries it, and the fleet carries on."""
    started = datetime.now(timezone.utc)
    try:
        cluster_params = params.cluster_params(hosted_cluster, operation_id)
    except ValidationError as exc:
        return ClusterBackup(hosted_cluster=hosted_cluster, status="failed", started_at=started,
                             finished_at=datetime.now(timezone.utc),
                             error=f"etcd-backup cannot take this hosted cluster ({exc}); leave it out with the "
                                   "label selector and back it up by hand")
    state = etcd_backup(cluster_params, return_state=True)
    finished = datetime.now(timezone.utc)
    run_id = str(state.state_details.flow_run_id) if state.state_details.flow_run_id else None
    if not state.is_completed():
        outcome = state.result(raise_on_failure=False)
        error = describe_error(outcome) if isinstance(outcome, BaseException) else (state.message or state.name)
        return ClusterBackup(hosted_cluster=hosted_cluster, status="failed", error=error, started_at=started,
                             finished_at=finished, flow_run_id=run_id)
    report: RunReport = state.result()
    return ClusterBackup(hosted_cluster=hosted_cluster, status="planned" if report.status == "planned" else "succeeded",
                         location=report.location or report.figures.get("backup location"), size_bytes=report.size_bytes,
                         started_at=started, finished_at=finished, flow_run_id=run_id)


def _collect(hosted_cluster: str, future: PrefectFuture[ClusterBackup]) -> ClusterBackup:
    """The cluster's row; a crash of backup_one itself (not of the backup) becomes a failed row too,
    so one cluster never costs the others their rows."""
    outcome = future.result(raise_on_failure=False)
    if isinstance(outcome, ClusterBackup):
        return outcome
    now = datetime.now(timezone.utc)
    return ClusterBackup(hosted_cluster=hosted_cluster, status="failed", started_at=now, finished_at=now,
                         error=f"the fleet could not run its etcd-backup ({describe_error(outcome)}); run etcd-backup for "
                               "it by hand, and report this as a bug of fleet-backup")


@flow(name="fleet-backup", flow_run_name=_run_name, validate_parameters=True)
def fleet_backup(params: FleetBackupParams) -> FleetReport:
    mgmt = params.management_cluster_name
    operation_id = operation_id_for_run(params.operation_id)
    report = FleetReport.start(mgmt, operation_id, params.namespace, params.label_selector, params.dry_run)

    # Which hosted clusters (read-only). None found is an error: a nightly job that silently backs
    # up nothing usually has a wrong filter.
    clusters = discover_hosted_clusters(params.management, params.namespace, params.label_selector)
    if not clusters:
        raise RunbookError(f"no HostedCluster on {mgmt} matches ({report.selection}): nothing was backed up; check "
                           "the namespace and label_selector with `oc get hostedclusters -A --show-labels`")

    # Each cluster's etcd-backup, at most `concurrency` at a time; a cluster's failure is its row.
    with ThreadPoolTaskRunner[ClusterBackup](max_workers=params.concurrency) as runner:
        futures = {c: runner.submit(backup_one, {"params": params, "hosted_cluster": c, "operation_id": operation_id})
                   for c in clusters}
        report.clusters = [_collect(c, f) for c, f in futures.items()]
    publish_backup_table(report)

    # Retention after the backups: tonight's backups count towards keep_last and, as each cluster's
    # newest, are never deleted.
    if params.apply_retention:
        report.retention = apply_backup_retention(params.aws, params.bucket, params.prefix, mgmt, params.retention,
                                                  params.dry_run)

    report.finish()
    publish_fleet_report(report)
    failure = report.failure()
    if failure:
        raise FleetBackupFailed(failure)
    return report
