"""Each hosted cluster's own API server (the kube-apiserver that runs in its control-plane namespace).

One `HostedApis` per world, shared by the management clusters: a hosted API is keyed by the
HostedCluster's `spec.clusterID`, so it survives a move of the HostedCluster between management
clusters (backup/restore keeps the clusterID, as a real migration keeps the etcd data). It answers
only while a management cluster serves it (`set_serving`, driven by the control-plane-operator
from the kube-apiserver Deployment's ready replicas) and, for an API published through external
DNS, only through the management cluster its DNS record points at (`set_routing`); otherwise every
request gets 503 ServiceUnavailable. The hosted world keeps running meanwhile: pods are processes of
the hosted cluster's kubelet and do not depend on the API.

Inside each hosted cluster:
- `ClusterVersion` (config.openshift.io/v1, cluster-scoped, object `version`), a CRD of our own (on a
  real cluster it is built into the openshift-apiserver/CVO manifests, not in ../shared/crds);
  `HostedApi.set_cluster_version` writes its status as the CVO does.
- `openshift-ovn-kubernetes/ovnkube-node-*`: one pod per Node (label app=ovnkube-node), maintained
  here as the DaemonSet controller would (there is no DaemonSet kind in the simulator).
- `demo-workload/hello`: a Deployment with 2 replicas; its pods come from the workload controllers
  (hcpsim.controllers.workloads) that the world starts in every SimCluster.
"""

from __future__ import annotations

import base64
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import yaml

from hcpsim.apiserver import names
from hcpsim.apiserver.backend import DeleteOptions
from hcpsim.apiserver.clock import now_rfc3339
from hcpsim.apiserver.errors import ApiError
from hcpsim.apiserver.faults import FaultRule, Faults
from hcpsim.apiserver.store import Event
from hcpsim.controllers.externaldns import ZoneView

if TYPE_CHECKING:
    from hcpsim.cluster import SimCluster, Simulator

log = logging.getLogger("hcpsim.hosted")

NODES = ("", "nodes")
PODS = ("", "pods")
NAMESPACES = ("", "namespaces")
DEPLOYMENTS = ("apps", "deployments")
CLUSTERVERSIONS = ("config.openshift.io", "clusterversions")

OVN_NAMESPACE = "openshift-ovn-kubernetes"
OVN_APP = "ovnkube-node"
OVN_IMAGE = "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:ovn-kubernetes"
WORKLOAD_NAMESPACE = "demo-workload"
WORKLOAD_NAME = "hello"
WORKLOAD_IMAGE = "quay.io/openshift/origin-hello-openshift:latest"


def cluster_version_crd() -> dict[str, Any]:
    """config.openshift.io/v1 ClusterVersion, shaped like openshift/api's manifest (printer columns
    as `oc get clusterversion` shows them)."""
    open_obj: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "clusterversions.config.openshift.io",
                     "annotations": {"include.release.openshift.io/self-managed-high-availability": "true"},
                     "labels": {"hcpsim.openshift.io/builtin-definition": "true"}},
        "spec": {
            "group": "config.openshift.io",
            "scope": "Cluster",
            "names": {"kind": "ClusterVersion", "listKind": "ClusterVersionList", "plural": "clusterversions",
                      "singular": "clusterversion"},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": dict(open_obj, properties={"clusterID": {"type": "string"}}, required=["clusterID"]),
                    "status": open_obj}, "required": ["spec"]}},
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Version", "type": "string", "jsonPath": ".status.history[?(@.state==\"Completed\")].version"},
                    {"name": "Available", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Available\")].status"},
                    {"name": "Progressing", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Progressing\")].status"},
                    {"name": "Since", "type": "date", "jsonPath": ".status.conditions[?(@.type==\"Progressing\")].lastTransitionTime"},
                    {"name": "Status", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Progressing\")].message"},
                ],
            }],
        },
    }


