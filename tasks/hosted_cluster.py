"""Tasks on the HostedCluster and its control plane: read it, quiesce it, bring it back.

Quiescing records the original pausedUntil and replica counts in the undo journal BEFORE it
changes them; restoring is the journal's unwind. Both are idempotent, so a re-run of the same
operation after a kill neither loses the original state nor does anything twice."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from kubernetes import client
from prefect import task
from pydantic import BaseModel

from hcp import hosted_cluster as hc
from hcp.run_target import RunTarget
from hcp.undo_journal import UndoAction, UndoJournal
from hcp.waits import WaitTimeout, wait_for_object
from tasks.events import emit_change

__all__ = ["pending_undo", "read_cluster", "quiesce_control_plane", "restore_availability", "Quiesced", "Restored"]


class Quiesced(BaseModel):
    down_since: datetime  # when the first API server was asked to scale down (downtime starts)
    original_replicas: dict[str, int]
    original_paused_until: str | None
    changes: list[str]


class Restored(BaseModel):
    down_since: datetime | None  # the latest quiesce's first scale-down, from the journal
    ready_at: datetime  # every API server ready again (downtime ends)
    restored: list[str]

    @property
    def downtime_seconds(self) -> float:
        return (self.ready_at - self.down_since).total_seconds() if self.down_since else 0.0


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@task(name="read-hosted-cluster")
def read_cluster(target: RunTarget) -> hc.HostedClusterInfo:
    return hc.read_hosted_cluster(target.api_client(), target.ref, management=target.management_cluster)


@task(name="read-undo-journal")
def pending_undo(target: RunTarget) -> list[str]:
    """What this operation lowered and has not put back yet (a re-run after a kill finds it). The
    temporary Deployments it made (the restore's data pods, started before its approval) lower nothing."""
    return [a.description for a in UndoJournal(target.api_client(), target.ref, target.operation_id).pending()
            if a.kind != "delete-deployment"]


def _wait_paused(api: client.ApiClient, target: RunTarget, timeout: float) -> None:
    """The operator confirms a pause with ReconciliationActive=False; until then it may still scale
    the API servers back up behind us."""
    ref = target.ref

    def paused(obj: dict | None) -> bool:
        conditions = ((obj or {}).get("status") or {}).get("conditions") or []
        return any(c["type"] == "ReconciliationActive" and c["status"] == "False" for c in conditions)
    try:
        wait_for_object(client.CustomObjectsApi(api).list_namespaced_custom_object, ref.name, paused, timeout=timeout,
                        what=f"hosted cluster {ref} to report ReconciliationActive=False", group=hc.GROUP,
                        version=hc.VERSION, namespace=ref.namespace, plural="hostedclusters")
    except WaitTimeout as exc:
        raise hc.HostedClusterError(f"{target}: {exc}; is the hypershift operator running? "
                                    "(`oc -n hypershift get pods`)") from None


@task(name="quiesce-control-plane")
def quiesce_control_plane(target: RunTarget, deployments: list[str], timeout_seconds: float,
                          runbook: str = "etcd-backup") -> Quiesced:
    api = target.api_client()
    ref = target.ref
    journal = UndoJournal(api, ref, target.operation_id)
    already = {a.id: a for a in journal.pending()}
    info = hc.read_hosted_cluster(api, ref, management=target.management_cluster)
    changes: list[str] = []

    # Record first, then act; a re-run acts again (idempotent) because a kill can fall between the two.
    pause = journal.record(UndoAction.paused_until_of(ref, info.paused_until))
    hc.set_paused_until(api, ref, "true")
    if pause.id not in already:
        changes.append(f"paused reconciliation of {ref} (pausedUntil was {info.paused_until!r})")
        emit_change(target, runbook, "paused", paused_until_before=info.paused_until)
    _wait_paused(api, target, timeout_seconds)

    cp_ns = ref.control_plane_namespace
    down_since = datetime.now(timezone.utc)
    originals: dict[str, int] = {}
    for name in deployments:
        current = hc.deployment_replicas(api, cp_ns, name)
        if current is None:
            raise hc.HostedClusterError(f"{target}: deployment {cp_ns}/{name} does not exist; nothing was scaled")
        action = journal.record(UndoAction.scale(cp_ns, name, current))
        originals[name] = action.replicas or 0
        hc.scale_deployment(api, cp_ns, name, 0)
        if action.id in already:
            down_since = min(down_since, _parse_time(action.recorded_at))
            continue
        changes.append(f"scaled deployment {cp_ns}/{name} from {current} to 0")
        emit_change(target, runbook, "scaled-down", deployment=f"{cp_ns}/{name}", replicas_before=current)
    for name in deployments:
        hc.wait_deployment_settled(api, cp_ns, name, 0, timeout=timeout_seconds)
    return Quiesced(down_since=down_since, original_replicas=originals, original_paused_until=pause.paused_until,
                    changes=changes)


@task(name="restore-availability")
def restore_availability(target: RunTarget, timeout_seconds: float, runbook: str = "etcd-backup") -> Restored:
    """Unwind the journal (scale back, then unpause) and wait until the API servers are ready."""
    api = target.api_client()
    journal = UndoJournal(api, target.ref, target.operation_id)
    actions = journal.actions()
    # the latest quiesce: the scale actions recorded after the last pause record
    last_pause = max((i for i, a in enumerate(actions) if a.kind == "set-paused-until"), default=-1)
    scaled = [a for a in actions[last_pause + 1:] if a.kind == "scale-deployment"]
    down_since = min((_parse_time(a.recorded_at) for a in scaled), default=None)
    applied = journal.unwind()
    for action in applied:
        emit_change(target, runbook, "restored", action=action.description)
    deadline = time.monotonic() + timeout_seconds
    for action in scaled:
        if action.replicas:
            hc.wait_deployment_settled(api, action.namespace, action.name, action.replicas,
                                       timeout=max(1.0, deadline - time.monotonic()))
    return Restored(down_since=down_since, ready_at=datetime.now(timezone.utc), restored=[a.description for a in applied])
