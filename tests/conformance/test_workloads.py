"""Workload controllers (Deployment, ReplicaSet, StatefulSet) as kube-controller-manager runs them,
driven and observed through the API only: the official client and kubectl.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Callable, Iterator

import pytest
from kubernetes import client, watch

from hcpsim.apiserver.backend import Backend
from hcpsim.controllers.workloads import WorkloadControllers, running_workload_controllers, start_workload_controllers

from .util import wait_for

pytestmark = pytest.mark.usefixtures("workload_controllers")


@pytest.fixture(scope="module")
def workload_controllers(cluster) -> Iterator[Any]:
    """The cluster's workload controllers: those SimCluster started, else ours for this module."""
    running = running_workload_controllers(cluster)
    if running is not None:
        yield running
        return
    controllers = start_workload_controllers(cluster)
    yield controllers
    controllers.close()


@pytest.fixture(scope="module")
def apps(api_client) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


@pytest.fixture(scope="module")
def core(api_client) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


# ----------------------------------------------------------------------------- helpers


def deployment(name: str, replicas: int = 3, image: str = "registry.example/web:1", **spec: Any) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "main", "image": image}]}}, **spec},
    }


def statefulset(name: str, replicas: int = 3, *, policy: str = "Parallel", image: str = "registry.example/etcd:1",
                claims: bool = True, **spec: Any) -> dict:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {"replicas": replicas, "serviceName": name, "podManagementPolicy": policy,
                 "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "main", "image": image,
                                                       "volumeMounts": [{"name": "data", "mountPath": "/var/lib/data"}]
                                                       if claims else []}]}},
                 **spec},
    }
    if claims:
        body["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
    return body


def raw(api_client, obj: Any) -> dict:
    return api_client.sanitize_for_serialization(obj)


def pods_of(core, namespace: str, selector: str, *, live: bool = True) -> list[Any]:
    items = core.list_namespaced_pod(namespace, label_selector=selector).items
    return [p for p in items if not (live and p.metadata.deletion_timestamp)]


def ready(pod: Any) -> bool:
    return pod.status.phase == "Running" and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def controller_ref(obj: Any) -> Any:
    return next(r for r in obj.metadata.owner_references or [] if r.controller)


def wait_deployment_complete(apps, namespace: str, name: str, timeout: float = 10) -> Any:
    def done() -> Any:
        d = apps.read_namespaced_deployment(name, namespace)
        s, want = d.status or client.V1DeploymentStatus(), d.spec.replicas
        ok = ((s.observed_generation or 0) >= d.metadata.generation and (s.updated_replicas or 0) == want
              and (s.replicas or 0) == want and (s.available_replicas or 0) == want and (s.ready_replicas or 0) == want)
        return d if ok else None

    return wait_for(done, f"deployment {name} complete", timeout)


def wait_sts_ready(apps, namespace: str, name: str, timeout: float = 10) -> Any:
    def done() -> Any:
        s = apps.read_namespaced_stateful_set(name, namespace)
        st, want = s.status or client.V1StatefulSetStatus(replicas=0), s.spec.replicas
        ok = ((st.observed_generation or 0) >= s.metadata.generation and (st.replicas or 0) == want
              and (st.ready_replicas or 0) == want and (st.updated_replicas or 0) == want
              and (st.available_replicas or 0) == want and st.current_revision == st.update_revision)
        return s if ok else None

    return wait_for(done, f"statefulset {name} ready", timeout)


class Recorder:
    """Watch a list function from a resourceVersion in a thread, recording (type, raw object)."""

    def __init__(self, fn: Callable[..., Any], namespace: str, resource_version: str, **kw: Any) -> None:
        self.events: list[tuple[str, dict]] = []
        self.error: BaseException | None = None
        self._w = watch.Watch()
        self._thread = threading.Thread(target=self._run, args=(fn, namespace, resource_version, kw), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[..., Any], namespace: str, rv: str, kw: dict) -> None:
        try:
            for event in self._w.stream(fn, namespace, resource_version=rv, timeout_seconds=30, **kw):
                self.events.append((event["type"], event["raw_object"]))
        except BaseException as e:  # noqa: BLE001 - reported to the test
            if not self._stopping:  # stop() shuts the socket down under the reading thread
                self.error = e

    _stopping = False

    def stop(self, until: Callable[[list[tuple[str, dict]]], bool] | None = None, what: str = "watch events") -> list[tuple[str, dict]]:
        """Stop once `until(events)` holds (the watch may lag behind what a read already shows)."""
        if until is not None:
            wait_for(lambda: self.error is not None or until(list(self.events)), what)
        self._stopping = True
        self._w.stop()
        self._thread.join(5)
        if self.error is not None:
            raise self.error
        return list(self.events)


def latest(events: list[tuple[str, dict]]) -> dict[str, dict]:
    """The last state of each object in a list of watch events."""
    return {obj["metadata"]["name"]: obj for _, obj in events}


def list_rv(fn: Callable[..., Any], namespace: str) -> str:
    return fn(namespace).metadata.resource_version


# ----------------------------------------------------------------------------- Deployment


def test_deployment_creates_ready_pods_with_owners_and_labels(apps, core, namespace):
    started = time.monotonic()
    apps.create_namespaced_deployment(namespace, deployment("web"))
    d = wait_deployment_complete(apps, namespace, "web", timeout=5)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"3 replicas took {elapsed:.2f}s"

    rs_list = apps.list_namespaced_replica_set(namespace).items
    assert len(rs_list) == 1
    rs = rs_list[0]
    pod_hash = rs.metadata.labels["pod-template-hash"]
    assert rs.metadata.name == f"web-{pod_hash}" and re.fullmatch(r"[bcdfghjklmnpqrstvwxz2456789]{1,10}", pod_hash)
    ref = controller_ref(rs)
    assert (ref.kind, ref.name, ref.uid, ref.api_version, ref.block_owner_deletion) == (
        "Deployment", "web", d.metadata.uid, "apps/v1", True)
    assert rs.spec.selector.match_labels == {"app": "web", "pod-template-hash": pod_hash}
    assert rs.spec.template.metadata.labels == {"app": "web", "pod-template-hash": pod_hash}
    assert rs.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert rs.metadata.annotations["deployment.kubernetes.io/desired-replicas"] == "3"
    assert rs.metadata.annotations["deployment.kubernetes.io/max-replicas"] == "4"  # 3 + 25% surge rounded up
    assert (rs.status.replicas, rs.status.ready_replicas, rs.status.available_replicas,
            rs.status.fully_labeled_replicas, rs.status.observed_generation) == (3, 3, 3, 3, 1)

    pods = pods_of(core, namespace, "app=web")
    assert len(pods) == 3 and all(ready(p) for p in pods)
    for pod in pods:
        assert re.fullmatch(rf"web-{pod_hash}-[a-z0-9]{{5}}", pod.metadata.name)
        ref = controller_ref(pod)
        assert (ref.kind, ref.name, ref.uid, ref.block_owner_deletion) == ("ReplicaSet", rs.metadata.name, rs.metadata.uid, True)
        assert pod.metadata.labels == {"app": "web", "pod-template-hash": pod_hash}

    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    s = d.status
    assert (s.observed_generation, s.replicas, s.updated_replicas, s.ready_replicas, s.available_replicas,
            s.unavailable_replicas) == (1, 3, 3, 3, 3, None)
    conditions = [(c.type, c.status, c.reason) for c in s.conditions]
    assert conditions == [("Available", "True", "MinimumReplicasAvailable"),
                          ("Progressing", "True", "NewReplicaSetAvailable")]
    assert s.conditions[1].message == f'ReplicaSet "{rs.metadata.name}" has successfully progressed.'


def test_scale_with_kubectl_and_the_scale_subresource(apps, core, kubectl, namespace):
    apps.create_namespaced_deployment(namespace, deployment("web"))
    wait_deployment_complete(apps, namespace, "web")

    kubectl.run("-n", namespace, "scale", "deployment/web", "--replicas=0")
    wait_for(lambda: not pods_of(core, namespace, "app=web", live=False), "pods deleted")
    d = wait_deployment_complete(apps, namespace, "web")
    assert d.spec.replicas == 0 and not d.status.replicas and not d.status.available_replicas
    [rs] = apps.list_namespaced_replica_set(namespace).items
    assert rs.spec.replicas == 0 and rs.metadata.annotations["deployment.kubernetes.io/desired-replicas"] == "0"
    assert [(c.type, c.status) for c in d.status.conditions] == [("Available", "True"), ("Progressing", "True")]

    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 2}})
    d = wait_deployment_complete(apps, namespace, "web")
    assert (d.status.replicas, d.status.ready_replicas) == (2, 2)
    pods = pods_of(core, namespace, "app=web")
    assert len(pods) == 2 and all(ready(p) for p in pods)
    assert apps.list_namespaced_replica_set(namespace).items[0].metadata.name == rs.metadata.name  # same RS
    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert (scale.spec.replicas, scale.status.replicas) == (2, 2)
    assert scale.status.selector == "app=web"


