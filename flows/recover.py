"""recover: put back everything an operation lowered, after its run died.

A killed runner, or a suspended run that timed out or was cancelled, runs no undo of its own. The
undo journal it left on the management cluster says what to restore: scale the API servers back
to their recorded replica counts, restore pausedUntil, then give back the operation's lock.
Idempotent: recovering twice, or an operation that needs nothing, changes nothing.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from hcp.params import ManagementParams, OperationId
from hcp.report import RunReport
from hcp.run_target import RunTarget
from tasks.hosted_cluster import restore_availability
from tasks.recovery import find_operation_clusters, journal_guard, release_operation_lock
from tasks.runbook import Runbook, RunbookError

__all__ = ["RecoverParams", "recover"]


class RecoverParams(ManagementParams):
    operation_id: OperationId = Field(description="the operation to recover (op-<UTC time>-<hex>)")
    timeout_seconds: float = Field(default=600, gt=0)


def _run_name() -> str:
    params: Any = flow_run.parameters.get("params") or {}
    if isinstance(params, BaseModel):
        params = params.model_dump()
    return f"recover/{params.get('operation_id', '?')}"


@flow(name="recover", flow_run_name=_run_name)
def recover(params: RecoverParams) -> list[RunReport]:
    mgmt = params.management_cluster_name
    reports = []
    for cluster in find_operation_clusters(params.management, params.operation_id):
        target = RunTarget(management=params.management, management_cluster=mgmt, hosted_cluster=cluster,
                           operation_id=params.operation_id)
        # Not `acquire_lock`: the lock we would wait for is the dead operation's own.
        with Runbook("recover", target) as rb:
            guard = rb.step(journal_guard, target)
            if guard:
                raise RunbookError(f"{target}: recover cannot put this operation back on its own: {guard}")
            rb.attach_journal()
            restored = rb.step(restore_availability, target, params.timeout_seconds)
            rb.report.changes += restored.restored
            if rb.step(release_operation_lock, target):
                rb.changed("lock-released", f"released the lock {params.operation_id} held on {cluster}")
        reports.append(rb.report)
    return reports
