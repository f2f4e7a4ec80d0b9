"""etcd-member-recovery: replace the one failed member of a hosted cluster's etcd.

HyperShift's single-member recovery, done carefully: read the health table (pods and `etcdctl
endpoint health --cluster`); only when exactly one member is failing (CrashLoopBackOff, Error,
unhealthy endpoint) and the others keep quorum, ask for approval, check again right before acting
that the member is still the failed one and quorum holds, delete its PVC and then its pod, and wait
until the new member is Running, healthy and caught up with the leader. Quorum lost, or more than
one member failing: refuse and print the etcd-restore run to use instead. A healthy member is never
touched. A re-run with the same operation id continues where the earlier run stopped.
"""

from __future__ import annotations

import shlex
import time
from typing import Annotated

from prefect import flow
from pydantic import AfterValidator, Field

from hcp.etcd_health import HealthTable, claim_name, decide, member_ordinal, restore_advice, restore_commands
from hcp.etcd_member import etcdctl_argv
from hcp.etcd_replace import MemberChoice, choose
from hcp.params import BucketName, HostedClusterName, ManagementParams, OperationId
from hcp.plan import PlanStep
from hcp.report import RunReport
from hcp.run_target import RunTarget
from tasks.checkpoint import completed_result
from tasks.gates import GateSettings, approval_gate, take_lock
from tasks.hosted_cluster import read_cluster
from tasks.member_recovery import RUNBOOK, etcd_health, record_choice, replace_failed_member, wait_for_catch_up, \
    wait_for_replacement
from tasks.runbook import Runbook, RunbookError, describe_error, operation_id_for_run, run_parameters

__all__ = ["EtcdMemberRecoveryParams", "etcd_member_recovery", "recovery_plan", "continue_command"]


def _member(value: str) -> str:
    if member_ordinal(value) is None:
        raise ValueError(f"member {value!r} must be an etcd StatefulSet member name: etcd-N (e.g. etcd-2)")
    return value


EtcdMemberName = Annotated[str, AfterValidator(_member)]


class EtcdMemberRecoveryParams(ManagementParams):
    """Parameters of etcd-member-recovery (the UI's form)."""

    hosted_cluster: HostedClusterName = Field(description="the HostedCluster, NAMESPACE/NAME (e.g. "
                                              "clusters/prod-east-1)")
    member: EtcdMemberName | None = Field(default=None, description="the failing member, etcd-N; default: the one "
                                          "failing member (a healthy one is refused)")
    bucket: BucketName | None = Field(default=None, description="the bucket of this cluster's backups: filled into "
                                      "the etcd-restore command printed when recovery is refused")
    dry_run: bool = Field(default=False, description="read the health table, decide, change nothing, return the plan")
    operation_id: OperationId | None = Field(default=None, description="continue this operation (skips its "
                                             "finished steps)")
    approval: GateSettings = Field(default_factory=GateSettings)
    break_lock_held_by: str | None = Field(default=None, description="break a lock left by this dead operation "
                                           "(asks for approval)")
    timeout_seconds: float = Field(default=600, gt=0, description="for the new member's PVC and pod, and again for "
                                   "it to be healthy and caught up")


def _run_name() -> str:
    params, mgmt, dry = run_parameters()
    return f"{RUNBOOK}/{params.get('hosted_cluster', '?')}@{mgmt}/{params.get('member') or 'failing'}{dry}"


def _oc(params: EtcdMemberRecoveryParams, namespace: str) -> str:
    ctx = f"--context {params.management.context} " if params.management.context else ""
    return f"oc {ctx}-n {namespace}"


def _cli_access(params: EtcdMemberRecoveryParams) -> list[str]:
    argv = []
    if params.management.kubeconfig:
        argv += ["--kubeconfig", str(params.management.kubeconfig)]
    if params.management.context:
        argv += ["--context", params.management.context]
    return argv


def continue_command(params: EtcdMemberRecoveryParams, target: RunTarget, member: str) -> str:
    """The command that continues this operation from where it stopped."""
    argv = ["hcp-runbooks", "run", RUNBOOK, *_cli_access(params), "--cluster", target.hosted_cluster,
            "--member", member, "--operation-id", target.operation_id]
    return shlex.join(argv)


