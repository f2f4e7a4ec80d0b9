"""The StatefulSet controller (pkg/controller/statefulset: stateful_set_control.go, stateful_pod_control.go,
stateful_set_utils.go), on dicts.

Pods are `<set>-<ordinal>` (from spec.ordinals.start), labelled statefulset.kubernetes.io/pod-name,
apps.kubernetes.io/pod-index and controller-revision-hash (`<set>-<hash of the template>`), with
spec.hostname = the pod name and spec.subdomain = spec.serviceName. Each volumeClaimTemplate gives the
pod a PVC `<template>-<set>-<ordinal>`, created before the pod and never deleted by the controller;
persistentVolumeClaimRetentionPolicy Delete is carried out by ownerReferences (controller refs to the
set for whenDeleted, to the pod of a scaled-down ordinal for whenScaled) and the garbage collector,
as upstream. OrderedReady creates one ordinal at a time once its predecessors are Running and Ready
and removes from the highest ordinal down, one at a time; Parallel does both at once. A template
change with RollingUpdate replaces pods from the highest ordinal down to the partition, one at a time.

Revisions are kept in memory (template by revision name) and, when the apps/controllerrevisions type
is served, also written as ControllerRevisions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hcpsim.apiserver.backend import DeleteOptions
from hcpsim.apiserver.errors import ApiError
from hcpsim.apiserver.store import copy_obj

from .workloads import (
    CONTROLLERREVISIONS,
    PODS,
    PVCS,
    STATEFULSET,
    STATEFULSETS,
    Retry,
    available_in,
    compute_hash,
    controlled_by,
    controller_ref,
    drop_zero,
    is_pod_ready,
    is_terminating,
    parent_and_ordinal,
    pod_from_template,
    pod_phase,
)

if TYPE_CHECKING:
    from .workloads import WorkloadControllers

COMPONENT = "statefulset-controller"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"
HASH_LABEL = "controller.kubernetes.io/hash"


def _is_created(pod: dict) -> bool:
    return pod_phase(pod) != ""


def _running_and_ready(pod: dict) -> bool:
    return pod_phase(pod) == "Running" and is_pod_ready(pod)


def _healthy(pod: dict) -> bool:
    return _running_and_ready(pod) and not is_terminating(pod)


def _revision(pod: dict) -> str:
    return (pod["metadata"].get("labels") or {}).get(REVISION_LABEL, "")


def _ordinal(pod: dict) -> int:
    return parent_and_ordinal(pod["metadata"]["name"])[1]


def claim_name(template: dict, set_name: str, ordinal: int) -> str:
    return f"{template['metadata']['name']}-{set_name}-{ordinal}"


class StatefulSetController:
    def __init__(self, manager: WorkloadControllers) -> None:
        self.m = manager
        self.backend = manager.backend
        self._templates: dict[str, dict[str, dict]] = {}  # set uid -> revision name -> pod template
        self._uids: dict[tuple[str, str], str] = {}  # (namespace, name) -> uid of the set last seen

    # The sync.

    def sync(self, namespace: str, name: str) -> float | None:
        stored = self.backend.store.get(STATEFULSETS, namespace, name)
        previous_uid = self._uids.pop((namespace, name), None)
        if previous_uid is not None and (stored is None or stored["metadata"]["uid"] != previous_uid):
            self._templates.pop(previous_uid, None)
        if stored is None:
            return None
        s = copy_obj(stored)
        uid = s["metadata"]["uid"]
        self._uids[(namespace, name)] = uid
        pods = [p for p in self.backend.store.items(PODS, namespace)
                if controlled_by(p, s) and parent_and_ordinal(p["metadata"]["name"])[0] == name]
        status_in = s.get("status") or {}
        collision = int(status_in.get("collisionCount") or 0)
        template = s["spec"].get("template") or {}
        pod_hash = compute_hash(template, collision)
        update_rev = f"{name[:223]}-{pod_hash}"
        known = self._templates.setdefault(uid, {})
        known[update_rev] = copy_obj(template)
        self._ensure_controller_revision(s, update_rev, pod_hash)
        current_rev = status_in.get("currentRevision") or update_rev
        current_template = known.get(current_rev, template)
        for rev in [r for r in known if r not in (current_rev, update_rev)]:
            del known[rev]
        status: dict[str, Any] = {}
        error: Exception | None = None
        try:
            again = self._update(s, pods, current_rev, update_rev, current_template, status)
        except (ApiError, Retry) as e:
            error, again = e, None
        self._write_status(s, status)
        if error is not None:
            raise error
        return again

    def _update(self, s: dict, pods: list[dict], current_rev: str, update_rev: str, current_template: dict,
                status: dict) -> float | None:
        spec = s["spec"]
        count = int(spec.get("replicas", 1))
        start = int((spec.get("ordinals") or {}).get("start") or 0)
        monotonic = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        min_ready = int(spec.get("minReadySeconds") or 0)
        replicas: list[dict] = [None] * count  # type: ignore[list-item]
        condemned: list[dict] = []
        for pod in pods:
            ordinal = _ordinal(pod)
            if start <= ordinal < start + count:
                replicas[ordinal - start] = pod
            elif ordinal >= 0:
                condemned.append(pod)
        for i in range(count):
            if replicas[i] is None:
                replicas[i] = self._new_versioned_pod(s, current_template, current_rev, update_rev, start + i)
        condemned.sort(key=_ordinal, reverse=True)  # highest ordinal first
        first_unhealthy = next((p for p in replicas if not _healthy(p)), None)
        if first_unhealthy is None:
            first_unhealthy = next((p for p in reversed(condemned) if not _healthy(p)), None)

        wake: list[float] = []

        def finish() -> float | None:
            self._fill_status(s, status, current_rev, update_rev, replicas + condemned, min_ready, wake)
            return min(wake) + 0.05 if wake else None

        if s["metadata"].get("deletionTimestamp"):
            return finish()
        # Every replica in range (processReplica); monotonic mode stops at the first that blocks.
        first_error: Exception | None = None
        for i in range(count):
            try:
                if self._process_replica(s, monotonic, replicas, i, min_ready, wake) and monotonic:
                    return finish()
            except (ApiError, Retry) as e:
                if monotonic:
                    finish()
                    raise
                first_error = first_error or e
        if first_error is not None:
            finish()
            raise first_error
        # Claims of condemned pods follow the retention policy before the pods go.
        for pod in condemned:
            self._update_claim_refs(s, pod)
        # Scale down, highest ordinal first (processCondemned).
        for pod in condemned:
            if self._process_condemned(s, first_unhealthy, monotonic, pod, min_ready):
                return finish()
        result = finish()
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type") == "OnDelete":
            return result
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        for target in range(len(replicas) - 1, partition - 1, -1):
            pod = replicas[target]
            if _revision(pod) != update_rev and not is_terminating(pod):
                self._delete_pod(s, pod)
                status["currentReplicas"] = int(status.get("currentReplicas") or 0) - 1
                return result
            if not _healthy(pod):
                return result
        return result

    def _process_replica(self, s: dict, monotonic: bool, replicas: list[dict], i: int, min_ready: int,
                         wake: list[float]) -> bool:
        """processReplica: True when a monotonic set must wait."""
        pod = replicas[i]
        if pod_phase(pod) in ("Failed", "Succeeded"):
            if not is_terminating(pod):
                self._delete_pod(s, pod)
            return True
        if not _is_created(pod):
            self._create_pod(s, pod)
            return monotonic
        if pod_phase(pod) == "Pending":
            self._create_claims(s, pod, missing_only=True)
        if is_terminating(pod) and monotonic:
            return True
        if not _running_and_ready(pod) and monotonic:
            return True
        wait = available_in(pod, min_ready)
        if wait:
            wake.append(wait)
            if monotonic:
                return True
        # Enforce the invariants: identity, storage, claim ownership.
        self._update_claim_refs(s, pod)
        if self._identity_matches(s, pod) and self._storage_matches(s, pod):
            return False
        updated = copy_obj(pod)
        labels = updated["metadata"].setdefault("labels", {})
        labels[POD_NAME_LABEL] = pod["metadata"]["name"]
        labels[POD_INDEX_LABEL] = str(_ordinal(pod))
        if not self._storage_matches(s, pod):
            self._update_storage(s, updated)
            self._create_claims(s, updated)
        self.backend.update(self.m.rt(PODS), pod["metadata"]["namespace"], pod["metadata"]["name"], updated)
        return False

    def _process_condemned(self, s: dict, first_unhealthy: dict | None, monotonic: bool, pod: dict, min_ready: int) -> bool:
        if is_terminating(pod):
            return monotonic
        if monotonic and pod is not first_unhealthy and (not _running_and_ready(pod) or available_in(pod, min_ready)):
            return True
        self._delete_pod(s, pod)
        return monotonic

    # Pods and claims (stateful_pod_control.go).

    def _new_versioned_pod(self, s: dict, current_template: dict, current_rev: str, update_rev: str, ordinal: int) -> dict:
        spec = s["spec"]
        strategy = spec.get("updateStrategy") or {}
        start = int((spec.get("ordinals") or {}).get("start") or 0)
        rolling = strategy.get("rollingUpdate")
        use_current = ((strategy.get("type") == "RollingUpdate" and rolling is None
                        and ordinal < start + int((s.get("status") or {}).get("currentReplicas") or 0))
                       or (rolling is not None and ordinal < start + int(rolling.get("partition") or 0)))
        template = current_template if use_current else spec.get("template") or {}
        revision = current_rev if use_current else update_rev
        name = f"{s['metadata']['name']}-{ordinal}"
        pod = pod_from_template(template, controller_ref(s, STATEFULSET), name=name)
        labels = pod["metadata"].setdefault("labels", {})
        labels[POD_NAME_LABEL] = name
        labels[POD_INDEX_LABEL] = str(ordinal)
        labels[REVISION_LABEL] = revision
        pod["spec"]["hostname"] = name
        if spec.get("serviceName"):
            pod["spec"]["subdomain"] = spec["serviceName"]
        self._update_storage(s, pod)
        return pod

    def _update_storage(self, s: dict, pod: dict) -> None:
        ordinal = _ordinal(pod)
        templates = s["spec"].get("volumeClaimTemplates") or []
        names = {t["metadata"]["name"] for t in templates}
        volumes = [{"name": t["metadata"]["name"],
                    "persistentVolumeClaim": {"claimName": claim_name(t, s["metadata"]["name"], ordinal)}}
                   for t in templates]
        volumes += [v for v in pod["spec"].get("volumes") or [] if v.get("name") not in names]
        if volumes:
            pod["spec"]["volumes"] = volumes

    def _identity_matches(self, s: dict, pod: dict) -> bool:
        labels = pod["metadata"].get("labels") or {}
        return labels.get(POD_NAME_LABEL) == pod["metadata"]["name"] and labels.get(POD_INDEX_LABEL) == str(_ordinal(pod))

    def _storage_matches(self, s: dict, pod: dict) -> bool:
        ordinal = _ordinal(pod)
        volumes = {v.get("name"): v for v in pod["spec"].get("volumes") or []}
        for t in s["spec"].get("volumeClaimTemplates") or []:
            v = volumes.get(t["metadata"]["name"])
            if v is None or (v.get("persistentVolumeClaim") or {}).get("claimName") != claim_name(t, s["metadata"]["name"], ordinal):
                return False
        return True

    def _claims_for(self, s: dict, pod: dict) -> list[dict]:
        """getPersistentVolumeClaims: the template's metadata and spec, named for the ordinal, labelled
        with the selector's matchLabels."""
        ordinal = _ordinal(pod)
        match_labels = (s["spec"].get("selector") or {}).get("matchLabels") or {}
        claims = []
        for t in s["spec"].get("volumeClaimTemplates") or []:
            claim = copy_obj(t)
            claim.pop("status", None)
            meta = claim.setdefault("metadata", {})
            meta["name"] = claim_name(t, s["metadata"]["name"], ordinal)
            meta["namespace"] = s["metadata"]["namespace"]
            labels = dict(meta.get("labels") or {}, **match_labels)
            if labels:
                meta["labels"] = labels
            claim["apiVersion"], claim["kind"] = "v1", "PersistentVolumeClaim"
            claims.append(claim)
        return claims

    def _create_claims(self, s: dict, pod: dict, missing_only: bool = False) -> None:
        """createPersistentVolumeClaims (missing_only: createMissingPersistentVolumeClaims, for pending pods)."""
        rt = self.m.rt(PVCS)
        ns = s["metadata"]["namespace"]
        blocked = []
        for claim in self._claims_for(s, pod):
            existing = self.backend.store.get(PVCS, ns, claim["metadata"]["name"])
            if existing is None:
                try:
                    self.backend.create(rt, ns, claim)
                except ApiError as e:
                    if e.code == 409 and e.reason == "AlreadyExists":
                        continue
                    self.m.record_event(s, STATEFULSET, COMPONENT, "FailedCreate",
                                        f"create Claim {claim['metadata']['name']} for Pod {pod['metadata']['name']} in "
                                        f"StatefulSet {s['metadata']['name']} failed error: {e.message}", "Warning")
                    raise
                self.m.record_event(s, STATEFULSET, COMPONENT, "SuccessfulCreate",
                                    f"create Claim {claim['metadata']['name']} Pod {pod['metadata']['name']} in "
                                    f"StatefulSet {s['metadata']['name']} success")
            elif is_terminating(existing) and not missing_only:
                blocked.append(claim["metadata"]["name"])
        if blocked:
            raise Retry(f"pvc {', '.join(blocked)} is being deleted")

    def _create_pod(self, s: dict, pod: dict) -> None:
        self._create_claims(s, pod)
        try:
            created = self.backend.create(self.m.rt(PODS), s["metadata"]["namespace"], pod)
        except ApiError as e:
            if not (e.code == 409 and e.reason == "AlreadyExists"):
                self.m.record_event(s, STATEFULSET, COMPONENT, "FailedCreate",
                                    f"create Pod {pod['metadata']['name']} in StatefulSet {s['metadata']['name']} failed "
                                    f"error: {e.message}", "Warning")
            raise
        self.m.record_event(s, STATEFULSET, COMPONENT, "SuccessfulCreate",
                            f"create Pod {pod['metadata']['name']} in StatefulSet {s['metadata']['name']} successful")
        self._update_claim_refs(s, created)

    def _delete_pod(self, s: dict, pod: dict) -> None:
        try:
            self.backend.delete(self.m.rt(PODS), pod["metadata"]["namespace"], pod["metadata"]["name"],
                                DeleteOptions(preconditions={"uid": pod["metadata"]["uid"]}))
        except ApiError as e:
            if e.code == 404:
                return
            raise
        self.m.record_event(s, STATEFULSET, COMPONENT, "SuccessfulDelete",
                            f"delete Pod {pod['metadata']['name']} in StatefulSet {s['metadata']['name']} successful")

    def _update_claim_refs(self, s: dict, pod: dict) -> None:
        """UpdatePodClaimForRetentionPolicy / updateClaimOwnerRefForSetAndPod: controller refs to the set
        (whenDeleted: Delete, pod in range) or to the pod (whenScaled: Delete, pod scaled down)."""
        if "uid" not in pod["metadata"]:
            return
        policy = s["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
        when_deleted = policy.get("whenDeleted", "Retain")
        when_scaled = policy.get("whenScaled", "Retain")
        count = int(s["spec"].get("replicas", 1))
        start = int((s["spec"].get("ordinals") or {}).get("start") or 0)
        scaled_down = not (start <= _ordinal(pod) < start + count)
        rt = self.m.rt(PVCS)
        ns = s["metadata"]["namespace"]
        owners = ((s, "apps/v1", STATEFULSET), (pod, "v1", "Pod"))
        for t in s["spec"].get("volumeClaimTemplates") or []:
            pvc = self.backend.store.get(PVCS, ns, claim_name(t, s["metadata"]["name"], _ordinal(pod)))
            if pvc is None or is_terminating(pvc):
                continue
            refs = list(pvc["metadata"].get("ownerReferences") or [])

            def matches(ref: dict, obj: dict, api_version: str, kind: str) -> bool:
                return ref.get("name") == obj["metadata"]["name"] and ref.get("kind") == kind and ref.get("apiVersion") == api_version

            # A ref to an earlier set or pod of the same name: managed by a previous incarnation, leave alone.
            if any(matches(r, o, av, k) and r.get("uid") != o["metadata"]["uid"] for r in refs for o, av, k in owners):
                continue
            ours = {s["metadata"]["uid"], pod["metadata"]["uid"]}
            unexpected = any(r.get("controller") and r.get("uid") not in ours for r in refs)
            wanted = [r for r in refs if not any(matches(r, o, av, k) for o, av, k in owners)]
            if not unexpected:
                if when_scaled == "Delete" and scaled_down:
                    wanted.append(controller_ref(pod, "Pod", "v1"))
                elif when_deleted == "Delete" and not scaled_down:
                    wanted.append(controller_ref(s, STATEFULSET))
            if wanted == refs:
                continue
            updated = copy_obj(pvc)
            if wanted:
                updated["metadata"]["ownerReferences"] = wanted
            else:
                updated["metadata"].pop("ownerReferences", None)
            self.backend.update(rt, ns, pvc["metadata"]["name"], updated)

    # Revisions and status.

    def _ensure_controller_revision(self, s: dict, revision: str, pod_hash: str) -> None:
        if self.backend.registry.get(*CONTROLLERREVISIONS) is None:
            return
        ns = s["metadata"]["namespace"]
        if self.backend.store.get(CONTROLLERREVISIONS, ns, revision) is not None:
            return
        number = 1 + max((int(cr.get("revision") or 0) for cr in self.backend.store.items(CONTROLLERREVISIONS, ns)
                          if controlled_by(cr, s)), default=0)
        template = copy_obj(s["spec"].get("template") or {})
        template["$patch"] = "replace"
        labels = dict(((s["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}, **{HASH_LABEL: pod_hash})
        body = {"apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {"name": revision, "namespace": ns, "labels": labels, "ownerReferences": [controller_ref(s, STATEFULSET)]},
                "data": {"spec": {"template": template}}, "revision": number}
        try:
            self.backend.create(self.backend.type_for(*CONTROLLERREVISIONS), ns, body)
        except ApiError as e:
            if e.code != 409:
                raise

    def _fill_status(self, s: dict, status: dict, current_rev: str, update_rev: str, pods: list[dict], min_ready: int,
                     wake: list[float]) -> None:
        """updateStatus / computeReplicaStatus."""
        counts = dict.fromkeys(("replicas", "readyReplicas", "availableReplicas", "currentReplicas", "updatedReplicas"), 0)
        for pod in pods:
            created = _is_created(pod)
            if created:
                counts["replicas"] += 1
            if _running_and_ready(pod):
                counts["readyReplicas"] += 1
                wait = available_in(pod, min_ready)
                if wait == 0.0:
                    counts["availableReplicas"] += 1
                elif wait is not None:
                    wake.append(wait)
            if created and not is_terminating(pod):
                if _revision(pod) == current_rev:
                    counts["currentReplicas"] += 1
                if _revision(pod) == update_rev:
                    counts["updatedReplicas"] += 1
        status.clear()
        status.update(counts, observedGeneration=int(s["metadata"].get("generation", 1)), currentRevision=current_rev,
                      updateRevision=update_rev, collisionCount=int((s.get("status") or {}).get("collisionCount") or 0))

    def _write_status(self, s: dict, status: dict) -> None:
        if not status:
            return
        strategy = (s["spec"].get("updateStrategy") or {}).get("type", "RollingUpdate")
        # completeRollingUpdate
        if strategy == "RollingUpdate" and status["updatedReplicas"] == status["replicas"] and status["readyReplicas"] == status["replicas"]:
            status["currentReplicas"] = status["updatedReplicas"]
            status["currentRevision"] = status["updateRevision"]
        new = drop_zero(status, keep=("replicas", "availableReplicas", "collisionCount"))
        old = s.get("status") or {}
        if old.get("conditions"):
            new["conditions"] = old["conditions"]
        if new == old:
            return
        s["status"] = new
        self.backend.update(self.m.rt(STATEFULSETS), s["metadata"]["namespace"], s["metadata"]["name"], s,
                            subresource="status")
