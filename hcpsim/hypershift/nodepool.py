"""The NodePool controller of one management cluster, with the Cluster API machinery under it.

What HyperShift's NodePool controller does (hypershift-operator/controllers/nodepool/capi.go,
conditions.go, nodepool_controller.go; api/hypershift/v1beta1/nodepool_conditions.go), plus what
the CAPI MachineDeployment/MachineSet/Machine controllers and CAPA do for it, folded into one
controller thread per management cluster:

- In the control-plane namespace `<hc-namespace>-<hc-name>` (dots in the name become dashes) it
  renders an AWSMachineTemplate named `<nodepool>-<hash of its spec>` (a new name, hence a rollout,
  whenever the spec changes: the AMI follows the release version), a user-data Secret
  `user-data-<nodepool>-<hash of config+version>`, and a MachineDeployment (upgradeType Replace) or a
  MachineSet (InPlace) named like the NodePool, labelled `cluster.x-k8s.io/cluster-name: <infraID>`
  and annotated `hypershift.openshift.io/nodePool: <ns>/<name>`, selector/template labels
  `<infraID>-<cluster>-<nodepool>` as HyperShift's generateName() makes them.
- The MachineDeployment rolls MachineSets `<md>-<template hash>` with maxSurge/maxUnavailable as the
  CAPI rolling-update strategy does; MachineSets create Machines `<ms>-<5 chars>` (finalizer
  `machine.cluster.x-k8s.io`, ownerReference to the MachineSet) and AWSMachines of the same name
  (finalizer `awsmachine.infrastructure.cluster.x-k8s.io`); a booted AWSMachine gets a providerID and
  addresses, the Machine becomes Provisioned, and once the hosted API answers the machine's Node
  `ip-10-0-x-y.ec2.internal` registers there, turns Ready, and the Machine is Running with a nodeRef.
- A deleted Machine is drained first (cordon, evict the node's pods except DaemonSet ones, give up
  after `nodeDrainTimeout`), its Node removed, its instance terminated, then its finalizer removed.
- InPlace upgrades: the MachineSet's `hypershift.openshift.io/nodePoolTargetConfigVersion` moves, and
  the in-place upgrader takes nodes one by one (maxUnavailable, default 1): cordon, drain, write the
  config and reboot (NotReady for a while), uncordon; `...CurrentConfigVersion` follows when done.
- NodePool status: replicas (available machines), version (only when the rollout completed, as
  MachineDeploymentComplete / machineSetInPlaceRolloutIsComplete gate it), and the conditions
  HyperShift writes (UpdatingVersion, UpdatingConfig, AllMachinesReady, AllNodesHealthy, Ready,
  ReconciliationActive, SupportedVersionSkew, ValidReleaseImage, ...), with upstream's reasons and
  messages. SupportedVersionSkew follows support/supportedversion.ValidateVersionSkew: a pool may not
  be newer than the control plane (HostedCluster status.version.history[0] Completed, else desired,
  else spec.release.image) nor more than 3 minors older; here an unsupported skew also holds the
  rollout (nothing rolls towards that version), as the admission webhook would have refused it.
- `spec.pausedUntil` (`true` or a future RFC3339 time) on the NodePool, or on its HostedCluster,
  freezes the pool: nothing created, scaled or deleted; MachineDeployment/MachineSet get the
  `cluster.x-k8s.io/paused` annotation and ReconciliationActive turns False (ReconciliationPaused).
- The CAPI/CAPA part acts only while the control plane's `cluster-api` and
  `capi-provider-controller-manager` Deployments have a ready replica (absent counts as running)
  and its Cluster is not paused, deletion included: Machines and AWSMachines deleted meanwhile stay,
  held by their finalizers, and their instances keep running. A NodePool deleted then is released
  at once (upstream does not wait for its machines). MachineDeployments adopt orphan MachineSets and
  MachineSets orphan Machines that match their selector (CAPI adoptOrphan); a restored Machine gets
  its finalizer back, a restored AWSMachine its owner and finalizer; an AWSMachine naming an
  instance (spec.instanceID / providerID) adopts it from the world's EC2 instances (hcpsim.ec2)
  instead of launching one (InstanceNotFound when EC2 does not know it). Terminating an instance
  removes a Node it still had.
- While the hosted API does not answer, machines keep running and Nodes stay as they were; Node
  registration, drains and in-place updates wait for it. If it stays away longer than
  `api_unreachable_grace_seconds`, nodes go Ready=Unknown (NodeStatusUnknown) and come back Ready
  `node_ready_seconds` after the API answers again.

Every delay is a `NodePoolSettings` field (small by default; `NodePoolSettings.realistic()` for the
order of the real thing).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from hcpsim.apiserver import names
from hcpsim.apiserver.backend import MERGE_PATCH, DeleteOptions
from hcpsim.apiserver.clock import now_rfc3339, parse_rfc3339
from hcpsim.apiserver.errors import ApiError
from hcpsim.apiserver.store import Event, copy_obj
from hcpsim.controllers.base import DEPLOYMENTS, deployment_running
from hcpsim.controllers.workqueue import WorkQueue
from hcpsim.ec2 import RUNNING, Ec2Instances, instance_id_of

log = logging.getLogger("hcpsim.nodepool")

NODEPOOLS = ("hypershift.openshift.io", "nodepools")
HOSTEDCLUSTERS = ("hypershift.openshift.io", "hostedclusters")
CLUSTERS = ("cluster.x-k8s.io", "clusters")
MDS = ("cluster.x-k8s.io", "machinedeployments")
MSS = ("cluster.x-k8s.io", "machinesets")
MACHINES = ("cluster.x-k8s.io", "machines")
AWSMTS = ("infrastructure.cluster.x-k8s.io", "awsmachinetemplates")
AWSMS = ("infrastructure.cluster.x-k8s.io", "awsmachines")
SECRETS = ("", "secrets")
CONFIGMAPS = ("", "configmaps")
NAMESPACES = ("", "namespaces")
NODES = ("", "nodes")
PODS = ("", "pods")

# The Cluster API controllers of a control plane run as these Deployments in its namespace
# (hypershift-operator reconcileCAPIManager / reconcileCAPIProvider); scaled to 0, as the
# disaster-recovery teardown does, nothing reconciles Machines or AWSMachines any more.
CAPI_DEPLOYMENTS = ("cluster-api", "capi-provider-controller-manager")

CAPI_VERSION = "v1beta1"
CAPI_API = "cluster.x-k8s.io/v1beta1"
CAPA_API = "infrastructure.cluster.x-k8s.io/v1beta2"

NP_FINALIZER = "hypershift.openshift.io/finalizer"
MACHINE_FINALIZER = "machine.cluster.x-k8s.io"
AWSMACHINE_FINALIZER = "awsmachine.infrastructure.cluster.x-k8s.io"
ANN_NODEPOOL = "hypershift.openshift.io/nodePool"
ANN_CURRENT_CONFIG = "hypershift.openshift.io/nodePoolCurrentConfig"
ANN_CURRENT_CONFIG_VERSION = "hypershift.openshift.io/nodePoolCurrentConfigVersion"
ANN_TARGET_CONFIG_VERSION = "hypershift.openshift.io/nodePoolTargetConfigVersion"
ANN_PLATFORM_MT = "hypershift.openshift.io/nodePoolPlatformMachineTemplate"
ANN_MAX_UNAVAILABLE = "hypershift.openshift.io/nodePoolMaxUnavailable"
ANN_PAUSED = "cluster.x-k8s.io/paused"
ANN_AUTOSCALER_MIN = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size"
ANN_AUTOSCALER_MAX = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size"
ANN_REVISION = "machinedeployment.clusters.x-k8s.io/revision"
LABEL_CLUSTER_NAME = "cluster.x-k8s.io/cluster-name"
LABEL_SET_NAME = "cluster.x-k8s.io/set-name"
LABEL_DEPLOYMENT_NAME = "cluster.x-k8s.io/deployment-name"
LABEL_TEMPLATE_HASH = "machine-template-hash"
NODE_LABEL_NODEPOOL = "hypershift.openshift.io/nodePool"
MCO_CURRENT = "machineconfiguration.openshift.io/currentConfig"
MCO_DESIRED = "machineconfiguration.openshift.io/desiredConfig"
MCO_STATE = "machineconfiguration.openshift.io/state"
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}

AS_EXPECTED = "AsExpected"


@dataclass
class NodePoolSettings:
    """Every delay of the simulated machinery, in seconds."""

    machine_boot_seconds: float = 0.1        # AWS instance pending -> running (AWSMachine ready)
    node_join_seconds: float = 0.05          # instance running -> kubelet registers its Node (NotReady)
    node_ready_seconds: float = 0.05         # Node registered -> Ready (also: back Ready after an outage)
    node_drain_step_seconds: float = 0.05    # between drain passes (evict, then look again)
    machine_terminate_seconds: float = 0.05  # instance shutting-down -> terminated
    inplace_update_seconds: float = 0.1      # in-place: write the new config and reboot
    api_unreachable_grace_seconds: float = 3600.0  # nodes go Ready=Unknown after the hosted API is away this long
    resync_seconds: float = 1.0              # periodic look at every pool (timers, outages)

    @classmethod
    def realistic(cls) -> NodePoolSettings:
        return cls(machine_boot_seconds=90.0, node_join_seconds=120.0, node_ready_seconds=40.0, node_drain_step_seconds=5.0,
                   machine_terminate_seconds=60.0, inplace_update_seconds=300.0, api_unreachable_grace_seconds=600.0,
                   resync_seconds=30.0)


# ----------------------------------------------------------------------------- pure helpers


def release_version(image: str | None) -> str | None:
    """`quay.io/openshift-release-dev/ocp-release:4.17.9-x86_64` -> `4.17.9` (None when no version tag)."""
    if not image or "@" in image.rsplit("/", 1)[-1] or ":" not in image.rsplit("/", 1)[-1]:
        return None
    tag = image.rsplit(":", 1)[1]
    m = re.match(r"^(\d+\.\d+\.\d+(?:-(?:rc|ec|fc)\.\d+)?)(?:-(?:x86_64|aarch64|arm64|multi|ppc64le|s390x))?$", tag)
    return m.group(1) if m else None


def _semver(version: str) -> tuple[int, int, int]:
    m = re.match(r"^(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        raise ValueError(f"not a version: {version}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def validate_version_skew(hosted_cluster_version: str, node_pool_version: str) -> str | None:
    """support/supportedversion.ValidateVersionSkew: None when supported, else the message."""
    hc, np = _semver(hosted_cluster_version), _semver(node_pool_version)
    if np[0] != hc[0]:
        return f"NodePool major version {np[0]} must match HostedCluster major version {hc[0]}"
    if np > hc:
        return f"NodePool version {node_pool_version} cannot be higher than the HostedCluster version {hosted_cluster_version}"
    if hc[1] - np[1] > 3:
        return (f"NodePool minor version {np[0]}.{np[1]} is less than {hc[0]}.{max(0, hc[1] - 3)}, which is the minimum "
                f"NodePool version compatible with the {hc[0]}.{hc[1]} HostedCluster")
    return None


def kubelet_version(ocp_version: str | None) -> str:
    """OpenShift 4.y ships Kubernetes 1.(y+13)."""
    try:
        major, minor, _ = _semver(ocp_version or "")
    except ValueError:
        return "v1.30.6"
    return f"v1.{minor + 13}.6" if major == 4 else "v1.30.6"


def control_plane_namespace(hc_namespace: str, hc_name: str) -> str:
    return f"{hc_namespace}-{hc_name.replace('.', '-')}"


def hash_simple(data: str | bytes) -> str:
    """support/util.HashSimple: FNV-1a 32 as 8 hex digits."""
    h = 0x811C9DC5
    for b in data.encode() if isinstance(data, str) else data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return f"{h:08x}"


def get_name(base: str, suffix: str, max_length: int) -> str:
    """capi.go getName: `base-suffix`, shortened with a hash of the base when too long."""
    name = f"{base}-{suffix}"
    if len(name) <= max_length:
        return name
    base_length = max_length - 10 - len(suffix)
    if base_length < 1:
        prefix = base[:max(0, max_length - 9)]
        return f"{prefix}-{hash_simple(name)}"[:max_length]
    return f"{base[:base_length]}-{hash_simple(base)}-{suffix}"


def parse_duration(text: Any) -> float | None:
    """A Go duration (`30s`, `5m`, `1h2m3s`, `500ms`) in seconds; None/0 means no limit."""
    if text in (None, "", 0, "0", "0s"):
        return None
    if isinstance(text, (int, float)):
        return float(text)
    total = 0.0
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    for value, unit in re.findall(r"([\d.]+)(ms|us|µs|ns|h|m|s)", str(text)):
        total += float(value) * units[unit]
    return total or None


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        pct = float(text[:-1])
        raw = pct * total / 100.0
        return int(math.ceil(raw)) if round_up else int(math.floor(raw))
    return int(text)


def parse_paused(value: Any, now: datetime | None = None) -> tuple[bool, float | None]:
    """util.ProcessPausedUntilField: (paused, seconds until it ends or None)."""
    if value is None or value == "":
        return False, None
    text = str(value)
    if text.lower() == "true":
        return True, None
    if text.lower() == "false":
        return False, None
    try:
        until = parse_rfc3339(text)
    except ValueError:
        return False, None
    now = now or datetime.now(timezone.utc)
    if until > now:
        return True, (until - now).total_seconds()
    return False, None


def _condition(conditions: list[dict], ctype: str) -> dict | None:
    return next((c for c in conditions if c.get("type") == ctype), None)


def _node_ready(node: dict | None) -> bool:
    c = _condition(((node or {}).get("status") or {}).get("conditions") or [], "Ready")
    return bool(c and c.get("status") == "True")


def _owned_by(obj: dict, uid: str) -> bool:
    return any(r.get("uid") == uid and r.get("controller") for r in obj["metadata"].get("ownerReferences") or [])


def _is_daemonset_pod(pod: dict) -> bool:
    return any(r.get("kind") == "DaemonSet" for r in pod["metadata"].get("ownerReferences") or [])


def _fnv_int(text: str) -> int:
    return int(hash_simple(text), 16)


# ----------------------------------------------------------------------------- the controller


class NodePoolController:
    """The NodePool controller (and the CAPI/CAPA controllers under it) of one management cluster."""

    def __init__(self, mgmt: Any, hosted: Any, settings: NodePoolSettings | None = None,
                 instances: Ec2Instances | None = None) -> None:
        """`instances`: the world's EC2 instances, shared by the management clusters so that a
        control plane restored elsewhere adopts its machines (default: a registry of its own)."""
        self.mgmt = mgmt
        self.backend = mgmt.backend
        self.hosted = hosted
        self.settings = settings or NodePoolSettings()
        self.instances = instances if instances is not None else Ec2Instances()
        self._queue: WorkQueue[tuple[str, ...]] = WorkQueue()
        # Timers of the simulated machinery (monotonic seconds), keyed by object uid / node name.
        self._since: dict[tuple[str, str], float] = {}
        self._thread = threading.Thread(target=self._loop, name=f"nodepool-{mgmt.name}", daemon=True)
        with self.backend.store.lock:
            self._unsubscribe = self.backend.store.subscribe(self._on_event)
            for np in self.backend.store.items(NODEPOOLS):
                self.enqueue(("np", np["metadata"]["namespace"], np["metadata"]["name"]))
        self._remove_listener = hosted.add_listener(self._on_hosted_change) if hasattr(hosted, "add_listener") else None
        self._thread.start()

    # Lifecycle.

    def close(self) -> None:
        self._unsubscribe()
        if self._remove_listener:
            self._remove_listener()
        self._queue.shut_down()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        return self._queue.idle.wait(timeout)

    # The work queue (deduplicating, with delayed requeues).

    def enqueue(self, key: tuple[str, ...]) -> None:
        self._queue.add(key)

    def enqueue_after(self, key: tuple[str, ...], delay: float) -> None:
        self._queue.add_after(key, delay)

    def _loop(self) -> None:
        while True:
            key = self._queue.get()
            if key is None:
                return
            try:
                if key[0] == "np":
                    again = self._sync(key[1], key[2])
                else:
                    again = self._sync_orphans(key[1], key[2])
            except ApiError as e:
                n = self._queue.failed(key)
                if e.code not in (404, 409):
                    log.warning("nodepool %s: %s", "/".join(key[1:]), e.message)
                self.enqueue_after(key, min(0.01 * 2 ** n, 2.0))
                continue
            except Exception:
                log.exception("nodepool %s: sync failed", "/".join(key[1:]))
                n = self._queue.failed(key)
                self.enqueue_after(key, min(0.05 * 2 ** n, 5.0))
                continue
            self._queue.forget(key)
            if key[0] == "np" and self.backend.store.get(NODEPOOLS, key[1], key[2]) is not None:
                again = min(again, self.settings.resync_seconds) if again is not None else self.settings.resync_seconds
            if again is not None:
                self.enqueue_after(key, again)

    # Events (under the store lock: map to keys and return).

    def _on_event(self, event: Event) -> None:
        key = event.key
        if key == NODEPOOLS:
            self.enqueue(("np", event.namespace, event.name))
        elif key == HOSTEDCLUSTERS:
            for np in self.backend.store.items(NODEPOOLS, event.namespace):
                if (np.get("spec") or {}).get("clusterName") == event.name:
                    self.enqueue(("np", event.namespace, np["metadata"]["name"]))
        elif key == NAMESPACES:
            for np in self.backend.store.items(NODEPOOLS):
                spec = np.get("spec") or {}
                if control_plane_namespace(np["metadata"]["namespace"], spec.get("clusterName", "")) == event.name:
                    self.enqueue(("np", np["metadata"]["namespace"], np["metadata"]["name"]))
        elif (key == DEPLOYMENTS and event.name in CAPI_DEPLOYMENTS) or key == CLUSTERS:
            # The Cluster API controllers came back (or stopped), or the Cluster was (un)paused.
            self._enqueue_namespace(event.namespace)
        elif key in (MDS, MSS, MACHINES, AWSMS, AWSMTS):
            for obj in (event.obj, event.old):
                ref = ((obj or {}).get("metadata", {}).get("annotations") or {}).get(ANN_NODEPOOL)
                if ref and "/" in ref:
                    ns, name = ref.split("/", 1)
                    if self.backend.store.get(NODEPOOLS, ns, name) is not None:
                        self.enqueue(("np", ns, name))
                    elif key in (MACHINES, AWSMS):
                        self.enqueue(("orphan", event.namespace, ref))

    def _enqueue_namespace(self, cp_ns: str) -> None:
        """Every pool whose control plane lives in `cp_ns`, and the machines left by deleted pools."""
        store = self.backend.store
        for np in store.items(NODEPOOLS):
            spec = np.get("spec") or {}
            if control_plane_namespace(np["metadata"]["namespace"], spec.get("clusterName", "")) == cp_ns:
                self.enqueue(("np", np["metadata"]["namespace"], np["metadata"]["name"]))
        for obj in [*store.items(MACHINES, cp_ns), *store.items(AWSMS, cp_ns)]:
            ref = (obj["metadata"].get("annotations") or {}).get(ANN_NODEPOOL)
            if ref and "/" in ref and obj["metadata"].get("deletionTimestamp") and store.get(NODEPOOLS, *ref.split("/", 1)) is None:
                self.enqueue(("orphan", cp_ns, ref))

    def capi_active(self, cp_ns: str) -> bool:
        """Whether the Cluster API controllers of this control plane act: their Deployments have a
        ready replica (a namespace without them, as in a bare NodePool setup, counts as running)
        and the Cluster is not paused (CAPI skips every object of a paused Cluster, deletion
        included; HyperShift pauses it with the HostedCluster)."""
        if not all(deployment_running(self.backend, cp_ns, name) for name in CAPI_DEPLOYMENTS):
            return False
        return not any((c.get("spec") or {}).get("paused") for c in self.backend.store.items(CLUSTERS, cp_ns))

    def _on_hosted_change(self, cluster_id: str) -> None:
        with self.backend.store.lock:
            for hc in self.backend.store.items(HOSTEDCLUSTERS):
                if (hc.get("spec") or {}).get("clusterID") == cluster_id:
                    for np in self.backend.store.items(NODEPOOLS, hc["metadata"]["namespace"]):
                        if (np.get("spec") or {}).get("clusterName") == hc["metadata"]["name"]:
                            self.enqueue(("np", np["metadata"]["namespace"], np["metadata"]["name"]))

    # Small write helpers.

    def _rt(self, key: tuple[str, str]):  # noqa: ANN202
        return self.backend.type_for(*key)

    def _version(self, key: tuple[str, str]) -> str | None:
        return CAPI_VERSION if key[0] == "cluster.x-k8s.io" else None

    def _create(self, key: tuple[str, str], namespace: str | None, body: dict, status: dict | None = None) -> dict:
        obj = self.backend.create(self._rt(key), namespace, body, version=self._version(key))
        if status is not None:
            obj = self._patch_status(key, namespace, obj["metadata"]["name"], status)
        return obj

    def _patch(self, key: tuple[str, str], namespace: str | None, name: str, patch: dict) -> dict:
        return self.backend.patch(self._rt(key), namespace, name, MERGE_PATCH, patch, version=self._version(key))

    def _patch_status(self, key: tuple[str, str], namespace: str | None, name: str, status: dict) -> dict:
        return self.backend.patch(self._rt(key), namespace, name, MERGE_PATCH, {"status": status}, subresource="status",
                                  version=self._version(key))

    def _delete(self, key: tuple[str, str], namespace: str | None, name: str, grace: int | None = None) -> None:
        try:
            self.backend.delete(self._rt(key), namespace, name, DeleteOptions("Background", grace_period_seconds=grace))
        except ApiError as e:
            if e.code != 404:
                raise

    def _started(self, kind: str, ident: str) -> float:
        """When the timer `kind` of `ident` started (started now if it was not running)."""
        return self._since.setdefault((kind, ident), time.monotonic())

    def _elapsed(self, kind: str, ident: str) -> float:
        return time.monotonic() - self._started(kind, ident)

    def _forget(self, kind: str, ident: str) -> None:
        self._since.pop((kind, ident), None)

    # ------------------------------------------------------------------------- the NodePool sync

    def _sync(self, ns: str, name: str) -> float | None:
        store = self.backend.store
        np = store.get(NODEPOOLS, ns, name)
        if np is None:
            return None
        np = copy_obj(np)
        spec = np.get("spec") or {}
        cluster_name = spec.get("clusterName", "")
        hc = store.get(HOSTEDCLUSTERS, ns, cluster_name)
        hc = copy_obj(hc) if hc is not None else None
        cp_ns = control_plane_namespace(ns, cluster_name)
        if np["metadata"].get("deletionTimestamp"):
            return self._finalize(np, hc, cp_ns)
        if hc is None or not (hc.get("spec") or {}).get("clusterID"):
            return None
        ns_obj = store.get(NAMESPACES, "", cp_ns)
        if ns_obj is None or ns_obj["metadata"].get("deletionTimestamp"):
            return None
        # The finalizer comes before the pause check, as upstream adds it (a finalizer removed by
        # hand from a paused pool, as the disaster-recovery teardown does, comes back).
        if NP_FINALIZER not in (np["metadata"].get("finalizers") or []):
            np = copy_obj(self._patch(NODEPOOLS, ns, name, {"metadata": {
                "finalizers": list(np["metadata"].get("finalizers") or []) + [NP_FINALIZER]}}))
        ctx = _Ctx(self, np, hc, cp_ns)

        # Pause: the NodePool's own pausedUntil, else its HostedCluster's.
        paused, until = parse_paused(spec.get("pausedUntil"))
        field = spec.get("pausedUntil")
        if not paused:
            paused, until = parse_paused((hc.get("spec") or {}).get("pausedUntil"))
            field = (hc.get("spec") or {}).get("pausedUntil")
        if paused:
            for key in (MDS, MSS):
                for obj in store.items(key, cp_ns):
                    if (obj["metadata"].get("annotations") or {}).get(ANN_NODEPOOL) == ctx.np_ref and \
                            (obj["metadata"].get("annotations") or {}).get(ANN_PAUSED) != "true":
                        self._patch(key, cp_ns, obj["metadata"]["name"], {"metadata": {"annotations": {ANN_PAUSED: "true"}}})
            message = ("Reconciliation paused until field removed" if str(field).lower() == "true"
                       else f"Reconciliation paused until: {field}")
            ctx.set_condition("ReconciliationActive", "False", "ReconciliationPaused", message)
            ctx.write_status()
            return (until + 0.01) if until is not None else None
        invalid_pause = field not in (None, "") and str(field).lower() not in ("true", "false") and not _is_rfc3339(str(field))
        ctx.set_condition("ReconciliationActive", "True",
                          "InvalidPausedUntilValue" if invalid_pause else "ReconciliationActive",
                          "Invalid value provided for PausedUntil field" if invalid_pause else "Reconciliation active on resource")

        # OwnerReference to the HostedCluster, as the real controller adds it.
        meta_patch: dict[str, Any] = {}
        refs = np["metadata"].get("ownerReferences") or []
        if not any(r.get("uid") == hc["metadata"]["uid"] for r in refs):
            meta_patch["ownerReferences"] = refs + [{"apiVersion": "hypershift.openshift.io/v1beta1", "kind": "HostedCluster",
                                                     "name": hc["metadata"]["name"], "uid": hc["metadata"]["uid"]}]
        if meta_patch:
            np = copy_obj(self._patch(NODEPOOLS, ns, name, {"metadata": meta_patch}))
            ctx.np = np

        delays: list[float] = []
        if ctx.validate():
            if ctx.upgrade_type == "InPlace":
                delays.append(self._reconcile_inplace(ctx))
            else:
                delays.append(self._reconcile_replace(ctx))
        if ctx.capi:
            delays.append(self._reconcile_machines(ctx))
        ctx.compute_status()
        ctx.write_status()
        pending = [d for d in delays if d is not None]
        return min(pending) if pending else None

    # ------------------------------------------------------------------------- templates

    def _ensure_template(self, ctx: _Ctx, version: str) -> str:
        """The AWSMachineTemplate for `version` (named after the hash of its spec)."""
        spec = ctx.template_spec(version)
        name = get_name(ctx.name, hash_simple(json.dumps(spec, sort_keys=True)), 253)
        if self.backend.store.get(AWSMTS, ctx.cp_ns, name) is None:
            self._create(AWSMTS, ctx.cp_ns, {
                "apiVersion": CAPA_API, "kind": "AWSMachineTemplate",
                "metadata": {"name": name, "namespace": ctx.cp_ns, "annotations": {ANN_NODEPOOL: ctx.np_ref},
                             "labels": {LABEL_CLUSTER_NAME: ctx.infra_id}, "ownerReferences": ctx.cluster_owner_refs()},
                "spec": {"template": {"spec": spec}},
            })
        return name

    def _ensure_user_data(self, ctx: _Ctx, config_version_hash: str, version: str) -> str:
        name = f"user-data-{ctx.name}-{config_version_hash}"
        if self.backend.store.get(SECRETS, ctx.cp_ns, name) is None:
            import base64
            ignition = json.dumps({"ignition": {"version": "3.2.0", "config": {"merge": [{
                "source": f"https://ignition-server.{ctx.cp_ns}.svc/ignition",
                "httpHeaders": [{"name": "NodePool", "value": ctx.np_ref}, {"name": "TargetConfigVersionHash", "value": config_version_hash}]}]}}})
            self._create(SECRETS, ctx.cp_ns, {
                "metadata": {"name": name, "namespace": ctx.cp_ns,
                             "annotations": {ANN_NODEPOOL: ctx.np_ref, "hypershift.openshift.io/nodePoolTargetVersion": version}},
                "type": "Opaque",
                "data": {"disableTemplating": base64.b64encode(b"true").decode(), "value": base64.b64encode(ignition.encode()).decode()},
            })
        return name

    def _cleanup_unused(self, ctx: _Ctx, used_templates: set[str], used_secrets: set[str]) -> None:
        for mt in self.backend.store.items(AWSMTS, ctx.cp_ns):
            if (mt["metadata"].get("annotations") or {}).get(ANN_NODEPOOL) == ctx.np_ref and mt["metadata"]["name"] not in used_templates:
                self._delete(AWSMTS, ctx.cp_ns, mt["metadata"]["name"])
        for secret in self.backend.store.items(SECRETS, ctx.cp_ns):
            n = secret["metadata"]["name"]
            if n.startswith(f"user-data-{ctx.name}-") and (secret["metadata"].get("annotations") or {}).get(ANN_NODEPOOL) == ctx.np_ref \
                    and n not in used_secrets:
                self._delete(SECRETS, ctx.cp_ns, n)

    def _machine_template(self, ctx: _Ctx, version: str, template_name: str, secret_name: str, extra_labels: dict) -> dict:
        labels = {ctx.resources_name: ctx.resources_name, LABEL_CLUSTER_NAME: ctx.infra_id, **extra_labels}
        spec: dict[str, Any] = {
            "clusterName": ctx.infra_id,
            "bootstrap": {"dataSecretName": secret_name},
            "infrastructureRef": {"apiVersion": CAPA_API, "kind": "AWSMachineTemplate", "namespace": ctx.cp_ns, "name": template_name},
            "version": version,
        }
        if ctx.spec.get("nodeDrainTimeout"):
            spec["nodeDrainTimeout"] = ctx.spec["nodeDrainTimeout"]
        if ctx.spec.get("nodeVolumeDetachTimeout"):
            spec["nodeVolumeDetachTimeout"] = ctx.spec["nodeVolumeDetachTimeout"]
        return {"metadata": {"labels": labels, "annotations": {ANN_NODEPOOL: ctx.np_ref}}, "spec": spec}

    def _targets(self, ctx: _Ctx, current_template: dict | None) -> tuple[str, str, str, str] | None:
        """(version, template name, user-data secret, config-version hash) to roll towards; the
        current ones when the version skew is unsupported; None when there is nothing to do."""
        if ctx.skew_error and current_template is not None:
            tspec = current_template.get("spec") or {}
            secret = (tspec.get("bootstrap") or {}).get("dataSecretName", "")
            return (tspec.get("version", ""), (tspec.get("infrastructureRef") or {}).get("name", ""), secret,
                    secret.rsplit("-", 1)[-1])
        if ctx.skew_error:
            return None
        version = ctx.target_version
        cvh = ctx.config_version_hash(version)
        return version, self._ensure_template(ctx, version), self._ensure_user_data(ctx, cvh, version), cvh

    # ------------------------------------------------------------------------- Replace: MachineDeployment

    def _reconcile_replace(self, ctx: _Ctx) -> float | None:
        store = self.backend.store
        md = store.get(MDS, ctx.cp_ns, ctx.name)
        targets = self._targets(ctx, (md or {}).get("spec", {}).get("template"))
        if targets is None:
            return None
        version, template_name, secret_name, cvh = targets
        replicas = ctx.desired_replicas((md or {}).get("spec", {}).get("replicas"))
        rolling = ((ctx.spec.get("management") or {}).get("replace") or {}).get("rollingUpdate") or {}
        strategy_type = ((ctx.spec.get("management") or {}).get("replace") or {}).get("strategy") or "RollingUpdate"
        strategy: dict[str, Any] = {"type": strategy_type}
        if strategy_type == "RollingUpdate":
            strategy["rollingUpdate"] = {"maxSurge": rolling.get("maxSurge", 1), "maxUnavailable": rolling.get("maxUnavailable", 0)}
        desired_spec = {
            "clusterName": ctx.infra_id,
            "replicas": replicas,
            "minReadySeconds": 0,
            "progressDeadlineSeconds": 600,
            "revisionHistoryLimit": 1,
            "selector": {"matchLabels": {LABEL_CLUSTER_NAME: ctx.infra_id, ctx.resources_name: ctx.resources_name}},
            "strategy": strategy,
            "template": self._machine_template(ctx, version, template_name, secret_name, {}),
        }
        annotations = {ANN_NODEPOOL: ctx.np_ref, ANN_AUTOSCALER_MAX: str(ctx.autoscaling_max), ANN_AUTOSCALER_MIN: str(ctx.autoscaling_min)}
        if md is None:
            md = self._create(MDS, ctx.cp_ns, {
                "apiVersion": CAPI_API, "kind": "MachineDeployment",
                "metadata": {"name": ctx.name, "namespace": ctx.cp_ns, "labels": {LABEL_CLUSTER_NAME: ctx.infra_id},
                             "annotations": dict(annotations, **{ANN_REVISION: "1"}), "ownerReferences": ctx.cluster_owner_refs()},
                "spec": desired_spec,
            })
        else:
            md_ann = md["metadata"].get("annotations") or {}
            changes: dict[str, Any] = {}
            if any(md.get("spec", {}).get(k) != v for k, v in desired_spec.items()):
                changes["spec"] = desired_spec
            ann_patch = {k: v for k, v in annotations.items() if md_ann.get(k) != v}
            if ANN_PAUSED in md_ann:
                ann_patch[ANN_PAUSED] = None
            if ann_patch:
                changes["metadata"] = {"annotations": ann_patch}
            if changes:
                md = self._patch(MDS, ctx.cp_ns, ctx.name, changes)
        md = copy_obj(md)
        if ctx.capi:
            self._rollout(ctx, md)
        ms_list = [ms for ms in store.items(MSS, ctx.cp_ns) if _owned_by(ms, md["metadata"]["uid"])]
        delay = None
        for ms in ms_list if ctx.capi else []:
            d = self._reconcile_machineset(ctx, copy_obj(ms), deployment=ctx.name)
            delay = d if delay is None or (d is not None and d < delay) else delay
        used_templates = {((ms.get("spec") or {}).get("template") or {}).get("spec", {}).get("infrastructureRef", {}).get("name")
                          for ms in ms_list} | {template_name}
        used_secrets = {((ms.get("spec") or {}).get("template") or {}).get("spec", {}).get("bootstrap", {}).get("dataSecretName")
                        for ms in ms_list} | {secret_name}
        self._cleanup_unused(ctx, used_templates, used_secrets)
        md = copy_obj(store.get(MDS, ctx.cp_ns, ctx.name) or md)
        # Without CAPI the MachineDeployment keeps the status it had (nobody writes it).
        status = self._md_status(ctx, md) if ctx.capi else copy_obj(md.get("status") or {})
        complete = all(int(status.get(k) or 0) == replicas for k in ("updatedReplicas", "availableReplicas", "replicas"))
        ctx.rollout = {"kind": "MachineDeployment", "status": status, "complete": complete, "version": version,
                       "template": template_name, "cvh": cvh, "replicas": replicas}
        return delay

    def _template_hash(self, template: dict) -> str:
        return _safe_encode(hash_simple(json.dumps(template, sort_keys=True)))

    def _rollout(self, ctx: _Ctx, md: dict) -> None:
        """The CAPI MachineDeployment controller: one MachineSet per template, rolling update."""
        store = self.backend.store
        spec = md["spec"]
        replicas = int(spec.get("replicas") or 0)
        template = spec["template"]
        thash = self._template_hash(template)
        md_uid = md["metadata"]["uid"]
        self._adopt_orphans(MSS, ctx.cp_ns, md, spec["selector"]["matchLabels"])
        mss = [copy_obj(ms) for ms in store.items(MSS, ctx.cp_ns) if _owned_by(ms, md_uid)]
        new = next((ms for ms in mss if (ms["metadata"].get("labels") or {}).get(LABEL_TEMPLATE_HASH) == thash), None)
        olds = [ms for ms in mss if ms is not new]
        if new is None:
            ms_name = f"{md['metadata']['name']}-{thash}"
            revision = str(int((md["metadata"].get("annotations") or {}).get(ANN_REVISION, "1")) + (1 if olds else 0))
            tmpl = copy_obj(template)
            tmpl["metadata"]["labels"] = dict(tmpl["metadata"].get("labels") or {}, **{
                LABEL_TEMPLATE_HASH: thash, LABEL_DEPLOYMENT_NAME: md["metadata"]["name"]})
            new = copy_obj(self._create(MSS, ctx.cp_ns, {
                "apiVersion": CAPI_API, "kind": "MachineSet",
                "metadata": {
                    "name": ms_name, "namespace": ctx.cp_ns,
                    "labels": dict(tmpl["metadata"]["labels"]),
                    "annotations": {ANN_NODEPOOL: ctx.np_ref, ANN_REVISION: revision,
                                    "machinedeployment.clusters.x-k8s.io/desired-replicas": str(replicas),
                                    "machinedeployment.clusters.x-k8s.io/max-replicas": str(replicas + 1)},
                    "ownerReferences": [{"apiVersion": CAPI_API, "kind": "MachineDeployment", "name": md["metadata"]["name"],
                                         "uid": md_uid, "controller": True, "blockOwnerDeletion": True}],
                },
                "spec": {"clusterName": ctx.infra_id, "replicas": 0 if olds else replicas, "minReadySeconds": 0,
                         "deletePolicy": "Random",
                         "selector": {"matchLabels": dict(spec["selector"]["matchLabels"], **{LABEL_TEMPLATE_HASH: thash})},
                         "template": tmpl},
            }))
            if olds:
                self._patch(MDS, ctx.cp_ns, md["metadata"]["name"], {"metadata": {"annotations": {ANN_REVISION: revision}}})
        machines = self._machines_of(ctx)

        def alive(ms: dict) -> list[dict]:
            return [m for m in machines if _owned_by(m, ms["metadata"]["uid"]) and not m["metadata"].get("deletionTimestamp")]

        def set_replicas(ms: dict, n: int) -> None:
            if int(ms["spec"].get("replicas") or 0) != n:
                self._patch(MSS, ctx.cp_ns, ms["metadata"]["name"], {"spec": {"replicas": n}})
                ms["spec"]["replicas"] = n

        if not olds:
            set_replicas(new, replicas)
        elif spec.get("strategy", {}).get("type") == "OnDelete":
            set_replicas(new, max(0, replicas - sum(len(alive(o)) for o in olds)))
            for old in olds:
                set_replicas(old, len(alive(old)))
        else:
            rolling = spec.get("strategy", {}).get("rollingUpdate") or {}
            max_surge = scaled_value(rolling.get("maxSurge", 1), replicas, True)
            max_unavailable = scaled_value(rolling.get("maxUnavailable", 0), replicas, False)
            if max_surge == 0 and max_unavailable == 0:
                max_unavailable = 1
            # Scale up the new MachineSet within the surge (counting machines still being deleted).
            total = sum(max(int(ms["spec"].get("replicas") or 0), len([m for m in machines if _owned_by(m, ms["metadata"]["uid"])]))
                        for ms in mss + ([new] if new not in mss else []))
            new_replicas = int(new["spec"].get("replicas") or 0)
            if new_replicas < replicas and total < replicas + max_surge:
                set_replicas(new, min(replicas, new_replicas + replicas + max_surge - total))
            elif new_replicas > replicas:
                set_replicas(new, replicas)
            # Scale down old MachineSets as far as availability allows.
            available = sum(1 for m in machines if not m["metadata"].get("deletionTimestamp") and self._machine_available(m))
            min_available = replicas - max_unavailable
            for old in sorted(olds, key=lambda o: o["metadata"].get("creationTimestamp", "")):
                old_alive = alive(old)
                current = int(old["spec"].get("replicas") or 0)
                if current == 0:
                    continue
                # Unavailable old machines go first at no cost to availability.
                unavailable_old = sum(1 for m in old_alive if not self._machine_available(m))
                removable = unavailable_old + max(0, available - min_available)
                cut = min(current, removable)
                if cut > 0:
                    set_replicas(old, current - cut)
                    available -= max(0, cut - unavailable_old)
        # Old MachineSets with nothing left go away (revisionHistoryLimit aside).
        for old in olds:
            if int(old["spec"].get("replicas") or 0) == 0 and not any(_owned_by(m, old["metadata"]["uid"]) for m in machines):
                self._delete(MSS, ctx.cp_ns, old["metadata"]["name"])

    def _adopt_orphans(self, key: tuple[str, str], cp_ns: str, owner: dict, selector: dict[str, str]) -> None:
        """CAPI's adoptOrphan: objects matching the owner's selector that no controller owns get it
        as their controller (MachineDeployment -> MachineSets, MachineSet -> Machines). Objects
        restored on another management cluster come without ownerReferences and are taken over
        this way instead of being replaced."""
        kind = owner.get("kind") or ("MachineDeployment" if key == MSS else "MachineSet")
        for obj in self.backend.store.items(key, cp_ns):
            meta = obj["metadata"]
            if meta.get("deletionTimestamp") or any(r.get("controller") for r in meta.get("ownerReferences") or []):
                continue
            labels = meta.get("labels") or {}
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                continue
            refs = list(meta.get("ownerReferences") or []) + [{
                "apiVersion": CAPI_API, "kind": kind, "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
                "controller": True, "blockOwnerDeletion": True}]
            self._patch(key, cp_ns, meta["name"], {"metadata": {"ownerReferences": refs}})
            log.info("%s %s/%s adopted %s %s", kind, cp_ns, owner["metadata"]["name"], key[1][:-1], meta["name"])

    def _md_status(self, ctx: _Ctx, md: dict) -> dict:
        store = self.backend.store
        md_uid = md["metadata"]["uid"]
        template = md["spec"]["template"]
        thash = self._template_hash(template)
        machines = self._machines_of(ctx)
        owned_sets = {ms["metadata"]["uid"]: ms for ms in store.items(MSS, ctx.cp_ns) if _owned_by(ms, md_uid)}
        mine = [m for m in machines if any(_owned_by(m, uid) for uid in owned_sets)]
        live = [m for m in mine if not m["metadata"].get("deletionTimestamp")]
        updated = [m for m in live if (m["metadata"].get("labels") or {}).get(LABEL_TEMPLATE_HASH) == thash]
        ready = [m for m in live if self._machine_available(m)]
        replicas = int(md["spec"].get("replicas") or 0)
        phase = "Running"
        if len(live) < replicas:
            phase = "ScalingUp"
        elif len(live) > replicas:
            phase = "ScalingDown"
        now = now_rfc3339()
        available_ok = len(ready) >= replicas - scaled_value(
            ((md["spec"].get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable", 0), replicas, False)
        all_ready = len(ready) == replicas and len(updated) == replicas and len(live) == replicas
        status = {
            "observedGeneration": md["metadata"].get("generation", 1),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(md["spec"]["selector"]["matchLabels"].items())),
            "replicas": len(mine),
            "updatedReplicas": len(updated),
            "readyReplicas": len(ready),
            "availableReplicas": len(ready),
            "unavailableReplicas": max(0, replicas - len(ready)),
            "phase": phase,
            "conditions": _keep_times((md.get("status") or {}).get("conditions") or [], [
                {"type": "Ready", "status": "True" if all_ready else "False",
                 **({} if all_ready else {"reason": "WaitingForAvailableMachines", "severity": "Warning",
                                          "message": f"Minimum availability requires {replicas} replicas, current {len(ready)} available"})},
                {"type": "Available", "status": "True" if available_ok else "False",
                 **({} if available_ok else {"reason": "WaitingForAvailableMachines", "severity": "Warning"})},
                {"type": "MachineSetReady", "status": "True" if all_ready else "False",
                 **({} if all_ready else {"reason": "WaitingForAvailableMachines", "severity": "Info"})},
            ], now),
        }
        if _status_differs(md.get("status") or {}, status):
            self._patch_status(MDS, ctx.cp_ns, md["metadata"]["name"], status)
        return status

    # ------------------------------------------------------------------------- InPlace: one MachineSet

    def _reconcile_inplace(self, ctx: _Ctx) -> float | None:
        store = self.backend.store
        ms = store.get(MSS, ctx.cp_ns, ctx.name)
        targets = self._targets(ctx, (ms or {}).get("spec", {}).get("template"))
        if targets is None:
            return None
        version, template_name, secret_name, cvh = targets
        replicas = ctx.desired_replicas((ms or {}).get("spec", {}).get("replicas"))
        inplace = (ctx.spec.get("management") or {}).get("inPlace") or {}
        max_unavailable = scaled_value(inplace.get("maxUnavailable", 1), replicas, False) or 1
        template = self._machine_template(ctx, version, template_name, secret_name, {})
        annotations = {ANN_NODEPOOL: ctx.np_ref, ANN_MAX_UNAVAILABLE: str(max_unavailable), ANN_TARGET_CONFIG_VERSION: cvh,
                       ANN_AUTOSCALER_MAX: str(ctx.autoscaling_max), ANN_AUTOSCALER_MIN: str(ctx.autoscaling_min)}
        desired_spec = {
            "clusterName": ctx.infra_id, "replicas": replicas, "minReadySeconds": 0, "deletePolicy": "Random",
            "selector": {"matchLabels": {ctx.resources_name: ctx.resources_name}},
            "template": template,
        }
        if ms is None:
            ms = self._create(MSS, ctx.cp_ns, {
                "apiVersion": CAPI_API, "kind": "MachineSet",
                "metadata": {"name": ctx.name, "namespace": ctx.cp_ns, "labels": {LABEL_CLUSTER_NAME: ctx.infra_id},
                             # A brand-new MachineSet starts at its target: nothing to upgrade in place.
                             "annotations": dict(annotations, **{ANN_CURRENT_CONFIG_VERSION: cvh}),
                             "ownerReferences": ctx.cluster_owner_refs()},
                "spec": desired_spec,
            })
        else:
            ms_ann = ms["metadata"].get("annotations") or {}
            changes: dict[str, Any] = {}
            if any(ms.get("spec", {}).get(k) != v for k, v in desired_spec.items()):
                changes["spec"] = desired_spec
            ann_patch = {k: v for k, v in annotations.items() if ms_ann.get(k) != v}
            if ANN_PAUSED in ms_ann:
                ann_patch[ANN_PAUSED] = None
            if ann_patch:
                changes["metadata"] = {"annotations": ann_patch}
            if changes:
                ms = self._patch(MSS, ctx.cp_ns, ctx.name, changes)
        ms = copy_obj(ms)
        delay = self._reconcile_machineset(ctx, ms, deployment=None) if ctx.capi else None
        self._cleanup_unused(ctx, {template_name, (ms["spec"]["template"]["spec"].get("infrastructureRef") or {}).get("name")},
                             {secret_name})
        upgrade_delay = self._inplace_upgrade(ctx, copy_obj(store.get(MSS, ctx.cp_ns, ctx.name) or ms), version, cvh, max_unavailable)
        ms = copy_obj(store.get(MSS, ctx.cp_ns, ctx.name) or ms)
        ms_ann = ms["metadata"].get("annotations") or {}
        status = ms.get("status") or {}
        complete = (ms_ann.get(ANN_CURRENT_CONFIG_VERSION) == ms_ann.get(ANN_TARGET_CONFIG_VERSION)
                    and int(status.get("availableReplicas") or 0) == replicas and int(status.get("replicas") or 0) == replicas)
        ctx.rollout = {"kind": "MachineSet", "status": status, "complete": complete, "version": version,
                       "template": template_name, "cvh": cvh, "replicas": replicas}
        pending = [d for d in (delay, upgrade_delay) if d is not None]
        return min(pending) if pending else None

    def _inplace_upgrade(self, ctx: _Ctx, ms: dict, version: str, cvh: str, max_unavailable: int) -> float | None:
        """The in-place upgrader: nodes at the old config get the new one, max_unavailable at a time."""
        ann = ms["metadata"].get("annotations") or {}
        if ann.get(ANN_CURRENT_CONFIG_VERSION) == ann.get(ANN_TARGET_CONFIG_VERSION):
            return None
        api = ctx.api
        if api is None or not api.serving:
            return self.settings.resync_seconds
        hb = api.cluster.backend
        machines = [m for m in self._machines_of(ctx) if _owned_by(m, ms["metadata"]["uid"]) and not m["metadata"].get("deletionTimestamp")]
        nodes = []
        for m in machines:
            node_name = ((m.get("status") or {}).get("nodeRef") or {}).get("name")
            node = hb.store.get(NODES, "", node_name) if node_name else None
            if node is None:
                return self.settings.node_ready_seconds  # wait for every machine to have its node
            nodes.append(copy_obj(node))
        todo = [n for n in nodes if (n["metadata"].get("annotations") or {}).get(MCO_CURRENT) != cvh]
        if not todo:
            self._patch(MSS, ctx.cp_ns, ms["metadata"]["name"], {"metadata": {"annotations": {
                ANN_CURRENT_CONFIG_VERSION: cvh,
                "hypershift.openshift.io/nodePoolUpgradeInProgressTrue": None}}})
            return 0.0
        progress = (f'Updating version in progress. Target version: "{version}". Total Nodes: {len(nodes)}. '
                    f"Upgraded: {len(nodes) - len(todo)}")
        if ann.get("hypershift.openshift.io/nodePoolUpgradeInProgressTrue") != progress:
            self._patch(MSS, ctx.cp_ns, ms["metadata"]["name"], {"metadata": {"annotations": {
                "hypershift.openshift.io/nodePoolUpgradeInProgressTrue": progress}}})
        working = [n for n in todo if (n["metadata"].get("annotations") or {}).get(MCO_DESIRED) == cvh]
        for n in todo:
            if len(working) >= max_unavailable:
                break
            if n not in working:
                working.append(n)
        delays = []
        for node in working:
            delays.append(self._update_node_in_place(ctx, hb, node, version, cvh))
        return min(delays) if delays else None

    def _update_node_in_place(self, ctx: _Ctx, hb: Any, node: dict, version: str, cvh: str) -> float:
        name = node["metadata"]["name"]
        nodes_rt = hb.type_for(*NODES)
        ann = node["metadata"].get("annotations") or {}
        if ann.get(MCO_DESIRED) != cvh or not (node.get("spec") or {}).get("unschedulable"):
            self._forget("inplace-drain", name)
            self._forget("inplace-reboot", name)
            hb.patch(nodes_rt, None, name, MERGE_PATCH, {
                "metadata": {"annotations": {MCO_DESIRED: cvh, MCO_STATE: "Working"}},
                "spec": {"unschedulable": True, "taints": _with_taint(node)}})
            return 0.0
        if self._since.get(("inplace-reboot", name)) is None:
            drained, delay = self._drain_step(hb, node, "inplace-drain", ctx.drain_timeout)
            if not drained:
                return delay
            self._started("inplace-reboot", name)
            _set_node_ready(hb, name, "False", "KubeletNotReady", "node is rebooting to apply the new configuration")
            return self.settings.inplace_update_seconds
        left = self.settings.inplace_update_seconds - self._elapsed("inplace-reboot", name)
        if left > 0:
            return left
        self._forget("inplace-reboot", name)
        self._forget("inplace-drain", name)
        hb.patch(nodes_rt, None, name, MERGE_PATCH, {
            "metadata": {"annotations": {MCO_CURRENT: cvh, MCO_DESIRED: cvh, MCO_STATE: "Done"}},
            "spec": {"unschedulable": None, "taints": _without_taint(node) or None}})
        _set_node_ready(hb, name, "True", "KubeletReady", "kubelet is posting ready status",
                        node_info={"kubeletVersion": kubelet_version(version), "kubeProxyVersion": kubelet_version(version),
                                   "osImage": _os_image(version)})
        return 0.0

    # ------------------------------------------------------------------------- MachineSet: machines

    def _reconcile_machineset(self, ctx: _Ctx, ms: dict, deployment: str | None) -> float | None:
        ms_uid = ms["metadata"]["uid"]
        self._adopt_orphans(MACHINES, ctx.cp_ns, ms, (ms["spec"].get("selector") or {}).get("matchLabels") or {})
        machines = [m for m in self._machines_of(ctx) if _owned_by(m, ms_uid)]
        live = [m for m in machines if not m["metadata"].get("deletionTimestamp")]
        replicas = int(ms["spec"].get("replicas") or 0)
        if len(live) < replicas:
            for _ in range(replicas - len(live)):
                self._create_machine(ctx, ms, deployment)
        elif len(live) > replicas:
            # Deletion priority: machines that are not running yet first, then the newest.
            ranked = sorted(live, key=lambda m: (self._machine_available(m), m["metadata"].get("creationTimestamp", ""),
                                                 m["metadata"]["name"]), reverse=False)
            not_ready = [m for m in ranked if not self._machine_available(m)]
            ready = sorted([m for m in ranked if self._machine_available(m)],
                           key=lambda m: (m["metadata"].get("creationTimestamp", ""), m["metadata"]["name"]), reverse=True)
            for m in (not_ready + ready)[:len(live) - replicas]:
                self._delete(MACHINES, ctx.cp_ns, m["metadata"]["name"])
        machines = [m for m in self._machines_of(ctx) if _owned_by(m, ms_uid)]
        live = [m for m in machines if not m["metadata"].get("deletionTimestamp")]
        ready = [m for m in live if self._machine_available(m)]
        now = now_rfc3339()
        all_ready = len(ready) == replicas and len(live) == replicas
        status = {
            "observedGeneration": ms["metadata"].get("generation", 1),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(ms["spec"]["selector"]["matchLabels"].items())),
            "replicas": len(machines),
            "fullyLabeledReplicas": len(machines),
            "readyReplicas": len(ready),
            "availableReplicas": len(ready),
            "conditions": _keep_times((ms.get("status") or {}).get("conditions") or [], [
                {"type": "Ready", "status": "True" if all_ready else "False",
                 **({} if all_ready else {"reason": "WaitingForAvailableMachines", "severity": "Info"})},
                {"type": "MachinesCreated", "status": "True"},
                {"type": "MachinesReady", "status": "True" if len(ready) == len(live) else "False",
                 **({} if len(ready) == len(live) else {"reason": "Provisioning", "severity": "Info"})},
                {"type": "Resized", "status": "True" if len(live) == replicas else "False",
                 **({} if len(live) == replicas else {"reason": "ScalingUp" if len(live) < replicas else "ScalingDown",
                                                      "severity": "Warning"})},
            ], now),
        }
        if _status_differs(ms.get("status") or {}, status):
            self._patch_status(MSS, ctx.cp_ns, ms["metadata"]["name"], status)
        return None

    def _create_machine(self, ctx: _Ctx, ms: dict, deployment: str | None) -> None:
        tmpl = ms["spec"]["template"]
        name = names.generate_name(f"{ms['metadata']['name']}-")
        labels = dict(tmpl["metadata"].get("labels") or {}, **{LABEL_SET_NAME: ms["metadata"]["name"]})
        if deployment:
            labels[LABEL_DEPLOYMENT_NAME] = deployment
        labels.setdefault(LABEL_CLUSTER_NAME, ctx.infra_id)
        spec = copy_obj(tmpl["spec"])
        spec["infrastructureRef"] = {"apiVersion": CAPA_API, "kind": "AWSMachine", "namespace": ctx.cp_ns, "name": name}
        self._create(MACHINES, ctx.cp_ns, {
            "apiVersion": CAPI_API, "kind": "Machine",
            "metadata": {
                "name": name, "namespace": ctx.cp_ns, "labels": labels,
                "annotations": dict(tmpl["metadata"].get("annotations") or {},
                                    **{"hypershift.openshift.io/nodePoolTaints": json.dumps(ctx.spec.get("taints") or [])}),
                "finalizers": [MACHINE_FINALIZER],
                "ownerReferences": [{"apiVersion": CAPI_API, "kind": "MachineSet", "name": ms["metadata"]["name"],
                                     "uid": ms["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": spec,
        }, status={"phase": "Pending", "bootstrapReady": False, "infrastructureReady": False, "lastUpdated": now_rfc3339(),
                   "observedGeneration": 1})

    def _machines_of(self, ctx: _Ctx) -> list[dict]:
        return [copy_obj(m) for m in self.backend.store.items(MACHINES, ctx.cp_ns)
                if (m["metadata"].get("annotations") or {}).get(ANN_NODEPOOL) == ctx.np_ref]

    def _machine_available(self, machine: dict) -> bool:
        status = machine.get("status") or {}
        if status.get("phase") != "Running" or not status.get("nodeRef"):
            return False
        c = _condition(status.get("conditions") or [], "NodeHealthy")
        return c is None or c.get("status") == "True"

    # ------------------------------------------------------------------------- Machine + AWSMachine + Node

    def _reconcile_machines(self, ctx: _Ctx) -> float | None:
        delays = []
        for machine in self._machines_of(ctx):
            d = self._reconcile_machine(ctx, machine)
            if d is not None:
                delays.append(d)
        return min(delays) if delays else None

    def _reconcile_machine(self, ctx: _Ctx, machine: dict) -> float | None:
        store = self.backend.store
        meta = machine["metadata"]
        name = meta["name"]
        uid = meta["uid"]
        api = ctx.api
        if meta.get("deletionTimestamp"):
            return self._delete_machine(ctx, machine)
        if MACHINE_FINALIZER not in (meta.get("finalizers") or []):
            # A Machine restored without its finalizer gets it back (the CAPI machine controller adds it).
            machine = copy_obj(self._patch(MACHINES, ctx.cp_ns, name, {"metadata": {
                "finalizers": list(meta.get("finalizers") or []) + [MACHINE_FINALIZER]}}))
            meta = machine["metadata"]
        aws = store.get(AWSMS, ctx.cp_ns, name)
        if aws is not None:
            aws = self._own_aws_machine(ctx, machine, aws)
        if aws is None:
            self._create_aws_machine(ctx, machine)
            self._started("boot", uid)
            self._patch_machine_status(ctx, machine, {"phase": "Provisioning", "bootstrapReady": True}, [
                {"type": "BootstrapReady", "status": "True"},
                {"type": "InfrastructureReady", "status": "False", "reason": "WaitingForInfrastructure", "severity": "Info"},
                {"type": "Ready", "status": "False", "reason": "WaitingForInfrastructure", "severity": "Info"},
            ])
            return self.settings.machine_boot_seconds
        aws = copy_obj(aws)
        known_id = (aws.get("spec") or {}).get("instanceID") or instance_id_of((aws.get("spec") or {}).get("providerID"))
        if not (aws.get("status") or {}).get("ready") and known_id:
            # CAPA's findInstance: an AWSMachine that names its instance (restored from another
            # management cluster) adopts it; an id EC2 does not know is an error, never a relaunch.
            instance = self.instances.get(known_id)
            if instance is None:
                self._patch_status(AWSMS, ctx.cp_ns, name, {"ready": False, "conditions": [
                    {"type": "InstanceReady", "status": "Unknown", "reason": "InstanceNotFound", "severity": "Warning",
                     "message": f"failed to find instance {known_id!r}", "lastTransitionTime": now_rfc3339()}]})
                return self.settings.resync_seconds
            if instance.state != RUNNING:
                self._patch_status(AWSMS, ctx.cp_ns, name, {
                    "ready": False, "instanceState": instance.state, "failureReason": "UpdateError",
                    "failureMessage": f'EC2 instance state "{instance.state}" is unexpected'})
                return None
            addresses = [{"type": "InternalIP", "address": instance.private_ip},
                         {"type": "InternalDNS", "address": instance.private_dns}]
            self._patch_status(AWSMS, ctx.cp_ns, name, {
                "ready": True, "instanceState": RUNNING, "addresses": addresses,
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now_rfc3339()},
                               {"type": "InstanceReady", "status": "True", "lastTransitionTime": now_rfc3339()},
                               {"type": "SecurityGroupsReady", "status": "True", "lastTransitionTime": now_rfc3339()}]})
            if (machine.get("spec") or {}).get("providerID") != instance.provider_id:
                self._patch(MACHINES, ctx.cp_ns, name, {"spec": {"providerID": instance.provider_id}})
            machine = copy_obj(store.get(MACHINES, ctx.cp_ns, name) or machine)
            self._patch_machine_status(ctx, machine, {"phase": "Provisioned", "bootstrapReady": True, "infrastructureReady": True,
                                                      "addresses": addresses}, [
                {"type": "BootstrapReady", "status": "True"},
                {"type": "InfrastructureReady", "status": "True"},
                {"type": "NodeHealthy", "status": "False", "reason": "NodeProvisioning", "severity": "Warning"},
                {"type": "Ready", "status": "False", "reason": "NodeProvisioning", "severity": "Warning"},
            ])
            machine = copy_obj(store.get(MACHINES, ctx.cp_ns, name) or machine)
            aws = copy_obj(store.get(AWSMS, ctx.cp_ns, name) or aws)
        if not (aws.get("status") or {}).get("ready"):
            left = self.settings.machine_boot_seconds - self._elapsed("boot", uid)
            if left > 0:
                return left
            ip, dns, instance_id, zone = self._instance_identity(ctx, machine)
            provider_id = f"aws:///{zone}/{instance_id}"
            self.instances.launch(instance_id, ip, dns, zone, (ctx.hc.get("spec") or {}).get("clusterID"))
            addresses = [{"type": "InternalIP", "address": ip}, {"type": "InternalDNS", "address": dns},
                         {"type": "InternalDNS", "address": dns.split(".")[0] + "." + dns.split(".", 1)[1]}][:2]
            self._patch(AWSMS, ctx.cp_ns, name, {"spec": {"providerID": provider_id, "instanceID": instance_id}})
            self._patch_status(AWSMS, ctx.cp_ns, name, {
                "ready": True, "instanceState": "running", "addresses": addresses,
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now_rfc3339()},
                               {"type": "InstanceReady", "status": "True", "lastTransitionTime": now_rfc3339()},
                               {"type": "SecurityGroupsReady", "status": "True", "lastTransitionTime": now_rfc3339()}]})
            self._patch(MACHINES, ctx.cp_ns, name, {"spec": {"providerID": provider_id}})
            machine = copy_obj(store.get(MACHINES, ctx.cp_ns, name))
            self._patch_machine_status(ctx, machine, {"phase": "Provisioned", "infrastructureReady": True, "addresses": addresses}, [
                {"type": "BootstrapReady", "status": "True"},
                {"type": "InfrastructureReady", "status": "True"},
                {"type": "NodeHealthy", "status": "False", "reason": "NodeProvisioning", "severity": "Warning"},
                {"type": "Ready", "status": "False", "reason": "NodeProvisioning", "severity": "Warning"},
            ])
            self._started("provisioned", uid)
            return self.settings.node_join_seconds
        # The instance runs: its kubelet registers a Node once the hosted API answers.
        dns = next((a["address"] for a in (aws.get("status") or {}).get("addresses") or [] if a.get("type") == "InternalDNS"), None)
        if not dns:
            return None
        if api is None:
            return None
        hb = api.cluster.backend
        if not api.serving:
            # Machines keep running; nodes stay as they were unless the outage outlasts the grace.
            grace_left = self.settings.api_unreachable_grace_seconds - api.unserved_for()
            node = hb.store.get(NODES, "", dns)
            if node is not None and grace_left <= 0:
                ready = _condition((node.get("status") or {}).get("conditions") or [], "Ready")
                if ready is None or ready.get("status") != "Unknown":
                    _set_node_unknown(hb, dns)
                self._forget("recover", dns)
            return max(grace_left, 0) + 0.01 if node is not None and grace_left > 0 else None
        node = hb.store.get(NODES, "", dns)
        if node is None:
            left = self.settings.node_join_seconds - self._elapsed("provisioned", uid)
            if left > 0:
                return left
            self._register_node(ctx, hb, machine, aws, dns)
            self._started("registered", dns)
            return self.settings.node_ready_seconds
        node = copy_obj(node)
        ready = _condition((node.get("status") or {}).get("conditions") or [], "Ready")
        if ready is not None and ready.get("status") == "Unknown":
            # Back from an outage longer than the grace: the kubelet posts its status again.
            left = self.settings.node_ready_seconds - self._elapsed("recover", dns)
            if left > 0:
                return left
            self._forget("recover", dns)
            _set_node_ready(hb, dns, "True", "KubeletReady", "kubelet is posting ready status")
            taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("key") != "node.kubernetes.io/unreachable"]
            hb.patch(hb.type_for(*NODES), None, dns, MERGE_PATCH, {"spec": {"taints": taints or None}})
            node = copy_obj(hb.store.get(NODES, "", dns))
        elif ready is None or (ready.get("status") != "True" and (node["metadata"].get("annotations") or {}).get(MCO_STATE) != "Working"):
            left = self.settings.node_ready_seconds - self._elapsed("registered", dns)
            if left > 0:
                return left
            _set_node_ready(hb, dns, "True", "KubeletReady", "kubelet is posting ready status")
            node = copy_obj(hb.store.get(NODES, "", dns))
        self._forget("registered", dns)
        healthy = _node_ready(node)
        node_ref = {"apiVersion": "v1", "kind": "Node", "name": dns, "uid": node["metadata"]["uid"]}
        info = (node.get("status") or {}).get("nodeInfo") or {}
        self._patch_machine_status(ctx, machine, {"phase": "Running", "nodeRef": node_ref, "nodeInfo": info}, [
            {"type": "BootstrapReady", "status": "True"},
            {"type": "InfrastructureReady", "status": "True"},
            {"type": "NodeHealthy", "status": "True"} if healthy else
            {"type": "NodeHealthy", "status": "False", "reason": "NodeConditionsFailed", "severity": "Warning",
             "message": "Node condition Ready is False"},
            {"type": "Ready", "status": "True"},
        ])
        return None

    def _own_aws_machine(self, ctx: _Ctx, machine: dict, aws: dict) -> dict:
        """The Machine controller makes its infrastructure object its own (ownerReference) and CAPA
        adds its finalizer, as they do for AWSMachines restored without them."""
        meta = aws["metadata"]
        patch: dict[str, Any] = {}
        if meta.get("deletionTimestamp"):
            return aws
        refs = meta.get("ownerReferences") or []
        if not any(r.get("uid") == machine["metadata"]["uid"] for r in refs):
            patch["ownerReferences"] = [r for r in refs if r.get("kind") != "Machine"] + [{
                "apiVersion": CAPI_API, "kind": "Machine", "name": machine["metadata"]["name"], "uid": machine["metadata"]["uid"],
                "controller": True, "blockOwnerDeletion": True}]
        if AWSMACHINE_FINALIZER not in (meta.get("finalizers") or []):
            patch["finalizers"] = list(meta.get("finalizers") or []) + [AWSMACHINE_FINALIZER]
        if not patch:
            return aws
        return self._patch(AWSMS, ctx.cp_ns, meta["name"], {"metadata": patch})

    def _patch_machine_status(self, ctx: _Ctx, machine: dict, fields: dict, conditions: list[dict]) -> None:
        old = machine.get("status") or {}
        status = dict(fields)
        status["conditions"] = _keep_times(old.get("conditions") or [], conditions, now_rfc3339())
        status["observedGeneration"] = machine["metadata"].get("generation", 1)
        merged = dict(old, **status)
        if _status_differs(old, merged):
            status["lastUpdated"] = now_rfc3339()
            self._patch_status(MACHINES, ctx.cp_ns, machine["metadata"]["name"], status)

    def _instance_identity(self, ctx: _Ctx, machine: dict) -> tuple[str, str, str, str]:
        region = ctx.region
        h = _fnv_int(machine["metadata"]["uid"])
        zone = ((ctx.hc.get("spec") or {}).get("platform") or {}).get("aws", {}).get("cloudProviderConfig", {}).get("zone") \
            or f"{region}a"
        taken = {i.private_dns for i in self.instances.running()}
        api = ctx.api
        if api is not None:
            taken |= {n["metadata"]["name"] for n in api.cluster.backend.store.items(NODES)}
        for attempt in range(64):
            hv = _fnv_int(f"{machine['metadata']['uid']}/{attempt}") if attempt else h
            ip = f"10.0.{128 + (hv >> 8) % 64}.{hv % 254 + 1}"
            domain = "ec2.internal" if region == "us-east-1" else f"{region}.compute.internal"
            dns = f"ip-{ip.replace('.', '-')}.{domain}"
            if dns not in taken:
                break
        instance_id = "i-0" + hashlib.sha1(machine["metadata"]["uid"].encode()).hexdigest()[:16]
        return ip, dns, instance_id, zone

    def _create_aws_machine(self, ctx: _Ctx, machine: dict) -> None:
        meta = machine["metadata"]
        tmpl_name = ((machine.get("spec") or {}).get("bootstrap") and
                     ((self._machine_set_of(ctx, machine) or {}).get("spec", {}).get("template", {}).get("spec", {})
                      .get("infrastructureRef", {}).get("name")))
        tmpl = self.backend.store.get(AWSMTS, ctx.cp_ns, tmpl_name or "")
        spec = copy_obj(((tmpl or {}).get("spec") or {}).get("template", {}).get("spec") or ctx.template_spec(ctx.target_version))
        self._create(AWSMS, ctx.cp_ns, {
            "apiVersion": CAPA_API, "kind": "AWSMachine",
            "metadata": {
                "name": meta["name"], "namespace": ctx.cp_ns,
                "labels": {k: v for k, v in (meta.get("labels") or {}).items()},
                "annotations": {ANN_NODEPOOL: ctx.np_ref,
                                "cluster.x-k8s.io/cloned-from-name": tmpl_name or "",
                                "cluster.x-k8s.io/cloned-from-groupkind": "AWSMachineTemplate.infrastructure.cluster.x-k8s.io"},
                "finalizers": [AWSMACHINE_FINALIZER],
                "ownerReferences": [{"apiVersion": CAPI_API, "kind": "Machine", "name": meta["name"], "uid": meta["uid"],
                                     "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": spec,
        }, status={"ready": False, "instanceState": "pending"})

    def _machine_set_of(self, ctx: _Ctx, machine: dict) -> dict | None:
        for ref in machine["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == "MachineSet":
                return self.backend.store.get(MSS, ctx.cp_ns, ref.get("name", ""))
        return None

    def _register_node(self, ctx: _Ctx, hb: Any, machine: dict, aws: dict, dns: str) -> None:
        spec = machine.get("spec") or {}
        version = spec.get("version") or ctx.target_version
        instance_type = (aws.get("spec") or {}).get("instanceType", "m5.large")
        zone = (aws.get("spec") or {}).get("providerID", "aws:///x/").split("/")[3] if (aws.get("spec") or {}).get("providerID") else f"{ctx.region}a"
        ip = next((a["address"] for a in (aws.get("status") or {}).get("addresses") or [] if a.get("type") == "InternalIP"), "10.0.128.1")
        cvh = (spec.get("bootstrap") or {}).get("dataSecretName", "").rsplit("-", 1)[-1]
        ms = self._machine_set_of(ctx, machine) or {}
        labels = {
            "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/instance-type": instance_type, "beta.kubernetes.io/os": "linux",
            "failure-domain.beta.kubernetes.io/region": ctx.region, "failure-domain.beta.kubernetes.io/zone": zone,
            "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": dns.split(".")[0], "kubernetes.io/os": "linux",
            "node-role.kubernetes.io/worker": "", "node.kubernetes.io/instance-type": instance_type,
            "node.openshift.io/os_id": "rhcos", "topology.ebs.csi.aws.com/zone": zone,
            "topology.kubernetes.io/region": ctx.region, "topology.kubernetes.io/zone": zone,
            NODE_LABEL_NODEPOOL: ctx.name,
        }
        for k, v in (ctx.spec.get("nodeLabels") or {}).items():
            labels[k] = v
        body = {
            "metadata": {"name": dns, "labels": labels, "annotations": {
                "cluster.x-k8s.io/cluster-name": ctx.infra_id, "cluster.x-k8s.io/cluster-namespace": ctx.cp_ns,
                "cluster.x-k8s.io/machine": machine["metadata"]["name"], "cluster.x-k8s.io/owner-kind": "MachineSet",
                "cluster.x-k8s.io/owner-name": (ms.get("metadata") or {}).get("name", ""),
                MCO_CURRENT: cvh, MCO_DESIRED: cvh, MCO_STATE: "Done",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
            "spec": {"providerID": (aws.get("spec") or {}).get("providerID", "")},
        }
        taints = [{"key": t["key"], "value": t.get("value", ""), "effect": t["effect"]} for t in ctx.spec.get("taints") or []
                  if t.get("key") and t.get("effect")]
        if taints:
            body["spec"]["taints"] = taints
        try:
            hb.create(hb.type_for(*NODES), None, body)
        except ApiError as e:
            if e.code != 409:
                raise
        now = now_rfc3339()
        hb.patch(hb.type_for(*NODES), None, dns, MERGE_PATCH, {"status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
                 "message": "kubelet has sufficient memory available", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
                 "message": "kubelet has no disk pressure", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID",
                 "message": "kubelet has sufficient PID available", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                 "message": "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
                            "message:Network plugin returns error: No CNI configuration file in /etc/kubernetes/cni/net.d/.",
                 "lastHeartbeatTime": now, "lastTransitionTime": now},
            ],
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": dns},
                          {"type": "InternalDNS", "address": dns}],
            "capacity": {"cpu": "4", "ephemeral-storage": "125238252Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                         "memory": "16092956Ki", "pods": "250"},
            "allocatable": {"cpu": "3500m", "ephemeral-storage": "114345831029", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                            "memory": "14941980Ki", "pods": "250"},
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"architecture": "amd64", "bootID": hashlib.md5(dns.encode()).hexdigest(),
                         "containerRuntimeVersion": "cri-o://1.30.6-3.rhaos4.17.el9", "kernelVersion": "5.14.0-427.44.1.el9_4.x86_64",
                         "kubeProxyVersion": kubelet_version(version), "kubeletVersion": kubelet_version(version),
                         "machineID": hashlib.md5(machine["metadata"]["uid"].encode()).hexdigest(), "operatingSystem": "linux",
                         "osImage": _os_image(version), "systemUUID": "ec2" + hashlib.md5(dns.encode()).hexdigest()[3:]},
        }}, subresource="status")

    # ------------------------------------------------------------------------- deletion: drain, node, instance

    def _delete_machine(self, ctx: _Ctx | None, machine: dict, cp_ns: str | None = None) -> float | None:
        store = self.backend.store
        meta = machine["metadata"]
        name = meta["name"]
        cp_ns = cp_ns or (ctx.cp_ns if ctx else meta["namespace"])
        api = ctx.api if ctx is not None else None
        node_name = ((machine.get("status") or {}).get("nodeRef") or {}).get("name")
        if node_name is None:
            aws = store.get(AWSMS, cp_ns, name)
            node_name = next((a["address"] for a in ((aws or {}).get("status") or {}).get("addresses") or []
                              if a.get("type") == "InternalDNS"), None)
        if api is not None and node_name:
            hb = api.cluster.backend
            node = hb.store.get(NODES, "", node_name)
            if node is not None:
                if not api.serving:
                    return self.settings.resync_seconds  # CAPI cannot drain a cluster it cannot reach
                if (machine.get("status") or {}).get("phase") != "Deleting":
                    self._patch_status(MACHINES, cp_ns, name, {"phase": "Deleting", "lastUpdated": now_rfc3339()})
                timeout = parse_duration((machine.get("spec") or {}).get("nodeDrainTimeout"))
                drained, delay = self._drain_step(hb, copy_obj(node), "drain", timeout)
                if not drained:
                    return delay
                self._remove_node(hb, node_name)
        self._forget("drain", node_name or "")
        aws = store.get(AWSMS, cp_ns, name)
        if aws is not None:
            if not aws["metadata"].get("deletionTimestamp"):
                self._delete(AWSMS, cp_ns, name)
                self._started("terminate", meta["uid"])
                aws = store.get(AWSMS, cp_ns, name)
                if aws is not None:
                    self._patch_status(AWSMS, cp_ns, name, {"instanceState": "shutting-down"})
                return self.settings.machine_terminate_seconds
            left = self.settings.machine_terminate_seconds - self._elapsed("terminate", meta["uid"])
            if left > 0:
                return left
            self._terminate_instance(aws)
            finalizers = [f for f in aws["metadata"].get("finalizers") or [] if f != AWSMACHINE_FINALIZER]
            self._patch(AWSMS, cp_ns, name, {"metadata": {"finalizers": finalizers or None}})
            if store.get(AWSMS, cp_ns, name) is not None:
                return self.settings.machine_terminate_seconds
        for kind in ("boot", "provisioned", "terminate"):
            self._forget(kind, meta["uid"])
        current = store.get(MACHINES, cp_ns, name)
        if current is not None:
            finalizers = [f for f in current["metadata"].get("finalizers") or [] if f != MACHINE_FINALIZER]
            self._patch(MACHINES, cp_ns, name, {"metadata": {"finalizers": finalizers or None}})
        return None

    def _terminate_instance(self, aws: dict) -> None:
        """The instance goes for good; a Node it still had (no drain: the hosted API was not
        reachable or nobody asked) is deleted, as the cloud node lifecycle controller does for a
        terminated instance."""
        instance_id = (aws.get("spec") or {}).get("instanceID") or instance_id_of((aws.get("spec") or {}).get("providerID"))
        instance = self.instances.terminate(instance_id) if instance_id else None
        if instance is None or instance.cluster_id is None:
            return
        api = self.hosted.get(instance.cluster_id) if hasattr(self.hosted, "get") else None
        if api is not None and api.cluster.backend.store.get(NODES, "", instance.private_dns) is not None:
            self._remove_node(api.cluster.backend, instance.private_dns)

    def _drain_step(self, hb: Any, node: dict, timer: str, timeout: float | None) -> tuple[bool, float]:
        """One pass of a drain: cordon, evict what is left. (done, look-again delay)."""
        name = node["metadata"]["name"]
        nodes_rt = hb.type_for(*NODES)
        if not (node.get("spec") or {}).get("unschedulable"):
            hb.patch(nodes_rt, None, name, MERGE_PATCH, {"spec": {"unschedulable": True, "taints": _with_taint(node)}})
        elapsed = self._elapsed(timer, name)
        pods = [p for p in hb.store.items(PODS) if (p.get("spec") or {}).get("nodeName") == name and not _is_daemonset_pod(p)
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        if not pods:
            self._forget(timer, name)
            return True, 0.0
        if timeout is not None and elapsed >= timeout:
            log.info("drain of node %s timed out after %.1fs (%d pods left)", name, elapsed, len(pods))
            self._forget(timer, name)
            return True, 0.0
        pods_rt = hb.type_for(*PODS)
        for pod in pods:
            if not pod["metadata"].get("deletionTimestamp"):
                try:
                    hb.delete(pods_rt, pod["metadata"]["namespace"], pod["metadata"]["name"], DeleteOptions())
                except ApiError as e:
                    if e.code != 404:
                        raise
        delay = self.settings.node_drain_step_seconds
        if timeout is not None:
            delay = min(delay, max(0.0, timeout - elapsed) + 0.001)
        return False, delay

    def _remove_node(self, hb: Any, node_name: str) -> None:
        try:
            hb.delete(hb.type_for(*NODES), None, node_name, DeleteOptions())
        except ApiError as e:
            if e.code != 404:
                raise
        # The pod garbage collector: pods bound to a node that is gone are deleted.
        pods_rt = hb.type_for(*PODS)
        for pod in list(hb.store.items(PODS)):
            if (pod.get("spec") or {}).get("nodeName") == node_name:
                try:
                    hb.delete(pods_rt, pod["metadata"]["namespace"], pod["metadata"]["name"], DeleteOptions(grace_period_seconds=0))
                except ApiError as e:
                    if e.code != 404:
                        raise

    def _finalize(self, np: dict, hc: dict | None, cp_ns: str) -> float | None:
        """A deleted NodePool: its MachineDeployment/MachineSets, machines and templates go, then its finalizer."""
        store = self.backend.store
        ref = f"{np['metadata']['namespace']}/{np['metadata']['name']}"
        ctx = _Ctx(self, np, hc, cp_ns) if hc is not None else None
        for key in (MDS, MSS):
            for obj in store.items(key, cp_ns):
                if (obj["metadata"].get("annotations") or {}).get(ANN_NODEPOOL) == ref and not obj["metadata"].get("deletionTimestamp"):
                    self._delete(key, cp_ns, obj["metadata"]["name"])
        if not self.capi_active(cp_ns):
            # Upstream's NodePool deletion removes templates, secrets, MachineDeployment/MachineSet
            # and then its finalizer without waiting for the machines; with the Cluster API
            # controllers down (or the Cluster paused) these stay, held by their finalizers (the
            # garbage collector has marked them deleted) until someone removes those by hand.
            return self._release_nodepool(np, cp_ns, ref)
        delays = []
        machines = [copy_obj(m) for m in store.items(MACHINES, cp_ns) if (m["metadata"].get("annotations") or {}).get(ANN_NODEPOOL) == ref]
        for m in machines:
            if not m["metadata"].get("deletionTimestamp"):
                self._delete(MACHINES, cp_ns, m["metadata"]["name"])
                m = copy_obj(store.get(MACHINES, cp_ns, m["metadata"]["name"]) or m)
            d = self._delete_machine(ctx, m, cp_ns)
            if d is not None:
                delays.append(d)
        if any((m["metadata"].get("annotations") or {}).get(ANN_NODEPOOL) == ref for m in store.items(MACHINES, cp_ns)):
            return min(delays) if delays else self.settings.resync_seconds
        return self._release_nodepool(np, cp_ns, ref)

    def _release_nodepool(self, np: dict, cp_ns: str, ref: str) -> None:
        store = self.backend.store
        for mt in store.items(AWSMTS, cp_ns):
            if (mt["metadata"].get("annotations") or {}).get(ANN_NODEPOOL) == ref:
                self._delete(AWSMTS, cp_ns, mt["metadata"]["name"])
        for secret in store.items(SECRETS, cp_ns):
            if (secret["metadata"].get("annotations") or {}).get(ANN_NODEPOOL) == ref:
                self._delete(SECRETS, cp_ns, secret["metadata"]["name"])
        finalizers = [f for f in np["metadata"].get("finalizers") or [] if f != NP_FINALIZER]
        if NP_FINALIZER in (np["metadata"].get("finalizers") or []):
            self._patch(NODEPOOLS, np["metadata"]["namespace"], np["metadata"]["name"], {"metadata": {"finalizers": finalizers or None}})
        return None

    def _sync_orphans(self, cp_ns: str, ref: str) -> float | None:
        """Machines of a NodePool that no longer exists (e.g. the control-plane namespace is being
        deleted): release their finalizers so the namespace can go."""
        store = self.backend.store
        ns, name = ref.split("/", 1)
        if store.get(NODEPOOLS, ns, name) is not None:
            self.enqueue(("np", ns, name))
            return None
        if not self.capi_active(cp_ns):
            return None  # the Cluster API controllers are down: deleting machines wait (events re-enqueue)
        delays = []
        for m in [copy_obj(m) for m in store.items(MACHINES, cp_ns)]:
            if (m["metadata"].get("annotations") or {}).get(ANN_NODEPOOL) != ref or not m["metadata"].get("deletionTimestamp"):
                continue
            d = self._delete_machine(None, m, cp_ns)
            if d is not None:
                delays.append(d)
        for aws in [copy_obj(a) for a in store.items(AWSMS, cp_ns)]:
            if (aws["metadata"].get("annotations") or {}).get(ANN_NODEPOOL) == ref and aws["metadata"].get("deletionTimestamp") \
                    and store.get(MACHINES, cp_ns, aws["metadata"]["name"]) is None:
                self._patch(AWSMS, cp_ns, aws["metadata"]["name"], {"metadata": {"finalizers": None}})
        return min(delays) if delays else None


# ----------------------------------------------------------------------------- per-sync context


class _Ctx:
    """What one sync of one NodePool knows: the pool, its HostedCluster, names, targets, status."""

    def __init__(self, ctrl: NodePoolController, np: dict, hc: dict | None, cp_ns: str) -> None:
        self.ctrl = ctrl
        self.np = np
        self.hc = hc or {}
        self.cp_ns = cp_ns
        self.name = np["metadata"]["name"]
        self.np_ref = f"{np['metadata']['namespace']}/{self.name}"
        self.spec = np.get("spec") or {}
        hc_spec = self.hc.get("spec") or {}
        self.infra_id = hc_spec.get("infraID") or (self.hc.get("metadata") or {}).get("name", "cluster")
        self.resources_name = get_name(f"{self.infra_id}-{self.spec.get('clusterName', '')}", self.name, 43)
        self.region = ((hc_spec.get("platform") or {}).get("aws") or {}).get("region", "us-east-1")
        self.upgrade_type = (self.spec.get("management") or {}).get("upgradeType") or "Replace"
        self.target_version = release_version((self.spec.get("release") or {}).get("image")) or ""
        self.skew_error: str | None = None
        self.rollout: dict | None = None
        self.conditions: list[dict] = copy_obj((self.np.get("status") or {}).get("conditions") or [])
        cid = hc_spec.get("clusterID")
        self.api = ctrl.hosted.get(cid) if cid else None
        auto = self.spec.get("autoScaling") or {}
        self.autoscaling_min = int(auto.get("min") or 0) if auto else 0
        self.autoscaling_max = int(auto.get("max") or 0) if auto else 0
        self.drain_timeout = parse_duration(self.spec.get("nodeDrainTimeout"))
        self.capi = ctrl.capi_active(cp_ns)

    # Inputs.

    def desired_replicas(self, current: Any) -> int:
        if self.autoscaling_max:
            n = int(current or 0)
            return min(max(n, self.autoscaling_min), self.autoscaling_max)
        return int(self.spec.get("replicas") or 0)

    def control_plane_version(self) -> str | None:
        version = (self.hc.get("status") or {}).get("version") or {}
        history = version.get("history") or []
        # History is newest first; the control plane runs the newest Completed entry.
        for entry in history:
            if entry.get("state") == "Completed" and entry.get("version"):
                return entry["version"]
        if (version.get("desired") or {}).get("version"):
            return version["desired"]["version"]
        return release_version(((self.hc.get("spec") or {}).get("release") or {}).get("image"))

    def config_hash(self) -> str:
        refs = self.spec.get("config") or []
        parts = []
        for ref in refs:
            cm = self.ctrl.backend.store.get(CONFIGMAPS, self.np["metadata"]["namespace"], ref.get("name", ""))
            parts.append({"name": ref.get("name"), "data": (cm or {}).get("data")})
        return hash_simple(json.dumps(parts, sort_keys=True))

    def config_version_hash(self, version: str) -> str:
        return hash_simple(self.config_hash() + version)

    def template_spec(self, version: str) -> dict:
        aws = ((self.spec.get("platform") or {}).get("aws") or {})
        hc_aws = (((self.hc.get("spec") or {}).get("platform") or {}).get("aws") or {})
        subnet = aws.get("subnet") or {"id": (hc_aws.get("cloudProviderConfig") or {}).get("subnet", {}).get("id", "subnet-0")}
        root = aws.get("rootVolume") or {}
        spec: dict[str, Any] = {
            "ami": {"id": aws.get("ami") or "ami-0" + hashlib.sha1(f"{version}/{self.region}".encode()).hexdigest()[:16]},
            "instanceType": aws.get("instanceType") or "m5.large",
            "iamInstanceProfile": aws.get("instanceProfile") or f"{self.infra_id}-worker",
            "subnet": subnet,
            "rootVolume": {"size": int(root.get("size") or 120), "type": root.get("type") or "gp3",
                           **({"iops": root["iops"]} if root.get("iops") else {})},
            "uncompressedUserData": True,
            "cloudInit": {},
            "instanceMetadataOptions": {"httpEndpoint": "enabled", "httpPutResponseHopLimit": 2, "httpTokens": "optional",
                                        "instanceMetadataTags": "disabled"},
            "additionalTags": {f"kubernetes.io/cluster/{self.infra_id}": "owned", **(aws.get("resourceTags") and
                                                                                      {t["key"]: t["value"] for t in aws["resourceTags"]} or {})},
        }
        if aws.get("securityGroups"):
            spec["additionalSecurityGroups"] = aws["securityGroups"]
        return spec

    def cluster_owner_refs(self) -> list[dict]:
        cluster = self.ctrl.backend.store.get(CLUSTERS, self.cp_ns, self.infra_id)
        if cluster is None:
            return []
        return [{"apiVersion": CAPI_API, "kind": "Cluster", "name": self.infra_id, "uid": cluster["metadata"]["uid"]}]

    def validate(self) -> bool:
        """Release image and version skew conditions; False when nothing can be rendered."""
        image = (self.spec.get("release") or {}).get("image", "")
        if not self.target_version:
            self.set_condition("ValidReleaseImage", "False", "ValidationFailed",
                               f"Failed to get release image: could not determine the version of release image {image!r}")
            return False
        self.set_condition("ValidReleaseImage", "True", AS_EXPECTED, f"Using release image: {image}")
        cp_version = self.control_plane_version()
        if cp_version:
            try:
                self.skew_error = validate_version_skew(cp_version, self.target_version)
            except ValueError:
                self.skew_error = None
        if self.skew_error:
            self.set_condition("SupportedVersionSkew", "False", "UnsupportedSkew", self.skew_error)
        else:
            self.set_condition("SupportedVersionSkew", "True", AS_EXPECTED, "Release image version is valid")
        return True

    # Status.

    def set_condition(self, ctype: str, status: str, reason: str, message: str = "") -> None:
        now = now_rfc3339()
        existing = _condition(self.conditions, ctype)
        new = {"type": ctype, "status": status, "reason": reason, "message": message,
               "observedGeneration": self.np["metadata"].get("generation", 1), "lastTransitionTime": now}
        if existing is None:
            self.conditions.append(new)
            return
        if existing.get("status") == status:
            new["lastTransitionTime"] = existing.get("lastTransitionTime", now)
        existing.clear()
        existing.update(new)

    def compute_status(self) -> None:
        np_status = self.np.get("status") or {}
        annotations = self.np["metadata"].get("annotations") or {}
        ro = self.rollout
        self.status_version = np_status.get("version")
        self.status_replicas = int(np_status.get("replicas") or 0)
        self.annotation_patch: dict[str, str] = {}
        self.set_condition("AutoscalingEnabled", "True" if self.autoscaling_max else "False", AS_EXPECTED,
                           f"Maximum nodes: {self.autoscaling_max}, Minimum nodes: {self.autoscaling_min}" if self.autoscaling_max else "")
        self.set_condition("UpdateManagementEnabled", "True", AS_EXPECTED)
        if ro is None:
            return
        config_hash = self.config_hash()
        if ro["complete"]:
            if ro["version"] and self.status_version != ro["version"]:
                self.status_version = ro["version"]
            for k, v in ((ANN_CURRENT_CONFIG, config_hash if not self.skew_error else annotations.get(ANN_CURRENT_CONFIG, config_hash)),
                         (ANN_CURRENT_CONFIG_VERSION, ro["cvh"]), (ANN_PLATFORM_MT, ro["template"])):
                if annotations.get(k) != v:
                    self.annotation_patch[k] = v
        self.status_replicas = int(ro["status"].get("availableReplicas") or 0)
        self.set_condition("ValidPlatformImage", "True", AS_EXPECTED,
                           f"Bootstrap AMI is \"{self.template_spec(ro['version'] or self.target_version)['ami']['id']}\"")
        self.set_condition("ValidMachineConfig", "True", AS_EXPECTED)
        self.set_condition("ValidGeneratedPayload", "True", AS_EXPECTED, "Payload generated successfully")
        self.set_condition("ReachedIgnitionEndpoint", "True", AS_EXPECTED)
        if self.skew_error and self.target_version != self.status_version:
            self.set_condition("UpdatingVersion", "False", "UnsupportedSkew",
                               f"Version update to {self.target_version} is not rolled out: {self.skew_error}")
        elif self.target_version != self.status_version:
            self.set_condition("UpdatingVersion", "True", AS_EXPECTED, f"Updating version in progress. Target version: {self.target_version}")
        else:
            self.set_condition("UpdatingVersion", "False", AS_EXPECTED)
        current_config = self.annotation_patch.get(ANN_CURRENT_CONFIG, annotations.get(ANN_CURRENT_CONFIG))
        if current_config is not None and current_config != config_hash and not self.skew_error:
            self.set_condition("UpdatingConfig", "True", AS_EXPECTED, f"Updating config in progress. Target config: {config_hash}")
        else:
            self.set_condition("UpdatingConfig", "False", AS_EXPECTED)
        self.set_condition("UpdatingPlatformMachineTemplate",
                           "True" if annotations.get(ANN_PLATFORM_MT) not in (None, ro["template"]) and not ro["complete"] else "False",
                           AS_EXPECTED, f"platform machine template update in progress. Target template: {ro['template']}"
                           if annotations.get(ANN_PLATFORM_MT) not in (None, ro["template"]) and not ro["complete"] else "")
        machines = self.ctrl._machines_of(self)
        live = [m for m in machines if not m["metadata"].get("deletionTimestamp")]
        not_ready = [m for m in live if (m.get("status") or {}).get("phase") not in ("Running",)]
        unhealthy = [m for m in live if not self.ctrl._machine_available(m)]
        if not live:
            self.set_condition("AllMachinesReady", "True", AS_EXPECTED, "All is well")
            self.set_condition("AllNodesHealthy", "True", AS_EXPECTED, "All is well")
        else:
            if not_ready:
                self.set_condition("AllMachinesReady", "False", "WaitingForInfrastructure" if any(
                    (m.get("status") or {}).get("phase") in ("Pending", "Provisioning") for m in not_ready) else "NodeProvisioning",
                    "\n".join(f"Machine {m['metadata']['name']}: {(m.get('status') or {}).get('phase', 'Pending')}" for m in not_ready))
            else:
                self.set_condition("AllMachinesReady", "True", AS_EXPECTED, "All is well")
            if unhealthy:
                self.set_condition("AllNodesHealthy", "False", "NodeProvisioning" if any(
                    not (m.get("status") or {}).get("nodeRef") for m in unhealthy) else "NodeConditionsFailed",
                    "\n".join(f"Machine {m['metadata']['name']}: " + ("NodeProvisioning" if not (m.get("status") or {}).get("nodeRef")
                                                                       else "Node condition Ready is False") for m in unhealthy))
            else:
                self.set_condition("AllNodesHealthy", "True", AS_EXPECTED, "All is well")
        md_ready = _condition(ro["status"].get("conditions") or [], "Ready")
        if md_ready and md_ready.get("status") == "True":
            self.set_condition("Ready", "True", AS_EXPECTED)
        else:
            self.set_condition("Ready", "False", (md_ready or {}).get("reason") or "WaitingForAvailableMachines",
                               (md_ready or {}).get("message") or
                               f"Minimum availability requires {ro['replicas']} replicas, current {self.status_replicas} available")

    def write_status(self) -> None:
        ctrl = self.ctrl
        ns, name = self.np["metadata"]["namespace"], self.name
        patch = getattr(self, "annotation_patch", None)
        if patch:
            ctrl._patch(NODEPOOLS, ns, name, {"metadata": {"annotations": patch}})
        old = self.np.get("status") or {}
        status: dict[str, Any] = {"conditions": self.conditions}
        if hasattr(self, "status_replicas"):
            status["replicas"] = self.status_replicas
        if getattr(self, "status_version", None):
            status["version"] = self.status_version
        if _status_differs(old, dict(old, **status)):
            ctrl._patch_status(NODEPOOLS, ns, name, status)


# ----------------------------------------------------------------------------- small helpers


def _is_rfc3339(text: str) -> bool:
    try:
        parse_rfc3339(text)
        return True
    except ValueError:
        return False


def _safe_encode(text: str) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[ord(c) % len(alphabet)] for c in text)


def _keep_times(old: list[dict], new: list[dict], now: str) -> list[dict]:
    """CAPI conditions with lastTransitionTime kept while the status does not change."""
    previous = {c.get("type"): c for c in old}
    out = []
    for c in new:
        c = dict(c)
        p = previous.get(c["type"])
        c["lastTransitionTime"] = p.get("lastTransitionTime", now) if p and p.get("status") == c["status"] else now
        out.append(c)
    return out


def _status_differs(old: dict, new: dict) -> bool:
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("lastUpdated",)}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return strip(old) != strip(new)


def _with_taint(node: dict) -> list[dict]:
    taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("key") != UNSCHEDULABLE_TAINT["key"]]
    return taints + [dict(UNSCHEDULABLE_TAINT, timeAdded=now_rfc3339())]


def _without_taint(node: dict) -> list[dict]:
    return [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("key") != UNSCHEDULABLE_TAINT["key"]]


def _os_image(version: str | None) -> str:
    try:
        _, minor, _ = _semver(version or "")
    except ValueError:
        minor = 17
    return f"Red Hat Enterprise Linux CoreOS 4{minor}.94.202411201433-0 (Plow)"


def _set_node_ready(hb: Any, name: str, status: str, reason: str, message: str, node_info: dict | None = None) -> None:
    node = hb.store.get(NODES, "", name)
    if node is None:
        return
    now = now_rfc3339()
    conditions = copy_obj((node.get("status") or {}).get("conditions") or [])
    ready = _condition(conditions, "Ready")
    if ready is None:
        ready = {"type": "Ready"}
        conditions.append(ready)
    if ready.get("status") != status:
        ready["lastTransitionTime"] = now
    ready.update(status=status, reason=reason, message=message, lastHeartbeatTime=now)
    if status == "True":
        healthy = {"MemoryPressure": ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                   "DiskPressure": ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                   "PIDPressure": ("KubeletHasSufficientPID", "kubelet has sufficient PID available")}
        for c in conditions:
            if c.get("type") in healthy and c.get("status") != "False":
                c.update(status="False", reason=healthy[c["type"]][0], message=healthy[c["type"]][1], lastTransitionTime=now,
                         lastHeartbeatTime=now)
    patch: dict[str, Any] = {"conditions": conditions}
    if node_info:
        patch["nodeInfo"] = dict((node.get("status") or {}).get("nodeInfo") or {}, **node_info)
    hb.patch(hb.type_for(*NODES), None, name, MERGE_PATCH, {"status": patch}, subresource="status")


def _set_node_unknown(hb: Any, name: str) -> None:
    node = hb.store.get(NODES, "", name)
    if node is None:
        return
    now = now_rfc3339()
    conditions = copy_obj((node.get("status") or {}).get("conditions") or [])
    for c in conditions:
        if c.get("type") in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure"):
            if c.get("status") != "Unknown":
                c["lastTransitionTime"] = now
            c.update(status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.")
    hb.patch(hb.type_for(*NODES), None, name, MERGE_PATCH, {"status": {"conditions": conditions}}, subresource="status")
    taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("key") != "node.kubernetes.io/unreachable"]
    hb.patch(hb.type_for(*NODES), None, name, MERGE_PATCH, {"spec": {"taints": taints + [
        {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": now},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": now}]}})


__all__ = ["NodePoolController", "NodePoolSettings", "release_version", "validate_version_skew", "control_plane_namespace",
           "parse_paused", "parse_duration"]
