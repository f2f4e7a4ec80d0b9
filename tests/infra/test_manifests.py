"""infra/: the manifests parse, declare what the README says, grant exactly the Kubernetes API
access the runbooks' code uses (REQUIRED below, checked against a scan of the code), and are
accepted by an API server (the simulated cluster `c1`; kubectl too where it is on PATH)."""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    # (re-run: its own), diagnose, remove-created
    (CLUSTER, HC, "hostedclusters", "get"),
    # fleet-backup discover-hosted-clusters (all namespaces), and the list of the pause wait;
    # etcd-restore-new-cluster inspect-target (clusterID/infraID of every other HostedCluster)
    (CLUSTER, HC, "hostedclusters", "list"),
    # quiesce-control-plane waits for ReconciliationActive=False: tasks.hosted_cluster._wait_paused;
    # etcd-restore wait-hosted-cluster-available; etcd-restore-new-cluster wait-restored, remove-created
    (CLUSTER, HC, "hostedclusters", "watch"),
    # quiesce-control-plane sets spec.pausedUntil; restore-availability/recover/undo put it back
    (HCNS, HC, "hostedclusters", "patch"),
    # etcd-restore-new-cluster create-hosted-cluster (with its one restoreSnapshotURL)
    (HCNS, HC, "hostedclusters", "create"),
    # etcd-restore-new-cluster remove-created: the HostedCluster this operation created (labelled with its id)
    (HCNS, HC, "hostedclusters", "delete"),
    # etcd-backup save-cluster-objects (the HostedCluster's NodePools); etcd-restore-new-cluster
    # inspect-target (names taken), remove-created (this operation's, by label)
    (HCNS, HC, "nodepools", "list"),
    # etcd-restore-new-cluster create-nodepools: a re-run reads the NodePool that answered 409
    (HCNS, HC, "nodepools", "get"),
    # etcd-restore-new-cluster create-nodepools
    (HCNS, HC, "nodepools", "create"),
    # etcd-restore-new-cluster remove-created
    (HCNS, HC, "nodepools", "delete"),
    # quiesce-control-plane/restore-availability wait for the API servers: wait_deployment_settled (list+watch)
    (CLUSTER, "apps", "deployments", "list"),
    (CLUSTER, "apps", "deployments", "watch"),
    # etcd-restore start-data-pod: a re-run reads the data-access Deployment that answered 409 (whose is it?)
    (CLUSTER, "apps", "deployments", "get"),
    # etcd-restore start-data-pod: the documented data-access Deployment in the control plane namespace
    (CLUSTER, "apps", "deployments", "create"),
    # etcd-restore remove-data-pod, and recover/undo of a failed restore (delete-deployment)
    (CLUSTER, "apps", "deployments", "delete"),
    # quiesce-control-plane records the replica count before scaling; undo checks the Deployment exists
    (CLUSTER, "apps", "deployments/scale", "get"),
    # quiesce-control-plane scales to 0; restore-availability/recover/undo scale back
    (CLUSTER, "apps", "deployments/scale", "patch"),
    # etcd-restore read-etcd-layout (image, replicas, claim template, initial cluster);
    # etcd-restore-new-cluster wait-restored
    (CLUSTER, "apps", "statefulsets", "get"),
    # etcd-member-recovery etcd-health (replica count); recover/undo of stop-etcd checks it exists
    (CLUSTER, "apps", "statefulsets/scale", "get"),
    # etcd-restore stop-etcd (to 0), start-etcd and recover/undo (back to the recorded count)
    (CLUSTER, "apps", "statefulsets/scale", "patch"),
    # etcd-member-status: the app=etcd pods of the control plane namespace; etcd-restore
    # wait-etcd-stopped, start-data-pod, remove-data-pod, start-etcd (wait_for_set: list+watch);
    # etcd-member-recovery etcd-health, wait-for-new-pvc-and-pod
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
    # member add): a websocket GET, authorized as get (older API servers) and also as create (1.30+)
    (CLUSTER, "", "pods/exec", "get"),
    (CLUSTER, "", "pods/exec", "create"),
    # etcd-member-recovery etcd-health (the app=etcd claims), wait-for-new-pvc-and-pod (list+watch)
    (CLUSTER, "", "persistentvolumeclaims", "list"),
    (CLUSTER, "", "persistentvolumeclaims", "watch"),
    # etcd-member-recovery replace-failed-member: the failed member's claim data-etcd-N (uid precondition);
    # wait-member-caught-up: a never-joined replacement's
    (CLUSTER, "", "persistentvolumeclaims", "delete"),
    # etcd-restore-new-cluster inspect-target: does the target namespace exist (it may not: no RoleBinding yet)
    (CLUSTER, "", "namespaces", "get"),
    # recover find-undo-journals: ConfigMaps labelled hcp-runbooks/operation-id in all namespaces
    (CLUSTER, "", "configmaps", "list"),
    # the undo journal: read-undo-journal, record, unwind, close (hcp.undo_journal.UndoJournal)
    (HCNS, "", "configmaps", "get"),
    (HCNS, "", "configmaps", "create"),
    (HCNS, "", "configmaps", "update"),
    (HCNS, "", "configmaps", "delete"),
    # the lock Lease hcp-runbooks-lock-<name>: take-lock, renewals, release, break (hcp.lease_lock.LeaseLock)
    (HCNS, "coordination.k8s.io", "leases", "get"),
    (HCNS, "coordination.k8s.io", "leases", "create"),
    (HCNS, "coordination.k8s.io", "leases", "update"),
    # save-encryption-key: the secret named by spec.secretEncryption.aescbc.activeKey.name;
    # etcd-restore-new-cluster inspect-target, restore-encryption-key (the referenced secrets exist?)
    (HCNS, "", "secrets", "get"),
    # etcd-restore-new-cluster restore-encryption-key: the backup's AES key, when the target lacks it
    (HCNS, "", "secrets", "create"),
    # etcd-restore-new-cluster remove-created: the secrets this operation created (label selector)
    (HCNS, "", "secrets", "list"),
    (HCNS, "", "secrets", "delete"),
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
CUSTOM_RESOURCES = {(HC, "hostedclusters"), (HC, "nodepools")}
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