def test_rolling_update_on_image_change(apps, core, kubectl, namespace, api_client):
    body = deployment("web", replicas=3, strategy={"type": "RollingUpdate",
                                                   "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    apps.create_namespaced_deployment(namespace, body)
    wait_deployment_complete(apps, namespace, "web")
    [old_rs] = apps.list_namespaced_replica_set(namespace).items

    recorder = Recorder(apps.list_namespaced_replica_set, namespace, list_rv(apps.list_namespaced_replica_set, namespace))
    kubectl.run("-n", namespace, "set", "image", "deployment/web", "main=registry.example/web:2")
    out = kubectl.run("-n", namespace, "rollout", "status", "deployment/web", "--timeout=20s").stdout.decode()
    assert 'deployment "web" successfully rolled out' in out

    def settled(events: list[tuple[str, dict]]) -> bool:
        last = latest(events)
        old = last.get(old_rs.metadata.name)
        return (old is not None and old["spec"]["replicas"] == 0 and not (old.get("status") or {}).get("replicas")
                and any((o.get("status") or {}).get("availableReplicas") == 3 for n, o in last.items() if n != old_rs.metadata.name))

    events = recorder.stop(settled)

    rs_list = {rs.metadata.name: rs for rs in apps.list_namespaced_replica_set(namespace).items}
    assert len(rs_list) == 2
    old = rs_list[old_rs.metadata.name]
    [new] = [rs for name, rs in rs_list.items() if name != old_rs.metadata.name]
    assert old.spec.replicas == 0 and not old.status.replicas  # scaled to 0 and kept
    assert new.spec.replicas == 3 and new.status.available_replicas == 3
    assert (old.metadata.annotations["deployment.kubernetes.io/revision"],
            new.metadata.annotations["deployment.kubernetes.io/revision"]) == ("1", "2")
    pods = pods_of(core, namespace, "app=web")
    assert len(pods) == 3 and {p.spec.containers[0].image for p in pods} == {"registry.example/web:2"}
    assert {p.metadata.labels["pod-template-hash"] for p in pods} == {new.metadata.labels["pod-template-hash"]}
    d = apps.read_namespaced_deployment("web", namespace)
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert [(c.type, c.reason) for c in d.status.conditions] == [("Available", "MinimumReplicasAvailable"),
                                                                 ("Progressing", "NewReplicaSetAvailable")]

    # maxSurge 1 / maxUnavailable 0, at every step of the rollout.
    state: dict[str, dict] = {old_rs.metadata.name: raw(api_client, old_rs)}
    saw_new = False
    for _, obj in events:
        state[obj["metadata"]["name"]] = obj
        saw_new = saw_new or obj["metadata"]["name"] != old_rs.metadata.name
        total = sum(o["spec"]["replicas"] for o in state.values())
        available = sum((o.get("status") or {}).get("availableReplicas", 0) for o in state.values())
        assert total <= 4, f"surge exceeded: {total}"
        assert available >= 3, f"unavailable pods during the rollout: {available} available"
    assert saw_new

    # Rolling back brings the first ReplicaSet back as revision 3 (no third ReplicaSet).
    kubectl.run("-n", namespace, "rollout", "undo", "deployment/web")
    kubectl.run("-n", namespace, "rollout", "status", "deployment/web", "--timeout=20s")
    d = wait_deployment_complete(apps, namespace, "web")
    rs_list = {rs.metadata.name: rs for rs in apps.list_namespaced_replica_set(namespace).items}
    assert sorted(rs_list) == sorted([old_rs.metadata.name, new.metadata.name])
    back = rs_list[old_rs.metadata.name]
    assert back.spec.replicas == 3 and rs_list[new.metadata.name].spec.replicas == 0
    assert back.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    assert back.metadata.annotations["deployment.kubernetes.io/revision-history"] == "1"
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "3"


def test_recreate_scales_old_down_before_the_new_comes_up(apps, core, namespace):
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=2, strategy={"type": "Recreate"}))
    wait_deployment_complete(apps, namespace, "web")
    [old_rs] = apps.list_namespaced_replica_set(namespace).items
    rv = list_rv(core.list_namespaced_pod, namespace)
    recorder = Recorder(core.list_namespaced_pod, namespace, rv)
    apps.patch_namespaced_deployment("web", namespace, {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "registry.example/web:2"}]}}}})
    wait_for(lambda: len(apps.list_namespaced_replica_set(namespace).items) == 2, "new replica set")
    d = wait_deployment_complete(apps, namespace, "web")
    assert d.status.updated_replicas == 2
    old_hash = old_rs.metadata.labels["pod-template-hash"]
    events = recorder.stop(lambda ev: sum(1 for t, o in ev if t == "ADDED"
                                          and o["metadata"]["labels"]["pod-template-hash"] != old_hash) >= 2)
    first_new = next(i for i, (t, o) in enumerate(events) if t == "ADDED" and o["metadata"]["labels"]["pod-template-hash"] != old_hash)
    old_gone = [i for i, (t, o) in enumerate(events) if t == "DELETED" and o["metadata"]["labels"]["pod-template-hash"] == old_hash]
    assert len(old_gone) == 2 and max(old_gone) < first_new, "a new pod was created while old ones still existed"


