"""The simulated hypershift-operator of one management cluster: HostedCluster -> control-plane
namespace, HostedControlPlane, Cluster API objects, the control-plane-operator, cluster-api and
capi-provider Deployments, copied secrets, version bookkeeping (upgrades) and status, with
pausedUntil honoured as the real one does (finalizer first, then the pause check). It acts only
while its own Deployment (hypershift/operator) has a ready replica.

What runs inside the control-plane namespace (kube-apiserver, etcd, Routes...) is the
control-plane-operator's job (control_plane.py), which acts only while its Deployment has a ready
replica: scaling it to 0, as the disaster-recovery procedure does, stops that reconciliation.
Layout and names follow openshift/hypershift (hypershift-operator/controllers/hostedcluster).
"""

from __future__ import annotations

import base64
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any, Hashable, Iterable

from hcpsim.apiserver.backend import Backend, DeleteOptions
from hcpsim.apiserver.errors import ApiError
from hcpsim.apiserver.store import Event, copy_obj
from hcpsim.controllers.base import Controller, deployment_running
from hcpsim.hypershift import release

log = logging.getLogger("hcpsim.hypershift")

HS = "hypershift.openshift.io"
HC_KEY = (HS, "hostedclusters")
HCP_KEY = (HS, "hostedcontrolplanes")
NODEPOOL_KEY = (HS, "nodepools")
CAPI = "cluster.x-k8s.io"
CAPA = "infrastructure.cluster.x-k8s.io"
HC_FINALIZER = "hypershift.openshift.io/finalizer"
CP_LABEL = "hypershift.openshift.io/hosted-control-plane"
HC_ANNOTATION = "hypershift.openshift.io/cluster"
FORCE_UPGRADE = "hypershift.openshift.io/force-upgrade-to"
OPERATOR_NAMESPACE = "hypershift"
OPERATOR_DEPLOYMENT = "operator"
EXTERNAL_DNS = "external-dns"
CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"
# The Cluster API manager and the AWS provider of a control plane (hypershift-operator
# reconcileCAPIManager / reconcileCAPIProvider); the NodePool controller's CAPI part acts only while
# they run (nodepool.CAPI_DEPLOYMENTS).
CAPI_DEPLOYMENTS = {"cluster-api": {"name": "cluster-api", "app": "cluster-api"},
                    "capi-provider-controller-manager": {"control-plane": "capi-provider-controller-manager",
                                                         "app": "capi-provider-controller-manager"}}


@dataclass
class OperatorSettings:
    """Delays of the simulated operator; small by default so tests stay fast."""

    upgrade_seconds: float = 0.5
    @classmethod
    def realistic(cls) -> OperatorSettings:
        return cls(upgrade_seconds=900.0)


def control_plane_namespace(hc: dict) -> str:
    meta = hc["metadata"]
    return f"{meta['namespace']}-{meta['name']}".replace(".", "-")


def condition(ctype: str, status: bool | str, reason: str, message: str = "", generation: int | None = None,
              previous: list[dict] | None = None) -> dict[str, Any]:
    value = status if isinstance(status, str) else ("True" if status else "False")
    since = release.now()
    for c in previous or []:
        if c.get("type") == ctype and c.get("status") == value:
            since = c.get("lastTransitionTime", since)
    out: dict[str, Any] = {"type": ctype, "status": value, "reason": reason, "message": message,
                           "lastTransitionTime": since}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


