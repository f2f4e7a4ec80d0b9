"""Tasks of the fleet backup: find the hosted clusters to back up, apply backup retention to a
management cluster's backups, and the fleet's report (a table and a markdown artifact).

Backing up one cluster is the etcd-backup flow itself, run as a subflow by `flows.fleet_backup`
(tasks never import flows); what it returns is summarised here as a `ClusterBackup` row.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Literal

from kubernetes.client.exceptions import ApiException
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from pydantic import BaseModel, Field, computed_field

from hcp.aws_access import AwsAccess
from hcp.backup_catalog import BackupCatalogError, BackupEntry, human_size, list_backups
from hcp.cluster_access import ClusterAccess
from hcp.hosted_cluster import HostedClusterError, list_hosted_clusters
from hcp.retention import RetentionPolicy, apply_retention, format_decisions, plan_retention
from tasks.aws import s3_client
from tasks.runbook import artifact_key

__all__ = ["discover_hosted_clusters", "apply_backup_retention", "ClusterBackup", "RetentionSummary", "FleetReport",
           "publish_backup_table", "publish_fleet_report", "RUNBOOK"]

RUNBOOK = "fleet-backup"


# -- discovery ----------------------------------------------------------------------------------

def _selection(namespace: str | None, label_selector: str | None) -> str:
    parts = [f"namespace {namespace}" if namespace else "all namespaces"]
    if label_selector:
        parts.append(f"labels {label_selector}")
    return ", ".join(parts)


# NO_CACHE: a nightly run must see today's hosted clusters, never an earlier run's answer.
@task(name="discover-hosted-clusters", cache_policy=NO_CACHE)
def discover_hosted_clusters(access: ClusterAccess, namespace: str | None, label_selector: str | None) -> list[str]:
    """NAMESPACE/NAME of every HostedCluster on the management cluster that matches the filters,
    sorted (read-only)."""
    api = access.api_client()
    try:
        infos = list_hosted_clusters(api, namespace, label_selector)
    except ApiException as exc:
        hint = ("check the label selector's syntax (e.g. 'backup=nightly,tier in (prod)')" if exc.status == 400 else
                "check that the runner's identity may list hostedclusters.hypershift.openshift.io"
                + (f" in namespace {namespace}" if namespace else " in all namespaces"))
        raise HostedClusterError(f"cannot list hosted clusters on {access.name} ({_selection(namespace, label_selector)}):"
                                 f" HTTP {exc.status} {exc.reason}; {hint}") from None
    finally:
        api.close()
    return [str(info.ref) for info in infos]


# -- one cluster's backup, as the fleet sees it -------------------------------------------------

class ClusterBackup(BaseModel):
    """One row of the fleet's table: how one hosted cluster's etcd-backup subflow ended."""

    hosted_cluster: str  # NAMESPACE/NAME
    status: Literal["succeeded", "failed", "planned"]  # planned: a dry run that passed its checks
    error: str | None = None
    location: str | None = None  # s3://.../<timestamp>-<operation id>/ (also known for a dry run)
    size_bytes: int | None = None  # the etcd snapshot
    started_at: datetime
    finished_at: datetime
    flow_run_id: str | None = None  # the etcd-backup subflow run (its report artifact and timeline)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def seconds(self) -> float:
        return round((self.finished_at - self.started_at).total_seconds(), 3)

    def row(self) -> dict[str, str]:
        return {"cluster": self.hosted_cluster, "status": self.status,
                "started (UTC)": f"{self.started_at:%Y-%m-%d %H:%M:%S}", "seconds": f"{self.seconds:.1f}",
                "size": human_size(self.size_bytes) if self.size_bytes is not None else "-",
                "location": self.location or "-", "error": self.error or "-",
                "etcd-backup run": self.flow_run_id or "-"}


# -- retention ----------------------------------------------------------------------------------

class RetentionSummary(BaseModel):
    """What retention decided and did for one management cluster's backups under a prefix."""

    dry_run: bool
    policy: RetentionPolicy
    location: str  # s3://bucket/prefix/<mgmt>/
    considered: int = 0  # backup prefixes seen, complete or not
    kept: list[str] = Field(default_factory=list)  # backup locations
    deleted: list[str] = Field(default_factory=list)
    would_delete: list[str] = Field(default_factory=list)  # dry run only
    objects_deleted: int = 0
    errors: list[str] = Field(default_factory=list)
    decisions_markdown: str = ""  # hcp.retention.format_decisions: every decision with its reasons

    def to_markdown(self) -> str:
        p = self.policy
        out = [f"- policy, per hosted cluster: keep the last {p.keep_last} and one per day for {p.keep_daily_days} "
               "day(s), and always the newest complete backup; delete orphans (no manifest) older than "
               f"{p.orphan_min_age_hours:g} h",
               f"- {self.considered} backup prefix(es) under {self.location}: {len(self.kept)} kept, "
               + (f"{len(self.would_delete)} would be deleted (dry run: nothing was deleted)" if self.dry_run
                  else f"{len(self.deleted)} deleted ({self.objects_deleted} objects)")]
        listed = self.would_delete if self.dry_run else self.deleted
        if listed:
            out += ["", "Would delete:" if self.dry_run else "Deleted:", ""] + [f"- {url}" for url in listed]
        if self.errors:
            out += ["", "**Errors:**", ""] + [f"- {e}" for e in self.errors]
        if self.decisions_markdown:
            out += ["", self.decisions_markdown]
        return "\n".join(out)