class _ServingGate(Faults):
    """The hosted API's fault injector: while no management cluster serves it, every request fails
    with 503; otherwise injected faults (tests) apply as usual."""

    def __init__(self, api: HostedApi) -> None:
        super().__init__()
        self._api = api

    def take(self, method: str, path: str) -> FaultRule | None:
        if not self._api.serving:
            return FaultRule(1, 503)
        return super().take(method, path)


class DnsRouting:
    """Where a published API hostname leads: the zone's record for it names a router's canonical
    hostname (external-dns's CNAME), and each router belongs to one management cluster."""

    def __init__(self, view: ZoneView, routers: dict[str, str]) -> None:
        self.view = view
        self.routers = {k.rstrip(".").lower(): v for k, v in routers.items()}

    def managed(self, hostname: str) -> bool:
        return self.view.managed(hostname)

    def server_of(self, hostname: str) -> str | None:
        for target in self.view.resolve(hostname) or []:
            management = self.routers.get(target.rstrip(".").lower())
            if management is not None:
                return management
        return None


class HostedApi:
    """One hosted cluster's API server and the few things inside it the world maintains itself.

    Reachability: the API answers through the management cluster that clients reach. When its
    hostname is in a zone the world's external-dns manages (`HostedApis.set_routing`), that is the
    management cluster the hostname's record points at, and only if its kube-apiserver is ready
    there: a record still pointing at a management cluster whose control plane is scaled down (or a
    record missing) leaves the API unreachable even when another management cluster serves it. An
    API published otherwise answers while any management cluster serves it.

    OVN: each ovnkube-node pod connects, when it starts, to the control plane the API is reached
    through (or to the first one reachable after it started) and stays with it. When the API is
    then reached through another management cluster (the control plane moved), new pods on that
    node get no network (ContainerCreating, FailedCreatePodSandBox) until the ovnkube-node pod is
    restarted; running pods keep running. This is the failure the disaster-recovery procedure's
    last step (delete the OVN pods) and its troubleshooting page describe.
    """

    def __init__(self, owner: HostedApis, cluster_id: str, name: str, cluster: SimCluster) -> None:
        self.cluster_id = cluster_id
        self.name = name
        self.cluster = cluster
        self._owner = owner
        self._lock = threading.Lock()
        self._servers: set[str] = set()
        self.hostname: str | None = None
        self._via: str | None = None
        # ovnkube-node pod uid -> the management cluster it is connected to (None: not yet).
        self._ovn_links: dict[str, str | None] = {}
        # monotonic time since when nobody serves (None while served); starts unserved.
        self.unserved_since: float | None = time.monotonic()
        self.served_since: float | None = None
        gate = _ServingGate(self)
        cluster.faults = gate
        cluster.app.faults = gate
        cluster.kubelet.sandbox_gate = self._sandbox_problem
        self._queue: queue.Queue[str] = queue.Queue()
        self._stopping = threading.Event()
        self._seed()
        self._unsubscribe = cluster.backend.store.subscribe(self._on_event)
        self._thread = threading.Thread(target=self._loop, name=f"hosted-{name}", daemon=True)
        self._thread.start()
        self._queue.put("ovn")

    # Serving.

    @property
    def serving(self) -> bool:
        """Whether requests reach a ready kube-apiserver."""
        return self._via is not None

    @property
    def reached_via(self) -> str | None:
        """The management cluster whose control plane answers (None while unreachable)."""
        return self._via

    @property
    def servers(self) -> set[str]:
        """Management clusters whose kube-apiserver for this cluster is ready (reachable or not)."""
        with self._lock:
            return set(self._servers)

    def set_hostname(self, hostname: str | None) -> None:
        if hostname != self.hostname:
            self.hostname = hostname
            self._owner._changed(self)

    def _set_serving(self, management_cluster: str, serving: bool) -> bool:
        """Returns True when the hosted API became reachable, unreachable, or reached elsewhere."""
        with self._lock:
            if serving:
                self._servers.add(management_cluster)
            else:
                self._servers.discard(management_cluster)
        return self._recompute()

    def _recompute(self) -> bool:
        routing = self._owner.routing
        with self._lock:
            servers = self._servers
            if not servers:
                via = None
            elif routing is None or not self.hostname or not routing.managed(self.hostname):
                via = self._via if self._via in servers else min(servers)
            else:
                via = routing.server_of(self.hostname)
                via = via if via in servers else None
            if via == self._via:
                return False
            if (via is None) != (self._via is None):
                now = time.monotonic()
                self.unserved_since = None if via is not None else now
                self.served_since = now if via is not None else None
            self._via = via
            if via is not None:
                # ovnkube-node pods that started while the API was away connect now.
                for uid, link in self._ovn_links.items():
                    if link is None:
                        self._ovn_links[uid] = via
        return True

    def ovn_connections(self) -> dict[str, str | None]:
        """Node name -> the management cluster its ovnkube-node pod is connected to."""
        out: dict[str, str | None] = {}
        with self._lock:
            links = dict(self._ovn_links)
        for pod in self.cluster.backend.store.items(PODS, OVN_NAMESPACE):
            if pod["metadata"]["uid"] in links and not pod["metadata"].get("deletionTimestamp"):
                out[(pod.get("spec") or {}).get("nodeName", "")] = links[pod["metadata"]["uid"]]
        return out

    def _sandbox_problem(self, pod: dict) -> str | None:
        """Why the pod network cannot be set up for `pod` now (None: it can)."""
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or (pod.get("spec") or {}).get("hostNetwork"):
            return None
        via = self._via
        for ovn in self.cluster.backend.store.items(PODS, OVN_NAMESPACE):
            if (ovn.get("spec") or {}).get("nodeName") != node or ovn["metadata"].get("deletionTimestamp"):
                continue
            with self._lock:
                link = self._ovn_links.get(ovn["metadata"]["uid"])
            if link is not None and via is not None and link != via:
                meta = pod["metadata"]
                return (f"Failed to create pod sandbox: error adding container to network \"ovn-kubernetes\": CNI request "
                        f"failed with status 400: '[{meta.get('namespace')}/{meta.get('name')}] failed to get pod annotation: "
                        f"timed out waiting for annotations: context deadline exceeded' (ovnkube-node on {node} is still "
                        f"connected to the control plane on {link})")
        return None

    def unserved_for(self) -> float:
        """Seconds since the API stopped answering (0 while it answers)."""
        since = self.unserved_since
        return 0.0 if since is None else time.monotonic() - since

    # What the lead's controller reads and writes.

    def admin_kubeconfig(self, server: str | None = None) -> str:
        """The `kubeconfig` key of the `<name>-admin-kubeconfig` secret (HyperShift names: cluster
        `cluster`, user and context `admin`)."""
        ca = base64.b64encode(self._owner.simulator.ca.cert_pem).decode()
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "cluster", "cluster": {"server": server or self.cluster.url,
                                                         "certificate-authority-data": ca}}],
            "contexts": [{"name": "admin", "context": {"cluster": "cluster", "user": "admin", "namespace": "default"}}],
            "current-context": "admin",
            "preferences": {},
            "users": [{"name": "admin", "user": {"token": self.cluster.token}}],
        }
        return yaml.safe_dump(doc, sort_keys=False)

    def set_cluster_version(self, desired: dict, history: list[dict], conditions: list[dict] | None = None) -> None:
        """Write ClusterVersion `version`'s status as the CVO does. `desired` is {version, image[, url,
        channels]}; `history` newest first ({state: Completed|Partial, version, image, startedTime,
        completionTime, verified}); `conditions` default to what the history implies."""
        backend = self.cluster.backend
        rt = backend.type_for(*CLUSTERVERSIONS)
        current = backend.store.get(CLUSTERVERSIONS, "", "version")
        if current is None:
            self._ensure_cluster_version()
            current = backend.store.get(CLUSTERVERSIONS, "", "version")
        old_conditions = {c["type"]: c for c in ((current or {}).get("status") or {}).get("conditions") or []}
        now = now_rfc3339()
        history = [dict(h) for h in history]
        for h in history:
            h.setdefault("verified", False)
            h.setdefault("startedTime", now)
            h.setdefault("completionTime", now if h.get("state") == "Completed" else None)
        if conditions is None:
            conditions = _default_cv_conditions(desired, history)
            # Conditions other components set (Upgradeable from the cluster's operators) survive a
            # version update, as they do with the real CVO.
            derived = {c["type"] for c in conditions}
            conditions += [dict(c) for t, c in old_conditions.items() if t not in derived]
        out = []
        for c in conditions:
            c = dict(c)
            previous = old_conditions.get(c["type"])
            if "lastTransitionTime" not in c:
                c["lastTransitionTime"] = (previous["lastTransitionTime"] if previous and previous.get("status") == c.get("status")
                                           else now)
            out.append(c)
        status = {
            "desired": dict(desired),
            "history": history,
            "conditions": out,
            "observedGeneration": (current or {}).get("metadata", {}).get("generation", 1),
            "versionHash": base64.urlsafe_b64encode(str(desired.get("version", "")).encode()).decode()[:11],
            "availableUpdates": None,
            "capabilities": {"enabledCapabilities": ["Build", "Console", "DeploymentConfig", "ImageRegistry", "Ingress",
                                                     "Insights", "MachineAPI", "NodeTuning", "OperatorLifecycleManager",
                                                     "Storage", "baremetal", "marketplace", "openshift-samples"],
                             "knownCapabilities": []},
        }
        backend.patch(rt, None, "version", "application/merge-patch+json", {"status": status}, subresource="status")

    def close(self) -> None:
        self._stopping.set()
        self._unsubscribe()
        self._queue.put("stop")
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    # Seeding the hosted cluster.

    def _seed(self) -> None:
        backend = self.cluster.backend
        backend.install_crd(cluster_version_crd())
        self._ensure_cluster_version()
        ns_rt = backend.type_for(*NAMESPACES)
        for ns, labels in ((OVN_NAMESPACE, {"openshift.io/run-level": "0", "pod-security.kubernetes.io/enforce": "privileged"}),
                           (WORKLOAD_NAMESPACE, {})):
            if backend.store.get(NAMESPACES, "", ns) is None:
                backend.create(ns_rt, None, {"metadata": {"name": ns, "labels": labels}})
        if backend.store.get(DEPLOYMENTS, WORKLOAD_NAMESPACE, WORKLOAD_NAME) is None:
            backend.create(backend.type_for(*DEPLOYMENTS), WORKLOAD_NAMESPACE, {
                "metadata": {"name": WORKLOAD_NAME, "namespace": WORKLOAD_NAMESPACE, "labels": {"app": WORKLOAD_NAME}},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": WORKLOAD_NAME}},
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                    "template": {
                        "metadata": {"labels": {"app": WORKLOAD_NAME}},
                        "spec": {"containers": [{"name": WORKLOAD_NAME, "image": WORKLOAD_IMAGE,
                                                 "ports": [{"containerPort": 8080, "protocol": "TCP"}]}],
                                 "terminationGracePeriodSeconds": 1},
                    },
                },
            })

    def _ensure_cluster_version(self) -> None:
        backend = self.cluster.backend
        if backend.store.get(CLUSTERVERSIONS, "", "version") is None:
            try:
                backend.create(backend.type_for(*CLUSTERVERSIONS), None, {
                    "apiVersion": "config.openshift.io/v1", "kind": "ClusterVersion",
                    "metadata": {"name": "version"},
                    "spec": {"clusterID": self.cluster_id},
                })
            except ApiError as e:
                if e.code != 409:
                    raise

    # The ovnkube-node "DaemonSet": one pod per Node.

    def _on_event(self, event: Event) -> None:
        if event.key == NODES and event.type in ("ADDED", "DELETED"):
            self._queue.put("ovn")
        elif event.key == PODS and event.namespace == OVN_NAMESPACE and event.type == "DELETED":
            with self._lock:
                self._ovn_links.pop(event.obj["metadata"]["uid"], None)
            self._queue.put("ovn")

    def _loop(self) -> None:
        while not self._stopping.is_set():
            item = self._queue.get()
            if item == "stop":
                return
            # Collapse a burst of node events into one pass.
            while True:
                try:
                    if self._queue.get_nowait() == "stop":
                        return
                except queue.Empty:
                    break
            try:
                self._sync_ovn()
            except ApiError as e:
                if e.code not in (404, 409):
                    log.warning("hosted %s: ovnkube-node sync: %s", self.name, e.message)
                self._queue.put("ovn")
                time.sleep(0.05)
            except Exception:
                log.exception("hosted %s: ovnkube-node sync failed", self.name)

    def _sync_ovn(self) -> None:
        backend = self.cluster.backend
        pods_rt = backend.type_for(*PODS)
        nodes = {n["metadata"]["name"] for n in backend.store.items(NODES)}
        by_node: dict[str, list[dict]] = {}
        for pod in backend.store.items(PODS, OVN_NAMESPACE):
            if (pod["metadata"].get("labels") or {}).get("app") != OVN_APP:
                continue
            by_node.setdefault((pod.get("spec") or {}).get("nodeName", ""), []).append(pod)
        for node, pods in by_node.items():
            if node not in nodes:
                for pod in pods:
                    self._delete_pod(pod)
        for node in sorted(nodes):
            live = [p for p in by_node.get(node, []) if not p["metadata"].get("deletionTimestamp")]
            if not live:
                created = backend.create(pods_rt, OVN_NAMESPACE, _ovn_pod(node))
                with self._lock:
                    self._ovn_links[created["metadata"]["uid"]] = self._via
                # Pods waiting for a network on this node may start now.
                self.cluster.kubelet.resync(node)
            for extra in live[1:]:
                self._delete_pod(extra)

    def _delete_pod(self, pod: dict) -> None:
        try:
            self.cluster.backend.delete(self.cluster.backend.type_for(*PODS), pod["metadata"]["namespace"], pod["metadata"]["name"],
                                        DeleteOptions(grace_period_seconds=0))
        except ApiError as e:
            if e.code != 404:
                raise