class Objects:
    """Create-or-update helpers over a Backend, for controllers that own what they write."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def get(self, group: str, plural: str, namespace: str, name: str) -> dict | None:
        return self.backend.store.get((group, plural), namespace, name)

    def items(self, group: str, plural: str, namespace: str) -> list[dict]:
        return self.backend.store.items((group, plural), namespace)

    def ensure(self, group: str, plural: str, obj: dict, *, update_fields: Iterable[str] = ()) -> dict:
        """Create `obj` if missing; else copy only `update_fields` (dotted top-level keys) when they differ."""
        rt = self.backend.type_for(group, plural)
        meta = obj["metadata"]
        ns = meta.get("namespace") if rt.namespaced else None
        current = self.backend.store.get(rt.key, ns or "", meta["name"])
        version = obj["apiVersion"].rsplit("/", 1)[-1] if obj.get("apiVersion") else None
        if current is None:
            return self.backend.create(rt, ns, obj, version=version)
        desired = copy_obj(current)
        for field in update_fields:
            if field == "labels" or field == "annotations":
                merged = dict(current["metadata"].get(field) or {}, **(meta.get(field) or {}))
                desired["metadata"][field] = merged
            elif field in obj:
                desired[field] = obj[field]
        if desired != current:
            desired["apiVersion"] = rt.api_version()
            return self.backend.update(rt, ns, meta["name"], desired)
        return current

    def set_status(self, group: str, plural: str, obj: dict, status: dict) -> dict:
        if obj.get("status") == status:
            return obj
        rt = self.backend.type_for(group, plural)
        updated = copy_obj(obj)
        updated["status"] = status
        meta = obj["metadata"]
        return self.backend.update(rt, meta.get("namespace"), meta["name"], updated, subresource="status")

    def patch_spec(self, group: str, plural: str, obj: dict, **fields: Any) -> dict:
        spec = obj.get("spec") or {}
        if all(spec.get(k) == v for k, v in fields.items() if v is not None) and \
                all(k not in spec for k, v in fields.items() if v is None):
            return obj
        rt = self.backend.type_for(group, plural)
        updated = copy_obj(obj)
        for k, v in fields.items():
            if v is None:
                updated["spec"].pop(k, None)
            else:
                updated.setdefault("spec", {})[k] = v
        meta = obj["metadata"]
        return self.backend.update(rt, meta.get("namespace"), meta["name"], updated)

    def delete(self, group: str, plural: str, namespace: str | None, name: str) -> None:
        try:
            self.backend.delete(self.backend.type_for(group, plural), namespace, name, DeleteOptions("Background"))
        except ApiError as e:
            if e.code != 404:
                raise


def install_operator(backend: Backend, supported: list[str] | None = None, *, external_dns: bool = True) -> None:
    """What `hypershift install` leaves on a management cluster: namespace, operator Deployment,
    the supported-versions ConfigMap, and (with --external-dns-*) the external-dns Deployment.
    The simulated operator and external-dns act only while their Deployment has a ready replica
    (scale one to 0 to stop it, as on a real cluster)."""
    objects = Objects(backend)
    objects.ensure("", "namespaces", {"metadata": {"name": OPERATOR_NAMESPACE}})
    if external_dns:
        labels = {"app": EXTERNAL_DNS, "name": EXTERNAL_DNS, "hypershift.openshift.io/operator-component": EXTERNAL_DNS}
        objects.ensure("apps", "deployments", {
            "metadata": {"name": EXTERNAL_DNS, "namespace": OPERATOR_NAMESPACE, "labels": dict(labels)},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"name": EXTERNAL_DNS}},
                     "template": {"metadata": {"labels": dict(labels)},
                                  "spec": {"containers": [{"name": EXTERNAL_DNS,
                                                           "image": "registry.k8s.io/external-dns/external-dns:v0.14.2",
                                                           "args": ["--source=service", "--source=openshift-route",
                                                                    "--registry=txt", "--txt-suffix=-external-dns"]}]}}}})
    objects.ensure("", "namespaces", {"metadata": {"name": OPERATOR_NAMESPACE}})
    objects.ensure("", "configmaps", {
        "metadata": {"name": "supported-versions", "namespace": OPERATOR_NAMESPACE,
                     "labels": {release.SUPPORTED_VERSIONS_LABEL: "true"}},
        "data": release.supported_versions_data(supported)})
    objects.ensure("apps", "deployments", {
        "metadata": {"name": "operator", "namespace": OPERATOR_NAMESPACE, "labels": {"app": "operator"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "operator", "name": "operator"}},
                 "template": {"metadata": {"labels": {"app": "operator", "name": "operator"}},
                              "spec": {"containers": [{"name": "operator", "image": "quay.io/hypershift/hypershift-operator:latest",
                                                       "command": ["/usr/bin/hypershift-operator", "run"]}]}}}})


class HostedClusterController(Controller):
    name = "hypershift-operator"

    def __init__(self, backend: Backend, settings: OperatorSettings | None = None) -> None:
        super().__init__(backend)
        self.settings = settings or OperatorSettings()
        self.objects = Objects(backend)

    def initial_keys(self) -> Iterable[Hashable]:
        return [(hc["metadata"]["namespace"], hc["metadata"]["name"]) for hc in self.backend.store.items(HC_KEY)]

    def keys_for(self, event: Event) -> Iterable[Hashable]:
        if event.key == HC_KEY:
            return [(event.namespace, event.name)]
        if event.key == ("apps", "deployments") and event.namespace == OPERATOR_NAMESPACE:
            # The operator's own pod came back (or went): look at every cluster again.
            return self.initial_keys() if event.name == OPERATOR_DEPLOYMENT else ()
        # Anything in a control-plane namespace may change the HostedCluster's status.
        if event.key in (HCP_KEY, ("apps", "deployments"), ("apps", "statefulsets"), ("", "secrets")):
            ns_obj = self.backend.store.get(("", "namespaces"), "", event.namespace)
            owner = ((ns_obj or {}).get("metadata", {}).get("annotations") or {}).get(HC_ANNOTATION)
            if owner and "/" in owner:
                return [tuple(owner.split("/", 1))]
        if event.key == ("", "configmaps") and event.namespace == OPERATOR_NAMESPACE:
            return self.initial_keys()
        return ()

    def reconcile(self, key: Hashable) -> float | None:
        namespace, name = key  # type: ignore[misc]
        if not deployment_running(self.backend, OPERATOR_NAMESPACE, OPERATOR_DEPLOYMENT):
            return None  # the hypershift-operator pod is down: nothing reconciles
        hc = self.objects.get(HS, "hostedclusters", namespace, name)
        if hc is None:
            return None
        if hc["metadata"].get("deletionTimestamp"):
            return self._delete(hc)
        if HC_FINALIZER not in (hc["metadata"].get("finalizers") or []):
            updated = copy_obj(hc)
            updated["metadata"]["finalizers"] = list(hc["metadata"].get("finalizers") or []) + [HC_FINALIZER]
            self.backend.update(self.backend.type_for(*HC_KEY), namespace, name, updated)
            return 0
        if not (hc.get("spec") or {}).get("clusterID"):
            # The real operator defaults a missing clusterID.
            self.objects.patch_spec(HS, "hostedclusters", hc, clusterID=str(uuid.uuid4()))
            return 0
        cp_ns = control_plane_namespace(hc)
        spec = hc["spec"]
        paused_until = spec.get("pausedUntil")
        if release.paused(paused_until):
            self._pause(hc, cp_ns, paused_until)
            self._write_status(hc, cp_ns, paused=True)
            wait = release.seconds_until(paused_until)
            return None if wait is None else wait + 0.05
        self._ensure_control_plane(hc, cp_ns)
        upgrading = self._write_status(hc, cp_ns, paused=False)
        return self.settings.upgrade_seconds / 4 if upgrading else None

    # Pausing.

    def _pause(self, hc: dict, cp_ns: str, paused_until: str) -> None:
        hcp = self.objects.get(HS, "hostedcontrolplanes", cp_ns, hc["metadata"]["name"])
        if hcp is not None:
            self.objects.patch_spec(HS, "hostedcontrolplanes", hcp, pausedUntil=paused_until)
        infra_id = hc["spec"].get("infraID") or hc["metadata"]["name"]
        cluster = self.objects.get(CAPI, "clusters", cp_ns, infra_id)
        if cluster is not None:
            self.objects.patch_spec(CAPI, "clusters", cluster, paused=True)

    # The control plane's objects.

    def _ensure_control_plane(self, hc: dict, cp_ns: str) -> None:
        meta, spec = hc["metadata"], hc["spec"]
        name = meta["name"]
        o = self.objects
        o.ensure("", "namespaces", {"metadata": {
            "name": cp_ns, "labels": {CP_LABEL: "true", "hypershift.openshift.io/monitoring": "true"},
            "annotations": {HC_ANNOTATION: f"{meta['namespace']}/{name}"}}}, update_fields=("labels", "annotations"))
        for ref, target in ((spec.get("pullSecret") or {}).get("name"), "pull-secret"), \
                ((spec.get("sshKey") or {}).get("name"), "ssh-key"), \
                ((((spec.get("secretEncryption") or {}).get("aescbc") or {}).get("activeKey") or {}).get("name"), None):
            if not ref:
                continue
            source = o.get("", "secrets", meta["namespace"], ref)
            if source is not None:
                o.ensure("", "secrets", {"metadata": {"name": target or ref, "namespace": cp_ns,
                                                      "labels": {"hypershift.openshift.io/hosted-cluster": name}},
                                         "type": source.get("type", "Opaque"), "data": source.get("data") or {}},
                         update_fields=("data",))
        desired_image = self._accepted_release(hc)
        hcp_spec = {
            "releaseImage": desired_image,
            "clusterID": spec["clusterID"],
            "infraID": spec.get("infraID", name),
            "controllerAvailabilityPolicy": spec.get("controllerAvailabilityPolicy", "HighlyAvailable"),
            "infrastructureAvailabilityPolicy": spec.get("infrastructureAvailabilityPolicy", "HighlyAvailable"),
            "etcd": spec.get("etcd"), "networking": spec.get("networking"), "platform": spec.get("platform"),
            "services": spec.get("services"), "dns": spec.get("dns"), "issuerURL": spec.get("issuerURL"),
            "pullSecret": {"name": "pull-secret"}, "sshKey": {"name": "ssh-key"},
            "secretEncryption": spec.get("secretEncryption"),
        }
        hcp_spec = {k: v for k, v in hcp_spec.items() if v is not None}
        hcp = o.get(HS, "hostedcontrolplanes", cp_ns, name)
        if hcp is None:
            o.ensure(HS, "hostedcontrolplanes", {
                "apiVersion": f"{HS}/v1beta1", "kind": "HostedControlPlane",
                "metadata": {"name": name, "namespace": cp_ns, "finalizers": ["hypershift.openshift.io/finalizer"],
                             "annotations": {HC_ANNOTATION: f"{meta['namespace']}/{name}"}},
                "spec": hcp_spec})
        else:
            updated = copy_obj(hcp)
            updated["spec"].update(hcp_spec)
            updated["spec"].pop("pausedUntil", None)
            if updated != hcp:
                self.backend.update(self.backend.type_for(*HCP_KEY), cp_ns, name, updated)
        infra_id = spec.get("infraID") or name
        o.ensure(CAPA, "awsclusters", {
            "apiVersion": f"{CAPA}/v1beta2", "kind": "AWSCluster",
            "metadata": {"name": infra_id, "namespace": cp_ns,
                         "annotations": {"aws.cluster.x-k8s.io/external-resource-gc": "true",
                                         "cluster.x-k8s.io/managed-by": "external"}},
            "spec": {"region": ((spec.get("platform") or {}).get("aws") or {}).get("region", "us-east-1")}})
        cluster = o.ensure(CAPI, "clusters", {
            "apiVersion": f"{CAPI}/v1beta1", "kind": "Cluster",
            "metadata": {"name": infra_id, "namespace": cp_ns, "finalizers": ["cluster.cluster.x-k8s.io"]},
            "spec": {"controlPlaneRef": {"apiVersion": f"{HS}/v1beta1", "kind": "HostedControlPlane",
                                         "namespace": cp_ns, "name": name},
                     "infrastructureRef": {"apiVersion": f"{CAPA}/v1beta2", "kind": "AWSCluster",
                                           "namespace": cp_ns, "name": infra_id}}})
        self.objects.patch_spec(CAPI, "clusters", cluster, paused=None)
        # The CAPI cluster controller's reconcileExternal: the control plane and infrastructure
        # objects carry the cluster-name label (the documented backup reads the Cluster's name
        # from the HostedControlPlane's labels) and an ownerReference to the Cluster.
        for group, plural, obj_name in ((HS, "hostedcontrolplanes", name), (CAPA, "awsclusters", infra_id)):
            self._claim_for_cluster(group, plural, cp_ns, obj_name, cluster)
        for dep_name, labels in CAPI_DEPLOYMENTS.items():
            current = o.get("apps", "deployments", cp_ns, dep_name)
            if current is None:
                o.ensure("apps", "deployments", {
                    "metadata": {"name": dep_name, "namespace": cp_ns, "labels": dict(labels),
                                 "annotations": {HC_ANNOTATION: f"{meta['namespace']}/{name}"}},
                    "spec": {"replicas": 1, "selector": {"matchLabels": dict(labels)},
                             "template": {"metadata": {"labels": dict(labels)},
                                          "spec": {"containers": [{"name": "manager", "image": desired_image}]}}}})
            elif (current.get("spec") or {}).get("replicas") != 1:
                o.patch_spec("apps", "deployments", current, replicas=1)
        replicas = 1
        cpo = o.get("apps", "deployments", cp_ns, "control-plane-operator")
        if cpo is None:
            o.ensure("apps", "deployments", {
                "metadata": {"name": "control-plane-operator", "namespace": cp_ns,
                             "labels": {"name": "control-plane-operator", "app": "control-plane-operator"}},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"name": "control-plane-operator"}},
                         "template": {"metadata": {"labels": {"name": "control-plane-operator", "app": "control-plane-operator"}},
                                      "spec": {"containers": [{"name": "control-plane-operator", "image": desired_image,
                                                               "command": ["/usr/bin/control-plane-operator", "run"]}]}}}})
        elif (cpo.get("spec") or {}).get("replicas") != replicas:
            # The operator scales its control-plane-operator back unless the cluster is paused.
            o.patch_spec("apps", "deployments", cpo, replicas=replicas)

    def _claim_for_cluster(self, group: str, plural: str, namespace: str, name: str, cluster: dict) -> None:
        obj = self.objects.get(group, plural, namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        meta = obj["metadata"]
        refs = meta.get("ownerReferences") or []
        has_ref = any(r.get("uid") == cluster["metadata"]["uid"] for r in refs)
        if (meta.get("labels") or {}).get(CLUSTER_NAME_LABEL) == cluster["metadata"]["name"] and has_ref:
            return
        updated = copy_obj(obj)
        updated["metadata"].setdefault("labels", {})[CLUSTER_NAME_LABEL] = cluster["metadata"]["name"]
        if not has_ref:
            updated["metadata"]["ownerReferences"] = [r for r in refs if r.get("kind") != "Cluster"] + [
                {"apiVersion": f"{CAPI}/v1beta1", "kind": "Cluster", "name": cluster["metadata"]["name"],
                 "uid": cluster["metadata"]["uid"]}]
        self.backend.update(self.backend.type_for(group, plural), namespace, name, updated)

    def _accepted_release(self, hc: dict) -> str:
        """The release image the control plane should run: the requested one when it is supported
        (or forced), else the one it has (the real operator refuses unsupported versions)."""
        requested = hc["spec"]["release"]["image"]
        status_version = (hc.get("status") or {}).get("version") or {}
        current = (status_version.get("desired") or {}).get("image")
        if self._release_problem(hc, requested) is None:
            return requested
        return current or requested

    def _release_problem(self, hc: dict, image: str) -> str | None:
        cm = self.objects.get("", "configmaps", OPERATOR_NAMESPACE, "supported-versions")
        version = release.version_of(image)
        if cm is not None and not release.is_supported(version, cm.get("data")):
            return f"the release image version {version} is not supported by this operator (supported-versions)"
        conditions = {c["type"]: c for c in (hc.get("status") or {}).get("conditions") or []}
        upgradeable = conditions.get("ClusterVersionUpgradeable")
        current = ((hc.get("status") or {}).get("version") or {}).get("desired", {}).get("image")
        if current and image != current and upgradeable and upgradeable.get("status") == "False":
            forced = (hc["metadata"].get("annotations") or {}).get(FORCE_UPGRADE)
            if forced != image:
                return (f"cluster version is not upgradeable ({upgradeable.get('message', '')}); "
                        f"annotate with {FORCE_UPGRADE}={image} to force")
        return None

    # Status.

    def _write_status(self, hc: dict, cp_ns: str, *, paused: bool) -> bool:
        """Write HostedCluster status; returns True while an upgrade is in progress."""
        meta, spec = hc["metadata"], hc["spec"]
        status = copy_obj(hc.get("status") or {})
        previous = status.get("conditions") or []
        generation = meta.get("generation")
        kas = self.objects.get("apps", "deployments", cp_ns, "kube-apiserver")
        etcd = self.objects.get("apps", "statefulsets", cp_ns, "etcd")
        kas_ready = ((kas or {}).get("status") or {}).get("readyReplicas", 0) or 0
        etcd_replicas = ((etcd or {}).get("spec") or {}).get("replicas", 0) or 0
        etcd_ready = ((etcd or {}).get("status") or {}).get("readyReplicas", 0) or 0
        etcd_ok = etcd is not None and etcd_replicas > 0 and etcd_ready >= etcd_replicas // 2 + 1
        available = kas_ready > 0 and etcd_ok

        # Version bookkeeping: desired follows an accepted release image; a Partial history entry
        # becomes Completed once the control plane has run the new release for upgrade_seconds.
        requested = spec["release"]["image"]
        problem = self._release_problem(hc, requested)
        version = status.setdefault("version", {"history": []})
        history: list[dict] = version.setdefault("history", [])
        accepted = requested if problem is None else ((version.get("desired") or {}).get("image") or requested)
        upgrading = False
        if not paused:
            if not history or history[0].get("image") != accepted:
                for entry in history:
                    if entry.get("state") == "Partial":
                        entry["state"] = "Partial"
                history.insert(0, {"state": "Partial", "image": accepted, "version": release.version_of(accepted),
                                   "startedTime": release.now(), "completionTime": None, "verified": False})
                version["desired"] = {"image": accepted, "version": release.version_of(accepted)}
            head = history[0]
            if head.get("state") == "Partial":
                started = head.get("startedTime")
                elapsed = _age_seconds(started)
                if available and elapsed >= self.settings.upgrade_seconds:
                    head["state"] = "Completed"
                    head["completionTime"] = release.now()
                else:
                    upgrading = True
        version["observedGeneration"] = generation
        version.setdefault("availableUpdates", None)
        completed = next((h for h in history if h.get("state") == "Completed"), None)

        conditions = [
            condition("ReconciliationActive", not paused, "ReconciliationPaused" if paused else "AsExpected",
                      f"Reconciliation paused until: {spec.get('pausedUntil')}" if paused else "Reconciliation active on resource",
                      generation, previous),
            condition("Available", available, "AsExpected" if available else "WaitingForAvailable",
                      "The hosted control plane is available" if available else "Waiting for hosted control plane to be healthy",
                      generation, previous),
            condition("Progressing", upgrading, "AsExpected" if not upgrading else "Progressing",
                      f"Working towards {release.version_of(accepted)}" if upgrading else "HostedCluster is at expected version",
                      generation, previous),
            condition("Degraded", False, "AsExpected", "The hosted cluster is not degraded", generation, previous),
            condition("EtcdAvailable", etcd_ok, "QuorumAvailable" if etcd_ok else "EtcdWaitingForQuorum",
                      "" if etcd_ok else f"{etcd_ready} of {etcd_replicas} etcd members ready", generation, previous),
            condition("KubeAPIServerAvailable", kas_ready > 0, "AsExpected" if kas_ready else "NotAvailable",
                      "Kube APIServer deployment is available" if kas_ready else "Kube APIServer has no ready replicas",
                      generation, previous),
            condition("ValidReleaseImage", problem is None, "AsExpected" if problem is None else "InvalidImage",
                      problem or "Release image is valid", generation, previous),
            condition("ValidConfiguration", True, "AsExpected", "Configuration passes validation", generation, previous),
            condition("SupportedHostedCluster", True, "AsExpected", "HostedCluster is supported by operator configuration",
                      generation, previous),
            condition("ClusterVersionSucceeding", available, "FromClusterVersion" if available else "ClusterVersionStatusUnknown",
                      "", generation, previous),
            condition("ClusterVersionProgressing", upgrading, "FromClusterVersion",
                      f"Working towards {release.version_of(accepted)}" if upgrading else
                      f"Cluster version is {release.version_of(completed['image']) if completed else ''}", generation, previous),
            condition("ClusterVersionAvailable", completed is not None and available, "FromClusterVersion",
                      f"Done applying {completed['version']}" if completed else "", generation, previous),
            self._upgradeable(hc, cp_ns, generation, previous),
        ]
        status["conditions"] = conditions
        if "desired" not in version:
            # Paused before the first reconcile: no release was ever accepted, and the schema
            # requires version.desired, so the operator reports conditions only.
            status.pop("version")
        if self.objects.get("", "secrets", meta["namespace"], f"{meta['name']}-admin-kubeconfig") is not None:
            status["kubeconfig"] = {"name": f"{meta['name']}-admin-kubeconfig"}
        api_host = _api_hostname(spec)
        if api_host:
            status["controlPlaneEndpoint"] = {"host": api_host, "port": 443}
        status.setdefault("ignitionEndpoint", f"ignition-server-{control_plane_namespace(hc)}.apps.example.com")
        fresh = self.objects.get(HS, "hostedclusters", meta["namespace"], meta["name"])
        if fresh is not None and _without_times(fresh.get("status")) != _without_times(status):
            self.objects.set_status(HS, "hostedclusters", fresh, status)
        return upgrading

    def _upgradeable(self, hc: dict, cp_ns: str, generation: int | None, previous: list[dict]) -> dict:
        """ClusterVersionUpgradeable from the control plane's report of the hosted CVO."""
        hcp = self.objects.get(HS, "hostedcontrolplanes", cp_ns, hc["metadata"]["name"])
        for c in ((hcp or {}).get("status") or {}).get("conditions") or []:
            if c.get("type") == "ClusterVersionUpgradeable":
                return condition("ClusterVersionUpgradeable", c["status"], c.get("reason", "FromClusterVersion"),
                                 c.get("message", ""), generation, previous)
        return _keep_or_default(previous, "ClusterVersionUpgradeable", generation)

    # Deletion.

    def _delete(self, hc: dict) -> float | None:
        meta = hc["metadata"]
        cp_ns = control_plane_namespace(hc)
        for np in self.objects.items(HS, "nodepools", meta["namespace"]):
            if (np.get("spec") or {}).get("clusterName") == meta["name"] and not np["metadata"].get("deletionTimestamp"):
                self.objects.delete(HS, "nodepools", meta["namespace"], np["metadata"]["name"])
        ns = self.objects.get("", "namespaces", "", cp_ns)
        if ns is not None:
            # Finalizers the controllers would remove on a real cluster go with the namespace.
            for group, plural in (HCP_KEY, (CAPI, "clusters"), (CAPI, "machines"), (CAPI, "machinesets"),
                                  (CAPI, "machinedeployments"), (CAPA, "awsmachines")):
                for obj in self.objects.items(group, plural, cp_ns):
                    if obj["metadata"].get("finalizers"):
                        updated = copy_obj(obj)
                        updated["metadata"]["finalizers"] = []
                        try:
                            self.backend.update(self.backend.type_for(group, plural), cp_ns, obj["metadata"]["name"], updated)
                        except ApiError:
                            pass
            if not ns["metadata"].get("deletionTimestamp"):
                self.objects.delete("", "namespaces", None, cp_ns)
            return 0.1
        secret = f"{meta['name']}-admin-kubeconfig"
        if self.objects.get("", "secrets", meta["namespace"], secret) is not None:
            self.objects.delete("", "secrets", meta["namespace"], secret)
        updated = copy_obj(hc)
        updated["metadata"]["finalizers"] = [f for f in meta.get("finalizers") or [] if f != HC_FINALIZER]
        self.backend.update(self.backend.type_for(*HC_KEY), meta["namespace"], meta["name"], updated)
        return None


