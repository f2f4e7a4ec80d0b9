"""The Deployment controller (pkg/controller/deployment: deployment_controller.go, sync.go, rolling.go,
recreate.go, progress.go and util/deployment_util.go), on dicts.

A Deployment owns ReplicaSets named `<deployment>-<pod-template-hash>`; the one whose template equals
the deployment's (ignoring the hash label) is the new one, the others are old. A sync is, as upstream:
paused or scaling event -> proportional scale (`sync`), else the strategy: RollingUpdate scales the
new ReplicaSet up within maxSurge and old ones down within maxUnavailable, Recreate scales old ones
to 0, waits for their pods to be gone, then scales the new one up. Old ReplicaSets are kept at 0 up
to revisionHistoryLimit. Status and the Available/Progressing conditions are computed as
calculateStatus/syncRolloutStatus do, so `kubectl rollout status` reads what it reads upstream.
"""

from __future__ import annotations

import math
from time import time
from typing import TYPE_CHECKING, Any

from hcpsim.apiserver.backend import DeleteOptions
from hcpsim.apiserver.clock import now_rfc3339
from hcpsim.apiserver.errors import ApiError
from hcpsim.apiserver.store import copy_obj

from .workloads import (
    DEPLOYMENT,
    DEPLOYMENTS,
    PODS,
    REPLICASETS,
    Retry,
    compute_hash,
    controlled_by,
    controller_ref,
    drop_zero,
    pod_phase,
    prune_nulls,
    scaled_value,
    timestamp,
)

if TYPE_CHECKING:
    from .workloads import WorkloadControllers

COMPONENT = "deployment-controller"
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
_SKIP_ANNOTATIONS = {"kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY, DESIRED_REPLICAS,
                     MAX_REPLICAS, "deprecated.deployment.rollback.to"}
MAX_INT32 = 2**31 - 1

# Condition reasons (util/deployment_util.go).
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
RS_UPDATED = "ReplicaSetUpdated"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"


# ----------------------------------------------------------------------------- small accessors


def replicas(obj: dict | None) -> int:
    if obj is None:
        return 0
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def status_of(obj: dict | None, field: str) -> int:
    if obj is None:
        return 0
    return int((obj.get("status") or {}).get(field) or 0)


def revision_of(rs: dict) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _by_creation(rs: dict) -> tuple:
    # ReplicaSetsByCreationTimestamp (timestamps have second precision here: revision breaks ties).
    return (timestamp(rs["metadata"].get("creationTimestamp")), revision_of(rs), rs["metadata"]["name"])


def is_rolling_update(d: dict) -> bool:
    return ((d["spec"].get("strategy") or {}).get("type") or "RollingUpdate") == "RollingUpdate"


def _fenceposts(d: dict) -> tuple[int, int]:
    """ResolveFenceposts."""
    ru = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    desired = replicas(d)
    surge = scaled_value(ru.get("maxSurge", 0), desired, True)
    unavailable = scaled_value(ru.get("maxUnavailable", 0), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: dict) -> int:
    return _fenceposts(d)[0] if is_rolling_update(d) else 0


def max_unavailable(d: dict) -> int:
    if not is_rolling_update(d) or replicas(d) == 0:
        return 0
    return min(_fenceposts(d)[1], replicas(d))


def has_progress_deadline(d: dict) -> bool:
    deadline = d["spec"].get("progressDeadlineSeconds")
    return deadline is not None and deadline != MAX_INT32


def active(rs_list: list[dict | None]) -> list[dict]:
    """controller.FilterActiveReplicaSets."""
    return [rs for rs in rs_list if rs is not None and replicas(rs) > 0]


def total_spec(rs_list: list[dict | None]) -> int:
    return sum(replicas(rs) for rs in rs_list if rs is not None)


def total_status(rs_list: list[dict | None], field: str) -> int:
    return sum(status_of(rs, field) for rs in rs_list if rs is not None)


def equal_ignore_hash(t1: dict, t2: dict) -> bool:
    def strip(t: dict) -> dict:
        t = prune_nulls(t)
        meta = t.setdefault("metadata", {})
        labels = dict(meta.get("labels") or {})
        labels.pop(HASH_LABEL, None)
        if labels:
            meta["labels"] = labels
        else:
            meta.pop("labels", None)
        if not meta:
            t.pop("metadata")
        return t

    return strip(t1) == strip(t2)


