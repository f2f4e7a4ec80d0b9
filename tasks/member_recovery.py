"""Tasks of etcd-member-recovery: read the etcd health table (and publish it), record the member an
operation replaces, delete its PVC and pod, wait for the replacement to be healthy and caught up.

Every destructive action emits its event at the moment it happens (a run killed right after still
leaves the record); the tasks return what they did so the flow can report it."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

from hcp import etcd_replace
from hcp.etcd_health import HealthTable, read_health
from hcp.etcd_replace import CaughtUp, MemberChoice, Replaced
from hcp.run_target import RunTarget
from tasks.checkpoint import checkpointed
from tasks.events import emit_change
from tasks.runbook import artifact_key

__all__ = ["RUNBOOK", "etcd_health", "record_choice", "replace_failed_member", "wait_for_replacement",
           "wait_for_catch_up", "health_artifact_key"]

RUNBOOK = "etcd-member-recovery"


def health_artifact_key(target: RunTarget) -> str:
    return artifact_key(RUNBOOK, target.ref.namespace, target.ref.name, "etcd-health")


def _on_change(target: RunTarget) -> etcd_replace.OnChange:
    def emit(what: str, text: str, payload: dict[str, Any]) -> None:
        emit_change(target, RUNBOOK, what, change=text, **payload)
    return emit


@task(name="etcd-health")
def etcd_health(target: RunTarget, moment: str) -> HealthTable:
    """The health table (`etcdctl endpoint health --cluster` and the pods), published as an artifact."""
    table = read_health(target.api_client(), target.ref.control_plane_namespace, cluster=target.management_cluster)
    create_markdown_artifact(f"# etcd health of {target.ref} ({moment})\n\n{table.markdown()}\n",
                             key=health_artifact_key(target),
                             description=f"{RUNBOOK} {target.operation_id}: etcd health {moment}")
    return table


@checkpointed(name="choose-failed-member")
def record_choice(target: RunTarget, choice: MemberChoice) -> MemberChoice:
    """Persist the approved choice: a re-run of the operation continues with exactly these objects."""
    return choice


@checkpointed(name="replace-failed-member", retries=2, retry_delay_seconds=2)
def replace_failed_member(target: RunTarget, choice: MemberChoice, restore: list[str]) -> Replaced:
    return etcd_replace.replace_member(target.api_client(), choice, restore=restore, on_change=_on_change(target),
                                       cluster=target.management_cluster)


@task(name="wait-for-new-pvc-and-pod")
def wait_for_replacement(target: RunTarget, choice: MemberChoice, timeout_seconds: float) -> tuple[str, str]:
    return etcd_replace.wait_replacement(target.api_client(), choice, timeout=timeout_seconds)


@task(name="wait-member-caught-up")
def wait_for_catch_up(target: RunTarget, choice: MemberChoice, timeout_seconds: float) -> CaughtUp:
    return etcd_replace.wait_caught_up(target.api_client(), choice, timeout=timeout_seconds,
                                       on_change=_on_change(target), cluster=target.management_cluster)