def _constant(node: ast.AST | None, names: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute):  # hc.PLURAL, hc.GROUP
        return names.get(node.attr)
    return None


def _scan(files: list[tuple[str, str]]) -> tuple[set[tuple[str, str, str]], list[str]]:
    """The RBAC tuples the Kubernetes calls in `files` ((path, source) pairs) need, and the problems found."""
    from hcp import hosted_cluster

    names = {"PLURAL": hosted_cluster.PLURAL, "GROUP": hosted_cluster.GROUP}
    methods = _client_methods()
    needed: set[tuple[str, str, str]] = set()
    problems: list[str] = []
    for rel, source in files:
        for token in ("call_api", "DynamicClient", "rest_client", "ApiClient.request"):
            if token in source:
                problems.append(f"{rel}: raw API access ({token}) the scan cannot map: map it by hand")
        if re.search(r"\bWatch\(", source) and rel != "hcp/waits.py":
            problems.append(f"{rel}: a watch outside hcp/waits.py: add its watch verb to REQUIRED and this scan")
        tree = ast.parse(source)
        understood: set[int] = set()  # ids of the Attribute nodes explained by a call below
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
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
            where = f"{rel}:{node.lineno} {method}"
            if method in CUSTOM_CALLS:
                verb, index = CUSTOM_CALLS[method]
                kw = {k.arg: k.value for k in node.keywords}
                # handed to a wait: only its keyword arguments reach the list method
                args = node.args if target is func else []
                plural = _constant(kw.get("plural", args[index] if len(args) > index else None), names)
                group = _constant(kw.get("group", args[0] if args else None), names)
                if (group, plural) not in CUSTOM_RESOURCES:
                    problems.append(f"{where}: custom resource {group}/{plural}, not one of {sorted(CUSTOM_RESOURCES)}"
                                    " (or not a constant the scan can read): map it")
                    continue
                tuples = [(group, plural, verb)]
            elif method in CLIENT_CALLS:
                tuples = CLIENT_CALLS[method]
            else:
                problems.append(f"{where}: a Kubernetes API call not in CLIENT_CALLS: map it, add it to REQUIRED "
                                "and a rule to infra/rbac.yaml")
                continue
            needed |= set(tuples)
            if watched:
                needed |= {(g, r, "watch") for g, r, v in tuples if v == "list"}
        for node in ast.walk(tree):
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
    other_crd = "custom.list_namespaced_custom_object(GROUP, VERSION, ns, 'hostedcontrolplanes')\n"
    _, problems = _scan([("hcp/x.py", other_crd)])
    assert len(problems) == 1 and "hostedcontrolplanes" in problems[0]
    unreadable = "custom.delete_namespaced_custom_object(GROUP, VERSION, ns, kind_plural, name)\n"
    _, problems = _scan([("hcp/x.py", unreadable)])
    assert len(problems) == 1 and "None" in problems[0] and "map it" in problems[0]
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
