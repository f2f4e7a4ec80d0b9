"""Prefect events for every change a runbook makes, on a resource that names the management
cluster and the hosted cluster, so automations and incident tooling can follow a cluster."""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event
from prefect.runtime import flow_run

from hcp.run_target import RunTarget

__all__ = ["hosted_cluster_resource", "emit_change"]


def hosted_cluster_resource(target: RunTarget) -> dict[str, str]:
    ref = target.ref
    return {
        "prefect.resource.id": f"hcp.hosted-cluster.{target.management_cluster}.{ref.namespace}.{ref.name}",
        "prefect.resource.name": f"{ref} on {target.management_cluster}",
        "hcp.management-cluster": target.management_cluster,
        "hcp.namespace": ref.namespace,
        "hcp.name": ref.name,
        "hcp.operation-id": target.operation_id,
    }


def emit_change(target: RunTarget, runbook: str, what: str, **payload: Any) -> None:
    """Event `hcp-runbooks.<runbook>.<what>` (e.g. hcp-runbooks.etcd-backup.scaled-down)."""
    related = []
    if flow_run.id:
        related.append({"prefect.resource.id": f"prefect.flow-run.{flow_run.id}", "prefect.resource.role": "flow-run"})
    emit_event(event=f"hcp-runbooks.{runbook}.{what}", resource=hosted_cluster_resource(target), related=related,
               payload={k: v if isinstance(v, (int, float, bool)) or v is None else str(v) for k, v in payload.items()})
