"""`hcp-runbooks run|backups|approve|recover`: the runbooks from a terminal.

`run` executes a flow in this process. Without PREFECT_API_URL, Prefect starts a temporary local
server for it, so no server is needed; with it, the run shows up in that server's UI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Callable
from uuid import UUID

import typer
from pydantic import BaseModel, ValidationError

from cli.adhoc import run_here
from hcp.aws_access import AwsAccess
from hcp.cluster_access import ClusterAccess

run_app = typer.Typer(help="Run a runbook now, in this process; prints its report, exits non-zero on failure.",
                      no_args_is_help=True)
backups_app = typer.Typer(help="Backups in S3 (read from their manifests).", no_args_is_help=True)


# The options every runbook takes, said once.
Kubeconfig = Annotated[Path | None, typer.Option("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")]
Context = Annotated[str | None, typer.Option("--context", help="the management cluster's context")]
ManagementCluster = Annotated[str | None, typer.Option("--management-cluster",
                                                       help="its name in backups (default: context)")]
OperationId = Annotated[str | None, typer.Option("--operation-id", help="continue this operation")]
ApprovedBy = Annotated[str | None, typer.Option("--approved-by", help="approve the run's gates in advance, as NAME")]
BreakLockHeldBy = Annotated[str | None, typer.Option("--break-lock-held-by", help="break a dead operation's lock")]
Timeout = Annotated[float | None, typer.Option("--timeout", help="seconds for each wait")]


def _approval(approved_by: str | None) -> dict[str, str] | None:
    return {"pre_approved_by": approved_by} if approved_by else None


def _params(model: type[BaseModel], **fields: Any) -> Any:
    try:
        return model(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "parameters"
            typer.echo(f"error: {where}: {err['msg']}", err=True)
        raise typer.Exit(2) from None


def _access(kubeconfig: Path | None, context: str | None) -> ClusterAccess:
    return ClusterAccess(kubeconfig=kubeconfig, context=context)


def _report_of_failed_run(state: Any) -> str:
    """The failed run's report artifact (the flow raised, so it returned nothing)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    try:
        with get_client(sync_client=True) as c:
            found = c.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
                type=ArtifactFilterType(any_=["markdown"])))
        return "\n".join(str(a.data) for a in found)
    except Exception as exc:  # the report is also in the log above
        return f"(report not available: {exc})"


def _finish(state: Any, render: Callable[[Any], str]) -> None:
    if state.is_completed():
        typer.echo(render(state.result()))
        return
    typer.echo(_report_of_failed_run(state) or "", err=False)
    try:
        state.result()
    except BaseException as exc:
        typer.echo(f"FAILED: {exc}", err=True)
    raise typer.Exit(1)


