"""The workload controllers of kube-controller-manager for a simulated cluster: Deployment,
ReplicaSet and StatefulSet (deployment.py, replicaset.py, statefulset.py hold the sync logic).

One `WorkloadControllers` per cluster subscribes to the store, turns events into keys on a
de-duplicating work queue (client-go's workqueue: a key queued while it is being worked is worked
again afterwards), and syncs keys in one thread of its own, reading the store directly (no informer
lag, so no expectations are needed) and writing through the Backend verbs like any client.
A failed sync (409 conflict, 404 of something deleted under it, a PVC still terminating) is retried
with exponential backoff; syncs that want to look again later (minReadySeconds, progress deadlines)
ask for a delayed requeue. Nothing polls: an idle cluster costs no CPU.

The controllers only own what they create: they never adopt orphans (a pod or ReplicaSet whose
controller ownerReference is not theirs is left alone).

Start one with `start_workload_controllers(cluster)` (or `WorkloadControllers(backend)`); `close()`
stops the thread.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

import orjson

from hcpsim.apiserver.backend import Backend
from hcpsim.apiserver.clock import now_rfc3339, parse_rfc3339
from hcpsim.apiserver.errors import ApiError
from hcpsim.apiserver.store import Event, copy_obj
from hcpsim.controllers.workqueue import WorkQueue

log = logging.getLogger("hcpsim.workloads")

PODS = ("", "pods")
PVCS = ("", "persistentvolumeclaims")
EVENTS = ("", "events")
DEPLOYMENTS = ("apps", "deployments")
REPLICASETS = ("apps", "replicasets")
STATEFULSETS = ("apps", "statefulsets")
CONTROLLERREVISIONS = ("apps", "controllerrevisions")

# Queue key kinds.
DEPLOYMENT = "Deployment"
REPLICASET = "ReplicaSet"
STATEFULSET = "StatefulSet"
CLAIMS_IN_NAMESPACE = "claims"  # a PVC went away: statefulsets of the namespace may be waiting for it

Key = tuple[str, str, str]  # (kind, namespace, name)


class Retry(Exception):
    """A sync cannot finish now (something is still terminating); retry with backoff."""


class Closeable(Protocol):
    def close(self) -> None: ...


# ----------------------------------------------------------------------------- helpers shared by the controllers


def controller_ref(obj: dict, kind: str, api_version: str = "apps/v1") -> dict:
    """metav1.NewControllerRef."""
    return {"apiVersion": api_version, "kind": kind, "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


def controller_of(obj: dict) -> dict | None:
    """metav1.GetControllerOf."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def controlled_by(obj: dict, owner: dict) -> bool:
    ref = controller_of(obj)
    return ref is not None and ref.get("uid") == owner["metadata"]["uid"]


def pod_from_template(template: dict, owner_ref: dict, *, generate_name: str | None = None, name: str | None = None) -> dict:
    """controller.GetPodFromTemplate: labels, annotations and finalizers of the template, its spec, the
    controller reference, and a generateName of `<parent>-`."""
    tmeta = template.get("metadata") or {}
    meta: dict[str, Any] = {"ownerReferences": [dict(owner_ref)]}
    for field in ("labels", "annotations"):
        if tmeta.get(field):
            meta[field] = dict(tmeta[field])
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    if name:
        meta["name"] = name
    elif generate_name:
        meta["generateName"] = generate_name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy_obj(template.get("spec") or {})}


def pod_condition(pod: dict, ctype: str) -> dict | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond
    return None


def pod_phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase", "")


def is_pod_ready(pod: dict) -> bool:
    cond = pod_condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def is_terminating(obj: dict) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def is_pod_active(pod: dict) -> bool:
    """controller.IsPodActive: not terminated and not being deleted."""
    return pod_phase(pod) not in ("Succeeded", "Failed") and not is_terminating(pod)


def available_in(pod: dict, min_ready_seconds: int, now: float | None = None) -> float | None:
    """podutil.IsPodAvailable as a delay: 0 when the pod is available now, the seconds until it will be
    (ready, but for less than minReadySeconds), None when it is not ready."""
    if not is_pod_ready(pod):
        return None
    if not min_ready_seconds:
        return 0.0
    cond = pod_condition(pod, "Ready") or {}
    since = cond.get("lastTransitionTime")
    if not since:
        return 0.0
    now = time.time() if now is None else now
    remaining = parse_rfc3339(since).timestamp() + min_ready_seconds - now
    return max(0.0, remaining)


def is_pod_available(pod: dict, min_ready_seconds: int, now: float | None = None) -> bool:
    return available_in(pod, min_ready_seconds, now) == 0.0