def _urls(entries: list[BackupEntry]) -> list[str]:
    return [e.location.url for e in entries]


# NO_CACHE: the catalog changes with every backup; retention must decide on what is in S3 now.
@task(name="apply-backup-retention", cache_policy=NO_CACHE)
def apply_backup_retention(aws: AwsAccess, bucket: str, prefix: str, management_cluster: str,
                           policy: RetentionPolicy, dry_run: bool) -> RetentionSummary:
    """Plan retention for every hosted cluster's backups of `management_cluster` under the prefix
    and delete what the plan does not keep (nothing on a dry run). Errors are recorded in the
    summary, not raised, so the fleet report is still written; the flow decides what they mean."""
    where = f"s3://{bucket}/" + "/".join(p for p in (prefix, management_cluster) if p) + "/"
    summary = RetentionSummary(dry_run=dry_run, policy=policy, location=where)
    try:
        s3 = s3_client(aws)
        entries = list_backups(s3, bucket, prefix, management_cluster=management_cluster)
    except Exception as exc:  # recorded, not raised: the fleet's report must still be written
        text = str(exc) if isinstance(exc, BackupCatalogError) else f"{type(exc).__name__}: {exc}"
        summary.errors.append(f"retention did not run, nothing was deleted: {text}; fix the cause and the next run "
                              "applies retention, or run `hcp-runbooks backups` retention by hand")
        return summary
    decisions = plan_retention(entries, policy, datetime.now(timezone.utc))
    result = apply_retention(s3, decisions, dry_run=dry_run)
    summary.considered = len(entries)
    summary.kept, summary.deleted, summary.would_delete = _urls(result.kept), _urls(result.deleted), \
        _urls(result.would_delete)
    summary.objects_deleted = result.objects_deleted
    summary.errors += result.errors
    summary.decisions_markdown = format_decisions(decisions)
    return summary


# -- the fleet's report -------------------------------------------------------------------------

