"""Deletion: finalizers, ownerReferences with each propagation policy, namespace cascade, deletecollection,
kubectl delete waiting, and server-side dry run."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client

from . import manifests as m
from .util import expect_api_error, wait_for
from .watching import Collector

HOLD = "example.com/hold"


def _exists(fn, *args) -> bool:
    try:
        fn(*args)
        return True
    except client.ApiException as e:
        if e.status == 404:
            return False
        raise


def test_finalizer_keeps_object_until_emptied(api_client, namespace):
    core = client.CoreV1Api(api_client)
    body = m.configmap("held", namespace)
    body["metadata"]["finalizers"] = [HOLD]
    rv = core.create_namespaced_config_map(namespace, body).metadata.resource_version
    watcher = Collector(core.list_namespaced_config_map, namespace, resource_version=rv, stop_name="held-stop")
    core.delete_namespaced_config_map("held", namespace)
    held = core.read_namespaced_config_map("held", namespace)
    assert held.metadata.deletion_timestamp is not None and held.metadata.finalizers == [HOLD]
    # Deleting again changes nothing; no new finalizer may be added while deleting.
    core.delete_namespaced_config_map("held", namespace)
    assert core.read_namespaced_config_map("held", namespace).metadata.resource_version == held.metadata.resource_version
    body = expect_api_error(422, "Invalid", core.patch_namespaced_config_map, "held", namespace,
                            {"metadata": {"finalizers": [HOLD, "example.com/late"]}})
    assert "metadata.finalizers" in body["message"]
    # Other changes are still allowed.
    core.patch_namespaced_config_map("held", namespace, {"data": {"k": "still-here"}})
    core.patch_namespaced_config_map("held", namespace, [{"op": "remove", "path": "/metadata/finalizers"}])
    assert not _exists(core.read_namespaced_config_map, "held", namespace)
    core.create_namespaced_config_map(namespace, m.configmap("held-stop", namespace))
    events = watcher.join()
    assert events[:2] == [("MODIFIED", "held"), ("MODIFIED", "held")]
    assert events[-2:] == [("DELETED", "held"), ("ADDED", "held-stop")]


def test_emptying_finalizers_emits_only_deleted(api_client, namespace):
    core = client.CoreV1Api(api_client)
    body = m.configmap("held", namespace)
    body["metadata"]["finalizers"] = [HOLD]
    core.create_namespaced_config_map(namespace, body)
    rv = core.delete_namespaced_config_map("held", namespace) and \
        core.read_namespaced_config_map("held", namespace).metadata.resource_version
    watcher = Collector(core.list_namespaced_config_map, namespace, resource_version=rv, stop_name="held-stop")
    core.patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": None}})
    core.create_namespaced_config_map(namespace, m.configmap("held-stop", namespace))
    assert watcher.join() == [("DELETED", "held"), ("ADDED", "held-stop")]


def test_finalizer_on_custom_resource(api_client, namespace, widget_crds):
    custom = client.CustomObjectsApi(api_client)
    args = (m.CONF_GROUP, "v1", namespace, "widgets")
    w = m.widget("w", namespace)
    w["metadata"]["finalizers"] = [HOLD]
    custom.create_namespaced_custom_object(*args, w)
    out = custom.delete_namespaced_custom_object(*args, "w")
    assert out["metadata"]["deletionTimestamp"] and out["kind"] == "Widget"
    assert custom.get_namespaced_custom_object(*args, "w")["metadata"]["finalizers"] == [HOLD]
    custom.patch_namespaced_custom_object(*args, "w", {"metadata": {"finalizers": None}})
    assert not _exists(custom.get_namespaced_custom_object, *args, "w")


def test_delete_preconditions_and_not_found(api_client, namespace):
    core = client.CoreV1Api(api_client)
    cm = core.create_namespaced_config_map(namespace, m.configmap("cm", namespace))
    expect_api_error(409, "Conflict", core.delete_namespaced_config_map, "cm", namespace,
                     body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="not-the-uid")))
    expect_api_error(409, "Conflict", core.delete_namespaced_config_map, "cm", namespace,
                     body=client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version="1")))
    status = core.delete_namespaced_config_map("cm", namespace, body=client.V1DeleteOptions(
        preconditions=client.V1Preconditions(uid=cm.metadata.uid, resource_version=cm.metadata.resource_version)))
    assert status.status == "Success" and status.details.name == "cm"
    body = expect_api_error(404, "NotFound", core.delete_namespaced_config_map, "cm", namespace)
    assert body["message"] == 'configmaps "cm" not found'
    assert body["details"]["name"] == "cm" and body["details"]["kind"] == "configmaps"


def _owner_with_dependents(core: client.CoreV1Api, namespace: str, hold_first: bool = False) -> str:
    owner = core.create_namespaced_config_map(namespace, m.configmap("owner", namespace))
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    for name in ("dep-1", "dep-2"):
        body = m.configmap(name, namespace)
        body["metadata"]["ownerReferences"] = [dict(ref)]
        if hold_first and name == "dep-1":
            body["metadata"]["finalizers"] = [HOLD]
        core.create_namespaced_config_map(namespace, body)
    return owner.metadata.uid


def test_background_propagation_deletes_dependents(api_client, namespace):
    core = client.CoreV1Api(api_client)
    _owner_with_dependents(core, namespace)
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")
    assert not _exists(core.read_namespaced_config_map, "owner", namespace)
    wait_for(lambda: not any(_exists(core.read_namespaced_config_map, n, namespace) for n in ("dep-1", "dep-2")),
             "dependents collected")


def test_foreground_propagation_waits_for_dependents(api_client, namespace):
    core = client.CoreV1Api(api_client)
    _owner_with_dependents(core, namespace, hold_first=True)
    out = core.delete_namespaced_config_map("owner", namespace, propagation_policy="Foreground")
    owner = core.read_namespaced_config_map("owner", namespace)
    assert owner.metadata.deletion_timestamp is not None
    assert "foregroundDeletion" in owner.metadata.finalizers
    wait_for(lambda: not _exists(core.read_namespaced_config_map, "dep-2", namespace), "dep-2 deleted")
    held = core.read_namespaced_config_map("dep-1", namespace)
    assert held.metadata.deletion_timestamp is not None
    assert _exists(core.read_namespaced_config_map, "owner", namespace)
    core.patch_namespaced_config_map("dep-1", namespace, {"metadata": {"finalizers": None}})
    wait_for(lambda: not _exists(core.read_namespaced_config_map, "owner", namespace), "owner gone after dependents")
    assert out is not None


def test_orphan_propagation_keeps_dependents(api_client, namespace):
    core = client.CoreV1Api(api_client)
    _owner_with_dependents(core, namespace)
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Orphan")
    wait_for(lambda: not _exists(core.read_namespaced_config_map, "owner", namespace), "owner gone")
    for name in ("dep-1", "dep-2"):
        dep = core.read_namespaced_config_map(name, namespace)
        assert dep.metadata.deletion_timestamp is None and not dep.metadata.owner_references


def test_dependent_with_a_second_live_owner_survives(api_client, namespace):
    core = client.CoreV1Api(api_client)
    a = core.create_namespaced_config_map(namespace, m.configmap("a", namespace)).metadata.uid
    b = core.create_namespaced_config_map(namespace, m.configmap("b", namespace)).metadata.uid
    body = m.configmap("shared", namespace)
    body["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "a", "uid": a},
                                           {"apiVersion": "v1", "kind": "ConfigMap", "name": "b", "uid": b}]
    core.create_namespaced_config_map(namespace, body)
    core.delete_namespaced_config_map("a", namespace)
    time.sleep(0.2)
    shared = core.read_namespaced_config_map("shared", namespace)
    assert shared.metadata.deletion_timestamp is None
    assert [r.name for r in shared.metadata.owner_references] == ["b"]


def test_custom_resource_dependents_are_collected(api_client, namespace, crd_dir):
    custom = client.CustomObjectsApi(api_client)
    hc_args = ("hypershift.openshift.io", "v1beta1", namespace, "hostedclusters")
    hc = custom.create_namespaced_custom_object(*hc_args, m.hosted_cluster("hc1", namespace))
    np = m.node_pool("np1", namespace)
    np["metadata"]["ownerReferences"] = [{"apiVersion": "hypershift.openshift.io/v1beta1", "kind": "HostedCluster",
                                          "name": "hc1", "uid": hc["metadata"]["uid"]}]
    custom.create_namespaced_custom_object("hypershift.openshift.io", "v1beta1", namespace, "nodepools", np)
    custom.delete_namespaced_custom_object(*hc_args, "hc1")
    wait_for(lambda: not _exists(custom.get_namespaced_custom_object, "hypershift.openshift.io", "v1beta1", namespace,
                                 "nodepools", "np1"), "nodepool collected")


def test_namespace_deletion_cascades(api_client, widget_crds):
    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    ns = "t-cascade"
    core.create_namespace({"metadata": {"name": ns}})
    rv = core.read_namespace(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, m.configmap("cm", ns))
    apps.create_namespaced_deployment(ns, m.deployment("web", ns))
    custom.create_namespaced_custom_object(m.CONF_GROUP, "v1", ns, "widgets", m.widget("w", ns))
    held = m.configmap("held", ns)
    held["metadata"]["finalizers"] = [HOLD]
    core.create_namespaced_config_map(ns, held)
    watcher = Collector(core.list_namespace, resource_version=rv, field_selector=f"metadata.name={ns}", stop_name="-")

    core.delete_namespace(ns)
    terminating = core.read_namespace(ns)
    assert terminating.status.phase == "Terminating" and terminating.metadata.deletion_timestamp is not None
    body = expect_api_error(403, "Forbidden", core.create_namespaced_config_map, ns, m.configmap("late", ns))
    assert body["message"] == f"unable to create new content in namespace {ns} because it is being terminated"
    wait_for(lambda: [i.metadata.name for i in core.list_namespaced_config_map(ns).items] == ["held"], "content removed")
    assert apps.list_namespaced_deployment(ns).items == []
    assert custom.list_namespaced_custom_object(m.CONF_GROUP, "v1", ns, "widgets")["items"] == []
    assert core.read_namespace(ns).status.phase == "Terminating"

    core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})
    wait_for(lambda: not _exists(core.read_namespace, ns), "namespace gone")
    wait_for(lambda: watcher.events and watcher.events[-1][0] == "DELETED", "namespace DELETED event")
    watcher._w.stop()
    types = [t for t, _ in watcher.summary()]
    assert types[0] == "MODIFIED" and types[-1] == "DELETED"


def test_deletecollection_with_label_selector(api_client, namespace, widget_crds):
    core = client.CoreV1Api(api_client)
    for name, labels in (("a", {"del": "yes"}), ("b", {"del": "yes"}), ("c", {"del": "no"}), ("d", {})):
        core.create_namespaced_config_map(namespace, m.configmap(name, namespace, labels))
    core.delete_collection_namespaced_config_map(namespace, label_selector="del=yes")
    assert sorted(i.metadata.name for i in core.list_namespaced_config_map(namespace).items) == ["c", "d"]
    custom = client.CustomObjectsApi(api_client)
    args = (m.CONF_GROUP, "v1", namespace, "widgets")
    for name, color in (("w1", "red"), ("w2", "blue")):
        w = m.widget(name, namespace)
        w["metadata"]["labels"] = {"color": color}
        custom.create_namespaced_custom_object(*args, w)
    custom.delete_collection_namespaced_custom_object(*args, label_selector="color in (blue)")
    assert [i["metadata"]["name"] for i in custom.list_namespaced_custom_object(*args)["items"]] == ["w1"]


def test_kubectl_delete_waits_until_gone(kubectl, api_client, namespace):
    core = client.CoreV1Api(api_client)
    body = m.configmap("held", namespace)
    body["metadata"]["finalizers"] = [HOLD]
    core.create_namespaced_config_map(namespace, body)

    def release() -> None:
        time.sleep(0.6)
        core.patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": None}})

    releaser = threading.Thread(target=release)
    start = time.monotonic()
    releaser.start()
    out = kubectl.run("delete", "configmap", "held", "-n", namespace, "--timeout=15s").stdout.decode()
    elapsed = time.monotonic() - start
    releaser.join()
    assert 'configmap "held" deleted' in out
    assert elapsed >= 0.6
    assert not _exists(core.read_namespaced_config_map, "held", namespace)


# Server-side dry run.


def test_dry_run_changes_nothing(api_client, namespace, widget_crds):
    core = client.CoreV1Api(api_client)
    rv0 = core.list_namespaced_config_map(namespace).metadata.resource_version
    created = core.create_namespaced_config_map(namespace, m.configmap("dry", namespace), dry_run="All")
    assert created.metadata.name == "dry" and created.metadata.uid
    assert not _exists(core.read_namespaced_config_map, "dry", namespace)
    # An invalid object is still refused.
    expect_api_error(422, "Invalid", core.create_namespaced_config_map, namespace,
                     m.configmap("Not_Valid", namespace), dry_run="All")

    cm = core.create_namespaced_config_map(namespace, m.configmap("real", namespace))
    patched = core.patch_namespaced_config_map("real", namespace, {"data": {"k": "dry"}}, dry_run="All")
    assert patched.data == {"k": "dry"}
    after = core.read_namespaced_config_map("real", namespace)
    assert after.data == {"k": "v"} and after.metadata.resource_version == cm.metadata.resource_version
    core.delete_namespaced_config_map("real", namespace, dry_run="All")
    assert core.read_namespaced_config_map("real", namespace).metadata.resource_version == cm.metadata.resource_version

    custom = client.CustomObjectsApi(api_client)
    args = (m.CONF_GROUP, "v1", namespace, "widgets")
    custom.create_namespaced_custom_object(*args, m.widget("w", namespace), dry_run="All")
    assert custom.list_namespaced_custom_object(*args)["items"] == []
    # Nothing was committed: no watch event between the dry runs.
    watcher = Collector(core.list_namespaced_config_map, namespace, resource_version=rv0)
    core.create_namespaced_config_map(namespace, m.configmap("zz-stop", namespace))
    assert watcher.join() == [("ADDED", "real"), ("ADDED", "zz-stop")]


def test_kubectl_server_side_dry_run(kubectl, api_client, namespace):
    core = client.CoreV1Api(api_client)
    out = kubectl.run("create", "configmap", "dry", "-n", namespace, "--from-literal=a=b", "--dry-run=server",
                      "-o", "name").stdout.decode()
    assert out.strip() == "configmap/dry"
    assert not _exists(core.read_namespaced_config_map, "dry", namespace)
    core.create_namespaced_config_map(namespace, m.configmap("real", namespace))
    kubectl.run("delete", "configmap", "real", "-n", namespace, "--dry-run=server")
    kubectl.run("patch", "configmap", "real", "-n", namespace, "-p", '{"data":{"k":"x"}}', "--dry-run=server")
    assert core.read_namespaced_config_map("real", namespace).data == {"k": "v"}
