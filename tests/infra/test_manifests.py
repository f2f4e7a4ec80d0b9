"""infra/: the manifests parse, declare what the README says, grant exactly the Kubernetes API
access the runbooks' code uses (REQUIRED below, checked against a scan of the code), and are
accepted by an API server (the simulated cluster `c1`; kubectl too where it is on PATH)."""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MANIFESTS = ("namespace.yaml", "rbac.yaml", "worker.yaml")  # the apply order
PRODUCT = ("hcp", "tasks", "flows", "deployments", "cli")  # what runs in the worker (cli: `hcp-runbooks deploy`)

NS = "hcp-runbooks"
SA = "hcp-runbooks"
HC_NAMESPACE = "clusters"  # HyperShift's default HostedCluster namespace: the RoleBinding's home

HC = "hypershift.openshift.io"
CAPI, CAPA = "cluster.x-k8s.io", "infrastructure.cluster.x-k8s.io"
CLUSTER = "cluster-wide"  # ClusterRole hcp-runbooks, ClusterRoleBinding
HCNS = "hosted-cluster-namespace"  # ClusterRole hcp-runbooks-hosted-cluster-namespace, RoleBinding per HC namespace
ROLES = {CLUSTER: "hcp-runbooks", HCNS: "hcp-runbooks-hosted-cluster-namespace"}