class FleetReport(BaseModel):
    """The fleet run's result: one row per hosted cluster, and what retention did."""

    runbook: str = RUNBOOK
    management_cluster: str
    operation_id: str
    selection: str  # which hosted clusters were asked for
    dry_run: bool = False
    started_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    finished_at: datetime | None = None
    clusters: list[ClusterBackup] = Field(default_factory=list)
    retention: RetentionSummary | None = None  # None: apply_retention was off

    @classmethod
    def start(cls, management_cluster: str, operation_id: str, namespace: str | None, label_selector: str | None,
              dry_run: bool) -> FleetReport:
        return cls(management_cluster=management_cluster, operation_id=operation_id, dry_run=dry_run,
                   selection=_selection(namespace, label_selector))

    @property
    def failed(self) -> list[ClusterBackup]:
        return [c for c in self.clusters if c.status == "failed"]

    @property
    def status(self) -> Literal["running", "succeeded", "failed", "planned"]:
        if self.finished_at is None:
            return "running"
        if self.failed or (self.retention is not None and self.retention.errors):
            return "failed"
        return "planned" if self.dry_run else "succeeded"

    def finish(self) -> None:
        self.finished_at = datetime.now(timezone.utc)

    def failure(self) -> str | None:
        """Why the run fails (names every failed cluster and what to do), or None."""
        problems = [f"{c.hosted_cluster}: {c.error}" for c in self.failed]
        if self.retention is not None:
            problems += [f"retention: {e}" for e in self.retention.errors]
        if not problems:
            return None
        done = len(self.clusters) - len(self.failed)
        return (f"{RUNBOOK} on {self.management_cluster}: {len(self.failed)} of {len(self.clusters)} hosted cluster(s) "
                f"failed" + (f", retention had {len(self.retention.errors)} error(s)" if self.retention and
                             self.retention.errors else "") + f" ({done} backed up). " + " | ".join(problems)
                + f". Each failed cluster's etcd-backup report says more; after fixing the cause, retry this flow run "
                f"(or start one with operation_id={self.operation_id!r}): finished clusters resume from their "
                "checkpoints and only the failed ones do the work again.")

    def rows(self) -> list[dict[str, str]]:
        return [c.row() for c in self.clusters]

    def to_markdown(self) -> str:
        out = [f"# {RUNBOOK} on {self.management_cluster}: {self.status}", "",
               f"- operation: `{self.operation_id}`", f"- hosted clusters: {self.selection}: {len(self.clusters)} "
               f"found, {len(self.failed)} failed", f"- started: {self.started_at:%Y-%m-%d %H:%M:%S} UTC"]
        if self.finished_at:
            out.append(f"- took: {(self.finished_at - self.started_at).total_seconds():.1f} s")
        if self.dry_run:
            out.append("- **dry run**: nothing was backed up or deleted")
        out += ["", "## Backups", ""]
        rows = self.rows()
        if rows:
            columns = list(rows[0])
            out += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            out += ["| " + " | ".join(_cell(r[c]) for c in columns) + " |" for r in rows]
        out += ["", "## Retention", ""]
        out.append(self.retention.to_markdown() if self.retention is not None else "- not applied "
                   "(apply_retention is off)")
        return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _log() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(f"hcp_runbooks.{RUNBOOK}")


def publish_backup_table(report: FleetReport) -> None:
    """The per-cluster table as a table artifact (one key per management cluster, so the UI shows
    its history night after night). An artifact failure is logged, never fails the run."""
    try:
        create_table_artifact(report.rows(), key=artifact_key(RUNBOOK, report.management_cluster),
                              description=f"{RUNBOOK} {report.operation_id}: {len(report.clusters)} hosted cluster(s), "
                                          f"{len(report.failed)} failed" + (" (dry run)" if report.dry_run else ""))
    except Exception as exc:
        _log().warning("could not write the table artifact: %s", exc)


def publish_fleet_report(report: FleetReport) -> None:
    """The whole report (backups and retention) as a markdown artifact, and in the log."""
    markdown = report.to_markdown()
    _log().info("report:\n%s", markdown)
    try:
        create_markdown_artifact(markdown, key=artifact_key(RUNBOOK, report.management_cluster, "report"),
                                 description=f"{RUNBOOK} {report.operation_id}: {report.status}")
    except Exception as exc:
        _log().warning("could not write the report artifact: %s", exc)
