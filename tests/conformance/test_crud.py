"""CRUD of built-in and custom kinds, through the official client and through kubectl."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import yaml
from kubernetes import client

from . import manifests as m
from .drivers import VALIDATE, RES, DriverError, res_of
from .util import wait_for

BUILTINS = {
    "configmap": m.configmap,
    "secret": m.secret,
    "service": m.service,
    "pvc": m.pvc,
    "deployment": m.deployment,
    "statefulset": m.statefulset,
    "lease": m.lease,
    "role": m.role,
}


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _crud(driver, obj: dict) -> dict:
    """Create, read, list, label (patch), replace, delete; check what a real server returns at each step."""
    res = res_of(obj)
    name = obj["metadata"]["name"]
    ns = obj["metadata"].get("namespace") if res.namespaced else None

    created = driver.create(obj)
    meta = created["metadata"]
    assert meta["name"] == name
    assert meta["uid"] and meta["creationTimestamp"] and meta["resourceVersion"]
    assert meta.get("generation", 1) == 1 or res.kind in ("ConfigMap", "Secret", "Role", "Lease", "Namespace")
    assert created["apiVersion"] == res.api_version and created["kind"] == res.kind

    if res.kind == "PersistentVolumeClaim":
        # The volume binder binds the claim (and the protection controller adds its finalizer).
        wait_for(lambda: driver.get(res, name, ns).get("status", {}).get("phase") == "Bound", "claim bound")
    got = driver.get(res, name, ns)
    assert got["metadata"]["uid"] == meta["uid"]
    if res.kind == "PersistentVolumeClaim":
        assert "kubernetes.io/pvc-protection" in got["metadata"]["finalizers"]
    elif res.kind not in ("Deployment", "StatefulSet"):
        # Workload controllers write status right after create; other kinds are untouched.
        assert got["metadata"]["resourceVersion"] == meta["resourceVersion"]
    assert name in driver.list_names(res, ns)

    with pytest.raises(DriverError) as exc:
        driver.create(obj)
    assert exc.value.code == 409 and exc.value.reason == "AlreadyExists"

    patched = driver.patch(res, name, ns, {"metadata": {"labels": {"conformance": "yes"}}})
    assert patched["metadata"]["labels"]["conformance"] == "yes"
    assert int(patched["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    assert name in driver.list_names(res, ns, label_selector="conformance=yes")

    replacement = dict(patched)
    replacement["metadata"] = dict(patched["metadata"], annotations={"replaced": "true"})
    for _ in range(20):
        try:
            replaced = driver.replace(replacement)
            break
        except DriverError as e:
            # Workload controllers write status between our read and our replace: a real client
            # re-reads and retries on 409 (client-go RetryOnConflict).
            if e.code != 409 or res.kind not in ("Deployment", "StatefulSet"):
                raise
            fresh = driver.get(res, name, ns)
            replacement = dict(fresh)
            replacement["metadata"] = dict(fresh["metadata"], annotations={"replaced": "true"})
    else:
        raise AssertionError("replace kept conflicting")
    assert replaced["metadata"]["annotations"]["replaced"] == "true"
    assert replaced["metadata"]["uid"] == meta["uid"]

    driver.delete(res, name, ns)
    wait_for(lambda: not driver.exists(res, name, ns), f"{res.kind} {name} gone")
    with pytest.raises(DriverError) as exc:
        driver.get(res, name, ns)
    assert exc.value.code == 404 and exc.value.reason == "NotFound"
    return created


@pytest.mark.parametrize("kind", sorted(BUILTINS))
def test_builtin_crud(client_driver, namespace, kind):
    created = _crud(client_driver, BUILTINS[kind](_name(kind[:5]), namespace))
    if kind == "deployment":
        assert created["spec"]["strategy"]["type"] == "RollingUpdate"  # defaulted by the server
    if kind == "service":
        assert created["spec"]["clusterIP"] and created["spec"]["type"] == "ClusterIP"
        assert created["spec"]["ports"][0]["protocol"] == "TCP"


def test_namespace_crud(driver):
    name = _name("ns")
    created = driver.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    assert created["status"]["phase"] == "Active"
    assert created["metadata"]["labels"]["kubernetes.io/metadata.name"] == name
    assert created["spec"]["finalizers"] == ["kubernetes"]
    assert name in driver.list_names(RES["Namespace"])
    driver.delete(RES["Namespace"], name)
    wait_for(lambda: not driver.exists(RES["Namespace"], name), "namespace gone")


def test_secret_string_data_is_merged_into_data(driver, namespace):
    created = driver.create(m.secret("s1", namespace))
    assert "stringData" not in created
    assert created["data"] == {"a": "YWFh", "b": base64.b64encode(b"bbb").decode()}
    assert created["type"] == "Opaque"
    got = driver.get(RES["Secret"], "s1", namespace)
    assert "stringData" not in got and got["data"]["b"] == "YmJi"


UPSTREAM = {"HostedCluster": m.hosted_cluster, "NodePool": m.node_pool, "Cluster": m.capi_cluster,
            "Machine": m.capi_machine}


@pytest.mark.usefixtures("crd_dir")
@pytest.mark.parametrize("kind", sorted(UPSTREAM))
def test_upstream_custom_kind_crud(client_driver, namespace, kind):
    created = _crud(client_driver, UPSTREAM[kind](_name(kind.lower()[:6]), namespace))
    assert created["metadata"]["generation"] == 1
    assert "status" not in created or not created["status"]


def test_own_crd_crud(client_driver, namespace, widget_crds):
    created = _crud(client_driver, m.widget(_name("w"), namespace))
    assert created["spec"] == {"replicas": 1, "color": "red"}
    _crud(client_driver, m.widget(_name("g"), None, kind="Gadget"))


def _kubectl_batch_crud(kubectl, objs: list[dict]) -> None:
    """The same CRUD cycle through kubectl, one call per step for all objects (kubectl is slow to start)."""
    # A multi-document YAML stream (see test_kubectl.py for a `kind: List` document).
    doc = yaml.safe_dump_all(objs)
    keys = sorted((o["kind"], o["metadata"]["name"]) for o in objs)

    def listed(out: bytes) -> list[dict]:
        # kubectl prints a List, or one JSON document per object.
        text, docs, pos = out.decode(), [], 0
        decoder = json.JSONDecoder()
        while pos < len(text.rstrip()):
            data, pos = decoder.raw_decode(text, pos)
            docs += data["items"] if data.get("kind") == "List" else [data]
            while pos < len(text) and text[pos].isspace():
                pos += 1
        return docs

    created = listed(kubectl.run("create", VALIDATE, "-f", "-", "-o", "json", input=doc).stdout)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in created) == keys
    assert all(o["metadata"]["uid"] and o["metadata"]["resourceVersion"] for o in created)

    again = kubectl.run("create", VALIDATE, "-f", "-", input=doc, check=False)
    assert again.returncode != 0
    assert again.stderr.decode().count("(AlreadyExists)") == len(objs), again.stderr.decode()

    got = listed(kubectl.run("get", "-f", "-", "-o", "json", input=doc).stdout)
    assert {o["metadata"]["uid"] for o in got} == {o["metadata"]["uid"] for o in created}

    kubectl.run("label", "-f", "-", "conformance=yes", input=doc)
    kubectl.run("annotate", "-f", "-", "replaced=false", input=doc)
    labelled = listed(kubectl.run("get", "-f", "-", "-o", "json", input=doc).stdout)
    assert all(o["metadata"]["labels"]["conformance"] == "yes" for o in labelled)
    assert all(o["metadata"]["annotations"]["replaced"] == "false" for o in labelled)

    for o in labelled:
        o["metadata"]["annotations"]["replaced"] = "true"
        if o["kind"] in ("Deployment", "StatefulSet"):
            # Their controllers write status concurrently: replace unconditionally (no resourceVersion),
            # as `kubectl replace -f manifest.yaml` usually does, instead of racing them.
            o["metadata"].pop("resourceVersion", None)
    replaced = listed(kubectl.run("replace", VALIDATE, "-f", "-", "-o", "json", input=yaml.safe_dump_all(labelled)).stdout)
    assert all(o["metadata"]["annotations"]["replaced"] == "true" for o in replaced)

    out = kubectl.run("delete", "-f", "-", "--timeout=20s", input=doc).stdout.decode()
    assert out.count("deleted") == len(objs), out
    gone = kubectl.run("get", "-f", "-", "--ignore-not-found", "-o", "name", input=doc)
    assert gone.stdout.decode().strip() == ""


@pytest.mark.kubectl
def test_kubectl_crud_builtins(kubectl, namespace):
    _kubectl_batch_crud(kubectl, [factory(f"k-{kind[:5]}", namespace) for kind, factory in sorted(BUILTINS.items())])


@pytest.mark.kubectl
@pytest.mark.upstream_crds
def test_kubectl_crud_upstream_custom_kinds(kubectl, namespace, crd_dir):
    _kubectl_batch_crud(kubectl, [factory(f"k-{kind.lower()}", namespace) for kind, factory in sorted(UPSTREAM.items())])


@pytest.mark.kubectl
def test_kubectl_crud_own_crd_kinds(kubectl, namespace, widget_crds):
    _kubectl_batch_crud(kubectl, [m.widget(_name("w"), namespace), m.widget(_name("g"), None, kind="Gadget")])


def test_capi_served_in_both_versions(api_client, namespace, crd_dir):
    """Cluster API kinds are served as v1beta1 and v1beta2 from one storage."""
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object("cluster.x-k8s.io", "v1beta2", namespace, "clusters", m.capi_cluster("cap", namespace))
    old = custom.get_namespaced_custom_object("cluster.x-k8s.io", "v1beta1", namespace, "clusters", "cap")
    assert old["apiVersion"] == "cluster.x-k8s.io/v1beta1"
    new = custom.get_namespaced_custom_object("cluster.x-k8s.io", "v1beta2", namespace, "clusters", "cap")
    assert new["apiVersion"] == "cluster.x-k8s.io/v1beta2"
    assert old["metadata"]["uid"] == new["metadata"]["uid"]
    with pytest.raises(client.ApiException) as exc:  # v1beta1 of the AWS infrastructure kinds is not served
        custom.list_namespaced_custom_object("infrastructure.cluster.x-k8s.io", "v1beta1", namespace, "awsclusters")
    assert exc.value.status == 404


class TestTypedClient:
    """The generated typed APIs deserialise every answer into their models (dates, micro-times, ints)."""

    def test_core_and_apps(self, api_client, namespace):
        core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
        cm = core.create_namespaced_config_map(namespace, m.configmap("cm", namespace))
        assert isinstance(cm, client.V1ConfigMap) and cm.metadata.creation_timestamp is not None
        cm.data["k2"] = "v2"
        replaced = core.replace_namespaced_config_map("cm", namespace, cm)
        assert replaced.data == {"k": "v", "k2": "v2"}
        assert int(replaced.metadata.resource_version) > int(cm.metadata.resource_version)
        assert [c.metadata.name for c in core.list_namespaced_config_map(namespace).items] == ["cm"]

        dep = apps.create_namespaced_deployment(namespace, m.deployment("web", namespace, replicas=2))
        assert isinstance(dep, client.V1Deployment) and dep.spec.replicas == 2 and dep.metadata.generation == 1
        read = apps.read_namespaced_deployment("web", namespace)
        assert read.spec.template.spec.containers[0].name == "main"
        status = core.delete_namespaced_config_map("cm", namespace)
        assert status.status == "Success" or status.kind == "ConfigMap"
        with pytest.raises(client.ApiException) as exc:
            core.read_namespaced_config_map("cm", namespace)
        assert exc.value.status == 404

    def test_lease_micro_time_and_rbac(self, api_client, namespace):
        coord, rbac = client.CoordinationV1Api(api_client), client.RbacAuthorizationV1Api(api_client)
        lease = coord.create_namespaced_lease(namespace, m.lease("l1", namespace))
        assert lease.spec.renew_time.year == 2024 and lease.spec.renew_time.microsecond == 123456
        role = rbac.create_namespaced_role(namespace, m.role("r1", namespace))
        assert role.rules[0].verbs == ["get", "list"]
        assert [r.metadata.name for r in rbac.list_namespaced_role(namespace).items] == ["r1"]

    def test_generate_name(self, api_client, namespace):
        core = client.CoreV1Api(api_client)
        cm = core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "gen-"}, "data": {}})
        assert cm.metadata.name.startswith("gen-") and len(cm.metadata.name) == len("gen-") + 5