# Every Kubernetes API access of the code, as (scope, apiGroup, resource, verb). Derived by reading
# hcp/, tasks/, flows/; test_required_matches_the_code's scan keeps it honest: a new API call
# fails that test until it is added here (and a rule to infra/rbac.yaml), so it shows up in review.
# CLUSTER holds what spans namespaces and everything in the control plane namespaces (created per
# hosted cluster: no static RoleBinding can name them), writes there included; HCNS what stays in
# the HostedCluster's own namespace.
REQUIRED: list[tuple[str, str, str, str]] = [
    # etcd-backup read-hosted-cluster, quiesce-control-plane: hcp.hosted_cluster.read_hosted_cluster;
    # etcd-backup save-cluster-objects; etcd-restore-new-cluster inspect-target, create-hosted-cluster
    # (re-run: its own), diagnose, remove-created; dr-migrate dr-preflight (both sides), dr-save-objects,
    # dr-restore-on-destination (ours?), teardown (hcp.hosted_access.hosted_api_client: status.kubeconfig)
    (CLUSTER, HC, "hostedclusters", "get"),
    # fleet-backup discover-hosted-clusters (all namespaces), and the list of the pause wait;
    # etcd-restore-new-cluster inspect-target (clusterID/infraID of every other HostedCluster);
    # dr-save-objects-from-source (the namespace's other HostedClusters: whose secrets are whose),
    # teardown (does another HostedCluster still name a secret), wait-destination (list+watch)
    (CLUSTER, HC, "hostedclusters", "list"),
    # quiesce-control-plane waits for ReconciliationActive=False: tasks.hosted_cluster._wait_paused;
    # etcd-restore wait-hosted-cluster-available; etcd-restore-new-cluster wait-restored, remove-created;
    # dr-migrate wait-destination (Available on the destination)
    (CLUSTER, HC, "hostedclusters", "watch"),
    # quiesce-control-plane sets spec.pausedUntil; restore-availability/recover/undo put it back;
    # dr-teardown-source/remove-from-destination pause it and remove its finalizer (_Remover.pause/remove)
    (HCNS, HC, "hostedclusters", "patch"),
    # etcd-restore-new-cluster create-hosted-cluster (with its one restoreSnapshotURL); dr-restore-on-destination
    (HCNS, HC, "hostedclusters", "create"),
    # etcd-restore-new-cluster remove-created: the HostedCluster this operation created (labelled with its id);
    # dr-teardown-source (the source's, after the teardown gate), remove-from-destination (this operation's)
    (HCNS, HC, "hostedclusters", "delete"),
    # etcd-backup save-cluster-objects (the HostedCluster's NodePools); etcd-restore-new-cluster
    # inspect-target (names taken), remove-created (this operation's, by label); dr-migrate dr-preflight
    # (both sides), pause-node-pools, dr-save-objects-from-source, teardown
    (HCNS, HC, "nodepools", "list"),
    # etcd-restore-new-cluster create-nodepools: a re-run reads the NodePool that answered 409;
    # dr-restore-on-destination (ours?), teardown (_Remover.remove re-reads before each delete)
    (HCNS, HC, "nodepools", "get"),
    # etcd-restore-new-cluster create-nodepools; dr-restore-on-destination
    (HCNS, HC, "nodepools", "create"),
    # etcd-restore-new-cluster remove-created; dr-teardown-source, remove-from-destination
    (HCNS, HC, "nodepools", "delete"),
    # quiesce-control-plane/restore-availability wait for the API servers: wait_deployment_settled (list+watch);
    # dr-migrate teardown: every Deployment of the control-plane namespace (scaled to 0), and the
    # hypershift operator (hypershift/operator) settled at 0 while the HostedCluster is deleted
    (CLUSTER, "apps", "deployments", "list"),
    (CLUSTER, "apps", "deployments", "watch"),
    # etcd-restore start-data-pods: a re-run reads the data-access Deployment that answered 409 (whose is it?)
    (CLUSTER, "apps", "deployments", "get"),
    # etcd-restore start-data-pods: the documented data-access Deployments in the control plane namespace
    (CLUSTER, "apps", "deployments", "create"),
    # etcd-restore remove-data-pods (listed by label), and recover/undo of a failed restore (delete-deployment)
    (CLUSTER, "apps", "deployments", "delete"),
    # quiesce-control-plane records the replica count before scaling; undo checks the Deployment exists;
    # dr-teardown-source journals the hypershift operator's replicas (namespace hypershift)
    (CLUSTER, "apps", "deployments/scale", "get"),
    # quiesce-control-plane scales to 0; restore-availability/recover/undo scale back; dr-migrate quiesce
    # (also the control-plane-operator); teardown: every Deployment of the control-plane namespace to 0,
    # and the hypershift operator to 0 and back when it keeps re-adding the HostedCluster's finalizer
    (CLUSTER, "apps", "deployments/scale", "patch"),
    # etcd-restore read-etcd-layout (image, replicas, claim template, initial cluster);
    # etcd-restore-new-cluster wait-restored
    (CLUSTER, "apps", "statefulsets", "get"),
    # etcd-member-recovery etcd-health (replica count); recover/undo of stop-etcd checks it exists
    (CLUSTER, "apps", "statefulsets/scale", "get"),
    # etcd-restore stop-etcd (to 0), start-etcd and recover/undo (back to the recorded count);
    # dr-migrate teardown: every StatefulSet of the control-plane namespace to 0
    (CLUSTER, "apps", "statefulsets/scale", "patch"),
    # etcd-member-status: the app=etcd pods of the control plane namespace; etcd-restore
    # wait-etcd-stopped, start-data-pods, remove-data-pods, start-etcd (wait_for_set: list+watch);
    # etcd-member-recovery etcd-health, wait-for-new-pvc-and-pod; dr-migrate dr-backup-etcd-on-source,
    # wait-destination (the members), teardown (until the control-plane pods are gone; what is left in
    # the HostedCluster namespace)
    (CLUSTER, "", "pods", "list"),
    (CLUSTER, "", "pods", "watch"),
    # etcd-member-status: a member pod is Running and not being deleted; etcd-restore-new-cluster diagnose
    (CLUSTER, "", "pods", "get"),
    # etcd-member-recovery replace-failed-member: the failed member's pod (uid precondition);
    # wait-member-caught-up: a replacement that never joined, replaced again
    (CLUSTER, "", "pods", "delete"),
    # etcd-member-recovery wait-member-caught-up (reset-member's log); etcd-restore-new-cluster diagnose (etcd-init)
    (CLUSTER, "", "pods/log", "get"),
    # every in-pod step (etcdctl status/health, snapshot save/status, sha256sum, stat, cat, test, rm;
    # etcd-restore copy-snapshot-in with stdin, restore-data, remove-previous-data; etcd-member-recovery
    # member add; dr-migrate dr-backup-etcd-on-source, wait-destination): a websocket GET, authorized as
    # get (older API servers) and also as create (1.30+)
    (CLUSTER, "", "pods/exec", "get"),
    (CLUSTER, "", "pods/exec", "create"),
    # etcd-member-recovery etcd-health (the app=etcd claims), wait-for-new-pvc-and-pod (list+watch);
    # dr-migrate teardown: what is left in the HostedCluster namespace (holds_something_else)
    (CLUSTER, "", "persistentvolumeclaims", "list"),
    (CLUSTER, "", "persistentvolumeclaims", "watch"),
    # etcd-member-recovery replace-failed-member: the failed member's claim data-etcd-N (uid precondition);
    # wait-member-caught-up: a never-joined replacement's
    (CLUSTER, "", "persistentvolumeclaims", "delete"),
    # etcd-restore-new-cluster inspect-target: does the target namespace exist (it may not: no RoleBinding yet);
    # dr-migrate dr-preflight, dr-restore-on-destination, teardown: do the namespaces exist, whose are they
    (CLUSTER, "", "namespaces", "get"),
    # recover find-undo-journals: ConfigMaps labelled hcp-runbooks/operation-id in all namespaces;
    # dr-migrate teardown: what is left in the HostedCluster namespace (holds_something_else)
    (CLUSTER, "", "configmaps", "list"),
    # the undo journal: read-undo-journal, record, unwind, close (hcp.undo_journal.UndoJournal), dr-migrate
    # guard-undo-journal and recover read-journal-guard -- all in the HostedCluster's namespace; and
    # dr-migrate dr-preflight: ConfigMap hypershift/supported-versions (dr_checks.supported_version_problems).
    # Cluster-wide for the latter (the operator's namespace is bound to nothing); the list above reads
    # every ConfigMap anyway
    (CLUSTER, "", "configmaps", "get"),
    # the undo journal's writes (record, unwind, drop_pending, guard, close), in the HostedCluster's namespace
    (HCNS, "", "configmaps", "create"),
    (HCNS, "", "configmaps", "update"),
    (HCNS, "", "configmaps", "delete"),
    # the lock Lease hcp-runbooks-lock-<name>: take-lock, renewals, release, break (hcp.lease_lock.LeaseLock)
    (HCNS, "coordination.k8s.io", "leases", "get"),
    (HCNS, "coordination.k8s.io", "leases", "create"),
    (HCNS, "coordination.k8s.io", "leases", "update"),
    # save-encryption-key: the secret named by spec.secretEncryption.aescbc.activeKey.name;
    # etcd-restore-new-cluster inspect-target, restore-encryption-key (the referenced secrets exist?);
    # dr-migrate (hcp.hosted_access.hosted_api_client) the <name>-admin-kubeconfig secret, and
    # dr-restore-on-destination (does each secret to restore exist, ours?) in the HostedCluster's AND
    # the control-plane namespace: cluster-wide
    (CLUSTER, "", "secrets", "get"),
    # etcd-restore-new-cluster restore-encryption-key: the backup's AES key, when the target lacks it;
    # dr-restore-on-destination: the saved secrets of both namespaces (control plane's too): cluster-wide
    (CLUSTER, "", "secrets", "create"),
    # etcd-restore-new-cluster remove-created: the secrets this operation created (label selector);
    # dr-save-objects-from-source: the secrets of the HostedCluster's namespace and of the control-plane
    # namespace (hcp.migration_objects.collect_migration_objects); remove-from-destination and
    # dr-teardown-source: what else is left in a HostedCluster namespace (holds_something_else): cluster-wide
    (CLUSTER, "", "secrets", "list"),
    # etcd-restore-new-cluster remove-created; dr-teardown-source, remove-from-destination: the
    # HostedCluster namespace's secrets that moved with the cluster (hcp.migration_objects._remove_secrets)
    (HCNS, "", "secrets", "delete"),
    # -- dr-migrate (runs against two management clusters, source and destination: this same RBAC on both)
    # dr-preflight (server-side dry run: may the runner create the control-plane namespace on the
    # destination?); dr-restore-on-destination creates the control-plane namespace and, when missing,
    # the HostedCluster's namespace (hcp.migration_objects.restore_migration_objects)
    (CLUSTER, "", "namespaces", "create"),
    # dr-teardown-source, remove-from-destination: the control-plane namespace, and the HostedCluster
    # namespace when the operation created it and nothing else is left in it (_Remover.delete_namespace)
    (CLUSTER, "", "namespaces", "delete"),
    # ... then wait until it is gone (wait_for_object: list+watch, field selector metadata.name)
    (CLUSTER, "", "namespaces", "list"),
    (CLUSTER, "", "namespaces", "watch"),
    # dr-teardown-source, remove-from-destination stop the control plane: every StatefulSet of the
    # control-plane namespace scaled to 0 (through statefulsets/scale, above)
    (CLUSTER, "apps", "statefulsets", "list"),
    # remove-from-destination, dr-teardown-source: is anything else left in the HostedCluster namespace
    # before it is deleted (holds_something_else)
    (HCNS, "coordination.k8s.io", "leases", "list"),
    # pause-node-pools (pausedUntil, journalled), its undo (set-nodepool-paused-until); teardown pauses them
    # and removes their finalizers (hcp.hosted_cluster.set_node_pool_paused_until, _Remover.pause/remove)
    (HCNS, HC, "nodepools", "patch"),
    # dr-delete-routes-on-source: the control plane's Routes (the source's external-dns then removes
    # the records), in the control-plane namespace
    (CLUSTER, "route.openshift.io", "routes", "list"),
    (CLUSTER, "route.openshift.io", "routes", "delete"),
    # The control-plane namespace's objects, all in the control-plane namespace (so cluster-wide):
    # dr-save-objects-from-source lists them (collect_migration_objects); dr-restore-on-destination
    # reads (is it there, ours?) and creates them (_Target); dr-teardown-source and
    # remove-from-destination list them, pause the Cluster (spec.paused), remove finalizers (patch)
    # and delete (_Remover.remove, hcp.migration_objects.remove_hosted_cluster). Deleted one by one
    # only: HostedControlPlane, Cluster, Machines, MachineSets, AWSMachines (_TEARDOWN_KINDS); the
    # AWSCluster, AWSMachineTemplates, MachineDeployments go with the namespace.
    *[(CLUSTER, g, r, v) for g, r in ((HC, "hostedcontrolplanes"), (CAPI, "clusters"), (CAPI, "machines"),
                                      (CAPI, "machinesets"), (CAPI, "machinedeployments"), (CAPA, "awsclusters"),
                                      (CAPA, "awsmachinetemplates"), (CAPA, "awsmachines"))
      for v in ("get", "list", "create", "patch")],
    *[(CLUSTER, g, r, "delete") for g, r in ((HC, "hostedcontrolplanes"), (CAPI, "clusters"), (CAPI, "machines"),
                                            (CAPI, "machinesets"), (CAPA, "awsmachines"))],
]