def test_deleted_pod_is_replaced(apps, core, namespace):
    apps.create_namespaced_deployment(namespace, deployment("web"))
    wait_deployment_complete(apps, namespace, "web")
    victim = pods_of(core, namespace, "app=web")[0]
    core.delete_namespaced_pod(victim.metadata.name, namespace)

    def replaced() -> bool:
        pods = pods_of(core, namespace, "app=web")
        return len(pods) == 3 and victim.metadata.name not in {p.metadata.name for p in pods} and all(ready(p) for p in pods)

    wait_for(replaced, "a replacement pod")
    wait_deployment_complete(apps, namespace, "web")


def test_deleting_a_deployment_removes_its_replicasets_and_pods(apps, core, namespace):
    apps.create_namespaced_deployment(namespace, deployment("web"))
    wait_deployment_complete(apps, namespace, "web")
    apps.delete_namespaced_deployment("web", namespace, propagation_policy="Background")
    wait_for(lambda: not apps.list_namespaced_replica_set(namespace).items, "replica sets gone")
    wait_for(lambda: not core.list_namespaced_pod(namespace).items, "pods gone")
    time.sleep(0.1)
    assert not core.list_namespaced_pod(namespace).items, "the controllers brought pods back"


def test_paused_deployment_does_not_roll_out(apps, core, namespace):
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=2))
    wait_deployment_complete(apps, namespace, "web")
    apps.patch_namespaced_deployment("web", namespace, {"spec": {"paused": True}})
    wait_for(lambda: any(c.reason == "DeploymentPaused"
                         for c in apps.read_namespaced_deployment("web", namespace).status.conditions or []), "paused condition")
    apps.patch_namespaced_deployment("web", namespace, {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "registry.example/web:2"}]}}}})
    time.sleep(0.2)
    assert len(apps.list_namespaced_replica_set(namespace).items) == 1
    apps.patch_namespaced_deployment("web", namespace, {"spec": {"paused": False}})
    wait_for(lambda: len(apps.list_namespaced_replica_set(namespace).items) == 2, "rollout after resume")
    wait_deployment_complete(apps, namespace, "web")