@run_app.command("etcd-backup")
def run_etcd_backup(
    cluster: str = typer.Option(..., "--cluster", help="NAMESPACE/NAME of the HostedCluster"),
    bucket: str = typer.Option(..., "--bucket", help="S3 bucket for the backup"),
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    management_cluster: ManagementCluster = None,
    prefix: str = typer.Option("hcp-backups", "--prefix"),
    mode: str = typer.Option("online", "--mode", help="online | quiesced"),
    verify: str = typer.Option("sha256", "--verify", help="sha256 | full"),
    sse: str = typer.Option("AES256", "--sse", help="AES256 | aws:kms"),
    kms_key_id: str = typer.Option(None, "--kms-key-id"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check and print the plan; change nothing"),
    operation_id: OperationId = None,
    approved_by: ApprovedBy = None,
    break_lock_held_by: BreakLockHeldBy = None,
) -> None:
    """Back up one hosted cluster's etcd to S3."""
    from flows.etcd_backup import EtcdBackupParams, etcd_backup

    params = _params(EtcdBackupParams, hosted_cluster=cluster, bucket=bucket, prefix=prefix,
                     management=_access(kubeconfig, context), management_cluster=management_cluster, mode=mode,
                     verify=verify, encryption={"sse": sse, "kms_key_id": kms_key_id}, dry_run=dry_run,
                     operation_id=operation_id, break_lock_held_by=break_lock_held_by,
                     approval=_approval(approved_by))
    _finish(run_here(etcd_backup, params), lambda report: report.to_markdown())


@run_app.command("fleet-backup")
def run_fleet_backup(
    bucket: str = typer.Option(..., "--bucket"),
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    management_cluster: ManagementCluster = None,
    prefix: str = typer.Option("hcp-backups", "--prefix"),
    namespace: str = typer.Option(None, "--namespace", help="only HostedClusters in this namespace"),
    selector: str = typer.Option(None, "--selector", "-l", help="label selector on HostedClusters"),
    concurrency: int = typer.Option(4, "--concurrency"),
    keep_last: int = typer.Option(7, "--keep-last"),
    keep_daily_days: int = typer.Option(14, "--keep-daily-days"),
    no_retention: bool = typer.Option(False, "--no-retention", help="back up only; delete nothing"),
    dry_run: bool = typer.Option(False, "--dry-run"),
) -> None:
    """Back up every hosted cluster of a management cluster, then apply retention."""
    from flows.fleet_backup import FleetBackupParams, fleet_backup

    params = _params(FleetBackupParams, bucket=bucket, prefix=prefix, management=_access(kubeconfig, context),
                     management_cluster=management_cluster, namespace=namespace, label_selector=selector,
                     concurrency=concurrency, retention={"keep_last": keep_last, "keep_daily_days": keep_daily_days},
                     apply_retention=not no_retention, dry_run=dry_run)
    _finish(run_here(fleet_backup, params), lambda report: report.to_markdown())


@run_app.command("etcd-restore")
def run_etcd_restore(
    cluster: str = typer.Option(None, "--cluster", help="NAMESPACE/NAME: the HostedCluster to restore in place (with "
                                "--into-new-cluster: the cluster whose newest backup to use)"),
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    management_cluster: ManagementCluster = None,
    source: str = typer.Option("latest-backup", "--source", help="latest-backup | backup | snapshot | member-db"),
    bucket: str = typer.Option(None, "--bucket", help="S3 bucket of the backups"),
    prefix: str = typer.Option("hcp-backups", "--prefix"),
    backup: str = typer.Option(None, "--backup", help="a backup's s3:// URL (its prefix or manifest.json)"),
    member: str = typer.Option(None, "--member", help="snapshot / member-db: the member to read (etcd-N)"),
    work_dir: str = typer.Option(None, "--work-dir", help="where the runner keeps the snapshot"),
    keep_previous_data: bool = typer.Option(False, "--keep-previous-data", help="keep the old data directories"),
    into_new_cluster: bool = typer.Option(False, "--into-new-cluster", help="create a new HostedCluster from the "
                                          "backup (restoreSnapshotURL) instead of restoring in place"),
    namespace: str = typer.Option(None, "--namespace", help="--into-new-cluster: the new HostedCluster's namespace"),
    name: str = typer.Option(None, "--name", help="--into-new-cluster: the new HostedCluster's name"),
    manifest: str = typer.Option(None, "--manifest", help="--into-new-cluster: a HostedCluster (+NodePools) file to "
                                 "use instead of the backup's copy"),
    presign_expiry: int = typer.Option(None, "--presign-expiry", help="--into-new-cluster: seconds the snapshot URL "
                                       "is valid"),
    keep_on_failure: bool = typer.Option(False, "--keep-on-failure", help="--into-new-cluster: keep what was created "
                                         "if the run fails"),
    remove: bool = typer.Option(False, "--remove", help="--into-new-cluster: remove what --operation-id created"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check the snapshot and print the plan; change nothing"),
    operation_id: OperationId = None,
    approved_by: ApprovedBy = None,
    break_lock_held_by: BreakLockHeldBy = None,
    timeout: Timeout = None,
) -> None:
    """Restore a hosted cluster's etcd from a backup or a snapshot: in place, or into a new HostedCluster."""
    approval = _approval(approved_by)
    access = _access(kubeconfig, context)
    if into_new_cluster:
        from flows.etcd_restore_new_cluster import EtcdRestoreNewClusterParams, etcd_restore_new_cluster

        if source not in ("latest-backup", "backup") or member or keep_previous_data or work_dir:
            typer.echo("error: --into-new-cluster restores a backup: --source, --member, --work-dir and "
                       "--keep-previous-data do not apply", err=True)
            raise typer.Exit(2)
        new_params = _params(EtcdRestoreNewClusterParams, management=access, management_cluster=management_cluster,
                             backup=backup, source_cluster=cluster, bucket=bucket, prefix=prefix, namespace=namespace,
                             name=name, hosted_cluster_manifest=manifest, presign_expiry_seconds=presign_expiry,
                             dry_run=dry_run, operation_id=operation_id, approval=approval,
                             break_lock_held_by=break_lock_held_by, keep_on_failure=keep_on_failure, remove=remove,
                             timeout_seconds=timeout)
        _finish(run_here(etcd_restore_new_cluster, new_params), lambda report: report.to_markdown())
        return
    from flows.etcd_restore import EtcdRestoreParams, etcd_restore

    if namespace or name or manifest or presign_expiry or keep_on_failure or remove:
        typer.echo("error: --namespace, --name, --manifest, --presign-expiry, --keep-on-failure and --remove are for "
                   "--into-new-cluster", err=True)
        raise typer.Exit(2)
    params = _params(EtcdRestoreParams, hosted_cluster=cluster, management=access,
                     management_cluster=management_cluster, source=source, bucket=bucket, prefix=prefix, backup=backup,
                     member=member, work_dir=work_dir, keep_previous_data=keep_previous_data, dry_run=dry_run,
                     operation_id=operation_id, approval=approval, break_lock_held_by=break_lock_held_by,
                     timeout_seconds=timeout)
    _finish(run_here(etcd_restore, params), lambda report: report.to_markdown())


@run_app.command("etcd-member-recovery")
def run_etcd_member_recovery(
    cluster: str = typer.Option(..., "--cluster", help="NAMESPACE/NAME of the HostedCluster"),
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    management_cluster: ManagementCluster = None,
    member: str = typer.Option(None, "--member", help="the failing member (etcd-N); default: the one found failing"),
    bucket: str = typer.Option(None, "--bucket", help="the backups' bucket, for the restore command printed when "
                               "recovery is refused"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the health table and the plan; change nothing"),
    operation_id: OperationId = None,
    approved_by: ApprovedBy = None,
    break_lock_held_by: BreakLockHeldBy = None,
    timeout: Timeout = None,
) -> None:
    """Replace the one failing etcd member of a hosted cluster (quorum intact); refuses otherwise and prints the
    etcd-restore run to use instead."""
    from flows.etcd_member_recovery import EtcdMemberRecoveryParams, etcd_member_recovery

    params = _params(EtcdMemberRecoveryParams, hosted_cluster=cluster, management=_access(kubeconfig, context),
                     management_cluster=management_cluster, member=member, bucket=bucket, dry_run=dry_run,
                     operation_id=operation_id, approval=_approval(approved_by),
                     break_lock_held_by=break_lock_held_by, timeout_seconds=timeout)
    _finish(run_here(etcd_member_recovery, params), lambda report: report.to_markdown())


@run_app.command("dr-migrate")
def run_dr_migrate(
    cluster: str = typer.Option(..., "--cluster", help="NAMESPACE/NAME of the HostedCluster to move"),
    source_context: str = typer.Option(None, "--source-context", help="the source management cluster's context"),
    destination_context: str = typer.Option(None, "--destination-context", help="the destination's context"),
    source_kubeconfig: Path = typer.Option(None, "--source-kubeconfig", help="default: $KUBECONFIG or ~/.kube/config"),
    destination_kubeconfig: Path = typer.Option(None, "--destination-kubeconfig", help="default: $KUBECONFIG"),
    source_name: str = typer.Option(None, "--source-name", help="the source's name in backups (default: context)"),
    destination_name: str = typer.Option(None, "--destination-name", help="the destination's name (default: context)"),
    bucket: str = typer.Option(..., "--bucket", help="S3 bucket the backup goes to (it stays)"),
    route53_zone_id: str = typer.Option(..., "--route53-zone-id", envvar="HCP_ROUTE53_ZONE_ID",
                                        help="public Route53 zone of the external DNS domain"),
    external_dns_domain: str = typer.Option(..., "--external-dns-domain", envvar="HCP_EXTERNAL_DNS_DOMAIN",
                                            help="the domain of the hosted cluster's API hostname"),
    prefix: str = typer.Option("hcp-backups", "--prefix"),
    rollback: bool = typer.Option(False, "--rollback", help="go back: remove the operation's copy from the "
                                  "destination and bring the source back (before the teardown only)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check both sides and print the plan; change nothing"),
    operation_id: str = typer.Option(None, "--operation-id", help="continue (or roll back) this operation"),
    approved_by: ApprovedBy = None,
    break_lock_held_by: BreakLockHeldBy = None,
    timeout: float = typer.Option(None, "--timeout", help="seconds for each wait on a cluster"),
    dns_timeout: float = typer.Option(None, "--dns-timeout", help="seconds for the source's DNS records to go"),
) -> None:
    """Move a hosted cluster to another management cluster (disaster recovery), its workloads running throughout."""
    from flows.dr_migrate import DrMigrateParams, dr_migrate

    params = _params(DrMigrateParams, hosted_cluster=cluster, bucket=bucket, prefix=prefix,
                     source={"management": _access(source_kubeconfig, source_context), "management_cluster": source_name},
                     destination={"management": _access(destination_kubeconfig, destination_context),
                                  "management_cluster": destination_name},
                     route53_zone_id=route53_zone_id, external_dns_domain=external_dns_domain, rollback=rollback,
                     dry_run=dry_run, operation_id=operation_id, break_lock_held_by=break_lock_held_by,
                     approval=_approval(approved_by), timeout_seconds=timeout,
                     dns_timeout_seconds=dns_timeout)
    _finish(run_here(dr_migrate, params), lambda report: report.to_markdown())


def recover_command(
    operation_id: str = typer.Argument(..., help="the operation whose run died (op-<UTC time>-<hex>)"),
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    management_cluster: ManagementCluster = None,
) -> None:
    """Put back what a dead run lowered (replicas, pausedUntil) and release its lock."""
    from flows.recover import RecoverParams, recover

    params = _params(RecoverParams, operation_id=operation_id, management=_access(kubeconfig, context),
                     management_cluster=management_cluster)
    _finish(run_here(recover, params),
            lambda reports: "\n".join(r.to_markdown() for r in reports) or f"{operation_id}: nothing to recover")


def approve_command(
    run_id: str = typer.Argument(..., help="the paused or suspended flow run's id"),
    approver: str = typer.Option(..., "--approver", help="your name (recorded)"),
    reject: bool = typer.Option(False, "--reject", help="stop the run instead (nothing destructive happens)"),
    comment: str = typer.Option(None, "--comment"),
) -> None:
    """Answer a runbook's approval gate (needs PREFECT_API_URL of the server the run is on)."""
    from prefect.flow_runs import resume_flow_run

    try:
        flow_run_id = UUID(run_id)
    except ValueError:
        raise typer.BadParameter("not a flow run id (a UUID, shown in the UI and in the run's log)") from None
    decision: dict[str, Any] = {"approved": not reject, "approver": approver}
    if comment:
        decision["comment"] = comment
    try:
        resume_flow_run(flow_run_id, run_input=decision)
    except Exception as exc:
        typer.echo(f"error: could not resume {run_id}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{'rejected' if reject else 'approved'} {run_id} as {approver}")


@backups_app.command("list")
def backups_list(
    bucket: str = typer.Option(..., "--bucket"),
    prefix: str = typer.Option("hcp-backups", "--prefix"),
    cluster: str = typer.Option(None, "--cluster", help="NAMESPACE/NAME"),
    management_cluster: ManagementCluster = None,
    endpoint_url: str = typer.Option(None, "--endpoint-url", help="an S3-compatible endpoint"),
) -> None:
    """Backups (complete, and incomplete prefixes without a manifest) from their manifests."""
    from hcp.backup_catalog import BackupCatalogError, format_table, list_backups
    from hcp.naming import HostedClusterRef, InvalidNameError

    try:
        ref = HostedClusterRef.parse(cluster) if cluster else None
        entries = list_backups(AwsAccess(endpoint_url=endpoint_url).s3_client(), bucket, prefix,
                               management_cluster=management_cluster, hosted_cluster=ref)
    except (BackupCatalogError, InvalidNameError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(format_table(entries) if entries else f"no backups under s3://{bucket}/{prefix}")