# How each method of the official client the code uses maps to RBAC (group, resource, verb).
CLIENT_CALLS: dict[str, list[tuple[str, str, str]]] = {
    "get_api_versions": [],  # GET /api: discovery, granted to every authenticated identity (system:discovery)
    "list_namespaced_deployment": [("apps", "deployments", "list")],
    "read_namespaced_deployment": [("apps", "deployments", "get")],
    "create_namespaced_deployment": [("apps", "deployments", "create")],
    "delete_namespaced_deployment": [("apps", "deployments", "delete")],
    "read_namespaced_deployment_scale": [("apps", "deployments/scale", "get")],
    "patch_namespaced_deployment_scale": [("apps", "deployments/scale", "patch")],
    "read_namespaced_stateful_set": [("apps", "statefulsets", "get")],
    "read_namespaced_stateful_set_scale": [("apps", "statefulsets/scale", "get")],
    "patch_namespaced_stateful_set_scale": [("apps", "statefulsets/scale", "patch")],
    "list_namespaced_pod": [("", "pods", "list")],
    "read_namespaced_pod": [("", "pods", "get")],
    "delete_namespaced_pod": [("", "pods", "delete")],
    "read_namespaced_pod_log": [("", "pods/log", "get")],
    "connect_get_namespaced_pod_exec": [("", "pods/exec", "get"), ("", "pods/exec", "create")],
    "list_namespaced_persistent_volume_claim": [("", "persistentvolumeclaims", "list")],
    "delete_namespaced_persistent_volume_claim": [("", "persistentvolumeclaims", "delete")],
    "read_namespace": [("", "namespaces", "get")],
    "list_config_map_for_all_namespaces": [("", "configmaps", "list")],
    "read_namespaced_config_map": [("", "configmaps", "get")],
    "create_namespaced_config_map": [("", "configmaps", "create")],
    "replace_namespaced_config_map": [("", "configmaps", "update")],
    "delete_namespaced_config_map": [("", "configmaps", "delete")],
    "read_namespaced_lease": [("coordination.k8s.io", "leases", "get")],
    "create_namespaced_lease": [("coordination.k8s.io", "leases", "create")],
    "replace_namespaced_lease": [("coordination.k8s.io", "leases", "update")],
    "read_namespaced_secret": [("", "secrets", "get")],
    "create_namespaced_secret": [("", "secrets", "create")],
    "list_namespaced_secret": [("", "secrets", "list")],
    "delete_namespaced_secret": [("", "secrets", "delete")],
    # dr-migrate
    "create_namespace": [("", "namespaces", "create")],  # a dry_run="All" create is authorized as a create
    "delete_namespace": [("", "namespaces", "delete")],
    "list_namespace": [("", "namespaces", "list")],
    "list_namespaced_stateful_set": [("apps", "statefulsets", "list")],
    "list_namespaced_config_map": [("", "configmaps", "list")],
    "list_namespaced_lease": [("coordination.k8s.io", "leases", "list")],
}
# The custom-object methods: the verb, and the plural argument's position (group, version,
# [namespace,] plural, ...). The resource is the call's own (group, plural), which must be one of
# CUSTOM_RESOURCES and resolve to constants the scan can read.
CUSTOM_CALLS: dict[str, tuple[str, int]] = {
    "get_namespaced_custom_object": ("get", 3),
    "list_namespaced_custom_object": ("list", 3),
    "list_cluster_custom_object": ("list", 2),
    "patch_namespaced_custom_object": ("patch", 3),
    "create_namespaced_custom_object": ("create", 3),
    "delete_namespaced_custom_object": ("delete", 3),
}
CUSTOM_RESOURCES = {
    (HC, "hostedclusters"), (HC, "nodepools"), (HC, "hostedcontrolplanes"),
    (CAPI, "clusters"), (CAPI, "machines"), (CAPI, "machinesets"), (CAPI, "machinedeployments"),
    (CAPA, "awsclusters"), (CAPA, "awsmachinetemplates"), (CAPA, "awsmachines"),
    ("route.openshift.io", "routes"),
}
# Custom-object calls whose group/plural are a `Kind` (hcp/migration_objects.py: `kind.group`,
# `kind.plural`) are followed back to the Kind constants of the module: through the loops and
# comprehensions over constant tuples of Kinds (CONTROL_PLANE_KINDS, _TEARDOWN_KINDS), local
# assignments, and a parameter to every call of its function in the same file (methods: `self.m`,
# or a local bound to the class). Two helpers the scan cannot read, mapped by hand:
# - `_kind_of(obj)`: the Kind of a saved object, looked up in _BY_KIND, which holds every Kind
#   constant of the module (test_kind_lookups_match_the_code checks it); any other kind raises.
KIND_LOOKUPS: dict[str, Any] = {"_kind_of": lambda mod: mod.kinds()}
# - (file, function, group argument) -> what to read instead: _Target.create takes the group from the
#   saved object's apiVersion (the version it was saved in, v1beta1 for Cluster API), whose kind
#   `_kind_of` resolved to `k`; the objects come from collect_migration_objects, which lists each
#   Kind under its own group.
GROUP_OVERRIDES = {("hcp/migration_objects.py", "_Target.create", "group"): "k.group"}
# Calls on the HOSTED cluster's own API (hcp/hosted_access.py: nodes, the OVN pods, the parent
# marker ConfigMap inside the hosted cluster) go through a client that hosted_api_client builds from
# the hosted cluster's admin kubeconfig: they are authorized by the hosted cluster as its admin, not
# by this ServiceAccount on the management cluster, so infra/rbac.yaml neither can nor needs to grant
# them. Left out of the scan: exactly the calls on an Api object built from the `hosted` parameter of
# a function of these files, and only when every caller hands that function a client made by
# HOSTED_CLIENT (checked). hosted_api_client's own calls (get the HostedCluster, get its
# kubeconfig secret) are on the management cluster and stay in the scan.
HOSTED_API_FILES = {"hcp/hosted_access.py": "hosted"}
HOSTED_CLIENT = "hosted_api_client"
# Functions the code hands a client method to: wait_for_object/wait_for_set (hcp/waits.py) list
# and then watch from that list; stream() opens the exec websocket.
WATCHED_BY = ("wait_for_object", "wait_for_set")
HANDED_TO = (*WATCHED_BY, "stream")


# -- parsing ---------------------------------------------------------------------------------------

def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((INFRA / name).read_text()) if d is not None]


def _all_docs() -> list[dict[str, Any]]:
    return [d for name in MANIFESTS for d in _docs(name)]


def _find(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in _all_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} objects"
    return found[0]


def _worker() -> dict[str, Any]:
    return _find("Deployment", "hcp-runbooks-worker")


def _container() -> dict[str, Any]:
    containers = _worker()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_every_manifest_parses_and_declares_the_expected_objects() -> None:
    declared = {name: [(d["apiVersion"], d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
                       for d in _docs(name)] for name in MANIFESTS}
    assert declared == {
        "namespace.yaml": [("v1", "Namespace", None, NS)],
        "rbac.yaml": [
            ("v1", "ServiceAccount", NS, SA),
            ("rbac.authorization.k8s.io/v1", "ClusterRole", None, ROLES[CLUSTER]),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", None, "hcp-runbooks"),
            ("rbac.authorization.k8s.io/v1", "ClusterRole", None, ROLES[HCNS]),
            ("rbac.authorization.k8s.io/v1", "RoleBinding", HC_NAMESPACE, "hcp-runbooks"),
        ],
        "worker.yaml": [
            ("v1", "ConfigMap", NS, "hcp-runbooks-config"),
            ("v1", "PersistentVolumeClaim", NS, "hcp-runbooks-results"),
            ("apps/v1", "Deployment", NS, "hcp-runbooks-worker"),
        ],
    }
    kustomization = yaml.safe_load((INFRA / "kustomization.yaml").read_text())
    assert kustomization["resources"] == list(MANIFESTS)
    assert "namespace" not in kustomization  # it would move the RoleBinding out of `clusters`
    assert [i["name"] for i in kustomization["images"]] == [_container()["image"].split(":")[0]]


# -- RBAC --------------------------------------------------------------------------------------------

def _granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    out = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"{role['metadata']['name']}: {rule}"  # no names, URLs
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"{role['metadata']['name']}: wildcard in {field}: {rule}"
        out |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return out


def test_rbac_grants_exactly_what_the_code_needs_in_each_scope() -> None:
    for scope, role_name in ROLES.items():
        granted = _granted(_find("ClusterRole", role_name))
        needed = {(g, r, v) for s, g, r, v in REQUIRED if s == scope}
        assert not needed - granted, f"{role_name} lacks {sorted(needed - granted)}: add rules to infra/rbac.yaml"
        assert not granted - needed, (f"{role_name} grants {sorted(granted - needed)}, which no step uses: remove "
                                      "them, or add the step to REQUIRED with a comment")
    assert len(REQUIRED) == len(set(REQUIRED))


def test_bindings_give_the_roles_to_the_worker_service_account_only() -> None:
    subject = [{"kind": "ServiceAccount", "name": SA, "namespace": NS}]
    crb = _find("ClusterRoleBinding", "hcp-runbooks")
    assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLES[CLUSTER]}
    assert crb["subjects"] == subject
    rb = _find("RoleBinding", "hcp-runbooks")
    assert rb["metadata"]["namespace"] == HC_NAMESPACE
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLES[HCNS]}
    assert rb["subjects"] == subject
    # the namespace-scoped role is never bound cluster-wide
    assert [d for d in _all_docs() if d["kind"] == "ClusterRoleBinding" and d["roleRef"]["name"] == ROLES[HCNS]] == []
    assert _worker()["spec"]["template"]["spec"]["serviceAccountName"] == SA