# ----------------------------------------------------------------------------- ReplicaSet


def test_replicaset_alone_and_orphans_left_alone(apps, core, namespace):
    orphan = core.create_namespaced_pod(namespace, {"metadata": {"name": "orphan", "labels": {"app": "solo"}},
                                                    "spec": {"containers": [{"name": "main", "image": "x:1"}]}})
    rs = apps.create_namespaced_replica_set(namespace, {
        "metadata": {"name": "solo"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "solo"}},
                 "template": {"metadata": {"labels": {"app": "solo"}}, "spec": {"containers": [{"name": "main", "image": "x:1"}]}}}})
    wait_for(lambda: ((apps.read_namespaced_replica_set_status("solo", namespace).status
                       or client.V1ReplicaSetStatus(replicas=0)).ready_replicas or 0) == 2, "2 ready")
    owned = [p for p in pods_of(core, namespace, "app=solo") if p.metadata.owner_references]
    assert len(owned) == 2 and all(controller_ref(p).uid == rs.metadata.uid for p in owned)
    assert all(p.metadata.name.startswith("solo-") for p in owned)
    assert core.read_namespaced_pod("orphan", namespace).metadata.owner_references is None
    assert orphan.metadata.uid == core.read_namespaced_pod("orphan", namespace).metadata.uid

    apps.patch_namespaced_replica_set_scale("solo", namespace, {"spec": {"replicas": 1}})
    wait_for(lambda: len([p for p in pods_of(core, namespace, "app=solo") if p.metadata.owner_references]) == 1, "scaled to 1")
    wait_for(lambda: apps.read_namespaced_replica_set("solo", namespace).status.replicas == 1, "status replicas 1")