def _ovn_pod(node: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": names.generate_name(f"{OVN_APP}-"),
            "namespace": OVN_NAMESPACE,
            "labels": {"app": OVN_APP, "component": "network", "kubernetes.io/os": "linux", "openshift.io/component": "network",
                       "ovn-db-pod": "true", "type": "infra", "pod-template-generation": "1"},
            "annotations": {"target.workload.openshift.io/management": '{"effect": "PreferredDuringScheduling"}'},
            # The DaemonSet kind is not served by the simulator; the reference says what owns the pod
            # (drain skips DaemonSet pods) and is never garbage collected (no such owner kind).
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": OVN_APP,
                                 "uid": "00000000-0000-4000-8000-0000000000d5", "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "nodeName": node,
            "hostNetwork": True,
            "dnsPolicy": "Default",
            "priorityClassName": "system-node-critical",
            "serviceAccountName": "ovn-kubernetes-node",
            "terminationGracePeriodSeconds": 0,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "ovnkube-controller", "image": OVN_IMAGE}],
        },
    }


def _default_cv_conditions(desired: dict, history: list[dict]) -> list[dict]:
    version = desired.get("version", "")
    progressing = bool(history) and history[0].get("state") != "Completed"
    completed = next((h.get("version") for h in history if h.get("state") == "Completed"), None)
    return [
        {"type": "Available", "status": "True" if completed else "False", "reason": "" if completed else "NotAvailable",
         "message": f"Done applying {completed}" if completed else "The cluster version is not yet available"},
        {"type": "Failing", "status": "False"},
        {"type": "Progressing", "status": "True" if progressing else "False",
         "message": f"Working towards {version}" if progressing else f"Cluster version is {completed or version}"},
        {"type": "RetrievedUpdates", "status": "False", "reason": "NoChannel",
         "message": "The update channel has not been configured."},
        {"type": "ReleaseAccepted", "status": "True", "reason": "PayloadLoaded",
         "message": f'Payload loaded version="{version}" image="{desired.get("image", "")}" architecture="amd64"'},
    ]