def _client_methods() -> set[str]:
    methods = set()
    for name in dir(client):
        cls = getattr(client, name)
        if inspect.isclass(cls) and name.endswith("Api") and name != "ApiClient":
            methods |= {m for m in dir(cls) if not m.startswith("_") and not m.endswith("_with_http_info")}
    return methods


def _product_files() -> Iterator[Path]:
    for package in PRODUCT:
        yield from sorted((ROOT / package).rglob("*.py"))


class _Kind(NamedTuple):
    """A `Kind(kind, group, version, plural)` constant of the code (hcp/migration_objects.py), as read by the scan."""
    kind: str
    group: str
    version: str
    plural: str


class _Unresolved(Exception):
    pass


_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)
_COMPS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)


def _evaluate(node: ast.AST, env: dict[str, Any]) -> Any:
    """A module-level constant: strings, tuples of them, Kind(...) calls, names of earlier constants."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, (ast.Tuple, ast.List)):
        out: list[Any] = []
        for elt in node.elts:
            if isinstance(elt, ast.Starred):
                out.extend(_evaluate(elt.value, env))
            else:
                out.append(_evaluate(elt, env))
        return tuple(out)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Kind" and not node.keywords:
        return _Kind(*(_evaluate(a, env) for a in node.args))
    if isinstance(node, ast.Subscript):
        value = _evaluate(node.value, env)
        if isinstance(node.slice, ast.Slice):
            bounds = [None if b is None else _evaluate(b, env) for b in (node.slice.lower, node.slice.upper)]
            return value[bounds[0]:bounds[1]]
        return value[_evaluate(node.slice, env)]
    raise _Unresolved(ast.unparse(node))


def _module_constants(tree: ast.Module) -> dict[str, Any]:
    env: dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        else:
            continue
        try:
            evaluated = _evaluate(value, env)
        except (_Unresolved, TypeError, IndexError, KeyError):
            continue
        for target in targets:
            if isinstance(target, ast.Name):
                env[target.id] = evaluated
            elif isinstance(target, ast.Tuple) and isinstance(evaluated, tuple) \
                    and len(target.elts) == len(evaluated) and all(isinstance(t, ast.Name) for t in target.elts):
                env.update({t.id: v for t, v in zip(target.elts, evaluated)})  # type: ignore[attr-defined]
    return env


class _Module:
    """One product file, as the scan follows its custom-object calls back to the Kind constants they get."""

    def __init__(self, rel: str, tree: ast.Module, names: dict[str, str]) -> None:
        self.rel, self.tree = rel, tree
        self.consts = _module_constants(tree)
        self.names = names  # hcp.hosted_cluster's GROUP and PLURAL, imported under those names everywhere
        self.parent: dict[int, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parent[id(child)] = node
        self.calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]

    def ancestors(self, node: ast.AST) -> Iterator[ast.AST]:
        while id(node) in self.parent:
            node = self.parent[id(node)]
            yield node

    def function_of(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        return next((a for a in self.ancestors(node) if isinstance(a, _FUNCS)), None)

    def class_of(self, func: ast.AST) -> str | None:
        parent = self.parent.get(id(func))
        return parent.name if isinstance(parent, ast.ClassDef) else None

    def qualname(self, func: ast.AST) -> str:
        cls = self.class_of(func)
        return f"{cls}.{func.name}" if cls else func.name  # type: ignore[attr-defined]

    def kinds(self) -> set[_Kind]:
        return {v for v in self.consts.values() if isinstance(v, _Kind)}

    # -- values ----------------------------------------------------------------------------------------

    def values(self, expr: ast.AST, at: ast.AST, seen: frozenset[tuple[int, str]] = frozenset()) -> set[Any]:
        """Every value `expr` (evaluated where `at` is) can have; _Unresolved when the scan cannot tell."""
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return {expr.value}
        if isinstance(expr, ast.Attribute):
            if expr.attr in self.names and isinstance(expr.value, ast.Name) \
                    and not isinstance(self.consts.get(expr.value.id), _Kind):
                return {self.names[expr.attr]}  # hc.GROUP, hc.PLURAL
            return {getattr(v, expr.attr) for v in self.values(expr.value, at, seen) if isinstance(v, _Kind)} \
                or _fail(expr)
        if isinstance(expr, ast.Subscript):
            try:
                return {_evaluate(expr, self.consts)}
            except (_Unresolved, TypeError, IndexError, KeyError):
                raise _Unresolved(ast.unparse(expr)) from None
        if isinstance(expr, ast.Call):
            callee = expr.func.attr if isinstance(expr.func, ast.Attribute) else getattr(expr.func, "id", "")
            if callee in KIND_LOOKUPS:
                return set(KIND_LOOKUPS[callee](self))
            raise _Unresolved(ast.unparse(expr))
        if isinstance(expr, ast.Name):
            return self._name(expr.id, at, seen)
        raise _Unresolved(ast.unparse(expr))

    def _iterated(self, expr: ast.AST, at: ast.AST, seen: frozenset[tuple[int, str]]) -> set[Any]:
        """The elements of the iterable `expr`: a constant tuple (CONTROL_PLANE_KINDS) or a tuple literal."""
        if isinstance(expr, (ast.Tuple, ast.List)):
            out: set[Any] = set()
            for elt in expr.elts:
                if isinstance(elt, ast.Starred):
                    out |= self._iterated(elt.value, at, seen)
                else:
                    out |= self.values(elt, at, seen)
            return out
        if isinstance(expr, ast.Name) and isinstance(self.consts.get(expr.id), tuple) and not self._bound_locally(
                expr.id, at):
            return set(self.consts[expr.id])
        raise _Unresolved(ast.unparse(expr))

    def _bound_locally(self, name: str, at: ast.AST) -> bool:
        func = self.function_of(at)
        return func is not None and any(isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store)
                                        for n in ast.walk(func))

    def _name(self, name: str, at: ast.AST, seen: frozenset[tuple[int, str]]) -> set[Any]:
        # the innermost loop or comprehension around `at` that binds it (for kind in _TEARDOWN_KINDS: ...)
        child = at
        for node in self.ancestors(at):
            if isinstance(node, (ast.For, ast.AsyncFor)) and isinstance(node.target, ast.Name) \
                    and node.target.id == name and child is not node.iter:
                return self._iterated(node.iter, node, seen)
            if isinstance(node, _COMPS):
                for gen in node.generators:
                    if isinstance(gen.target, ast.Name) and gen.target.id == name:
                        return self._iterated(gen.iter, node, seen)
            if isinstance(node, _FUNCS):
                found = self._in_function(node, name, seen)
                if found is not None:
                    return found
            child = node
        if name in self.consts:
            return {self.consts[name]}
        if name in self.names:
            return {self.names[name]}
        raise _Unresolved(name)

    def _in_function(self, func: ast.FunctionDef | ast.AsyncFunctionDef, name: str,
                     seen: frozenset[tuple[int, str]]) -> set[Any] | None:
        """`name` assigned in `func` (every assignment), or its parameter (every caller's argument); None: neither."""
        assigned = [n for n in ast.walk(func) if isinstance(n, ast.Assign) and self.function_of(n) is func
                    and any(isinstance(t, ast.Name) and t.id == name for t in n.targets)]
        if assigned:
            out: set[Any] = set()
            for a in assigned:
                out |= self.values(a.value, a, seen)
            return out
        params = [a.arg for a in (*func.args.posonlyargs, *func.args.args)]
        if name in params or name in [a.arg for a in func.args.kwonlyargs]:
            return self._from_callers(func, name, seen)
        if any(isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store) for n in ast.walk(func)
               if self.function_of(n) is func):
            raise _Unresolved(f"{name} (bound in {self.qualname(func)} in a way the scan does not follow)")
        return None

    def _from_callers(self, func: ast.FunctionDef | ast.AsyncFunctionDef, param: str,
                      seen: frozenset[tuple[int, str]]) -> set[Any]:
        key = (id(func), param)
        if key in seen:
            return set()  # a recursive call adds nothing new
        seen = seen | {key}
        positional = [a.arg for a in (*func.args.posonlyargs, *func.args.args)]
        cls = self.class_of(func)
        if cls:
            positional = positional[1:]  # self
        out: set[Any] = set()
        callers = [c for c in self.calls if self._calls(c, func, cls)]
        if not callers:
            raise _Unresolved(f"{param} of {self.qualname(func)}, which nothing in {self.rel} calls")
        for call in callers:
            kw = {k.arg: k.value for k in call.keywords}
            if param in kw:
                arg = kw[param]
            elif param in positional and positional.index(param) < len(call.args) \
                    and not any(isinstance(a, ast.Starred) for a in call.args):
                arg = call.args[positional.index(param)]
            else:
                raise _Unresolved(f"{param} of {self.qualname(func)} at {self.rel}:{call.lineno}")
            out |= self.values(arg, call, seen)
        return out

    def _calls(self, call: ast.Call, func: ast.AST, cls: str | None) -> bool:
        name = func.name  # type: ignore[attr-defined]
        if cls is None:
            return isinstance(call.func, ast.Name) and call.func.id == name
        if not (isinstance(call.func, ast.Attribute) and call.func.attr == name
                and isinstance(call.func.value, ast.Name)):
            return False
        receiver = call.func.value.id
        caller = self.function_of(call)
        if caller is None:
            return False
        if receiver == "self":
            return self.class_of(caller) == cls
        # r = _Remover(...), or a parameter annotated `r: _Remover`
        for n in ast.walk(caller):
            if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == receiver for t in n.targets) \
                    and isinstance(n.value, ast.Call) and isinstance(n.value.func, ast.Name) and n.value.func.id == cls:
                return True
        params = (*caller.args.posonlyargs, *caller.args.args, *caller.args.kwonlyargs)
        return any(a.arg == receiver and isinstance(a.annotation, ast.Name) and a.annotation.id == cls for a in params)

    # -- custom objects --------------------------------------------------------------------------------------

    def resources(self, group: ast.AST | None, plural: ast.AST | None, at: ast.AST) -> set[tuple[str, str]]:
        """The (group, plural) pairs of a custom-object call."""
        if group is None or plural is None:
            raise _Unresolved("no group/plural argument")
        func = self.function_of(at)
        override = GROUP_OVERRIDES.get((self.rel, self.qualname(func) if func else "", ast.unparse(group)))
        if override is not None:
            group = ast.parse(override, mode="eval").body  # evaluated where the call is (`at`)
        if isinstance(group, ast.Attribute) and isinstance(plural, ast.Attribute) \
                and ast.dump(group.value) == ast.dump(plural.value) and group.attr not in self.names:
            # kind.group with kind.plural: one Kind, never a mix of two
            kinds = {k for k in self.values(group.value, at) if isinstance(k, _Kind)}
            if not kinds:
                raise _Unresolved(ast.unparse(group.value))
            return {(getattr(k, group.attr), getattr(k, plural.attr)) for k in kinds}
        groups, plurals = self.values(group, at), self.values(plural, at)
        if len(groups) > 1 and len(plurals) > 1:
            raise _Unresolved(f"{ast.unparse(group)}/{ast.unparse(plural)}: several groups and plurals, not paired")
        return {(g, p) for g in groups for p in plurals}