# ----------------------------------------------------------------------------- StatefulSet


def test_statefulset_parallel_with_claims(apps, core, namespace):
    apps.create_namespaced_stateful_set(namespace, statefulset("etcd"))
    s = wait_sts_ready(apps, namespace, "etcd")
    st = s.status
    assert (st.replicas, st.ready_replicas, st.current_replicas, st.updated_replicas, st.available_replicas,
            st.observed_generation) == (3, 3, 3, 3, 3, 1)
    assert st.current_revision == st.update_revision and st.update_revision.startswith("etcd-")

    pods = sorted(pods_of(core, namespace, "app=etcd"), key=lambda p: p.metadata.name)
    assert [p.metadata.name for p in pods] == ["etcd-0", "etcd-1", "etcd-2"]
    for i, pod in enumerate(pods):
        labels = pod.metadata.labels
        assert labels["statefulset.kubernetes.io/pod-name"] == f"etcd-{i}"
        assert labels["apps.kubernetes.io/pod-index"] == str(i)
        assert labels["controller-revision-hash"] == st.update_revision
        assert (pod.spec.hostname, pod.spec.subdomain) == (f"etcd-{i}", "etcd")
        ref = controller_ref(pod)
        assert (ref.kind, ref.name, ref.uid) == ("StatefulSet", "etcd", s.metadata.uid)
        [volume] = [v for v in pod.spec.volumes if v.name == "data"]
        assert volume.persistent_volume_claim.claim_name == f"data-etcd-{i}"
        assert ready(pod)

    def claims() -> dict[str, Any]:
        return {c.metadata.name: c for c in core.list_namespaced_persistent_volume_claim(namespace).items}

    wait_for(lambda: [c.status.phase for c in claims().values()] == ["Bound"] * 3, "claims bound")
    before = claims()
    assert sorted(before) == ["data-etcd-0", "data-etcd-1", "data-etcd-2"]
    assert all(c.metadata.labels == {"app": "etcd"} and not c.metadata.owner_references for c in before.values())

    # Scale to 0: pods go, claims stay (Retain).
    apps.patch_namespaced_stateful_set_scale("etcd", namespace, {"spec": {"replicas": 0}})
    wait_for(lambda: not core.list_namespaced_pod(namespace, label_selector="app=etcd").items, "pods deleted")
    wait_for(lambda: apps.read_namespaced_stateful_set("etcd", namespace).status.replicas == 0, "status 0")
    assert {n: c.metadata.uid for n, c in claims().items()} == {n: c.metadata.uid for n, c in before.items()}

    # Scale back: the same claims.
    apps.patch_namespaced_stateful_set_scale("etcd", namespace, {"spec": {"replicas": 3}})
    wait_sts_ready(apps, namespace, "etcd")
    assert {n: c.metadata.uid for n, c in claims().items()} == {n: c.metadata.uid for n, c in before.items()}

    # A deleted pod comes back with the same name and claim.
    old_pod = core.read_namespaced_pod("etcd-0", namespace)
    core.delete_namespaced_pod("etcd-0", namespace)
    wait_for(lambda: (p := _maybe_pod(core, namespace, "etcd-0")) is not None and p.metadata.uid != old_pod.metadata.uid
             and ready(p), "etcd-0 recreated")
    assert claims()["data-etcd-0"].metadata.uid == before["data-etcd-0"].metadata.uid

    # Claim and pod deleted: both are recreated (a new claim).
    core.delete_namespaced_persistent_volume_claim("data-etcd-1", namespace)
    old_pod = core.read_namespaced_pod("etcd-1", namespace)
    core.delete_namespaced_pod("etcd-1", namespace)

    def recreated() -> bool:
        pod = _maybe_pod(core, namespace, "etcd-1")
        claim = claims().get("data-etcd-1")
        return (pod is not None and pod.metadata.uid != old_pod.metadata.uid and ready(pod) and claim is not None
                and claim.metadata.uid != before["data-etcd-1"].metadata.uid and claim.status.phase == "Bound")

    wait_for(recreated, "etcd-1 and data-etcd-1 recreated")
    wait_sts_ready(apps, namespace, "etcd")


