"""Every runbook as a Prefect deployment, and `register()` that puts them on a running server.

A process work pool (`prefect worker start --pool hcp-runbooks`) runs them from the checkout (or
the installed package) they were registered from: locally, or in the worker Deployment of infra/
(register from inside that image). The fleet backup gets a nightly cron schedule when its
parameters are given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
from prefect.schedules import Cron

__all__ = ["RUNBOOKS", "RunbookDeployment", "ensure_work_pool", "register", "SOURCE", "DEFAULT_POOL", "NIGHTLY"]

SOURCE = Path(__file__).resolve().parents[1]  # the checkout: flows/ is loaded from here
DEFAULT_POOL = "hcp-runbooks"
NIGHTLY = "0 2 * * *"


@dataclass(frozen=True)
class RunbookDeployment:
    name: str
    entrypoint: str
    description: str
    tags: tuple[str, ...] = ()


RUNBOOKS = (
    RunbookDeployment("etcd-backup", "flows/etcd_backup.py:etcd_backup",
                      "Back up one hosted cluster's etcd to S3 (online, or quiesced with an approval gate).",
                      ("backup",)),
    RunbookDeployment("fleet-backup", "flows/fleet_backup.py:fleet_backup",
                      "Back up every hosted cluster of a management cluster, then apply retention.", ("backup",)),
    RunbookDeployment("etcd-restore", "flows/etcd_restore.py:etcd_restore",
                      "Restore a hosted cluster's etcd in place from a backup or a snapshot (approval, API downtime; "
                      "verified member by member).", ("restore",)),
    RunbookDeployment("etcd-restore-new-cluster", "flows/etcd_restore_new_cluster.py:etcd_restore_new_cluster",
                      "Create a new HostedCluster from a backup (restoreSnapshotURL), with its encryption key and "
                      "NodePools; verified key by key.", ("restore",)),
    RunbookDeployment("etcd-member-recovery", "flows/etcd_member_recovery.py:etcd_member_recovery",
                      "Replace the one failing etcd member of a hosted cluster (quorum intact, approval first); "
                      "refuses otherwise with the etcd-restore run to use.", ("recovery",)),
    RunbookDeployment("dr-migrate", "flows/dr_migrate.py:dr_migrate",
                      "Move a hosted cluster to another management cluster (disaster recovery), its workloads running; "
                      "rolls back before the teardown, approval before deleting anything from the source.", ("dr",)),
    RunbookDeployment("recover", "flows/recover.py:recover",
                      "Put back what a dead run lowered (replicas, pausedUntil) and release its lock.", ("recovery",)),
)


def ensure_work_pool(name: str = DEFAULT_POOL, pool_type: str = "process") -> None:
    with get_client(sync_client=True) as c:
        try:
            c.create_work_pool(WorkPoolCreate(name=name, type=pool_type))
        except ObjectAlreadyExists:
            pass


def register(work_pool: str = DEFAULT_POOL, *, fleet_parameters: dict[str, Any] | None = None,
             cron: str = NIGHTLY, timezone: str = "UTC", source: Path = SOURCE) -> dict[str, UUID]:
    """Create or update every deployment; returns name -> deployment id. `fleet_parameters` (the
    fields of FleetBackupParams) turns on the fleet backup's nightly schedule."""
    ensure_work_pool(work_pool)
    ids: dict[str, UUID] = {}
    for runbook in RUNBOOKS:
        flow = Flow.from_source(source=str(source), entrypoint=runbook.entrypoint)
        options: dict[str, Any] = {}
        if runbook.name == "fleet-backup" and fleet_parameters is not None:
            options = {"parameters": {"params": fleet_parameters}, "schedules": [Cron(cron, timezone=timezone)]}
        ids[runbook.name] = flow.deploy(name=runbook.name, work_pool_name=work_pool, build=False, push=False,
                                        description=runbook.description, tags=["hcp-runbooks", *runbook.tags],
                                        print_next_steps=False, **options)
    return ids