def _fail(expr: ast.AST) -> set[Any]:
    raise _Unresolved(ast.unparse(expr))


def _spread(args: list[ast.expr], consts: dict[str, Any]) -> list[ast.expr]:
    """Positional arguments with `*CONSTANT[...]` spread out (`*_ROUTES[:2]`: group, version)."""
    out: list[ast.expr] = []
    for arg in args:
        if isinstance(arg, ast.Starred):
            try:
                out += [ast.Constant(v) for v in _evaluate(arg.value, consts)]
            except (_Unresolved, TypeError, IndexError, KeyError):
                out.append(arg)
        else:
            out.append(arg)
    return out


def _hosted_functions(modules: list[_Module]) -> dict[str, str]:
    """name -> file of the functions given the hosted cluster's own client (HOSTED_API_FILES)."""
    out = {}
    for mod in modules:
        param = HOSTED_API_FILES.get(mod.rel)
        if param:
            out |= {f.name: mod.rel for f in ast.walk(mod.tree) if isinstance(f, _FUNCS)
                    and param in [a.arg for a in (*f.args.posonlyargs, *f.args.args, *f.args.kwonlyargs)]}
    return out


def _api_of(expr: ast.AST, param: str) -> bool:
    """client.CoreV1Api(hosted)"""
    return (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr.endswith("Api")
            and len(expr.args) == 1 and not expr.keywords and isinstance(expr.args[0], ast.Name)
            and expr.args[0].id == param)


def _on_hosted_cluster(mod: _Module, target: ast.Attribute) -> bool:
    """A client method called on an Api object built from the hosted cluster's client (the `hosted`
    parameter of a function of HOSTED_API_FILES): directly, or through a local name bound only to one."""
    param = HOSTED_API_FILES.get(mod.rel)
    func = mod.function_of(target)
    if param is None or func is None or param not in [a.arg for a in (*func.args.posonlyargs, *func.args.args)]:
        return False
    if _api_of(target.value, param):
        return True
    if not isinstance(target.value, ast.Name):
        return False
    bound = [n for n in ast.walk(func) if isinstance(n, ast.Name) and n.id == target.value.id
             and isinstance(n.ctx, ast.Store)]
    assigns = [n for n in ast.walk(func) if isinstance(n, ast.Assign)
               and any(isinstance(t, ast.Name) and t.id == target.value.id for t in n.targets)]
    return bool(assigns) and len(assigns) == len(bound) and all(_api_of(a.value, param) for a in assigns)


