"""The Kubernetes objects of a hosted cluster's move between management clusters (issue 6, `dr-migrate`).

HyperShift's disaster-recovery procedure (docs/content/how-to/aws/disaster-recovery.md and the script it
points to, contrib/migration/migrate-hcp.sh) moves a hosted cluster by copying objects:

- from the HostedCluster's namespace: the HostedCluster, its NodePools and the secrets whose names start
  with the cluster's name (`oc get secret | grep "^<name>"`);
- from the control-plane namespace: its secrets except service-account tokens, docker ones and
  oauth-openshift ones (`egrep -v "docker|service-account-token|oauth-openshift|token-<name>"`), the
  HostedControlPlane, the Cluster, AWSCluster, AWSMachineTemplates, AWSMachines, MachineDeployments,
  MachineSets and Machines;

all with status and server-set metadata removed (`hcp.cluster_objects.clean_for_recreate`), recreated
on the destination, the HostedCluster last but for its NodePools, with one `restoreSnapshotURL`; and
tears the source down by hand: control plane scaled to 0, finalizers removed, objects deleted in order.

Where this differs from the page, on purpose:
- HC-namespace secrets: those named `<name>-*` (not a bare `^<name>` prefix, which takes `<name>2-...`) that
  no other HostedCluster of the namespace owns or names (`demo-2-pull-secret` is demo-2's, not demo's), and
  the secrets the spec names (pull secret, SSH key, encryption keys) whatever their names.
- The HostedControlPlane gets the same single restoreSnapshotURL as the HostedCluster: the CRDs refuse
  adding it to an existing object, so the operator could never copy it there (the page predates the rule).
- Control-plane objects are created children first (Machines before MachineSets before
  MachineDeployments): a Cluster API controller that acts early finds the machines it would otherwise
  create (and launch instances for). The Cluster itself comes from a paused source (HyperShift pauses it
  with the HostedCluster), so nothing acts until the HostedCluster is reconciled on the destination.
- Teardown also pauses the Cluster API Cluster (`spec.paused`, what CAPI honours for every object of the
  cluster, deletion included) besides scaling the controllers to 0, deletes each object only once its
  finalizers are gone (resourceVersion preconditions: an operator re-adding its finalizer is seen, not
  raced), and waits, by watch, for the pods and the namespace instead of `sleep 15`.

Cluster API objects are read and written through v1beta1, the version they are stored in (a v1beta2 read
needs the conversion webhook, which a management cluster without CAPI's webhooks, like the simulator,
lacks), CAPA ones through v1beta2.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel

from hcp.cluster_objects import clean_for_recreate, describe, policy_for
from hcp.hosted_cluster import deployment_replicas, scale_deployment, wait_deployment_settled
from hcp.naming import control_plane_namespace
from hcp.restore_render import RestoreRenderError, referenced_secrets, with_snapshot_url
from hcp.undo_journal import LABEL_OPERATION as UNDO_LABEL_OPERATION
from hcp.waits import WaitTimeout, wait_for_object, wait_for_set

__all__ = [
    "LABEL_OPERATION", "Kind", "HOSTED_CLUSTER", "NODE_POOL", "CONTROL_PLANE_KINDS", "MigrationObjectsError",
    "MigrationObjects", "collect_migration_objects", "restore_migration_objects", "remove_hosted_cluster",
    "is_excluded_control_plane_secret",
]

# Every object a restore creates carries it (value: the operation id), and so do the namespaces it creates:
# a re-run of the same operation knows its own objects, a rollback removes only those.
LABEL_OPERATION = UNDO_LABEL_OPERATION  # one label finds every object of an operation
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

_HS, _CAPI, _CAPA = "hypershift.openshift.io", "cluster.x-k8s.io", "infrastructure.cluster.x-k8s.io"


@dataclass(frozen=True)
class Kind:
    kind: str
    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


HOSTED_CLUSTER = Kind("HostedCluster", _HS, "v1beta1", "hostedclusters")
NODE_POOL = Kind("NodePool", _HS, "v1beta1", "nodepools")
HOSTED_CONTROL_PLANE = Kind("HostedControlPlane", _HS, "v1beta1", "hostedcontrolplanes")
CLUSTER = Kind("Cluster", _CAPI, "v1beta1", "clusters")
AWS_CLUSTER = Kind("AWSCluster", _CAPA, "v1beta2", "awsclusters")
AWS_MACHINE_TEMPLATE = Kind("AWSMachineTemplate", _CAPA, "v1beta2", "awsmachinetemplates")
AWS_MACHINE = Kind("AWSMachine", _CAPA, "v1beta2", "awsmachines")
MACHINE = Kind("Machine", _CAPI, "v1beta1", "machines")
MACHINE_SET = Kind("MachineSet", _CAPI, "v1beta1", "machinesets")
MACHINE_DEPLOYMENT = Kind("MachineDeployment", _CAPI, "v1beta1", "machinedeployments")

# The control-plane namespace's objects in restore order (see the module docstring: children first).
CONTROL_PLANE_KINDS: tuple[Kind, ...] = (HOSTED_CONTROL_PLANE, CLUSTER, AWS_CLUSTER, AWS_MACHINE_TEMPLATE, AWS_MACHINE,
                                         MACHINE, MACHINE_SET, MACHINE_DEPLOYMENT)
_BY_KIND = {k.kind: k for k in (HOSTED_CLUSTER, NODE_POOL, *CONTROL_PLANE_KINDS)}
# The teardown order of the page (teardown_old_hc): Machines, MachineSets, Cluster, AWSMachines, HCP.
_TEARDOWN_KINDS = (MACHINE, MACHINE_SET, CLUSTER, AWS_MACHINE, HOSTED_CONTROL_PLANE)

# Namespace defaults an empty namespace still holds (kube and OpenShift create them in every namespace).
_DEFAULT_CONFIGMAPS = frozenset({"kube-root-ca.crt", "openshift-service-ca.crt"})
_DEFAULT_SECRET_TYPES = frozenset({"kubernetes.io/service-account-token", "kubernetes.io/dockercfg"})


class MigrationObjectsError(RuntimeError):
    """The objects cannot be collected, restored or removed; the message names the cluster, the object and
    what to do."""


class MigrationObjects(BaseModel):
    """What the runbook stores in S3 (as JSON, beside the etcd snapshots) to recreate a hosted cluster's
    objects on another management cluster. Every object is cleaned for re-creation."""

    schema_version: Literal[1] = 1
    namespace: str  # the HostedCluster's namespace
    name: str
    control_plane_namespace: str
    hosted_cluster: dict[str, Any]  # spec.pausedUntil removed
    node_pools: list[dict[str, Any]]  # spec.pausedUntil removed
    secrets: list[dict[str, Any]]  # the HostedCluster namespace's secrets of this cluster
    control_plane_secrets: list[dict[str, Any]]
    control_plane: list[dict[str, Any]]  # HCP, Cluster, AWS and machine objects, in restore order
    # secrets of `secrets` that another HostedCluster of the namespace also names: restored, never torn down
    shared_secrets: list[str] = []

    def counts(self) -> dict[str, int]:
        """kind -> number, for the report (both namespaces' secrets as one `Secret`)."""
        out: dict[str, int] = {}
        for obj in (self.hosted_cluster, *self.node_pools, *self.secrets, *self.control_plane_secrets,
                    *self.control_plane):
            out[obj["kind"]] = out.get(obj["kind"], 0) + 1
        return out

    def own_secret_names(self) -> list[str]:
        """The HostedCluster namespace's secrets a teardown of this cluster removes (not the shared ones)."""
        return [s["metadata"]["name"] for s in self.secrets if s["metadata"]["name"] not in self.shared_secrets]


# -- collect (read-only, on the source) ----------------------------------------------------------------

def is_excluded_control_plane_secret(secret: dict[str, Any], cluster_name: str) -> bool:
    """The page's `egrep -v "docker|service-account-token|oauth-openshift|token-<name>"` over `oc get
    secret`'s NAME and TYPE columns: the controllers of the destination make these again."""
    name, kind = secret["metadata"]["name"], str(secret.get("type") or "")
    return ("docker" in name or "docker" in kind or kind == "kubernetes.io/service-account-token"
            or "service-account-token" in name or "oauth-openshift" in name or f"token-{cluster_name}" in name)


def _as_dict(api: client.ApiClient, secret: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", **api.sanitize_for_serialization(secret)}


def _where(namespace: str, name: str) -> str:
    return f"hosted cluster {namespace}/{name}"


def _hc_secrets(api: client.ApiClient, hc: dict[str, Any], others: list[dict[str, Any]]) -> tuple[list[dict], list[str]]:
    """This cluster's secrets of the HostedCluster namespace, and which of them other clusters also name."""
    namespace, name, uid = hc["metadata"]["namespace"], hc["metadata"]["name"], hc["metadata"].get("uid")
    where = _where(namespace, name)
    secrets = {s.metadata.name: s for s in client.CoreV1Api(api).list_namespaced_secret(namespace).items}
    referenced = referenced_secrets(hc)
    named_by_others = {n for o in others for n in referenced_secrets(o).values()}
    other_names = [o["metadata"]["name"] for o in others]

    def someone_elses(secret: Any) -> bool:
        sname = secret.metadata.name
        for ref in secret.metadata.owner_references or []:
            if ref.kind == HOSTED_CLUSTER.kind and (ref.name != name or (uid and ref.uid != uid)):
                return True
        # demo-2-pull-secret belongs to demo-2 when both demo and demo-2 exist: the longest name wins.
        return sname in named_by_others or any(len(o) > len(name) and sname.startswith(o + "-") for o in other_names)

    missing = [f"{s} ({what})" for what, s in referenced.items() if s not in secrets]
    if missing:
        raise MigrationObjectsError(f"{where}: its spec names secrets that do not exist in {namespace}: "
                                    f"{', '.join(missing)}. The destination could not run the cluster without "
                                    "them: create them again (from your records) before the migration")
    chosen = sorted({s for s in secrets if s.startswith(name + "-") and not someone_elses(secrets[s])}
                    | set(referenced.values()))
    shared = sorted(s for s in chosen if s in named_by_others)
    return [clean_for_recreate(_as_dict(api, secrets[s])) for s in chosen], shared


def _list(custom: client.CustomObjectsApi, kind: Kind, namespace: str) -> list[dict[str, Any]]:
    items = custom.list_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural).get("items") or []
    for item in items:  # a list's items may come without their own apiVersion/kind
        item.setdefault("apiVersion", kind.api_version)
        item.setdefault("kind", kind.kind)
    return sorted(items, key=lambda o: o["metadata"]["name"])


def collect_migration_objects(api: client.ApiClient, namespace: str, name: str) -> MigrationObjects:
    """Read, from the source management cluster, every object a migration recreates (changes nothing).

    Collect after pausing the HostedCluster (as the runbook does): the Cluster API Cluster is then saved
    paused, and the machine objects are a still picture."""
    custom, where = client.CustomObjectsApi(api), _where(namespace, name)
    cp = control_plane_namespace(namespace, name)
    try:
        hc = custom.get_namespaced_custom_object(HOSTED_CLUSTER.group, HOSTED_CLUSTER.version, namespace,
                                                 HOSTED_CLUSTER.plural, name)
    except ApiException as exc:
        if exc.status == 404:
            raise MigrationObjectsError(f"{where} not found on the source management cluster: check the name with "
                                        "`oc get hostedclusters -A`") from None
        raise MigrationObjectsError(f"{where}: cannot read the HostedCluster: HTTP {exc.status} {exc.reason}") from None
    etcd = (hc.get("spec") or {}).get("etcd") or {}
    if etcd.get("managementType", "Managed") != "Managed":
        raise MigrationObjectsError(f"{where}: its etcd is {etcd.get('managementType')}, not Managed: HyperShift "
                                    "restores a snapshot (restoreSnapshotURL) only into a managed etcd; move an "
                                    "unmanaged etcd with its own tooling")
    all_hcs = _list(custom, HOSTED_CLUSTER, namespace)
    others = [o for o in all_hcs if o["metadata"]["name"] != name]
    pools = [p for p in _list(custom, NODE_POOL, namespace) if (p.get("spec") or {}).get("clusterName") == name]
    secrets, shared = _hc_secrets(api, hc, others)

    cp_secrets = [_as_dict(api, s) for s in client.CoreV1Api(api).list_namespaced_secret(cp).items]
    cp_secrets = sorted((s for s in cp_secrets if not is_excluded_control_plane_secret(s, name)),
                        key=lambda s: s["metadata"]["name"])
    found = {k.kind: _list(custom, k, cp) for k in CONTROL_PLANE_KINDS}
    hcps = [o for o in found[HOSTED_CONTROL_PLANE.kind] if o["metadata"]["name"] == name]
    if not hcps:
        raise MigrationObjectsError(
            f"{where}: no HostedControlPlane {cp}/{name} on the source management cluster, so the control plane "
            f"cannot be moved. Check `oc -n {cp} get hostedcontrolplanes`; if the control-plane namespace is gone, "
            "this cluster cannot be migrated with this runbook (restore it from an etcd backup into a new "
            "HostedCluster: `hcp-runbooks run etcd-restore --into-new-cluster`)")
    infra_id = (hc.get("spec") or {}).get("infraID") or name
    # The page reads the Cluster's name from the HostedControlPlane's labels; HyperShift names it the infraID.
    clusters = [c for c in found[CLUSTER.kind] if c["metadata"]["name"] == infra_id]
    if not clusters:
        have = [c["metadata"]["name"] for c in found[CLUSTER.kind]]
        raise MigrationObjectsError(
            f"{where}: no Cluster API Cluster {cp}/{infra_id} (the infraID) on the source management cluster"
            f"{f' (found: {have})' if have else ''}: the machines cannot be moved without it. Check "
            f"`oc -n {cp} get clusters.v1beta1.cluster.x-k8s.io` and that the hypershift operator reconciles the "
            "HostedCluster")
    aws_ref = ((clusters[0].get("spec") or {}).get("infrastructureRef") or {}).get("name") or infra_id
    aws_clusters = [a for a in found[AWS_CLUSTER.kind] if a["metadata"]["name"] == aws_ref]
    if not aws_clusters:
        raise MigrationObjectsError(f"{where}: no AWSCluster {cp}/{aws_ref} (the Cluster's infrastructureRef): check "
                                    f"`oc -n {cp} get awsclusters`; only AWS hosted clusters can be migrated here")
    found[HOSTED_CONTROL_PLANE.kind], found[CLUSTER.kind], found[AWS_CLUSTER.kind] = hcps, clusters, aws_clusters
    control_plane = [clean_for_recreate(o) for k in CONTROL_PLANE_KINDS for o in found[k.kind]]
    no_pause = {"overrides": {"spec.pausedUntil": None}}
    return MigrationObjects(
        namespace=namespace, name=name, control_plane_namespace=cp,
        hosted_cluster=clean_for_recreate(hc, policy_for(hc, **no_pause)),
        node_pools=[clean_for_recreate(p, policy_for(p, **no_pause)) for p in pools],
        secrets=secrets, shared_secrets=shared,
        control_plane_secrets=[clean_for_recreate(s) for s in cp_secrets], control_plane=control_plane)


# -- restore (on the destination) ----------------------------------------------------------------------

def _labels(obj: Any) -> dict[str, str]:
    if isinstance(obj, dict):
        return (obj.get("metadata") or {}).get("labels") or {}
    return obj.metadata.labels or {}


def _created_by(obj: Any) -> str | None:
    return _labels(obj).get(LABEL_OPERATION)


def _labelled(obj: dict[str, Any], operation_id: str) -> dict[str, Any]:
    out = {**obj, "metadata": {**obj["metadata"]}}
    out["metadata"]["labels"] = {**(obj["metadata"].get("labels") or {}), LABEL_OPERATION: operation_id}
    return out


def _kind_of(obj: dict[str, Any]) -> Kind:
    kind = _BY_KIND.get(str(obj.get("kind")))
    if kind is None:
        raise MigrationObjectsError(f"{describe(obj)}: a migration does not restore objects of kind {obj.get('kind')}")
    return kind


class _Target:
    """Reads and creates of the destination's objects, by object (Secret or one of the custom kinds)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.core, self.custom = client.CoreV1Api(api), client.CustomObjectsApi(api)

    def get(self, obj: dict[str, Any]) -> Any:
        meta = obj["metadata"]
        try:
            if obj["kind"] == "Secret":
                return self.core.read_namespaced_secret(meta["name"], meta["namespace"])
            k = _kind_of(obj)
            return self.custom.get_namespaced_custom_object(k.group, k.version, meta["namespace"], k.plural, meta["name"])
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, obj: dict[str, Any]) -> None:
        ns = obj["metadata"]["namespace"]
        if obj["kind"] == "Secret":
            self.core.create_namespaced_secret(ns, obj)
        else:
            k = _kind_of(obj)
            # The version of the object as saved (Cluster API: v1beta1, see the module docstring).
            group, version = obj["apiVersion"].rsplit("/", 1) if "/" in obj["apiVersion"] else (k.group, k.version)
            self.custom.create_namespaced_custom_object(group, version, ns, k.plural, obj)


def _foreign(what: str, operation_id: str, owner: str | None, fix: str) -> str:
    by = f"by operation {owner}" if owner else "outside this runbook (no hcp-runbooks/operation label)"
    return f"{what} already exists on the destination, created {by}, not by {operation_id}: {fix}"


def restore_migration_objects(api: client.ApiClient, objects: MigrationObjects, restore_snapshot_url: str, *,
                              operation_id: str, on_created: Callable[[str], None] | None = None) -> list[str]:
    """Create the objects on the destination management cluster: the namespaces (when absent), the secrets,
    the control-plane objects in order (the HostedControlPlane with the one restoreSnapshotURL), the
    HostedCluster (the same URL, no pausedUntil), the NodePools. Each created object carries
    `hcp-runbooks/operation: <operation_id>`.

    Idempotent for one operation: what this operation already created is kept as it is. An object (or a
    control-plane namespace) that exists without this operation's label is refused before anything is
    created, naming it and what to do. `on_created(description)` is called after each create. Returns what
    was done, in order."""
    where = _where(objects.namespace, objects.name)
    if not _LABEL_VALUE.match(operation_id) or len(operation_id) > 63:
        raise MigrationObjectsError(f"{where}: operation id {operation_id!r} cannot be a label value")
    try:
        hc = with_snapshot_url(objects.hosted_cluster, restore_snapshot_url)
        hc["spec"].pop("pausedUntil", None)
        control_plane = [with_snapshot_url(o, restore_snapshot_url) if o["kind"] == HOSTED_CONTROL_PLANE.kind else o
                         for o in objects.control_plane]
    except RestoreRenderError as exc:
        raise MigrationObjectsError(f"{where}: {exc}") from None
    pools = [{**p, "spec": {k: v for k, v in p["spec"].items() if k != "pausedUntil"}} for p in objects.node_pools]
    ordered = [*objects.secrets, *objects.control_plane_secrets, *control_plane, hc, *pools]
    core, target = client.CoreV1Api(api), _Target(api)

    # Read-only first: a refusal leaves the destination as it was.
    refusals: list[str] = []
    namespaces = {objects.namespace: None, objects.control_plane_namespace: None}
    for ns in namespaces:
        try:
            namespaces[ns] = core.read_namespace(ns)
        except ApiException as exc:
            if exc.status != 404:
                raise
    cp_ns = namespaces[objects.control_plane_namespace]
    if cp_ns is not None and _created_by(cp_ns) != operation_id:
        refusals.append(_foreign(
            f"namespace {objects.control_plane_namespace} (the control-plane namespace)", operation_id, _created_by(cp_ns),
            "it may hold another control plane of this cluster (a leftover of an earlier attempt) or of another "
            f"cluster. Check `oc get all -n {objects.control_plane_namespace}`; if it is a leftover, remove it with "
            f"`hcp-runbooks` (remove_hosted_cluster) or `oc delete namespace {objects.control_plane_namespace}`, then "
            "run again"))
    existing: dict[int, Any] = {}
    for i, obj in enumerate(ordered):
        if namespaces[obj["metadata"]["namespace"]] is None:
            continue
        current = target.get(obj)
        if current is None:
            continue
        existing[i] = current
        if _created_by(current) != operation_id:
            refusals.append(_foreign(describe(obj), operation_id, _created_by(current),
                                     "check what it is; delete it if it is a leftover of this cluster, else migrate to "
                                     "another management cluster, then run again"))
    if refusals:
        raise MigrationObjectsError(f"{where}: nothing was restored:\n- " + "\n- ".join(refusals))

    done: list[str] = []

    def record(what: str, created: bool) -> None:
        done.append(what if created else f"{what} (already created by {operation_id})")
        if created and on_created is not None:
            on_created(what)

    for ns, current in namespaces.items():
        if current is None:
            try:
                core.create_namespace({"metadata": {"name": ns, "labels": {LABEL_OPERATION: operation_id}}})
                record(f"created Namespace {ns}", True)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                record(f"Namespace {ns}", False)  # created meanwhile: the objects' checks below still hold
        elif _created_by(current) == operation_id:
            record(f"Namespace {ns}", False)
    for i, obj in enumerate(ordered):
        what = describe(obj)
        if i in existing:
            record(what, False)
            continue
        try:
            target.create(_labelled(obj, operation_id))
        except ApiException as exc:
            if exc.status != 409:
                raise MigrationObjectsError(f"{where}: creating {what} on the destination failed: HTTP {exc.status} "
                                            f"{exc.reason}: {_message(exc)}") from None
            current = target.get(obj)
            if _created_by(current) != operation_id:
                raise MigrationObjectsError(f"{where}: " + _foreign(what, operation_id, _created_by(current),
                                                                    "it appeared while restoring; check what made it")) from None
            record(what, False)
            continue
        record(f"created {what}", True)
    return done


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.body)
    except ValueError:
        return str(exc.body)


# -- remove ("the teardown way", source and rolled-back destination alike) --------------------------------

class _StillChanging(MigrationObjectsError):
    """An object whose finalizer a controller keeps putting back."""


class _Remover:
    def __init__(self, api: client.ApiClient, namespace: str, name: str, timeout: float, only: str | None) -> None:
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.namespace, self.name, self.only = namespace, name, only
        self.cp = control_plane_namespace(namespace, name)
        self.where = _where(namespace, name)
        self.deadline = time.monotonic() + timeout
        self.done: list[str] = []

    def remaining(self) -> float:
        return max(1.0, self.deadline - time.monotonic())

    def ours(self, obj: Any) -> bool:
        return self.only is None or _created_by(obj) == self.only

    def left(self, what: str) -> None:
        self.done.append(f"left {what}: not created by operation {self.only}")

    def get(self, kind: Kind, ns: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(kind.group, kind.version, ns, kind.plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch(self, kind: Kind, ns: str, name: str, body: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self.custom.patch_namespaced_custom_object(kind.group, kind.version, ns, kind.plural, name, body)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def pause(self, kind: Kind, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        if (obj.get("spec") or {}).get("pausedUntil") != "true" and not meta.get("deletionTimestamp"):
            self.patch(kind, meta["namespace"], meta["name"], {"spec": {"pausedUntil": "true"}})
            self.done.append(f"paused {describe({**obj, 'kind': kind.kind})}")

    def remove(self, kind: Kind, ns: str, name: str, *, strict: bool = False, rounds: int = 20) -> bool:
        """Remove the finalizers, then delete. True if this call deleted it.

        `strict` (the HostedCluster): its finalizer must never run, so the delete is preconditioned on the
        version without it: a controller that put it back in between makes the delete fail (409) and the loop
        go round. Otherwise (what the page does): a finalizer put back in between is removed again once the
        object is marked deleted (no controller may add one then); with the Cluster API stopped, what those
        finalizers would do touches no machine."""
        what = f"{kind.kind} {ns}/{name}"
        deleted = False
        for _ in range(rounds):
            obj = self.get(kind, ns, name)
            if obj is None:
                if deleted:
                    self.done.append(f"deleted {what} (finalizers removed first)")
                return deleted
            meta = obj["metadata"]
            try:
                if meta.get("finalizers"):
                    obj = self.patch(kind, ns, name, {"metadata": {"finalizers": None,
                                                                   "resourceVersion": meta["resourceVersion"]}})
                    if obj is None or obj["metadata"].get("deletionTimestamp"):
                        deleted = True
                        continue
                if not obj["metadata"].get("deletionTimestamp"):
                    pre = client.V1Preconditions(resource_version=obj["metadata"]["resourceVersion"]) if strict else None
                    self.custom.delete_namespaced_custom_object(kind.group, kind.version, ns, kind.plural, name,
                                                                body=client.V1DeleteOptions(preconditions=pre))
                    deleted = True
            except ApiException as exc:
                if exc.status == 404:
                    continue
                if exc.status == 409:
                    continue
                raise MigrationObjectsError(f"{self.where}: deleting {what} failed: HTTP {exc.status} {exc.reason}: "
                                            f"{_message(exc)}") from None
        raise _StillChanging(f"{self.where}: {what} kept changing while it was being deleted (a controller "
                             f"still acts on it): stop it, then run again")

    def remove_hosted_cluster(self, operator: str | None) -> None:
        """The HostedCluster without its finalizer ever running (HyperShift's deletion would clean up the
        cloud resources the migrated cluster still uses, e.g. its OIDC documents). The hypershift operator
        puts its finalizer back on every HostedCluster it sees, paused or not: when it keeps winning the
        race, it is stopped for the moment of the delete and put back at its replicas, as the documented
        teardown does (`oc scale deployment -n hypershift operator --replicas 0`)."""
        try:
            self.remove(HOSTED_CLUSTER, self.namespace, self.name, strict=True, rounds=3)
            return
        except _StillChanging:
            if not operator:
                raise
        op_ns, op_name = operator.split("/", 1)
        replicas = deployment_replicas(self.core.api_client, op_ns, op_name)
        if replicas is None:
            raise MigrationObjectsError(f"{self.where}: something other than the hypershift operator ({operator}: not "
                                        "found) keeps putting the HostedCluster's finalizer back: stop it, then run "
                                        "again") from None
        started = time.monotonic()
        self.done.append(f"scaled Deployment {operator} from {replicas} to 0 (it kept putting the HostedCluster's "
                         "finalizer back)")
        scale_deployment(self.core.api_client, op_ns, op_name, 0)
        try:
            wait_deployment_settled(self.core.api_client, op_ns, op_name, 0, timeout=self.remaining())
            self.remove(HOSTED_CLUSTER, self.namespace, self.name, strict=True)
        finally:
            scale_deployment(self.core.api_client, op_ns, op_name, replicas)
            self.done.append(f"scaled Deployment {operator} back to {replicas} (down {time.monotonic() - started:.1f} s)")

    def node_pools(self) -> list[dict[str, Any]]:
        return [p for p in _list(self.custom, NODE_POOL, self.namespace)
                if (p.get("spec") or {}).get("clusterName") == self.name]

    def read_namespace(self, ns: str) -> Any:
        try:
            return self.core.read_namespace(ns)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def stop_control_plane(self) -> None:
        """Cluster API paused, every Deployment and StatefulSet at 0 and their pods gone: from here nothing
        acts on a Machine (deleting one with CAPI running terminates its instance)."""
        cp = self.cp
        for cluster in _list(self.custom, CLUSTER, cp):
            if not (cluster.get("spec") or {}).get("paused") and not cluster["metadata"].get("deletionTimestamp"):
                self.patch(CLUSTER, cp, cluster["metadata"]["name"], {"spec": {"paused": True}})
                self.done.append(f"paused Cluster {cp}/{cluster['metadata']['name']} (spec.paused)")
        # A controller that has not seen the pause yet (the control-plane-operator scales the API servers it
        # owns until its own pod is gone) may scale a set back up: scale again until nothing comes back.
        def from_sets(pods: list[Any]) -> bool:
            return not [p for p in pods if any(r.controller and r.kind in ("ReplicaSet", "StatefulSet")
                                               for r in p.metadata.owner_references or [])]
        gone = False
        while True:
            scaled = []
            for d in self.apps.list_namespaced_deployment(cp).items:
                if d.spec.replicas:
                    self.apps.patch_namespaced_deployment_scale(d.metadata.name, cp, {"spec": {"replicas": 0}})
                    scaled.append(f"Deployment {d.metadata.name}")
            for s in self.apps.list_namespaced_stateful_set(cp).items:
                if s.spec.replicas:
                    self.apps.patch_namespaced_stateful_set_scale(s.metadata.name, cp, {"spec": {"replicas": 0}})
                    scaled.append(f"StatefulSet {s.metadata.name}")
            if scaled:
                self.done.append(f"scaled to 0 in {cp}: {', '.join(scaled)}")
            elif gone:
                return  # nothing came back up since the pods went
            try:
                wait_for_set(self.core.list_namespaced_pod, from_sets, timeout=min(5.0, self.remaining()),
                             what=f"the pods of {cp} gone", namespace=cp)
            except WaitTimeout as exc:
                if time.monotonic() < self.deadline:
                    continue  # scaled back meanwhile? look again
                names = [p.metadata.name for p in exc.last or []]
                raise MigrationObjectsError(
                    f"{self.where}: {exc} (still there: {', '.join(names[:10])}); nothing was deleted. Check "
                    f"`oc -n {cp} get pods` and what scales them (a pod stuck terminating on a lost node needs "
                    "`oc delete pod --force`), then run again") from None
            if not gone:
                self.done.append(f"every Deployment and StatefulSet pod of {cp} gone")
            gone = True

    def delete_namespace(self, ns: str) -> None:
        try:
            self.core.delete_namespace(ns)
            self.done.append(f"deleted Namespace {ns}")
        except ApiException as exc:
            if exc.status != 404:
                raise
        try:
            wait_for_object(self.core.list_namespace, ns, lambda o: o is None, timeout=self.remaining(),
                            what=f"namespace {ns} gone")
        except WaitTimeout as exc:
            raise MigrationObjectsError(f"{self.where}: {exc}: something in it still has a finalizer; check `oc get "
                                        f"namespace {ns} -o yaml` (status.conditions name what is left)") from None
        self.done.append(f"Namespace {ns} gone")

    def holds_something_else(self, ns: str) -> list[str]:
        """What keeps a HostedCluster namespace from being deleted (besides every namespace's defaults)."""
        things: list[str] = []
        things += [f"HostedCluster {o['metadata']['name']}" for o in _list(self.custom, HOSTED_CLUSTER, ns)]
        things += [f"NodePool {o['metadata']['name']}" for o in _list(self.custom, NODE_POOL, ns)]
        things += [f"Secret {s.metadata.name}" for s in self.core.list_namespaced_secret(ns).items
                   if s.type not in _DEFAULT_SECRET_TYPES]
        things += [f"ConfigMap {c.metadata.name}" for c in self.core.list_namespaced_config_map(ns).items
                   if c.metadata.name not in _DEFAULT_CONFIGMAPS]
        things += [f"Lease {lease.metadata.name}" for lease in client.CoordinationV1Api(self.core.api_client)
                   .list_namespaced_lease(ns).items]
        things += [f"Pod {p.metadata.name}" for p in self.core.list_namespaced_pod(ns).items]
        things += [f"PersistentVolumeClaim {p.metadata.name}"
                   for p in self.core.list_namespaced_persistent_volume_claim(ns).items]
        return things


def remove_hosted_cluster(api: client.ApiClient, namespace: str, name: str, *, timeout: float,
                          only_operation: str | None = None, secrets: list[str] | None = None,
                          operator_deployment: str | None = "hypershift/operator") -> list[str]:
    """Remove a hosted cluster's objects from a management cluster without touching its machines:
    HyperShift's teardown (teardown_old_hc), used for the source after a migration and for a destination
    that must be rolled back. Idempotent: whatever is already gone is skipped.

    1. Pause the HostedCluster and its NodePools; pause the Cluster API Cluster; scale every Deployment and
       StatefulSet of the control-plane namespace to 0 and wait until their pods are gone.
    2. Remove finalizers and delete: NodePools, Machines, MachineSets, the Cluster, AWSMachines, the
       HostedControlPlane; then every other finalizer in the namespace, the namespace (waited for), the
       HostedCluster, the named HostedCluster-namespace `secrets` (not one another HostedCluster names), and
       the HostedCluster namespace when nothing else is left in it.

    `only_operation`: touch only what that operation created (label `hcp-runbooks/operation`); inside a
    control-plane namespace it created, everything is its own. A rollback never deletes a cluster it did
    not create. `operator_deployment` (NAMESPACE/NAME): the hypershift operator, stopped for a moment only
    if it keeps putting the HostedCluster's finalizer back (None: never; the removal fails instead).
    Returns what was done, in order; `left ...` lines say what was not ours."""
    r = _Remover(api, namespace, name, timeout, only_operation)
    hc = r.get(HOSTED_CLUSTER, namespace, name)
    cp_ns = r.read_namespace(r.cp)
    cp_ours = cp_ns is not None and r.ours(cp_ns)
    # 1. Nothing reconciles, nothing acts on a machine.
    if hc is not None:
        if r.ours(hc):
            r.pause(HOSTED_CLUSTER, hc)
        else:
            r.left(f"HostedCluster {namespace}/{name}")
    pools = r.node_pools()
    for pool in pools:
        if r.ours(pool):
            r.pause(NODE_POOL, pool)
    if cp_ns is not None and not cp_ours:
        r.left(f"Namespace {r.cp} and everything in it")
    if cp_ours:
        r.stop_control_plane()
    # 2. Delete, in the documented order.
    for pool in pools:
        pool_name = pool["metadata"]["name"]
        if not r.ours(pool):
            r.left(f"NodePool {namespace}/{pool_name}")
        elif cp_ns is not None and not cp_ours:
            # Its machines live in a namespace that is not ours, whose Cluster API we did not stop.
            r.left(f"NodePool {namespace}/{pool_name} (its control-plane namespace is not ours)")
        else:
            r.remove(NODE_POOL, namespace, pool_name)
    if cp_ours:
        for kind in _TEARDOWN_KINDS:
            for obj in _list(r.custom, kind, r.cp):
                r.remove(kind, r.cp, obj["metadata"]["name"])
        # What the controllers would have released, for the namespace to go: their finalizers.
        for kind in CONTROL_PLANE_KINDS:
            for obj in _list(r.custom, kind, r.cp):
                if obj["metadata"].get("finalizers"):
                    r.patch(kind, r.cp, obj["metadata"]["name"], {"metadata": {"finalizers": None}})
                    r.done.append(f"removed the finalizers of {kind.kind} {r.cp}/{obj['metadata']['name']}")
        r.delete_namespace(r.cp)
    if hc is not None and r.ours(hc):
        r.remove_hosted_cluster(operator_deployment)
    _remove_secrets(r, secrets or [])
    ns = r.read_namespace(namespace)
    if ns is not None and r.ours(ns) and not ns.metadata.deletion_timestamp:
        rest = r.holds_something_else(namespace)
        if rest:
            r.done.append(f"kept Namespace {namespace}: it holds {', '.join(rest[:5])}"
                          f"{' and more' if len(rest) > 5 else ''}")
        else:
            r.delete_namespace(namespace)
    return r.done


def _remove_secrets(r: _Remover, names: Iterable[str]) -> None:
    still_named = {n for o in _list(r.custom, HOSTED_CLUSTER, r.namespace) if o["metadata"]["name"] != r.name
                   for n in referenced_secrets(o).values()}
    for secret_name in names:
        what = f"Secret {r.namespace}/{secret_name}"
        try:
            secret = r.core.read_namespaced_secret(secret_name, r.namespace)
        except ApiException as exc:
            if exc.status == 404:
                continue
            raise
        if not r.ours(secret):
            r.left(what)
        elif secret_name in still_named:
            r.done.append(f"kept {what}: another HostedCluster of {r.namespace} names it")
        else:
            try:
                r.core.delete_namespaced_secret(secret_name, r.namespace)
                r.done.append(f"deleted {what}")
            except ApiException as exc:
                if exc.status != 404:
                    raise
