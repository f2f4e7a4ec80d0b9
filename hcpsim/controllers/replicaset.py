"""The ReplicaSet controller (pkg/controller/replicaset/replica_set.go, replica_set_utils.go).

A sync counts the active pods the ReplicaSet controls (controller ownerReference with its uid; a pod
that no longer matches the selector is released, as ClaimPods does), creates the missing ones from
the template (`<rs>-<5 random>`) or deletes the surplus, most deletable first
(controller.ActivePodsWithRanks), and writes status: replicas, fullyLabeledReplicas, readyReplicas,
availableReplicas (minReadySeconds), observedGeneration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hcpsim.apiserver.backend import DeleteOptions
from hcpsim.apiserver.clock import now_rfc3339
from hcpsim.apiserver.errors import ApiError
from hcpsim.apiserver.selectors import label_selector_from_spec
from hcpsim.apiserver.store import copy_obj

from .workloads import (
    PODS,
    REPLICASET,
    REPLICASETS,
    available_in,
    controlled_by,
    controller_ref,
    drop_zero,
    is_pod_active,
    is_pod_ready,
    pod_condition,
    pod_from_template,
    pod_phase,
    timestamp,
)

if TYPE_CHECKING:
    from .workloads import WorkloadControllers

COMPONENT = "replicaset-controller"
BURST_REPLICAS = 500  # --concurrent-replicaset-syncs' burstReplicas


class ReplicaSetController:
    def __init__(self, manager: WorkloadControllers) -> None:
        self.m = manager
        self.backend = manager.backend

    def sync(self, namespace: str, name: str) -> float | None:
        stored = self.backend.store.get(REPLICASETS, namespace, name)
        if stored is None:
            return None
        rs = copy_obj(stored)
        spec = rs.get("spec") or {}
        selector = label_selector_from_spec(spec.get("selector"))
        pods = []
        for pod in self.backend.store.items(PODS, namespace):
            if not controlled_by(pod, rs):
                continue
            if not selector.matches(pod["metadata"].get("labels")):
                self._release(pod, rs)
                continue
            pods.append(pod)
        active = [p for p in pods if is_pod_active(p)]
        error: Exception | None = None
        if not rs["metadata"].get("deletionTimestamp"):
            try:
                self._manage_replicas(rs, active)
            except ApiError as e:
                error = e
        again = self._update_status(rs, active, error)
        if error is not None:
            raise error
        return again

    # Pods.

    def _manage_replicas(self, rs: dict, active: list[dict]) -> None:
        want = int(rs["spec"].get("replicas", 1))
        diff = len(active) - want
        pods_rt = self.m.rt(PODS)
        ns, name = rs["metadata"]["namespace"], rs["metadata"]["name"]
        if diff < 0:
            template = rs["spec"].get("template") or {}
            ref = controller_ref(rs, REPLICASET)
            for _ in range(min(-diff, BURST_REPLICAS)):
                pod = pod_from_template(template, ref, generate_name=f"{name}-")
                try:
                    created = self.backend.create(pods_rt, ns, pod)
                except ApiError as e:
                    self.m.record_event(rs, REPLICASET, COMPONENT, "FailedCreate", f"Error creating: {e.message}", "Warning")
                    raise
                self.m.record_event(rs, REPLICASET, COMPONENT, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")
        elif diff > 0:
            for pod in sorted(active, key=_deletion_rank)[:min(diff, BURST_REPLICAS)]:
                try:
                    self.backend.delete(pods_rt, ns, pod["metadata"]["name"],
                                        DeleteOptions(preconditions={"uid": pod["metadata"]["uid"]}))
                except ApiError as e:
                    if e.code == 404:
                        continue
                    raise
                self.m.record_event(rs, REPLICASET, COMPONENT, "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")

    def _release(self, pod: dict, rs: dict) -> None:
        """ClaimPods releases an owned pod that no longer matches the selector."""
        updated = copy_obj(pod)
        refs = [r for r in updated["metadata"].get("ownerReferences") or [] if r.get("uid") != rs["metadata"]["uid"]]
        if refs:
            updated["metadata"]["ownerReferences"] = refs
        else:
            updated["metadata"].pop("ownerReferences", None)
        try:
            self.backend.update(self.m.rt(PODS), pod["metadata"]["namespace"], pod["metadata"]["name"], updated)
        except ApiError as e:
            if e.code not in (404, 409):
                raise

    # Status.

    def _update_status(self, rs: dict, active: list[dict], error: Exception | None) -> float | None:
        spec = rs["spec"]
        min_ready = int(spec.get("minReadySeconds") or 0)
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        fully_labeled = ready = available = 0
        soonest: float | None = None
        for pod in active:
            labels = pod["metadata"].get("labels") or {}
            if all(labels.get(k) == v for k, v in template_labels.items()):
                fully_labeled += 1
            if is_pod_ready(pod):
                ready += 1
                wait = available_in(pod, min_ready)
                if wait == 0.0:
                    available += 1
                elif wait is not None:
                    soonest = wait if soonest is None else min(soonest, wait)
        old = rs.get("status") or {}
        conditions = [c for c in old.get("conditions") or [] if c.get("type") != "ReplicaFailure"]
        failure = next((c for c in old.get("conditions") or [] if c.get("type") == "ReplicaFailure"), None)
        if error is not None:
            if failure is None:
                reason = "FailedCreate" if len(active) < int(spec.get("replicas", 1)) else "FailedDelete"
                failure = {"type": "ReplicaFailure", "status": "True", "lastTransitionTime": now_rfc3339(), "reason": reason,
                           "message": getattr(error, "message", str(error))}
            conditions.append(failure)
        status = drop_zero({
            "replicas": len(active), "fullyLabeledReplicas": fully_labeled, "readyReplicas": ready,
            "availableReplicas": available, "observedGeneration": rs["metadata"].get("generation", 1),
        }, keep=("replicas",))
        if conditions:
            status["conditions"] = conditions
        if status != old:
            rs["status"] = status
            self.backend.update(self.m.rt(REPLICASETS), rs["metadata"]["namespace"], rs["metadata"]["name"], rs,
                                subresource="status")
        if soonest is not None and error is None:
            return soonest + 0.05  # look again once the pod has been ready for minReadySeconds
        return None


def _deletion_rank(pod: dict) -> tuple:
    """controller.ActivePodsWithRanks' order: the pod to delete first sorts first."""
    meta = pod["metadata"]
    status = pod.get("status") or {}
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(pod_phase(pod), 0)
    ready = is_pod_ready(pod)
    cost = 0
    try:
        cost = int((meta.get("annotations") or {}).get("controller.kubernetes.io/pod-deletion-cost", "0"))
    except ValueError:
        pass
    ready_since = timestamp((pod_condition(pod, "Ready") or {}).get("lastTransitionTime")) if ready else 0.0
    restarts = max((c.get("restartCount", 0) for c in status.get("containerStatuses") or []), default=0)
    return (
        bool((pod.get("spec") or {}).get("nodeName")),  # unassigned first
        phase_rank,  # Pending < Unknown < Running
        ready,  # not ready first
        cost,  # lower deletion cost first
        -ready_since,  # ready for less time first
        -restarts,  # more restarts first
        -timestamp(meta.get("creationTimestamp")),  # newer first
        meta["name"],
    )