def _hosted_callers_problems(mod: _Module, hosted_functions: dict[str, str]) -> list[str]:
    """Every call of a hosted-cluster function hands it a client made by hosted_api_client: what the scan
    leaves out is really the hosted cluster's API, never the management cluster's."""
    problems = []
    for call in mod.calls:
        callee = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
        if callee not in hosted_functions:
            continue
        kw = {k.arg: k.value for k in call.keywords}
        arg = call.args[0] if call.args else kw.get(HOSTED_API_FILES[hosted_functions[callee]])
        func = mod.function_of(call)
        ok = False
        if isinstance(arg, ast.Name) and func is not None:
            name = arg.id
            bindings = [n for n in ast.walk(func) if isinstance(n, ast.Name) and n.id == name
                        and isinstance(n.ctx, ast.Store)]
            assigns = [n for n in ast.walk(func) if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
                       and any(isinstance(t, ast.Name) and t.id == name for t in n.targets)
                       and (getattr(n.value.func, "attr", None) or getattr(n.value.func, "id", None)) == HOSTED_CLIENT]
            params = [a.arg for a in (*func.args.posonlyargs, *func.args.args)]
            # inside the hosted-cluster module, passing its own `hosted` parameter on is fine too
            ok = (bool(assigns) and len(assigns) == len(bindings)) or (
                mod.rel == hosted_functions[callee] and name in params and name == HOSTED_API_FILES[mod.rel])
        if not ok:
            problems.append(f"{mod.rel}:{call.lineno} {callee}: given a client the scan cannot prove is the hosted "
                            f"cluster's ({HOSTED_CLIENT}(...)); its calls are left out of the management-cluster RBAC")
    return problems


def _scan(files: list[tuple[str, str]]) -> tuple[set[tuple[str, str, str]], list[str]]:
    """The RBAC tuples the Kubernetes calls in `files` ((path, source) pairs) need, and the problems found."""
    from hcp import hosted_cluster

    names = {"PLURAL": hosted_cluster.PLURAL, "GROUP": hosted_cluster.GROUP}
    methods = _client_methods()
    needed: set[tuple[str, str, str]] = set()
    problems: list[str] = []
    modules = [_Module(rel, ast.parse(source), names) for rel, source in files]
    hosted_functions = _hosted_functions(modules)
    for mod, (rel, source) in zip(modules, files):
        for token in ("call_api", "DynamicClient", "rest_client", "ApiClient.request"):
            if token in source:
                problems.append(f"{rel}: raw API access ({token}) the scan cannot map: map it by hand")
        if re.search(r"\bWatch\(", source) and rel != "hcp/waits.py":
            problems.append(f"{rel}: a watch outside hcp/waits.py: add its watch verb to REQUIRED and this scan")
        problems += _hosted_callers_problems(mod, hosted_functions)
        understood: set[int] = set()  # ids of the Attribute nodes explained by a call below
        for node in mod.calls:
            func = node.func
            callee = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if isinstance(func, ast.Attribute) and func.attr in methods:
                method, target, watched = func.attr, func, False
            elif callee in HANDED_TO and node.args and isinstance(node.args[0], ast.Attribute) \
                    and node.args[0].attr in methods:
                # a list method handed to a watch-based wait, or the exec method handed to stream()
                method, target, watched = node.args[0].attr, node.args[0], callee in WATCHED_BY
            else:
                continue
            understood.add(id(target))
            if _on_hosted_cluster(mod, target):
                continue  # the hosted cluster's own API, as its admin: not this ServiceAccount's (HOSTED_API_FILES)
            where = f"{rel}:{node.lineno} {method}"
            if method in CUSTOM_CALLS:
                verb, index = CUSTOM_CALLS[method]
                kw = {k.arg: k.value for k in node.keywords}
                # handed to a wait: only its keyword arguments reach the list method
                args = _spread(node.args, mod.consts) if target is func else []
                try:
                    pairs = mod.resources(kw.get("group", args[0] if args else None),
                                          kw.get("plural", args[index] if len(args) > index else None), node)
                except _Unresolved as exc:
                    problems.append(f"{where}: the custom resource's group/plural ({exc}) is not something the scan "
                                    "can follow to constants: map it")
                    continue
                unknown = sorted(pairs - CUSTOM_RESOURCES)
                if unknown:
                    problems.append(f"{where}: custom resource {unknown}, not one of {sorted(CUSTOM_RESOURCES)}: "
                                    "map it")
                    continue
                tuples = [(g, p, verb) for g, p in sorted(pairs)]
            elif method in CLIENT_CALLS:
                tuples = CLIENT_CALLS[method]
            else:
                problems.append(f"{where}: a Kubernetes API call not in CLIENT_CALLS: map it, add it to REQUIRED "
                                "and a rule to infra/rbac.yaml")
                continue
            needed |= set(tuples)
            if watched:
                needed |= {(g, r, "watch") for g, r, v in tuples if v == "list"}
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.Attribute) and node.attr in methods and id(node) not in understood:
                problems.append(f"{rel}:{node.lineno} {node.attr}: a Kubernetes client method used in a way the "
                                "scan does not follow: map it by hand")
    return needed, problems


def _product_sources() -> list[tuple[str, str]]:
    return [(p.relative_to(ROOT).as_posix(), p.read_text()) for p in _product_files()]


def test_required_matches_the_code() -> None:
    needed, problems = _scan(_product_sources())
    assert not problems, "\n".join(problems)
    required = {(g, r, v) for _, g, r, v in REQUIRED}
    assert not needed - required, f"the code calls for {sorted(needed - required)}: add to REQUIRED and infra/rbac.yaml"
    assert not required - needed, f"REQUIRED has {sorted(required - needed)}, which the code no longer uses"


_KINDS_MODULE = """
_CAPI = "cluster.x-k8s.io"
Kind = object
MACHINE = Kind("Machine", _CAPI, "v1beta1", "machines")
CLUSTER = Kind("Cluster", _CAPI, "v1beta1", "clusters")
MACHINE_DEPLOYMENT = Kind("MachineDeployment", _CAPI, "v1beta1", "machinedeployments")
ALL = (MACHINE, CLUSTER, MACHINE_DEPLOYMENT)
GONE = (MACHINE, CLUSTER)

def _list(custom, kind, ns):
    return custom.list_namespaced_custom_object(kind.group, kind.version, ns, kind.plural)

class _Remover:
    def patch(self, kind, ns, name, body):
        self.custom.patch_namespaced_custom_object(kind.group, kind.version, ns, kind.plural, name, body)

    def remove(self, kind, ns, name):
        self.patch(kind, ns, name, {})
        self.custom.delete_namespaced_custom_object(kind.group, kind.version, ns, kind.plural, name)

def teardown(api, ns):
    r = _Remover(api)
    for kind in GONE:
        for obj in _list(r.custom, kind, ns):
            r.remove(kind, ns, obj)
    for kind in ALL:
        r.patch(kind, ns, "x", {})
    found = {k.kind: _list(custom, k, ns) for k in ALL}
"""


def test_the_scan_follows_kinds_to_their_constants() -> None:
    """hcp/migration_objects.py's calls take `kind.group`/`kind.plural`: the scan follows each back to
    the Kind constants it can be, through loops, comprehensions and every caller of a helper."""
    needed, problems = _scan([("hcp/x.py", _KINDS_MODULE)])
    assert not problems
    assert needed == {(CAPI, r, v) for r in ("machines", "clusters", "machinedeployments") for v in ("list", "patch")} \
        | {(CAPI, "machines", "delete"), (CAPI, "clusters", "delete")}  # deleted: GONE only, not ALL
    # a helper nobody calls, or a caller handing it something else, is not guessed
    orphan = _KINDS_MODULE.replace("r.remove(kind, ns, obj)", "pass")
    _, problems = _scan([("hcp/x.py", orphan)])
    # the patch (through remove) and the delete
    assert len(problems) == 2 and all("remove, which nothing in hcp/x.py calls" in p for p in problems)
    opaque = _KINDS_MODULE.replace("r.remove(kind, ns, obj)", "r.remove(pick(obj), ns, obj)")
    _, problems = _scan([("hcp/x.py", opaque)])
    assert problems and all("pick(obj)" in p and "map it" in p for p in problems)
    # a kind outside CUSTOM_RESOURCES is refused even when resolved
    other = _KINDS_MODULE.replace('"machinedeployments"', '"machinepools"')
    _, problems = _scan([("hcp/x.py", other)])
    assert problems and all("machinepools" in p for p in problems)
    # *CONSTANT[...] spread into group, version
    routes = ('_R = ("route.openshift.io", "v1", "routes")\n'
              "custom.delete_namespaced_custom_object(*_R[:2], ns, _R[2], name)\n")
    needed, problems = _scan([("tasks/x.py", routes)])
    assert not problems and needed == {("route.openshift.io", "routes", "delete")}


