"""Approval gates: before anything destructive, the run stops for a person.

On a deployment the run suspends (no process is held while it waits; on resume it runs again
from the top and checkpointed steps are skipped); an ad-hoc run pauses in place. The input has
required `approved` and `approver` (an empty resume cannot approve). Timeout and rejection take
the safe path: the gate raises GateRejected, the runbook undoes what it changed and ends Failed.
Nothing ever approves on timeout. The gate key carries the flow run's run count, so a retried
run asks again instead of reusing the earlier answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import deployment, flow_run
from pydantic import BaseModel, ConfigDict, Field

from hcp.plan import PlanStep, plan_markdown

if TYPE_CHECKING:
    from tasks.runbook import Runbook

__all__ = ["Approval", "GateSettings", "GateRejected", "approval_gate", "take_lock"]


class Approval(RunInput):
    approved: bool = Field(description="true to go ahead, false to stop (nothing destructive happens)")
    approver: str = Field(min_length=1, description="who decides (recorded in the report and an event)")
    comment: str | None = Field(default=None, description="why (recorded)")


class GateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout_seconds: int = Field(default=3600, ge=5, description="after this the run stops safely (never approves)")
    approvers: list[str] = Field(default_factory=list, description="who may approve; empty: anyone")
    poll_interval_seconds: int = Field(default=10, ge=1, description="ad-hoc runs: how often to check for an answer")
    pre_approved_by: str | None = Field(
        default=None, description="approve every gate of this run in advance, as this person (ad-hoc runs from a "
        "terminal: `--approved-by`); recorded like any approval and checked against `approvers`")


class GateRejected(RuntimeError):
    """The gate was rejected, timed out, or answered by someone not allowed to approve."""


def approval_gate(rb: Runbook, gate: str, title: str, state: str, plan: list[PlanStep], settings: GateSettings) -> Approval:
    """Stop for approval; returns the approval or raises GateRejected (after recording the decision)."""
    description = (f"## {title}\n\n**Hosted cluster:** {rb.target}  \n**Operation:** `{rb.target.operation_id}`\n\n"
                   f"### State this plan was computed from\n\n{state}\n\n### What happens next\n\n"
                   f"{plan_markdown(plan)}\n\nApprove with `approved: true` and your name in `approver`; "
                   "reject with `approved: false`. Without an answer in "
                   f"{settings.timeout_seconds} s the run stops and undoes what it changed.")
    rb.log.info("approval needed: %s (gate %s)\n%s", title, gate, description)
    rb.event("approval-requested", gate=gate, title=title)
    if settings.pre_approved_by:
        decision = Approval(approved=True, approver=settings.pre_approved_by, comment="approved in advance when the "
                            "run was started")
    else:
        form = Approval.with_initial_data(description=description)
        key = f"{gate}-{flow_run.run_count}"
        try:
            if deployment.id:
                rb.hold_lock_while_suspended(settings.timeout_seconds)
                decision = suspend_flow_run(wait_for_input=form, timeout=settings.timeout_seconds, key=key)
            else:
                decision = pause_flow_run(wait_for_input=form, timeout=settings.timeout_seconds,
                                          poll_interval=settings.poll_interval_seconds, key=key)
        except FlowPauseTimeout:
            _record(rb, gate, f"{gate}: no answer within {settings.timeout_seconds} s: stopped (never approved on "
                    "timeout)", approved=False, approver="", timed_out=True)
            raise GateRejected(f"approval '{title}' for {rb.target} timed out after {settings.timeout_seconds} s; "
                               "nothing destructive was done. Start a new run when someone can approve.") from None
        rb.resumed_after_gate()
    assert decision is not None
    if settings.approvers and decision.approver not in settings.approvers:
        _record(rb, gate, f"{gate}: {decision.approver!r} may not approve (allowed: {', '.join(settings.approvers)})",
                approved=False, approver=decision.approver)
        raise GateRejected(f"approval '{title}' for {rb.target} came from {decision.approver!r}, who is not in the "
                           f"approvers list {settings.approvers}; nothing destructive was done")
    verdict = "approved" if decision.approved else "rejected"
    _record(rb, gate, f"{gate}: {verdict} by {decision.approver}" + (f" ({decision.comment})" if decision.comment else ""),
            approved=decision.approved, approver=decision.approver, comment=decision.comment or "")
    if not decision.approved:
        raise GateRejected(f"'{title}' for {rb.target} was rejected by {decision.approver}"
                           + (f": {decision.comment}" if decision.comment else "") + "; nothing destructive was done")
    return decision


def _record(rb: Runbook, gate: str, line: str, **payload: object) -> None:
    rb.report.approvals.append(line)
    rb.event("approval-decided", gate=gate, **payload)


def take_lock(rb: Runbook, break_held_by: str | None, settings: GateSettings) -> None:
    """The hosted cluster's lock (rb.acquire_lock); a dead run's lock, named in `break_held_by`, is
    broken only after an approval that shows who holds it."""
    rb.acquire_lock(break_held_by=break_held_by, approve_break=lambda info: approval_gate(
        rb, "break-lock", f"Break the lock on {rb.target.ref} held by {info.holder}",
        f"Lease {info.namespace}/{info.name}: holder {info.holder}, renewed {info.renew_time}, expires "
        f"{info.expires_at}", rb.report.plan, settings))