def _api_hostname(spec: dict) -> str | None:
    for svc in spec.get("services") or []:
        if svc.get("service") == "APIServer":
            strategy = svc.get("servicePublishingStrategy") or {}
            return ((strategy.get("route") or {}).get("hostname")
                    or (strategy.get("loadBalancer") or {}).get("hostname"))
    return None


def _keep_or_default(previous: list[dict], ctype: str, generation: int | None) -> dict:
    for c in previous:
        if c.get("type") == ctype:
            return c
    return condition(ctype, True, "FromClusterVersion", "", generation, previous)


def _age_seconds(timestamp: str | None) -> float:
    from hcpsim.apiserver.clock import parse_rfc3339
    from datetime import datetime, timezone

    if not timestamp:
        return 0.0
    return (datetime.now(timezone.utc) - parse_rfc3339(timestamp)).total_seconds()


def _without_times(status: Any) -> Any:
    """Status compared without transition times, so an unchanged status writes nothing."""
    if isinstance(status, dict):
        return {k: _without_times(v) for k, v in status.items() if k != "lastTransitionTime"}
    if isinstance(status, list):
        return [_without_times(v) for v in status]
    return status


def encryption_key_secret(name: str, namespace: str) -> dict:
    """The AES-CBC key secret `hypershift create cluster` makes for spec.secretEncryption."""
    return {"metadata": {"name": f"{name}-etcd-encryption-key", "namespace": namespace},
            "type": "Opaque", "data": {"key": base64.b64encode(os.urandom(32)).decode()}}