def new_condition(ctype: str, status: str, reason: str, message: str) -> dict:
    now = now_rfc3339()
    return {"type": ctype, "status": status, "lastUpdateTime": now, "lastTransitionTime": now, "reason": reason,
            "message": message}


def get_condition(status: dict, ctype: str) -> dict | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == ctype), None)


def set_condition(status: dict, cond: dict) -> None:
    """SetDeploymentCondition: same status and reason -> no change; same status -> keep the transition time."""
    current = get_condition(status, cond["type"])
    if current is not None and current.get("status") == cond["status"] and current.get("reason") == cond["reason"]:
        return
    if current is not None and current.get("status") == cond["status"]:
        cond["lastTransitionTime"] = current.get("lastTransitionTime", cond["lastTransitionTime"])
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != cond["type"]] + [cond]


def remove_condition(status: dict, ctype: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != ctype]


def deployment_complete(d: dict, status: dict) -> bool:
    want = replicas(d)
    return (int(status.get("updatedReplicas") or 0) == want and int(status.get("replicas") or 0) == want
            and int(status.get("availableReplicas") or 0) == want
            and int(status.get("observedGeneration") or 0) >= int(d["metadata"].get("generation", 1)))


def deployment_progressing(d: dict, new: dict) -> bool:
    old = d.get("status") or {}

    def g(s: dict, f: str) -> int:
        return int(s.get(f) or 0)

    return (g(new, "updatedReplicas") > g(old, "updatedReplicas")
            or g(new, "replicas") - g(new, "updatedReplicas") < g(old, "replicas") - g(old, "updatedReplicas")
            or g(new, "readyReplicas") > g(old, "readyReplicas")
            or g(new, "availableReplicas") > g(old, "availableReplicas"))


def deployment_timed_out(d: dict, status: dict) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = get_condition(status, "Progressing")
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    return timestamp(cond.get("lastUpdateTime")) + int(d["spec"]["progressDeadlineSeconds"]) < time()


def _in_place(target: dict, source: dict) -> None:
    target.clear()
    target.update(source)


# ----------------------------------------------------------------------------- the controller