def test_kind_lookups_match_the_code() -> None:
    """_kind_of looks the kind up in _BY_KIND: the scan reads it as every Kind constant of the module."""
    from hcp import migration_objects

    path = ROOT / "hcp/migration_objects.py"
    mod = _Module("hcp/migration_objects.py", ast.parse(path.read_text()), {})
    assert {tuple(k) for k in KIND_LOOKUPS["_kind_of"](mod)} == \
        {(k.kind, k.group, k.version, k.plural) for k in migration_objects._BY_KIND.values()}
    assert {(k.group, k.plural) for k in migration_objects._BY_KIND.values()} <= CUSTOM_RESOURCES


def test_the_scan_leaves_out_exactly_the_hosted_clusters_own_calls() -> None:
    """hcp/hosted_access.py: the calls on the client built from the hosted cluster's admin kubeconfig
    are left out; those on the management cluster (the HostedCluster, its kubeconfig secret) are not."""
    rel = "hcp/hosted_access.py"
    needed, problems = _scan([(rel, (ROOT / rel).read_text())])
    assert not problems
    assert needed == {(HC, "hostedclusters", "get"), ("", "secrets", "get"), (HC, "nodepools", "list")}
    # the same call with any other client is a management-cluster call the scan must map
    hosted = ("def nodes(hosted):\n    return client.CoreV1Api(hosted).list_node()\n"
              "def pods(hosted):\n    core = client.CoreV1Api(hosted)\n    return core.list_namespaced_pod('x')\n")
    needed, problems = _scan([(rel, hosted)])
    assert not problems and not needed
    for source in ("def nodes(api):\n    return client.CoreV1Api(api).list_node()\n",
                   "def nodes(hosted):\n    core = client.CoreV1Api(hosted)\n    core = client.CoreV1Api(mgmt)\n"
                   "    return core.list_node()\n"):
        _, problems = _scan([(rel, source)])
        assert len(problems) == 1 and "list_node" in problems[0] and "not in CLIENT_CALLS" in problems[0]
    _, problems = _scan([("hcp/other.py", hosted)])  # only hcp/hosted_access.py speaks to the hosted cluster
    assert len(problems) == 1 and "list_node" in problems[0]
    # and every caller hands those functions a client made by hosted_api_client
    good = "def t(api, ref):\n    h = hosted_access.hosted_api_client(api, ref)\n    hosted_access.nodes(h)\n"
    _, problems = _scan([(rel, hosted), ("tasks/x.py", good)])
    assert not problems
    bad = "def t(api, ref):\n    hosted_access.nodes(api)\n"
    _, problems = _scan([(rel, hosted), ("tasks/x.py", bad)])
    assert len(problems) == 1 and "tasks/x.py:2 nodes" in problems[0] and "hosted_api_client" in problems[0]


def test_the_scan_notices_new_api_calls() -> None:
    """What a change to the code would look like to test_required_matches_the_code."""
    new_call = "from kubernetes import client\nclient.AppsV1Api(api).patch_namespaced_stateful_set('etcd', ns, body)\n"
    _, problems = _scan([("hcp/x.py", new_call)])
    assert len(problems) == 1 and "patch_namespaced_stateful_set" in problems[0]
    assert "not in CLIENT_CALLS" in problems[0]
    # the scale subresource is its own resource: scaling a StatefulSet is not a patch of it
    scaled = ("apps.read_namespaced_stateful_set_scale('etcd', ns)\n"
              "apps.patch_namespaced_stateful_set_scale('etcd', ns, b)\n")
    needed, problems = _scan([("hcp/x.py", scaled)])
    assert not problems and needed == {("apps", "statefulsets/scale", "get"), ("apps", "statefulsets/scale", "patch")}
    # custom objects: the resource is the call's own (group, plural), mapped only for those listed
    other_crd = "custom.list_namespaced_custom_object(GROUP, VERSION, ns, 'awsendpointservices')\n"
    _, problems = _scan([("hcp/x.py", other_crd)])
    assert len(problems) == 1 and "awsendpointservices" in problems[0]
    unreadable = "custom.delete_namespaced_custom_object(GROUP, VERSION, ns, kind_plural, name)\n"
    _, problems = _scan([("hcp/x.py", unreadable)])
    assert len(problems) == 1 and "kind_plural" in problems[0] and "map it" in problems[0]
    pools = ("custom.create_namespaced_custom_object(GROUP, VERSION, ns, 'nodepools', body)\n"
             "custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)\n")
    needed, problems = _scan([("hcp/x.py", pools)])
    assert not problems and needed == {(HC, "nodepools", "create"), (HC, "hostedclusters", "delete")}
    watched = "wait_for_object(core.list_namespaced_pod, name, ready, timeout=1, what='x', namespace=ns)\n"
    needed, problems = _scan([("hcp/x.py", watched)])
    assert not problems and needed == {("", "pods", "list"), ("", "pods", "watch")}
    watched_set = ("wait_for_set(core.list_namespaced_persistent_volume_claim, done, timeout=1, what='x', "
                   "namespace=ns, label_selector='app=etcd')\n")
    needed, problems = _scan([("hcp/x.py", watched_set)])
    assert not problems and needed == {("", "persistentvolumeclaims", "list"), ("", "persistentvolumeclaims", "watch")}
    # a custom list handed to a wait: its group and plural are the wait's keyword arguments
    watched_crd = ("wait_for_object(custom.list_namespaced_custom_object, name, gone, timeout=1, what='x', "
                   "group=GROUP, version=VERSION, namespace=ns, plural='nodepools')\n")
    needed, problems = _scan([("hcp/x.py", watched_crd)])
    assert not problems and needed == {(HC, "nodepools", "list"), (HC, "nodepools", "watch")}
    handed_around = "fn = core.read_namespaced_secret\n"
    _, problems = _scan([("hcp/x.py", handed_around)])
    assert len(problems) == 1 and "does not follow" in problems[0]
    handed_to_another = "poll(core.list_namespaced_pod, namespace=ns)\n"  # not a wait the scan knows: no watch assumed
    _, problems = _scan([("hcp/x.py", handed_to_another)])
    assert len(problems) == 1 and "does not follow" in problems[0]


# -- the worker ----------------------------------------------------------------------------------------

def _env() -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in _container()["env"]}


def test_worker_runs_a_process_worker_on_the_pool_with_config_from_a_configmap() -> None:
    container = _container()
    argv = container["command"] + container["args"]
    assert argv[:3] == ["prefect", "worker", "start"]
    opts = dict(zip(argv[3::2], argv[4::2]))
    assert opts["--pool"] == "hcp-runbooks" and opts["--type"] == "process"
    from deployments import DEFAULT_POOL
    assert opts["--pool"] == DEFAULT_POOL
    env = _env()
    ref = env["PREFECT_API_URL"]["valueFrom"]["configMapKeyRef"]
    assert ref["name"] == "hcp-runbooks-config"
    assert "PREFECT_API_URL" in _find("ConfigMap", "hcp-runbooks-config")["data"]
    assert set(env["PREFECT_API_KEY"]["valueFrom"]) == {"secretKeyRef"}
    secretish = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.I)
    for name, e in env.items():
        if secretish.search(name):
            assert "value" not in e, f"{name} is inline; use a secretKeyRef (or IRSA for AWS)"
        assert "secretKeyRef" not in e.get("valueFrom", {}) or name == "PREFECT_API_KEY"
    assert not any(k.startswith("AWS_ACCESS") or k.startswith("AWS_SECRET") for k in env)
    assert "envFrom" not in container
    assert "AWS_ACCESS_KEY_ID" not in (INFRA / "worker.yaml").read_text()