def recovery_plan(params: EtcdMemberRecoveryParams, target: RunTarget, choice: MemberChoice,
                  table: HealthTable) -> list[PlanStep]:
    ref, ns, member = target.ref, choice.namespace, choice.member
    oc = _oc(params, ns)
    etcdctl = " ".join(etcdctl_argv())
    leader = table.leader or next((r.name for r in table.rows if r.verdict == "healthy"), "etcd-0")
    steps = [
        PlanStep(step="take the hosted cluster's lock", changes=f"Lease {ref.namespace}/{ref.lease_name}",
                 command=f"oc {'--context ' + params.management.context + ' ' if params.management.context else ''}"
                         f"-n {ref.namespace} get lease {ref.lease_name}"),
        PlanStep(step="approval", command="hcp-runbooks approve RUN_ID --approver NAME"),
        PlanStep(step=f"re-check right before deleting: {member} still failing, the others healthy, quorum holds, "
                      "the healthy members up for 5 s (etcd's strict reconfiguration check)",
                 command=f"{oc} get pods -l app=etcd; {oc} exec {leader} -c etcd -- {etcdctl} endpoint health "
                         "--cluster -w table"),
    ]
    if choice.member_id is None:
        steps.append(PlanStep(step=f"add {member} back to the member list (reset-member replaces only a member it "
                                   "finds)", changes=f"etcd membership: + {member} (unstarted)",
                              command=f"{oc} exec {leader} -c etcd -- {etcdctl} member add {member} "
                                      f"--peer-urls={choice.peer_url}"))
    steps += [
        PlanStep(step=f"delete the PVC of {member}", changes=f"PVC {ns}/{choice.claim} (uid {choice.claim_uid}): "
                 "Terminating until its pod is gone; its data is lost", lowers_availability=True,
                 command=f"{oc} delete pvc/{choice.claim} --wait=false"),
        PlanStep(step=f"delete the pod {member}", changes=f"pod {ns}/{member} (uid {choice.pod_uid})",
                 lowers_availability=True, command=f"{oc} delete pod/{member} --wait=false"),
        PlanStep(step=f"wait for the StatefulSet's new PVC and pod {member} (its reset-member removes member "
                      f"{choice.member_hex if choice.member_id is not None else 'added above'} and adds {member} "
                      "again, and etcd joins the cluster)",
                 command=f"{oc} get pvc/{claim_name(member)} pod/{member} -w"),
        PlanStep(step=f"wait until {member} is healthy and caught up (revision >= the leader's, raft index close)",
                 command=f"{oc} exec {leader} -c etcd -- {etcdctl} endpoint status --cluster -w table"),
    ]
    return steps


def _gate_state(table: HealthTable, choice: MemberChoice) -> str:
    return (f"{table.markdown()}\n\n**To replace:** {choice.member} ({'; '.join(choice.reasons)}): PVC "
            f"`{choice.claim}` uid `{choice.claim_uid}`, pod uid `{choice.pod_uid}`, etcd member id "
            f"`{choice.member_hex}`. The PVC's data is deleted; the member receives the leader's data again.")


def _stopped(rb: Runbook, params: EtcdMemberRecoveryParams, target: RunTarget, choice: MemberChoice,
             restore: list[str], exc: BaseException) -> RunbookError:
    """A failure from the re-check before deleting on: the PVC or pod may be gone and cannot be put
    back (its data is deleted on purpose; the error says whether anything was); say what state etcd
    is in and which command continues."""
    try:
        table = rb.step(etcd_health, target, "after a failure")
        state, quorum_lost = table.summary(), not table.quorum_intact
        rb.report.cluster_state = table.markdown()
    except Exception as read_exc:  # the report still says what to run
        state, quorum_lost = f"the health table could not be read ({describe_error(read_exc)})", False
        rb.report.cluster_state = state
    again = continue_command(params, target, choice.member)
    way_out = (f"Continue the operation (it deletes nothing already deleted and never the replacement; it waits "
               f"again and re-replaces a replacement that never joined): `{again}`")
    if quorum_lost:
        way_out += f". Quorum is lost now: if it does not come back, {restore_advice(restore)}"
        rb.report.next_command = "\n".join([again, *restore])
    return RunbookError(f"{target}: replacing {choice.member} stopped: {describe_error(exc)}. State now: {state}. "
                        f"{way_out}")