def _maybe_pod(core, namespace: str, name: str) -> Any:
    try:
        pod = core.read_namespaced_pod(name, namespace)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise
    return None if pod.metadata.deletion_timestamp else pod


def test_statefulset_ordered_ready(apps, core, namespace):
    recorder = Recorder(core.list_namespaced_pod, namespace, list_rv(core.list_namespaced_pod, namespace))
    apps.create_namespaced_stateful_set(namespace, statefulset("zk", policy="OrderedReady", claims=False))
    wait_sts_ready(apps, namespace, "zk")
    apps.patch_namespaced_stateful_set_scale("zk", namespace, {"spec": {"replicas": 0}})
    wait_for(lambda: not core.list_namespaced_pod(namespace).items, "pods deleted")
    events = recorder.stop(lambda ev: ("DELETED", "zk-0") in [(t, o["metadata"]["name"]) for t, o in ev])

    ready_seen: set[str] = set()
    created: list[str] = []
    for etype, obj in events:
        name = obj["metadata"]["name"]
        if etype == "ADDED":
            ordinal = int(name.rsplit("-", 1)[1])
            assert all(f"zk-{k}" in ready_seen for k in range(ordinal)), f"{name} created before its predecessors were Ready"
            created.append(name)
        conds = (obj.get("status") or {}).get("conditions") or []
        if (obj.get("status") or {}).get("phase") == "Running" and any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
            ready_seen.add(name)
    assert created == ["zk-0", "zk-1", "zk-2"]

    # Scale down: highest ordinal first, each one gone before the next goes.
    terminating: list[str] = []
    gone: list[str] = []
    for etype, obj in events:
        name = obj["metadata"]["name"]
        if (etype == "DELETED" or obj["metadata"].get("deletionTimestamp")) and name not in terminating:
            assert len(gone) == len(terminating), f"{name} deleted while {terminating[-1]} was still terminating"
            terminating.append(name)
        if etype == "DELETED":
            gone.append(name)
    assert terminating == ["zk-2", "zk-1", "zk-0"]


