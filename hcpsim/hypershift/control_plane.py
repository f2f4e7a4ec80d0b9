"""The simulated control-plane-operator: HostedControlPlane -> etcd, kube-apiserver,
openshift-apiserver, openshift-oauth-apiserver, cluster-version-operator, the Routes that publish
the API, the admin kubeconfig, and HostedControlPlane status.

It reconciles a control plane only while that namespace's `control-plane-operator` Deployment has a
ready replica and the HostedControlPlane is not paused, as the real operator (a pod in that
namespace) does: scaling it to 0 or pausing stops every scale-back and re-creation.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Hashable, Iterable

from hcpsim.apiserver.backend import Backend
from hcpsim.apiserver.store import Event
from hcpsim.controllers.base import Controller
from hcpsim.hypershift import release
from hcpsim.hypershift.etcd_writer import EtcdWriter, WriterSettings

from hcpsim.hypershift.operator import HC_ANNOTATION, HCP_KEY, HS, Objects, _api_hostname, condition

CLUSTERVERSIONS = ("config.openshift.io", "clusterversions")

log = logging.getLogger("hcpsim.hypershift")

# Deployments of a control plane that serve or write the API, with their pod label.
API_DEPLOYMENTS = (
    ("kube-apiserver", {"app": "kube-apiserver"}),
    ("openshift-apiserver", {"app": "openshift-apiserver"}),
    ("openshift-oauth-apiserver", {"app": "openshift-oauth-apiserver"}),
)
SINGLETONS = (("cluster-version-operator", {"app": "cluster-version-operator", "k8s-app": "cluster-version-operator"}),)
ROUTER_HOSTNAME = "router-default.apps.mgmt.example.com"


def router_hostname(management_cluster: str) -> str:
    """The canonical hostname of a management cluster's default router (its ingress load balancer):
    what the Routes it admits report, and what external-dns points their records at."""
    return f"router-default.apps.{management_cluster}.example.com"

# What a world plugs in: etcd objects for a control plane, and the hosted clusters' own APIs.
EtcdObjects = Callable[[dict, str], list[tuple[str, str, dict]]]


class ControlPlaneOperator(Controller):
    name = "control-plane-operator"

    def close(self) -> None:
        for unsubscribe in self._watching.values():
            unsubscribe()
        self._watching.clear()
        super().close()
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()

    def __init__(self, backend: Backend, *, etcd_objects: EtcdObjects | None = None, hosted_apis: Any = None,
                 on_serving: Callable[[dict, str, bool], None] | None = None,
                 writer_settings: WriterSettings | None = None, router: str = ROUTER_HOSTNAME) -> None:
        """`router`: the canonical hostname of this management cluster's router, which its Routes report."""
        super().__init__(backend)
        self.router = router
        self.objects = Objects(backend)
        self.etcd_objects = etcd_objects
        self.hosted_apis = hosted_apis
        self.on_serving = on_serving
        self._mirrored: dict[str, dict] = {}
        self._watching: dict[str, Callable[[], None]] = {}
        self.writer_settings = writer_settings
        # One etcd writer per control plane with etcd: the API servers' writes (etcd_writer.py).
        self.writers: dict[str, EtcdWriter] = {}

    def initial_keys(self) -> Iterable[Hashable]:
        return [(h["metadata"]["namespace"], h["metadata"]["name"]) for h in self.backend.store.items(HCP_KEY)]

    def keys_for(self, event: Event) -> Iterable[Hashable]:
        if event.key == HCP_KEY:
            return [(event.namespace, event.name)]
        if event.key == (HS, "hostedclusters"):
            hc = event.obj
            ns = f"{hc['metadata']['namespace']}-{hc['metadata']['name']}".replace(".", "-")
            return [(ns, hc["metadata"]["name"])]
        if event.key in (("apps", "deployments"), ("apps", "statefulsets"), ("route.openshift.io", "routes")):
            return [(event.namespace, h["metadata"]["name"]) for h in self.backend.store.items(HCP_KEY, event.namespace)]
        return ()

    def reconcile(self, key: Hashable) -> float | None:
        namespace, name = key  # type: ignore[misc]
        hcp = self.objects.get(HS, "hostedcontrolplanes", namespace, name)
        if hcp is None or hcp["metadata"].get("deletionTimestamp"):
            writer = self.writers.pop(namespace, None)
            if writer is not None:
                writer.close()
            return None
        if self.etcd_objects is not None and namespace not in self.writers and self.writer_settings is not None:
            self.writers[namespace] = EtcdWriter(self.backend, namespace, self.writer_settings)
        cpo = self.objects.get("apps", "deployments", namespace, "control-plane-operator")
        running = ((cpo or {}).get("status") or {}).get("readyReplicas", 0) > 0
        paused = release.paused((hcp.get("spec") or {}).get("pausedUntil"))
        if running and not paused:
            self._ensure(hcp)
        self._serving(hcp)
        if running:
            self._write_status(hcp, paused)
        if paused:
            wait = release.seconds_until(hcp["spec"].get("pausedUntil"))
            return None if wait is None else wait + 0.05
        return None

    def _ensure(self, hcp: dict) -> None:
        meta, spec = hcp["metadata"], hcp["spec"]
        ns = meta["namespace"]
        image = spec.get("releaseImage", "")
        ha = spec.get("controllerAvailabilityPolicy", "HighlyAvailable") == "HighlyAvailable"
        o = self.objects
        if self.etcd_objects is not None:
            for group, plural, obj in self.etcd_objects(hcp, ns):
                current = o.ensure(group, plural, obj)
                want = (obj.get("spec") or {}).get("replicas")
                if plural == "statefulsets" and want is not None and (current.get("spec") or {}).get("replicas") != want:
                    o.patch_spec(group, plural, current, replicas=want)
        for name, labels in API_DEPLOYMENTS + SINGLETONS:
            replicas = (3 if ha else 1) if (name, labels) in API_DEPLOYMENTS else 1
            current = o.get("apps", "deployments", ns, name)
            if current is None:
                o.ensure("apps", "deployments", _deployment(name, ns, labels, replicas, image))
            elif (current.get("spec") or {}).get("replicas") != replicas:
                o.patch_spec("apps", "deployments", current, replicas=replicas)
        for service in spec.get("services") or []:
            route = _route_for(service, ns, self.router)
            if route is not None:
                current = o.ensure("route.openshift.io", "routes", route)
                if not (current.get("status") or {}).get("ingress"):
                    # The management cluster's router admits the Route (a create drops status).
                    o.set_status("route.openshift.io", "routes", current, route["status"])
        if self.hosted_apis is not None and spec.get("clusterID"):
            api = self.hosted_apis.ensure(spec["clusterID"], meta["name"])
            # Clients and nodes reach the API by this name (through external DNS when published there).
            api.set_hostname(_api_hostname(spec))
            if spec["clusterID"] not in self._watching:
                # The CVO's conditions (Upgradeable) live in the hosted cluster: follow them.
                key = (ns, meta["name"])
                self._watching[spec["clusterID"]] = api.cluster.backend.store.subscribe(
                    lambda event, key=key: self.enqueue(key) if event.key == CLUSTERVERSIONS else None)
            o.ensure("", "secrets", {"metadata": {"name": "admin-kubeconfig", "namespace": ns},
                                     "type": "Opaque", "stringData": {"kubeconfig": api.admin_kubeconfig()}})
            hc_ref = (meta.get("annotations") or {}).get(HC_ANNOTATION)
            if hc_ref:
                hc_ns, hc_name = hc_ref.split("/", 1)
                hc = o.get(HS, "hostedclusters", hc_ns, hc_name)
                version = ((hc or {}).get("status") or {}).get("version") or {}
                if version.get("desired") and version != self._mirrored.get(spec["clusterID"]):
                    # The cluster-version-operator's view inside the hosted cluster.
                    api.set_cluster_version(version["desired"], version.get("history") or [])
                    self._mirrored[spec["clusterID"]] = version
                copied = o.get("", "secrets", ns, "admin-kubeconfig")
                if copied is not None:
                    o.ensure("", "secrets", {"metadata": {"name": f"{hc_name}-admin-kubeconfig", "namespace": hc_ns,
                                                          "labels": {"hypershift.openshift.io/hosted-control-plane": ns}},
                                             "type": "Opaque", "data": copied.get("data") or {}}, update_fields=("data",))

    def _hosted_upgradeable(self, hcp: dict) -> dict:
        """The hosted ClusterVersion's Upgradeable condition (absent: upgradeable), as the CVO reports it."""
        cluster_id = (hcp.get("spec") or {}).get("clusterID")
        api = self.hosted_apis.get(cluster_id) if self.hosted_apis is not None and cluster_id else None
        if api is None:
            return {}
        return _upgradeable_of(api.cluster.backend.store.get(CLUSTERVERSIONS, "", "version"))

    def _serving(self, hcp: dict) -> None:
        kas = self.objects.get("apps", "deployments", hcp["metadata"]["namespace"], "kube-apiserver")
        ready = ((kas or {}).get("status") or {}).get("readyReplicas", 0) > 0
        if self.on_serving is not None:
            self.on_serving(hcp, self.backend.name, ready)

    def _write_status(self, hcp: dict, paused: bool) -> None:
        ns = hcp["metadata"]["namespace"]
        previous = (hcp.get("status") or {}).get("conditions") or []
        kas = self.objects.get("apps", "deployments", ns, "kube-apiserver")
        etcd = self.objects.get("apps", "statefulsets", ns, "etcd")
        kas_ready = ((kas or {}).get("status") or {}).get("readyReplicas", 0) > 0
        etcd_replicas = ((etcd or {}).get("spec") or {}).get("replicas", 0) or 0
        etcd_ready = ((etcd or {}).get("status") or {}).get("readyReplicas", 0) or 0
        etcd_ok = etcd is not None and etcd_replicas > 0 and etcd_ready >= etcd_replicas // 2 + 1
        gen = hcp["metadata"].get("generation")
        status = dict(hcp.get("status") or {})
        upgradeable = self._hosted_upgradeable(hcp)
        status.update(
            ready=kas_ready and etcd_ok, initialized=True,
            version=release.version_of(hcp["spec"].get("releaseImage", "")),
            releaseImage=hcp["spec"].get("releaseImage", ""),
            kubeConfig={"name": "admin-kubeconfig", "key": "kubeconfig"},
            conditions=[
                condition("Available", kas_ready and etcd_ok, "AsExpected" if kas_ready and etcd_ok else "NotAvailable", "", gen, previous),
                condition("EtcdAvailable", etcd_ok, "QuorumAvailable" if etcd_ok else "EtcdWaitingForQuorum", "", gen, previous),
                condition("KubeAPIServerAvailable", kas_ready, "AsExpected" if kas_ready else "NotAvailable", "", gen, previous),
                condition("ReconciliationActive", not paused, "ReconciliationPaused" if paused else "AsExpected", "", gen, previous),
                condition("ClusterVersionUpgradeable", upgradeable.get("status", "True"),
                          upgradeable.get("reason", "FromClusterVersion"), upgradeable.get("message", ""), gen, previous),
            ])
        from hcpsim.hypershift.operator import _without_times

        if _without_times(status) != _without_times(hcp.get("status")):
            self.objects.set_status(HS, "hostedcontrolplanes", hcp, status)