class DeploymentController:
    def __init__(self, manager: WorkloadControllers) -> None:
        self.m = manager
        self.backend = manager.backend

    def sync(self, namespace: str, name: str) -> float | None:
        stored = self.backend.store.get(DEPLOYMENTS, namespace, name)
        if stored is None:
            return None
        d = copy_obj(stored)
        rs_list = sorted((copy_obj(rs) for rs in self.backend.store.items(REPLICASETS, namespace) if controlled_by(rs, d)),
                         key=_by_creation)
        if d["metadata"].get("deletionTimestamp"):
            new, old = self._get_all(d, rs_list, create=False)
            self._sync_deployment_status(old + [new], new, d)
            return None
        self._check_paused_conditions(d)
        if d["spec"].get("paused"):
            return self._sync(d, rs_list)
        if self._is_scaling_event(d, rs_list):
            return self._sync(d, rs_list)
        if (d["spec"].get("strategy") or {}).get("type") == "Recreate":
            return self._rollout_recreate(d, rs_list)
        return self._rollout_rolling(d, rs_list)

    # Writes.

    def _write(self, d: dict, *, meta: bool = False, status: bool = False) -> None:
        rt = self.m.rt(DEPLOYMENTS)
        ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
        if meta:
            updated = self.backend.update(rt, ns, name, d)
            d["metadata"] = updated["metadata"]
        if status:
            _in_place(d, self.backend.update(rt, ns, name, d, subresource="status"))

    def _update_rs(self, rs: dict) -> None:
        meta = rs["metadata"]
        _in_place(rs, self.backend.update(self.m.rt(REPLICASETS), meta["namespace"], meta["name"], rs))

    # ReplicaSets (sync.go).

    def _get_all(self, d: dict, rs_list: list[dict], create: bool) -> tuple[dict | None, list[dict]]:
        """getAllReplicaSetsAndSyncRevision."""
        existing = next((rs for rs in rs_list if equal_ignore_hash(rs["spec"].get("template") or {},
                                                                    d["spec"].get("template") or {})), None)
        old = [rs for rs in rs_list if rs is not existing]
        return self._get_new_rs(d, old, existing, create), old

    def _get_new_rs(self, d: dict, old: list[dict], existing: dict | None, create: bool) -> dict | None:
        new_revision = str(max((revision_of(rs) for rs in old), default=0) + 1)
        if existing is not None:
            candidate = copy_obj(existing)
            annotations_updated = self._set_new_rs_annotations(d, candidate, new_revision, exists=True)
            if annotations_updated or (candidate["spec"].get("minReadySeconds") or 0) != (d["spec"].get("minReadySeconds") or 0):
                _set_min_ready(candidate, d)
                self._update_rs(candidate)
                _in_place(existing, candidate)
                return existing
            meta_changed = _set_deployment_revision(d, (existing["metadata"].get("annotations") or {}).get(REVISION, ""))
            status_changed = False
            if has_progress_deadline(d) and get_condition(d.get("status") or {}, "Progressing") is None:
                set_condition(d.setdefault("status", {}), new_condition(
                    "Progressing", "True", FOUND_NEW_RS, f'Found new replica set "{existing["metadata"]["name"]}"'))
                status_changed = True
            self._write(d, meta=meta_changed, status=status_changed)
            return existing
        if not create:
            return None
        status = d.setdefault("status", {})
        template = copy_obj(d["spec"].get("template") or {})
        pod_hash = compute_hash(template, status.get("collisionCount"))
        template.setdefault("metadata", {})
        template["metadata"]["labels"] = dict(template["metadata"].get("labels") or {}, **{HASH_LABEL: pod_hash})
        selector = copy_obj(d["spec"].get("selector") or {})
        selector["matchLabels"] = dict(selector.get("matchLabels") or {}, **{HASH_LABEL: pod_hash})
        ns = d["metadata"]["namespace"]
        rs: dict[str, Any] = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{d['metadata']['name']}-{pod_hash}", "namespace": ns,
                         "ownerReferences": [controller_ref(d, DEPLOYMENT)], "labels": dict(template["metadata"]["labels"])},
            "spec": {"replicas": 0, "selector": selector, "template": template},
        }
        _set_min_ready(rs, d)
        rs["spec"]["replicas"] = self._new_rs_new_replicas(d, old + [rs], rs)
        self._set_new_rs_annotations(d, rs, new_revision, exists=False)
        already_exists = False
        try:
            created = self.backend.create(self.m.rt(REPLICASETS), ns, rs)
        except ApiError as e:
            if e.code != 409 or e.reason != "AlreadyExists":
                self.m.record_event(d, DEPLOYMENT, COMPONENT, "FailedCreate", f"Failed to create new replica set: {e.message}",
                                    "Warning")
                raise
            current = self.backend.store.get(REPLICASETS, ns, rs["metadata"]["name"])
            if current is not None and controlled_by(current, d) and equal_ignore_hash(
                    current["spec"].get("template") or {}, d["spec"].get("template") or {}):
                created, already_exists = copy_obj(current), True
            else:
                # A hash collision: count it and try again with the next hash.
                status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
                self._write(d, status=True)
                raise Retry(f"replica set name collision for {rs['metadata']['name']}") from None
        if not already_exists and replicas(created) > 0:
            self.m.record_event(d, DEPLOYMENT, COMPONENT, "ScalingReplicaSet",
                                f"Scaled up replica set {created['metadata']['name']} from 0 to {replicas(created)}")
        meta_changed = _set_deployment_revision(d, new_revision)
        status_changed = False
        if not already_exists and has_progress_deadline(d):
            set_condition(d.setdefault("status", {}), new_condition(
                "Progressing", "True", NEW_RS_CREATED, f'Created new replica set "{created["metadata"]["name"]}"'))
            status_changed = True
        self._write(d, meta=meta_changed, status=status_changed)
        return created

    def _set_new_rs_annotations(self, d: dict, rs: dict, new_revision: str, exists: bool) -> bool:
        """SetNewReplicaSetAnnotations."""
        annotations = rs["metadata"].setdefault("annotations", {})
        changed = False
        for k, v in (d["metadata"].get("annotations") or {}).items():
            if k in _SKIP_ANNOTATIONS or annotations.get(k) == v:
                continue
            annotations[k] = v
            changed = True
        old_revision = annotations.get(REVISION)
        try:
            old_int = int(old_revision) if old_revision else 0
        except ValueError:
            return changed
        if old_int < int(new_revision):
            annotations[REVISION] = new_revision
            changed = True
            if old_revision:
                history = annotations.get(REVISION_HISTORY)
                annotations[REVISION_HISTORY] = f"{history},{old_revision}" if history else old_revision
        if not exists and _set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)):
            changed = True
        return changed

    def _new_rs_new_replicas(self, d: dict, all_rs: list[dict], new: dict) -> int:
        """NewRSNewReplicas."""
        if not is_rolling_update(d):
            return replicas(d)
        ru = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
        surge = scaled_value(ru.get("maxSurge", 0), replicas(d), True)
        current = total_spec(all_rs)
        max_total = replicas(d) + surge
        if current >= max_total:
            return replicas(new)
        return replicas(new) + min(max_total - current, replicas(d) - replicas(new))

    def _scale_rs(self, rs: dict, new_scale: int, d: dict, operation: str) -> bool:
        """scaleReplicaSet: size and the desired/max replicas annotations."""
        size_changes = replicas(rs) != new_scale
        candidate = copy_obj(rs)
        annotations_change = _set_replicas_annotations(candidate, replicas(d), replicas(d) + max_surge(d))
        if not (size_changes or annotations_change):
            return False
        old_scale = replicas(rs)
        candidate["spec"]["replicas"] = new_scale
        self._update_rs(candidate)
        _in_place(rs, candidate)
        if size_changes:
            self.m.record_event(d, DEPLOYMENT, COMPONENT, "ScalingReplicaSet",
                                f"Scaled {operation} replica set {rs['metadata']['name']} from {old_scale} to {new_scale}")
        return size_changes

    def _scale_rs_and_record(self, rs: dict, new_scale: int, d: dict) -> bool:
        if replicas(rs) == new_scale:
            return False
        return self._scale_rs(rs, new_scale, d, "up" if replicas(rs) < new_scale else "down")

    def _is_scaling_event(self, d: dict, rs_list: list[dict]) -> bool:
        new, old = self._get_all(d, rs_list, create=False)
        for rs in active(old + [new]):
            desired = (rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS)
            if desired is None:
                continue
            try:
                if int(desired) != replicas(d):
                    return True
            except ValueError:
                continue
        return False

    def _sync(self, d: dict, rs_list: list[dict]) -> float | None:
        """sync: a scaling event or a paused deployment."""
        new, old = self._get_all(d, rs_list, create=False)
        self._scale(d, new, old)
        if d["spec"].get("paused"):
            self._cleanup(old, d)
        self._sync_deployment_status(old + [new], new, d)
        return None

    def _scale(self, d: dict, new: dict | None, old: list[dict]) -> None:
        """scale: proportional scaling of the active ReplicaSets."""
        latest = _find_active_or_latest(new, old)
        if latest is not None:
            if replicas(latest) != replicas(d):
                self._scale_rs_and_record(latest, replicas(d), d)
            return
        if _is_saturated(d, new):
            for rs in active(old):
                self._scale_rs_and_record(rs, 0, d)
            return
        if not is_rolling_update(d):
            return
        all_rs = active(old + [new])
        allowed = replicas(d) + max_surge(d) if replicas(d) > 0 else 0
        to_add = allowed - total_spec(all_rs)
        operation = ""
        if to_add > 0:
            all_rs.sort(key=lambda rs: (-replicas(rs), -timestamp(rs["metadata"].get("creationTimestamp")), rs["metadata"]["name"]))
            operation = "up"
        elif to_add < 0:
            all_rs.sort(key=lambda rs: (-replicas(rs), timestamp(rs["metadata"].get("creationTimestamp")), rs["metadata"]["name"]))
            operation = "down"
        added = 0
        sizes: dict[str, int] = {}
        for rs in all_rs:
            if to_add != 0:
                proportion = _proportion(rs, d, to_add, added)
                sizes[rs["metadata"]["name"]] = replicas(rs) + proportion
                added += proportion
            else:
                sizes[rs["metadata"]["name"]] = replicas(rs)
        for i, rs in enumerate(all_rs):
            name = rs["metadata"]["name"]
            if i == 0 and to_add != 0:
                sizes[name] = max(0, sizes[name] + to_add - added)
            self._scale_rs(rs, sizes[name], d, operation)

    # Strategies (rolling.go, recreate.go).

    def _rollout_rolling(self, d: dict, rs_list: list[dict]) -> float | None:
        new, old = self._get_all(d, rs_list, create=True)
        assert new is not None
        all_rs: list[dict | None] = [*old, new]
        if self._reconcile_new(all_rs, new, d):
            return self._sync_rollout_status(all_rs, new, d)
        if self._reconcile_old(all_rs, active(old), new, d):
            return self._sync_rollout_status(all_rs, new, d)
        if deployment_complete(d, d.get("status") or {}):
            self._cleanup(old, d)
        return self._sync_rollout_status(all_rs, new, d)

    def _reconcile_new(self, all_rs: list[dict | None], new: dict, d: dict) -> bool:
        if replicas(new) == replicas(d):
            return False
        if replicas(new) > replicas(d):
            return self._scale_rs_and_record(new, replicas(d), d)
        return self._scale_rs_and_record(new, self._new_rs_new_replicas(d, [r for r in all_rs if r is not None], new), d)

    def _reconcile_old(self, all_rs: list[dict | None], old: list[dict], new: dict, d: dict) -> bool:
        if total_spec(old) == 0:
            return False
        min_available = replicas(d) - max_unavailable(d)
        new_unavailable = replicas(new) - status_of(new, "availableReplicas")
        max_scaled_down = total_spec(all_rs) - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = self._cleanup_unhealthy(old, d, max_scaled_down)
        scaled = self._scale_down_old_for_rolling([*old, new], old, d)
        return cleaned + scaled > 0

    def _cleanup_unhealthy(self, old: list[dict], d: dict, max_cleanup: int) -> int:
        total = 0
        for rs in sorted(old, key=_by_creation):
            if total >= max_cleanup:
                break
            if replicas(rs) == 0 or replicas(rs) == status_of(rs, "availableReplicas"):
                continue
            count = min(max_cleanup - total, replicas(rs) - status_of(rs, "availableReplicas"))
            self._scale_rs_and_record(rs, replicas(rs) - count, d)
            total += count
        return total

    def _scale_down_old_for_rolling(self, all_rs: list[dict | None], old: list[dict], d: dict) -> int:
        min_available = replicas(d) - max_unavailable(d)
        available = total_status(all_rs, "availableReplicas")
        if available <= min_available:
            return 0
        total, target_total = 0, available - min_available
        for rs in sorted(old, key=_by_creation):
            if total >= target_total:
                break
            if replicas(rs) == 0:
                continue
            count = min(replicas(rs), target_total - total)
            self._scale_rs_and_record(rs, replicas(rs) - count, d)
            total += count
        return total

    def _rollout_recreate(self, d: dict, rs_list: list[dict]) -> float | None:
        new, old = self._get_all(d, rs_list, create=False)
        all_rs: list[dict | None] = [*old, new]
        scaled_down = False
        for rs in active(old):
            if self._scale_rs_and_record(rs, 0, d):
                scaled_down = True
        if scaled_down:
            return self._sync_rollout_status(all_rs, new, d)
        if self._old_pods_running(new, old):
            return self._sync_rollout_status(all_rs, new, d)
        if new is None:
            new, old = self._get_all(d, rs_list, create=True)
            all_rs = [*old, new]
        assert new is not None
        self._scale_rs_and_record(new, replicas(d), d)
        if deployment_complete(d, d.get("status") or {}):
            self._cleanup(old, d)
        return self._sync_rollout_status(all_rs, new, d)

    def _old_pods_running(self, new: dict | None, old: list[dict]) -> bool:
        if total_status(list(old), "replicas") > 0:
            return True
        old_uids = {rs["metadata"]["uid"] for rs in old}
        if not old_uids:
            return False
        ns = (new or old[0])["metadata"]["namespace"]
        for pod in self.backend.store.items(PODS, ns):
            ref = next((r for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
            if ref and ref.get("uid") in old_uids and pod_phase(pod) not in ("Failed", "Succeeded"):
                return True
        return False

    def _cleanup(self, old: list[dict], d: dict) -> None:
        """cleanupDeployment: keep revisionHistoryLimit old ReplicaSets."""
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        alive = [rs for rs in old if not rs["metadata"].get("deletionTimestamp")]
        diff = len(alive) - int(limit)
        if diff <= 0:
            return
        for rs in sorted(alive, key=lambda r: (revision_of(r), timestamp(r["metadata"].get("creationTimestamp"))))[:diff]:
            if (status_of(rs, "replicas") != 0 or replicas(rs) != 0
                    or int(rs["metadata"].get("generation", 1)) > status_of(rs, "observedGeneration")):
                continue
            try:
                self.backend.delete(self.m.rt(REPLICASETS), rs["metadata"]["namespace"], rs["metadata"]["name"],
                                    DeleteOptions(preconditions={"uid": rs["metadata"]["uid"]}))
            except ApiError as e:
                if e.code != 404:
                    raise

    # Status (sync.go, progress.go).

    def _calculate_status(self, all_rs: list[dict | None], new: dict | None, d: dict) -> dict:
        available = total_status(all_rs, "availableReplicas")
        unavailable = max(0, total_spec(all_rs) - available)
        old_status = d.get("status") or {}
        status: dict[str, Any] = drop_zero({
            "observedGeneration": int(d["metadata"].get("generation", 1)),
            "replicas": total_status(all_rs, "replicas"),
            "updatedReplicas": status_of(new, "replicas"),
            "readyReplicas": total_status(all_rs, "readyReplicas"),
            "availableReplicas": available,
            "unavailableReplicas": unavailable,
        })
        if "collisionCount" in old_status:
            status["collisionCount"] = old_status["collisionCount"]
        status["conditions"] = copy_obj(old_status.get("conditions") or [])
        if available >= replicas(d) - max_unavailable(d):
            set_condition(status, new_condition("Available", "True", MIN_AVAILABLE, "Deployment has minimum availability."))
        else:
            set_condition(status, new_condition("Available", "False", MIN_UNAVAILABLE,
                                                "Deployment does not have minimum availability."))
        return status

    def _sync_deployment_status(self, all_rs: list[dict | None], new: dict | None, d: dict) -> None:
        status = self._calculate_status(all_rs, new, d)
        if _same_status(d.get("status") or {}, status):
            return
        d["status"] = status
        self._write(d, status=True)

    def _sync_rollout_status(self, all_rs: list[dict | None], new: dict | None, d: dict) -> float | None:
        status = self._calculate_status(all_rs, new, d)
        if not has_progress_deadline(d):
            remove_condition(status, "Progressing")
        current = get_condition(d.get("status") or {}, "Progressing")
        complete = (int(status.get("replicas") or 0) == int(status.get("updatedReplicas") or 0)
                    and current is not None and current.get("reason") == NEW_RS_AVAILABLE)
        if has_progress_deadline(d) and not complete:
            if deployment_complete(d, status):
                set_condition(status, new_condition(
                    "Progressing", "True", NEW_RS_AVAILABLE, f'ReplicaSet "{new["metadata"]["name"] if new else ""}" has successfully progressed.'))
            elif deployment_progressing(d, status):
                msg = f'ReplicaSet "{new["metadata"]["name"]}" is progressing.' if new else f'Deployment "{d["metadata"]["name"]}" is progressing.'
                cond = new_condition("Progressing", "True", RS_UPDATED, msg)
                if current is not None:
                    if current.get("status") == "True":
                        cond["lastTransitionTime"] = current.get("lastTransitionTime", cond["lastTransitionTime"])
                    remove_condition(status, "Progressing")
                set_condition(status, cond)
            elif deployment_timed_out(d, status):
                set_condition(status, new_condition(
                    "Progressing", "False", TIMED_OUT, f'ReplicaSet "{new["metadata"]["name"] if new else ""}" has timed out progressing.'))
        failure = next((c for rs in all_rs if rs is not None
                        for c in (rs.get("status") or {}).get("conditions") or [] if c.get("type") == "ReplicaFailure"), None)
        if failure is not None:
            set_condition(status, new_condition("ReplicaFailure", failure.get("status", "True"), failure.get("reason", ""),
                                                failure.get("message", "")))
        else:
            remove_condition(status, "ReplicaFailure")
        if _same_status(d.get("status") or {}, status):
            return self._requeue_stuck(d, status)
        d["status"] = status
        self._write(d, status=True)
        return None

    def _requeue_stuck(self, d: dict, status: dict) -> float | None:
        current = get_condition(d.get("status") or {}, "Progressing")
        if not has_progress_deadline(d) or current is None:
            return None
        if deployment_complete(d, status) or current.get("reason") == TIMED_OUT:
            return None
        after = timestamp(current.get("lastUpdateTime")) + int(d["spec"]["progressDeadlineSeconds"]) - time()
        return 1.0 if after < 1 else after + 1

    def _check_paused_conditions(self, d: dict) -> None:
        if not has_progress_deadline(d):
            return
        status = d.setdefault("status", {})
        cond = get_condition(status, "Progressing")
        if cond is not None and cond.get("reason") == TIMED_OUT:
            return
        paused_exists = cond is not None and cond.get("reason") == PAUSED
        if d["spec"].get("paused") and not paused_exists:
            set_condition(status, new_condition("Progressing", "Unknown", PAUSED, "Deployment is paused"))
        elif not d["spec"].get("paused") and paused_exists:
            set_condition(status, new_condition("Progressing", "Unknown", RESUMED, "Deployment is resumed"))
        else:
            return
        self._write(d, status=True)


def _same_status(old: dict, new: dict) -> bool:
    def norm(s: dict) -> dict:
        s = dict(s)
        if not s.get("conditions"):
            s.pop("conditions", None)
        return s

    return norm(old) == norm(new)


def _set_min_ready(rs: dict, d: dict) -> None:
    value = d["spec"].get("minReadySeconds") or 0
    if value:
        rs["spec"]["minReadySeconds"] = value
    else:
        rs["spec"].pop("minReadySeconds", None)


def _set_deployment_revision(d: dict, revision: str) -> bool:
    annotations = d["metadata"].setdefault("annotations", {})
    if annotations.get(REVISION) == revision:
        return False
    annotations[REVISION] = revision
    return True


def _set_replicas_annotations(rs: dict, desired: int, max_replicas: int) -> bool:
    annotations = rs["metadata"].setdefault("annotations", {})
    changed = False
    for key, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if annotations.get(key) != value:
            annotations[key] = value
            changed = True
    return changed


def _find_active_or_latest(new: dict | None, old: list[dict]) -> dict | None:
    if new is None and not old:
        return None
    newest_first = sorted(old, key=_by_creation, reverse=True)
    live = active([*newest_first, new])
    if not live:
        return new if new is not None else newest_first[0]
    return live[0] if len(live) == 1 else None


def _is_saturated(d: dict, rs: dict | None) -> bool:
    if rs is None:
        return False
    try:
        desired = int((rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS, ""))
    except ValueError:
        return False
    return replicas(rs) == replicas(d) and desired == replicas(d) and status_of(rs, "availableReplicas") == replicas(d)


def _proportion(rs: dict, d: dict, to_add: int, added: int) -> int:
    """GetProportion / getReplicaSetFraction."""
    if replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    if replicas(d) == 0:
        fraction = -replicas(rs)
    else:
        deployment_replicas = replicas(d) + max_surge(d)
        try:
            annotated = int((rs["metadata"].get("annotations") or {}).get(MAX_REPLICAS, ""))
        except ValueError:
            annotated = status_of(d, "replicas")
        if annotated == 0:
            fraction = 0
        else:
            fraction = int(_round_half_away(replicas(rs) * deployment_replicas / annotated)) - replicas(rs)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def _round_half_away(x: float) -> int:
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))