@flow(name=RUNBOOK, flow_run_name=_run_name, validate_parameters=True)
def etcd_member_recovery(params: EtcdMemberRecoveryParams) -> RunReport:
    target = RunTarget(management=params.management, management_cluster=params.management_cluster_name,
                       hosted_cluster=params.hosted_cluster, operation_id=operation_id_for_run(params.operation_id))
    with Runbook(RUNBOOK, target, dry_run=params.dry_run) as rb:
        # Preflight: read-only; a refusal stops here, before the lock and the first change.
        rb.step(read_cluster, target)
        table = rb.step(etcd_health, target, "before")
        rb.report.verification.append(f"before: {table.summary()}")
        restore = restore_commands(table, cluster=target.hosted_cluster, kubeconfig=params.management.kubeconfig,
                                   context=params.management.context, bucket=params.bucket)
        approved: MemberChoice | None = completed_result(record_choice, target)
        if approved is not None:
            # this operation's earlier run chose and got approval: continue with exactly those objects
            if params.member and params.member != approved.member:
                raise RunbookError(f"{target}: operation {target.operation_id} replaces {approved.member}, not "
                                   f"{params.member}; start a new operation for {params.member}. Nothing was changed.")
            rb.skipped(record_choice.name, f"{approved.member} was chosen and approved by an earlier run of this "
                       f"operation at {approved.chosen_at:%Y-%m-%d %H:%M:%S} UTC")
            choice = approved
        else:
            decision = decide(table, params.member, restore)
            if decision.kind == "refuse":
                rb.report.cluster_state = table.markdown()
                rb.report.next_command = "\n".join(restore) if decision.restore else None
                raise RunbookError(f"{target}: {decision.message}")
            if decision.kind == "healthy":
                rb.report.verification.append(decision.message)
                return rb.report
            assert decision.member is not None
            choice = choose(table, decision.member)
        rb.report.figures.update({"member": choice.member, "why": "; ".join(choice.reasons)})
        rb.report.next_command = continue_command(params, target, choice.member)
        rb.report.plan = recovery_plan(params, target, choice, table)
        if params.dry_run:
            holder = rb.lock_state()
            if holder is not None and holder.holder and holder.holder != target.operation_id:
                rb.report.verification.append(f"the lock is held by {holder.holder}: a real run would stop")
            return rb.report

        take_lock(rb, params.break_lock_held_by, params.approval)
        if approved is None:
            # The gate is named after exactly what it approves: a deployment run resumed after approval
            # runs from the top and decides again; if it would now replace other objects, their gate
            # has another name and asks again instead of reusing this answer.
            approval_gate(rb, f"replace-{choice.member}-{choice.pod_uid[:8]}",
                          f"Replace the failed etcd member {choice.member} of {target.ref}",
                          _gate_state(table, choice), rb.report.plan, params.approval)
            choice = rb.step(record_choice, target, choice)
        started = time.monotonic()

        try:
            replaced = rb.step(replace_failed_member, target, choice, restore)
            earlier = rb.report.steps[-1].outcome == "resumed"
            rb.report.changes += [f"(an earlier run of this operation) {c}" if earlier else c for c in replaced.changes]
            rb.step(wait_for_replacement, target, choice, params.timeout_seconds)
            caught = rb.step(wait_for_catch_up, target, choice, params.timeout_seconds)
            healthy_after = time.monotonic() - started
        except Exception as exc:
            raise _stopped(rb, params, target, choice, restore, exc) from exc
        rb.report.changes += caught.repairs
        rb.changed("member-replaced", f"{choice.member} is back as member {caught.member_id:x} (was "
                   f"{choice.member_hex}), healthy and caught up", member=choice.member)

        after = rb.step(etcd_health, target, "after")
        rb.report.verification += [
            f"{choice.member} healthy and caught up: revision {caught.revision} >= {caught.leader_revision} (leader "
            f"{caught.leader} when it first answered), applied raft index {caught.raft_index_gap} behind the leader",
            f"after: {after.summary()}"]
        if after.failing or not after.quorum_intact:
            raise RunbookError(f"{target}: {choice.member} caught up, but the table read right after is not all "
                               f"healthy: {after.summary()}")
        since = "approval" if approved is None else "the start of this continued run"
        rb.report.figures.update({
            f"{since} to healthy member": f"{healthy_after:.1f} s",
            "new member id": f"{caught.member_id:x}",
            "quorum": f"{after.healthy_voting} of {after.voting} healthy ({after.quorum} needed)"})
    return rb.report