def timestamp(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        return parse_rfc3339(text).timestamp()
    except ValueError:
        return 0.0


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(text: str) -> str:
    """k8s.io/apimachinery/pkg/util/rand.SafeEncodeString."""
    return "".join(_SAFE_ALPHANUMS[ord(c) % len(_SAFE_ALPHANUMS)] for c in text)


def prune_nulls(value: Any) -> Any:
    """A JSON value as a Go struct sees it: a null field is the same as an absent one (kubectl rollout
    undo sends a template with `metadata.creationTimestamp: null`)."""
    if isinstance(value, dict):
        return {k: prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [prune_nulls(v) for v in value]
    return value


def compute_hash(template: dict, collision_count: int | None = None) -> str:
    """controller.ComputeHash: fnv32a of the object (canonical JSON here, spew upstream) plus the
    collision count, its decimal value safe-encoded."""
    data = orjson.dumps(prune_nulls(template), option=orjson.OPT_SORT_KEYS)
    if collision_count:
        data += collision_count.to_bytes(4, "little")
    return safe_encode(str(fnv32a(data)))


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        percent = int(text[:-1])
        exact = percent * total / 100
        return int(math.ceil(exact)) if round_up else int(math.floor(exact))
    return int(text)


_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")


def parent_and_ordinal(name: str) -> tuple[str, int]:
    m = _ORDINAL.match(name)
    if not m:
        return "", -1
    return m.group(1), int(m.group(2))


def drop_zero(status: dict, keep: tuple[str, ...] = ()) -> dict:
    """Go's omitempty on int32 status fields."""
    return {k: v for k, v in status.items() if k in keep or not (isinstance(v, int) and not isinstance(v, bool) and v == 0)}


# ----------------------------------------------------------------------------- the manager


class WorkloadControllers:
    """The Deployment, ReplicaSet and StatefulSet controllers of one cluster, in one worker thread."""

    def __init__(self, backend: Backend, *, record_events: bool = True, max_backoff: float = 10.0) -> None:
        from hcpsim.controllers.deployment import DeploymentController
        from hcpsim.controllers.replicaset import ReplicaSetController
        from hcpsim.controllers.statefulset import StatefulSetController

        self.backend = backend
        self.record_events = record_events
        self.max_backoff = max_backoff
        self._queue: WorkQueue[Key] = WorkQueue()
        self.syncs = 0  # successful syncs so far (for diagnostics)
        self.deployments = DeploymentController(self)
        self.replicasets = ReplicaSetController(self)
        self.statefulsets = StatefulSetController(self)
        self._syncers: dict[str, Callable[[str, str], float | None]] = {
            DEPLOYMENT: self.deployments.sync,
            REPLICASET: self.replicasets.sync,
            STATEFULSET: self.statefulsets.sync,
            CLAIMS_IN_NAMESPACE: self._claims_changed,
        }
        self._thread = threading.Thread(target=self._loop, name=f"workloads-{backend.name}", daemon=True)
        with backend.store.lock:
            self._unsubscribe = backend.store.subscribe(self._on_event)
            for key, kind in ((DEPLOYMENTS, DEPLOYMENT), (REPLICASETS, REPLICASET), (STATEFULSETS, STATEFULSET)):
                for obj in backend.store.items(key):
                    self.enqueue(kind, obj["metadata"]["namespace"], obj["metadata"]["name"])
        self._thread.start()

    # Lifecycle.

    def close(self) -> None:
        self._unsubscribe()
        self._queue.shut_down()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        _RUNNING.pop(id(self.backend), None)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> WorkloadControllers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The queue.

    def enqueue(self, kind: str, namespace: str, name: str) -> None:
        self._queue.add((kind, namespace, name))

    def enqueue_after(self, kind: str, namespace: str, name: str, delay: float) -> None:
        self._queue.add_after((kind, namespace, name), delay)

    def _loop(self) -> None:
        while True:
            key = self._queue.get()
            if key is None:
                return
            kind, namespace, name = key
            try:
                again = self._syncers[kind](namespace, name)
            except (ApiError, Retry) as e:
                self._backoff(key, e)
                continue
            except Exception:
                log.exception("workloads: sync of %s %s/%s failed", kind, namespace, name)
                self._backoff(key, None)
                continue
            self.syncs += 1
            self._queue.forget(key)
            if again is not None:
                self.enqueue_after(kind, namespace, name, again)

    def _backoff(self, key: Key, error: Exception | None) -> None:
        n = self._queue.failed(key)
        delay = min(0.005 * (2 ** n), self.max_backoff)
        if isinstance(error, ApiError) and error.code not in (403, 404, 409):
            log.warning("workloads: %s %s/%s: %s (retry in %.2fs)", key[0], key[1], key[2], error.message, delay)
        elif n >= 8:
            log.info("workloads: %s %s/%s still failing: %s", key[0], key[1], key[2], error)
        self.enqueue_after(*key, delay)

    # Store events arrive under the store lock: map them to keys and return.

    def _on_event(self, event: Event) -> None:
        key = event.key
        if key == DEPLOYMENTS:
            self.enqueue(DEPLOYMENT, event.namespace, event.name)
        elif key == REPLICASETS:
            self.enqueue(REPLICASET, event.namespace, event.name)
            for obj in (event.obj, event.old):
                ref = controller_of(obj) if obj else None
                if ref and ref.get("kind") == DEPLOYMENT:
                    self.enqueue(DEPLOYMENT, event.namespace, ref.get("name", ""))
        elif key == STATEFULSETS:
            self.enqueue(STATEFULSET, event.namespace, event.name)
        elif key == PODS:
            for obj in (event.obj, event.old):
                ref = controller_of(obj) if obj else None
                if ref is None:
                    continue
                if ref.get("kind") == REPLICASET:
                    self.enqueue(REPLICASET, event.namespace, ref.get("name", ""))
                    if event.type == "DELETED":
                        # Recreate waits for the old pods to be gone: tell the deployment.
                        rs = self.backend.store.get(REPLICASETS, event.namespace, ref.get("name", ""))
                        owner = controller_of(rs) if rs else None
                        if owner and owner.get("kind") == DEPLOYMENT:
                            self.enqueue(DEPLOYMENT, event.namespace, owner.get("name", ""))
                elif ref.get("kind") == STATEFULSET:
                    self.enqueue(STATEFULSET, event.namespace, ref.get("name", ""))
        elif key == PVCS:
            ref = controller_of(event.obj)
            if ref and ref.get("kind") == STATEFULSET:
                self.enqueue(STATEFULSET, event.namespace, ref.get("name", ""))
            if event.type == "DELETED":
                self.enqueue(CLAIMS_IN_NAMESPACE, event.namespace, "")

    def _claims_changed(self, namespace: str, _: str) -> None:
        for sts in self.backend.store.items(STATEFULSETS, namespace):
            if (sts.get("spec") or {}).get("volumeClaimTemplates"):
                self.enqueue(STATEFULSET, namespace, sts["metadata"]["name"])

    # Writing, for the controllers.

    def rt(self, key: tuple[str, str]):  # noqa: ANN201 - ResourceType
        return self.backend.type_for(*key)

    def record_event(self, obj: dict, kind: str, component: str, reason: str, message: str, etype: str = "Normal") -> None:
        """An Event about `obj`, as the controller's EventRecorder writes one (best effort)."""
        if not self.record_events:
            return
        meta = obj["metadata"]
        now = now_rfc3339()
        body = {
            "metadata": {"name": f"{meta['name']}.{time.time_ns():x}", "namespace": meta["namespace"]},
            "involvedObject": {"kind": kind, "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"],
                               "apiVersion": "apps/v1" if kind != "Pod" else "v1",
                               "resourceVersion": meta.get("resourceVersion", "")},
            "reason": reason, "message": message, "source": {"component": component},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1, "type": etype,
            "eventTime": None, "reportingComponent": component, "reportingInstance": "",
        }
        try:
            self.backend.create(self.rt(EVENTS), meta["namespace"], body)
        except ApiError:
            pass

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """For tests of the package itself: True once the queue is empty (delayed keys aside)."""
        return self._queue.idle.wait(timeout)


_RUNNING: dict[int, WorkloadControllers] = {}
_RUNNING_LOCK = threading.Lock()


def start_workload_controllers(cluster: Any) -> WorkloadControllers:
    """Start the workload controllers of a SimCluster (anything with a `.backend`), once per backend:
    a second call returns the controllers already running. Stop them with `.close()`."""
    backend = cluster.backend if hasattr(cluster, "backend") else cluster
    with _RUNNING_LOCK:
        running = _RUNNING.get(id(backend))
        if running is not None and running.backend is backend and running.running:
            return running
        controllers = WorkloadControllers(backend)
        _RUNNING[id(backend)] = controllers
        return controllers


def running_workload_controllers(cluster: Any) -> WorkloadControllers | None:
    """The workload controllers running for this cluster (or backend), if any."""
    backend = cluster.backend if hasattr(cluster, "backend") else cluster
    running = _RUNNING.get(id(backend))
    if running is not None and running.backend is backend and running.running:
        return running
    return None


__all__ = ["WorkloadControllers", "start_workload_controllers", "running_workload_controllers", "Closeable"]