def _upgradeable_of(cluster_version: dict | None) -> dict:
    for c in ((cluster_version or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Upgradeable":
            return c
    return {}


def _deployment(name: str, namespace: str, labels: dict[str, str], replicas: int, image: str) -> dict:
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels, **{"hypershift.openshift.io/managed-by": "control-plane-operator"})},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 1}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": name, "image": image}]}}},
    }


_ROUTE_NAMES = {"APIServer": "kube-apiserver", "OAuthServer": "oauth", "Konnectivity": "konnectivity-server",
                "Ignition": "ignition-server"}


def _route_for(service: dict, namespace: str, router: str = ROUTER_HOSTNAME) -> dict | None:
    strategy = service.get("servicePublishingStrategy") or {}
    name = _ROUTE_NAMES.get(service.get("service", ""))
    if strategy.get("type") != "Route" or name is None:
        return None
    host = (strategy.get("route") or {}).get("hostname")
    labels = {"hypershift.openshift.io/hosted-control-plane": namespace}
    if not host:
        labels["hypershift.openshift.io/route-visibility"] = "private"
        host = f"{name}-{namespace}.apps.mgmt.example.com"
    return {
        "apiVersion": "route.openshift.io/v1", "kind": "Route",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"host": host, "to": {"kind": "Service", "name": name, "weight": 100},
                 "tls": {"termination": "passthrough"}, "wildcardPolicy": "None"},
        "status": {"ingress": [{"host": host, "routerName": "default", "routerCanonicalHostname": router,
                                "wildcardPolicy": "None",
                                "conditions": [{"type": "Admitted", "status": "True"}]}]},
    }