class HostedApis:
    """The hosted API servers of one world, keyed by HostedCluster spec.clusterID."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self._lock = threading.RLock()
        self._apis: dict[str, HostedApi] = {}
        self._listeners: list[Callable[[str], None]] = []
        self.routing: DnsRouting | None = None
        self._unroute: Callable[[], None] | None = None

    def set_routing(self, routing: DnsRouting | None) -> None:
        """Make published API hostnames reachable only through what the zone says (see HostedApi)."""
        if self._unroute is not None:
            self._unroute()
            self._unroute = None
        self.routing = routing
        if routing is not None:
            self._unroute = routing.view.add_listener(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        """Re-evaluate every hosted API's reachability (the zone changed)."""
        for api in self.all():
            self._changed(api)

    def _changed(self, api: HostedApi) -> None:
        if api._recompute():
            self._announce(api)

    def _announce(self, api: HostedApi) -> None:
        log.info("hosted API %s (%s) %s", api.name, api.cluster_id,
                 f"reached via {api.reached_via}" if api.serving else "unavailable")
        for listener in list(self._listeners):
            try:
                listener(api.cluster_id)
            except Exception:
                log.exception("hosted API listener failed")

    def ensure(self, cluster_id: str, name: str) -> HostedApi:
        """The hosted API of this clusterID, created on first use (idempotent; `name` is the
        HostedCluster name, used for the SimCluster's name and logs)."""
        with self._lock:
            api = self._apis.get(cluster_id)
            if api is not None:
                return api
            sim_name = f"hosted-{name}-{cluster_id[:8]}"
            cluster = self.simulator.add_cluster(sim_name, load_crds=False, own_node=False, in_kubeconfig=False)
            api = HostedApi(self, cluster_id, name, cluster)
            self._apis[cluster_id] = api
            return api

    def get(self, cluster_id: str) -> HostedApi | None:
        with self._lock:
            return self._apis.get(cluster_id)

    def all(self) -> list[HostedApi]:
        with self._lock:
            return list(self._apis.values())

    def set_serving(self, cluster_id: str, management_cluster: str, serving: bool) -> None:
        """Management cluster `management_cluster` serves (or stopped serving) this hosted API (its
        kube-apiserver Deployment has ready replicas there). Whether requests reach it: HostedApi."""
        api = self.get(cluster_id)
        if api is None:
            if not serving:
                return
            raise KeyError(f"no hosted API for clusterID {cluster_id}: call ensure() first")
        if api._set_serving(management_cluster, serving):
            self._announce(api)

    def add_listener(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """`listener(cluster_id)` is called when a hosted API starts or stops answering, or starts
        answering through another management cluster."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def remove(self, cluster_id: str) -> None:
        """Destroy a hosted cluster (its HostedCluster was deleted for good)."""
        with self._lock:
            api = self._apis.pop(cluster_id, None)
        if api is not None:
            api.close()
            self.simulator.remove_cluster(api.cluster.name)

    def close(self) -> None:
        if self._unroute is not None:
            self._unroute()
            self._unroute = None
        with self._lock:
            apis = list(self._apis.values())
            self._apis.clear()
        for api in apis:
            api.close()
            self.simulator.remove_cluster(api.cluster.name)


__all__ = ["HostedApis", "HostedApi", "DnsRouting", "cluster_version_crd", "OVN_NAMESPACE", "OVN_APP", "WORKLOAD_NAMESPACE", "WORKLOAD_NAME"]