def test_statefulset_rolling_update_from_the_highest_ordinal(apps, core, kubectl, namespace):
    apps.create_namespaced_stateful_set(namespace, statefulset("db", claims=False))
    s = wait_sts_ready(apps, namespace, "db")
    first_revision = s.status.current_revision
    recorder = Recorder(core.list_namespaced_pod, namespace, list_rv(core.list_namespaced_pod, namespace))
    apps.patch_namespaced_stateful_set("db", namespace, {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "registry.example/etcd:2"}]}}}})
    out = kubectl.run("-n", namespace, "rollout", "status", "statefulset/db", "--timeout=20s").stdout.decode()
    # The API defaults rollingUpdate.partition to 0, so kubectl reports a partitioned roll out (as upstream).
    assert "roll out complete: 3 new pods have been updated" in out or "rolling update complete" in out
    s = wait_sts_ready(apps, namespace, "db")
    events = recorder.stop(lambda ev: ("DELETED", "db-0") in [(t, o["metadata"]["name"]) for t, o in ev])
    assert s.status.update_revision != first_revision and s.status.current_revision == s.status.update_revision
    assert s.status.observed_generation == 2
    pods = pods_of(core, namespace, "app=db")
    assert {p.metadata.labels["controller-revision-hash"] for p in pods} == {s.status.update_revision}
    assert {p.spec.containers[0].image for p in pods} == {"registry.example/etcd:2"}
    order: list[str] = []
    for etype, obj in events:
        if etype == "DELETED" and obj["metadata"]["name"] not in order:
            order.append(obj["metadata"]["name"])
    assert order == ["db-2", "db-1", "db-0"]


def test_statefulset_claim_retention_delete(apps, core, namespace):
    body = statefulset("kv", replicas=2, persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete", "whenScaled": "Delete"})
    s = apps.create_namespaced_stateful_set(namespace, body)
    wait_sts_ready(apps, namespace, "kv")

    def claims() -> dict[str, Any]:
        return {c.metadata.name: c for c in core.list_namespaced_persistent_volume_claim(namespace).items
                if not c.metadata.deletion_timestamp}

    def owners(claim: Any) -> list[tuple[str, str, bool]]:
        return [(r.kind, r.name, bool(r.controller)) for r in claim.metadata.owner_references or []]

    wait_for(lambda: all(owners(c) == [("StatefulSet", "kv", True)] for c in claims().values()) and len(claims()) == 2,
             "claims owned by the set")
    assert controller_ref(claims()["data-kv-0"]).uid == s.metadata.uid

    apps.patch_namespaced_stateful_set_scale("kv", namespace, {"spec": {"replicas": 1}})
    wait_for(lambda: sorted(claims()) == ["data-kv-0"], "the scaled-down claim deleted")
    wait_sts_ready(apps, namespace, "kv")

    apps.delete_namespaced_stateful_set("kv", namespace, propagation_policy="Background")
    wait_for(lambda: not claims() and not core.list_namespaced_pod(namespace).items, "claims and pods deleted with the set")


# ----------------------------------------------------------------------------- lifecycle


def test_controllers_start_once_and_stop_cleanly():
    backend = Backend("lifecycle")
    controllers = start_workload_controllers(backend)
    assert start_workload_controllers(backend) is controllers
    thread_names = {t.name for t in threading.enumerate()}
    assert "workloads-lifecycle" in thread_names
    controllers.close()
    assert not controllers.running
    assert "workloads-lifecycle" not in {t.name for t in threading.enumerate()}
    assert running_workload_controllers(backend) is None
    assert isinstance(controllers, WorkloadControllers)