def test_worker_is_non_root_read_only_and_writes_only_to_volumes() -> None:
    pod = _worker()["spec"]["template"]["spec"]
    container = _container()
    sc = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True and sc["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert "runAsUser" not in pod["securityContext"]  # OpenShift's SCC assigns it
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    tmp = volumes[mounts["/tmp"]]
    assert "emptyDir" in tmp and tmp["emptyDir"].get("medium") != "Memory"  # would count against the memory limit
    env = _env()
    for name in ("HOME", "PREFECT_HOME", "PREFECT_LOCAL_STORAGE_PATH"):
        path = env[name]["value"]
        assert any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts), f"{name}={path} is not on a volume"
    results = volumes[mounts[env["PREFECT_LOCAL_STORAGE_PATH"]["value"]]]
    assert results["persistentVolumeClaim"]["claimName"] == "hcp-runbooks-results"


_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def _bytes(quantity: str) -> int:
    for suffix, factor in _UNITS.items():
        if quantity.endswith(suffix):
            return int(quantity[:-2]) * factor
    return int(quantity)


def test_worker_resources_fit_the_memory_target() -> None:
    container = _container()
    resources = container["resources"]
    args = container["args"]
    limit_runs = int(args[args.index("--limit") + 1])
    worker, flow_run = 100 * 10**6, 300 * 10**6  # the idle worker (measured); a flow run's target for 1 GiB
    assert _bytes(resources["requests"]["memory"]) >= worker + flow_run
    assert _bytes(resources["limits"]["memory"]) >= worker + limit_runs * flow_run
    assert _bytes(resources["limits"]["memory"]) <= 2 * 2**30  # streamed, never held: no need for more
    assert {"cpu", "memory", "ephemeral-storage"} <= set(resources["requests"]) <= set(resources["limits"])


def test_documented_in_cluster_parameters_are_valid() -> None:
    from flows.etcd_backup import EtcdBackupParams
    from flows.fleet_backup import FleetBackupParams
    from hcp.cluster_access import ClusterAccess

    access = {"in_cluster": True}
    params = EtcdBackupParams(hosted_cluster="clusters/prod-east-1", bucket="hcp-backups-bucket", management=access,
                              management_cluster="mgmt-east-1")
    assert params.management == ClusterAccess(in_cluster=True)
    FleetBackupParams(bucket="hcp-backups-bucket", management=access, management_cluster="mgmt-east-1")
    with pytest.raises(ValueError, match="management_cluster is required"):
        EtcdBackupParams(hosted_cluster="clusters/prod-east-1", bucket="hcp-backups-bucket", management=access)
    readme = (INFRA / "README.md").read_text()
    assert '"management": {"in_cluster": true}' in readme and '"management_cluster"' in readme


def test_containerfile_installs_the_checkout_and_runs_unprivileged() -> None:
    text = (INFRA / "Containerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert [ln for ln in lines if ln.startswith("FROM ")] == ["FROM docker.io/library/python:3.11-slim"]
    copied = {ln.split()[1] for ln in lines if ln.startswith("COPY ")}
    assert re.search(r"pip install /src\b", text)
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1].isdigit() and int(users[-1]) != 0
    # every first-party package the product code imports at module level is in the image
    first_party = {"cli", "deployments", "flows", "hcp", "tasks", "hcpsim"}
    imported = set()
    for path in _product_files():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
    assert (imported & first_party) <= copied, f"not copied into the image: {(imported & first_party) - copied}"
    assert "hcpsim" not in copied and "pyproject.toml" in copied
    from deployments import RUNBOOKS
    assert {r.entrypoint.split("/")[0] for r in RUNBOOKS} <= copied


# -- on an API server -------------------------------------------------------------------------------

def _ensure(dyn: DynamicClient, doc: dict[str, Any]) -> Any:
    """Create for real (replace when it exists already, e.g. a re-run on the same simulator)."""
    resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    namespace = doc["metadata"].get("namespace")
    try:
        return resource.create(body=doc, namespace=namespace)
    except ApiException as exc:
        if exc.status != 409:
            raise
    current = resource.get(name=doc["metadata"]["name"], namespace=namespace)
    body = {**doc, "metadata": {**doc["metadata"], "resourceVersion": current.metadata.resourceVersion}}
    return resource.replace(body=body, namespace=namespace)


REAL_KINDS = ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "RoleBinding")


@pytest.fixture(scope="module")
def dyn(api_client: client.ApiClient) -> DynamicClient:
    return DynamicClient(api_client)


@pytest.fixture(scope="module")
def applied(dyn: DynamicClient) -> list[dict[str, Any]]:
    """The namespace, ServiceAccount, roles and bindings, created for real, in the apply order; the
    HostedCluster namespace `clusters` as a management cluster has it."""
    _ensure(dyn, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": HC_NAMESPACE}})
    docs = [d for d in _all_docs() if d["kind"] in REAL_KINDS]
    for doc in docs:
        _ensure(dyn, doc)
    return docs


def test_namespace_service_account_roles_and_bindings_apply_and_read_back(
        dyn: DynamicClient, applied: list[dict[str, Any]]) -> None:
    assert [d["kind"] for d in applied] == ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                           "ClusterRole", "RoleBinding"]
    for doc in applied:
        resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        back = resource.get(name=doc["metadata"]["name"], namespace=doc["metadata"].get("namespace")).to_dict()
        assert doc["metadata"]["labels"].items() <= back["metadata"]["labels"].items()
        for field in ("rules", "roleRef", "subjects", "automountServiceAccountToken"):
            if field in doc:
                assert back[field] == doc[field], f"{doc['kind']} {doc['metadata']['name']}: {field}"
    rbac = client.RbacAuthorizationV1Api(dyn.client)
    role = rbac.read_cluster_role(ROLES[CLUSTER])
    exec_rule = next(r for r in role.rules if r.resources == ["pods/exec"])
    assert sorted(exec_rule.verbs) == ["create", "get"]


def test_worker_objects_are_accepted_by_the_api_server(dyn: DynamicClient, applied: list[dict[str, Any]]) -> None:
    """The ConfigMap, PVC and Deployment pass the server's validation (dry run: there is no image to run)."""
    for doc in _docs("worker.yaml"):
        resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        namespace = doc["metadata"]["namespace"]
        out = resource.create(body=doc, namespace=namespace, dry_run="All").to_dict()
        assert out["metadata"]["name"] == doc["metadata"]["name"]
        if doc["kind"] == "Deployment":
            spec = out["spec"]["template"]["spec"]
            assert spec["serviceAccountName"] == SA
            assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
        with pytest.raises(NotFoundError):  # a dry run creates nothing
            resource.get(name=doc["metadata"]["name"], namespace=namespace)


@pytest.mark.kubectl
def test_kubectl_kustomize_renders_the_manifests_and_server_side_dry_run_accepts_them(
        kubectl: Any, applied: list[dict[str, Any]]) -> None:
    rendered = [d for d in yaml.safe_load_all(kubectl.run("kustomize", str(INFRA)).stdout) if d]
    key = lambda d: (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, rendered)) == sorted(map(key, _all_docs()))
    result = kubectl.run("apply", "--dry-run=server", "-k", str(INFRA))
    out = result.stdout.decode()
    for kind, _ns, name in map(key, rendered):
        line = rf"^{kind.lower()}(\.[a-z0-9.]+)?/{re.escape(name)} \w+ \(server dry run\)$"
        assert re.search(line, out, re.M), f"{kind} {name} missing in:\n{out}"


def test_yaml_files_are_plain_yaml() -> None:
    """Every file under infra/ that is YAML parses on its own (no templating left in)."""
    for path in sorted(INFRA.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc is None or isinstance(doc, dict), path
        assert "{{" not in path.read_text(), path
