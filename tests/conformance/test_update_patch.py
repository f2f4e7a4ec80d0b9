"""update (optimistic concurrency, generation, status subresource, no-op writes), patch (merge, JSON,
strategic) and the scale subresource."""

from __future__ import annotations

import copy

import pytest
from kubernetes import client

from . import manifests as m
from .drivers import RES, DriverError
from .util import expect_api_error

WIDGETS = (m.CONF_GROUP, "v1")


# Update.


def test_stale_resource_version_is_409_conflict(driver, api_client, namespace):
    core = client.CoreV1Api(api_client)
    first = core.create_namespaced_config_map(namespace, m.configmap("cm", namespace)).to_dict()
    core.patch_namespaced_config_map("cm", namespace, {"data": {"k": "newer"}})
    stale = m.configmap("cm", namespace, data={"k": "stale"})
    stale["metadata"]["resourceVersion"] = first["metadata"]["resource_version"]
    with pytest.raises(DriverError) as exc:
        driver.replace(stale)
    assert exc.value.code == 409 and exc.value.reason == "Conflict"
    assert 'Operation cannot be fulfilled on configmaps "cm": the object has been modified' in exc.value.message
    assert core.read_namespaced_config_map("cm", namespace).data == {"k": "newer"}


def test_update_without_resource_version(api_client, namespace, widget_crds):
    # Built-in kinds allow an unconditional update; custom resources require metadata.resourceVersion.
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, m.configmap("cm", namespace))
    assert core.replace_namespaced_config_map("cm", namespace, m.configmap("cm", namespace, data={"a": "b"})).data == {"a": "b"}
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(*WIDGETS, namespace, "widgets", m.widget("w", namespace))
    body = expect_api_error(422, "Invalid", custom.replace_namespaced_custom_object, *WIDGETS, namespace, "widgets", "w",
                            m.widget("w", namespace, replicas=3))
    assert "metadata.resourceVersion" in body["message"]


def test_generation_bumps_on_spec_changes_only(api_client, namespace, widget_crds):
    apps = client.AppsV1Api(api_client)
    dep = apps.create_namespaced_deployment(namespace, m.deployment("web", namespace))
    assert dep.metadata.generation == 1
    dep = apps.patch_namespaced_deployment("web", namespace, {"metadata": {"labels": {"x": "y"}, "annotations": {"a": "b"}}})
    assert dep.metadata.generation == 1
    dep = apps.patch_namespaced_deployment("web", namespace, {"spec": {"replicas": 4}})
    assert dep.metadata.generation == 2
    dep = apps.patch_namespaced_deployment_status("web", namespace, {"status": {"observedGeneration": 2, "replicas": 4}})
    assert dep.metadata.generation == 2 and dep.status.replicas == 4

    custom = client.CustomObjectsApi(api_client)
    args = (*WIDGETS, namespace, "widgets")
    w = custom.create_namespaced_custom_object(*args, m.widget("w", namespace))
    assert w["metadata"]["generation"] == 1
    w = custom.patch_namespaced_custom_object(*args, "w", {"metadata": {"labels": {"x": "y"}}})
    assert w["metadata"]["generation"] == 1
    w = custom.patch_namespaced_custom_object(*args, "w", {"spec": {"color": "green"}})
    assert w["metadata"]["generation"] == 2
    w = custom.patch_namespaced_custom_object_status(*args, "w", {"status": {"phase": "Ready"}})
    assert w["metadata"]["generation"] == 2 and w["status"]["phase"] == "Ready"


def test_kinds_without_spec_have_no_generation(api_client, namespace):
    """ConfigMaps, Secrets and Namespaces carry no metadata.generation on a real server."""
    core = client.CoreV1Api(api_client)
    assert core.create_namespaced_config_map(namespace, m.configmap("cm", namespace)).metadata.generation is None
    assert core.create_namespaced_secret(namespace, m.secret("s", namespace)).metadata.generation is None
    assert core.read_namespace(namespace).metadata.generation is None


def test_status_subresource_separates_spec_and_status_builtin(api_client, namespace):
    # A Service: a built-in kind with a status subresource and no controller writing it here.
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service(namespace, {"metadata": {"name": "web"},
                                               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    # Status in a main-resource update is ignored.
    body = api_client.sanitize_for_serialization(core.read_namespaced_service("web", namespace))
    body["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}
    body["metadata"]["labels"] = {"touched": "yes"}
    out = core.replace_namespaced_service("web", namespace, body)
    assert out.metadata.labels == {"touched": "yes"}
    assert not (out.status and out.status.load_balancer and out.status.load_balancer.ingress)
    # Spec in a status update is ignored.
    body = api_client.sanitize_for_serialization(core.read_namespaced_service("web", namespace))
    body["spec"]["ports"] = [{"port": 8080}]
    body["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.8"}]}}
    out = core.replace_namespaced_service_status("web", namespace, body)
    assert out.status.load_balancer.ingress[0].ip == "192.0.2.8"
    assert [p.port for p in out.spec.ports] == [80]
    assert [p.port for p in core.read_namespaced_service("web", namespace).spec.ports] == [80]


def test_status_subresource_separates_spec_and_status_custom(api_client, namespace, widget_crds):
    custom = client.CustomObjectsApi(api_client)
    args = (*WIDGETS, namespace, "widgets")
    created = custom.create_namespaced_custom_object(*args, dict(m.widget("w", namespace), status={"phase": "Injected"}))
    assert "status" not in created  # status on create is dropped when the status subresource is on
    w = custom.get_namespaced_custom_object(*args, "w")
    w["status"] = {"phase": "FromMain"}
    w["spec"]["color"] = "blue"
    out = custom.replace_namespaced_custom_object(*args, "w", w)
    assert out["spec"]["color"] == "blue" and "status" not in out
    w = copy.deepcopy(out)
    w["spec"]["color"] = "green"
    w["status"] = {"phase": "Ready", "replicas": 1}
    out = custom.replace_namespaced_custom_object_status(*args, "w", w)
    assert out["status"] == {"phase": "Ready", "replicas": 1} and out["spec"]["color"] == "blue"
    assert out["metadata"]["generation"] == 2


def test_noop_update_keeps_resource_version(api_client, namespace, widget_crds):
    core = client.CoreV1Api(api_client)
    cm = core.create_namespaced_config_map(namespace, m.configmap("cm", namespace, {"a": "1"}))
    same = core.replace_namespaced_config_map("cm", namespace, cm)
    assert same.metadata.resource_version == cm.metadata.resource_version
    patched = core.patch_namespaced_config_map("cm", namespace, {"metadata": {"labels": {"a": "1"}}})
    assert patched.metadata.resource_version == cm.metadata.resource_version
    custom = client.CustomObjectsApi(api_client)
    args = (*WIDGETS, namespace, "widgets")
    w = custom.create_namespaced_custom_object(*args, m.widget("w", namespace))
    again = custom.patch_namespaced_custom_object(*args, "w", {"spec": {"color": "red"}})
    assert again["metadata"]["resourceVersion"] == w["metadata"]["resourceVersion"]
    assert again["metadata"]["generation"] == 1


def test_update_validation_of_builtin_is_422(api_client, namespace):
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, m.deployment("web", namespace))
    body = expect_api_error(422, "Invalid", apps.patch_namespaced_deployment, "web", namespace,
                            {"spec": {"selector": {"matchLabels": {"app": "other"}}}})
    assert body["details"]["kind"] == "Deployment" and body["details"]["name"] == "web"
    assert any(c["field"].startswith("spec.") for c in body["details"]["causes"])


# Patch.


def test_merge_patch(driver, api_client, namespace):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, m.configmap("cm", namespace, {"keep": "1", "drop": "1"}, {"a": "1", "b": "2"}))
    out = driver.patch(RES["ConfigMap"], "cm", namespace,
                       {"metadata": {"labels": {"drop": None, "new": "x"}}, "data": {"a": None, "c": "3"}}, "merge")
    assert out["metadata"]["labels"] == {"keep": "1", "new": "x"}
    assert out["data"] == {"b": "2", "c": "3"}


def test_json_patch(driver, api_client, namespace):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, m.configmap("cm", namespace, data={"a": "1", "b": "2"}))
    out = driver.patch(RES["ConfigMap"], "cm", namespace, [
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "replace", "path": "/data/a", "value": "10"},
        {"op": "remove", "path": "/data/b"},
        {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}},
        {"op": "add", "path": "/metadata/finalizers", "value": ["example.com/keep"]},
    ], "json")
    assert out["data"] == {"a": "10"} and out["metadata"]["labels"] == {"x": "y"}
    assert out["metadata"]["finalizers"] == ["example.com/keep"]
    out = driver.patch(RES["ConfigMap"], "cm", namespace, [{"op": "remove", "path": "/metadata/finalizers"}], "json")
    assert "finalizers" not in out["metadata"]


def test_json_patch_failing_test_op_is_422_and_changes_nothing(driver, api_client, namespace):
    core = client.CoreV1Api(api_client)
    rv = core.create_namespaced_config_map(namespace, m.configmap("cm", namespace)).metadata.resource_version
    with pytest.raises(DriverError) as exc:
        driver.patch(RES["ConfigMap"], "cm", namespace, [{"op": "test", "path": "/data/k", "value": "nope"},
                                                          {"op": "replace", "path": "/data/k", "value": "x"}], "json")
    assert exc.value.code == 422
    after = core.read_namespaced_config_map("cm", namespace)
    assert after.data == {"k": "v"} and after.metadata.resource_version == rv


def test_json_patch_removing_a_missing_path_is_422(api_client, namespace):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, m.configmap("cm", namespace))
    expect_api_error(422, "Invalid", core.patch_namespaced_config_map, "cm", namespace,
                     [{"op": "remove", "path": "/metadata/finalizers"}])


def test_strategic_merge_patch_merges_containers_by_name(driver, api_client, namespace):
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, m.deployment("web", namespace))
    res = RES["Deployment"]
    out = driver.patch(res, "web", namespace, {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "image": "registry.example/sidecar:1"}]}}}}, "strategic")
    containers = {c["name"]: c["image"] for c in out["spec"]["template"]["spec"]["containers"]}
    assert containers == {"main": "registry.example/app:1.0", "sidecar": "registry.example/sidecar:1"}
    out = driver.patch(res, "web", namespace, {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "registry.example/app:2.0"}]}}}}, "strategic")
    containers = {c["name"]: c["image"] for c in out["spec"]["template"]["spec"]["containers"]}
    assert containers == {"main": "registry.example/app:2.0", "sidecar": "registry.example/sidecar:1"}
    assert out["metadata"]["generation"] == 3
    out = driver.patch(res, "web", namespace, {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "$patch": "delete"}]}}}}, "strategic")
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["main"]


def test_merge_patch_replaces_lists_on_builtins(api_client, raw, namespace):
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, m.deployment("web", namespace, containers=[
        {"name": "main", "image": "a:1"}, {"name": "side", "image": "b:1"}]))
    out = apps.patch_namespaced_deployment("web", namespace, [{"op": "replace", "path": "/spec/template/spec/containers/0/image",
                                                               "value": "a:2"}])
    assert [c.image for c in out.spec.template.spec.containers] == ["a:2", "b:1"]
    r = raw.request("PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/web",
                    headers={"Content-Type": "application/merge-patch+json"},
                    json={"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "c:1"}]}}}})
    assert r.status_code == 200, r.text
    assert [c["name"] for c in r.json()["spec"]["template"]["spec"]["containers"]] == ["only"]


def test_strategic_patch_on_custom_resource_is_415(driver, api_client, namespace, widget_crds):
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(*WIDGETS, namespace, "widgets", m.widget("w", namespace))
    with pytest.raises(DriverError) as exc:
        driver.patch(RES["Widget"], "w", namespace, {"spec": {"color": "blue"}}, "strategic")
    if driver.name == "client":
        assert exc.value.code == 415 and exc.value.reason == "UnsupportedMediaType"
    else:  # kubectl refuses it itself or prints the server's 415
        assert "strategic" in exc.value.message.lower() or exc.value.reason == "UnsupportedMediaType"


def test_patch_with_stale_resource_version_is_409(api_client, namespace):
    core = client.CoreV1Api(api_client)
    rv = core.create_namespaced_config_map(namespace, m.configmap("cm", namespace)).metadata.resource_version
    core.patch_namespaced_config_map("cm", namespace, {"data": {"k": "2"}})
    expect_api_error(409, "Conflict", core.patch_namespaced_config_map, "cm", namespace,
                     {"metadata": {"resourceVersion": rv}, "data": {"k": "3"}})


# Scale subresource.


def test_scale_deployment_through_the_client(api_client, namespace):
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, m.deployment("web", namespace, replicas=2))
    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert scale.kind == "Scale" and scale.spec.replicas == 2
    assert scale.status.selector == "app=web"
    scaled = apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 5}})
    assert scaled.spec.replicas == 5
    dep = apps.read_namespaced_deployment("web", namespace)
    assert dep.spec.replicas == 5 and dep.metadata.generation == 2
    # The deployment controller writes status concurrently: a read-then-replace retries on 409, as
    # client-go's RetryOnConflict does against a real cluster.
    for _ in range(20):
        scale = apps.read_namespaced_deployment_scale("web", namespace)
        scale.spec.replicas = 1
        try:
            assert apps.replace_namespaced_deployment_scale("web", namespace, scale).spec.replicas == 1
            break
        except client.ApiException as e:
            assert e.status == 409
    else:
        raise AssertionError("replace of the scale kept conflicting")
    stale = apps.read_namespaced_deployment_scale("web", namespace)
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 2}})
    stale.spec.replicas = 9
    expect_api_error(409, "Conflict", apps.replace_namespaced_deployment_scale, "web", namespace, stale)
    expect_api_error(422, "Invalid", apps.patch_namespaced_deployment_scale, "web", namespace, {"spec": {"replicas": -1}})


def test_scale_statefulset(api_client, namespace):
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_stateful_set(namespace, m.statefulset("db", namespace))
    apps.patch_namespaced_stateful_set_scale("db", namespace, {"spec": {"replicas": 3}})
    assert apps.read_namespaced_stateful_set("db", namespace).spec.replicas == 3


def test_scale_nodepool(api_client, namespace, crd_dir):
    custom = client.CustomObjectsApi(api_client)
    args = ("hypershift.openshift.io", "v1beta1", namespace, "nodepools")
    custom.create_namespaced_custom_object(*args, m.node_pool("np", namespace, replicas=2))
    scale = custom.get_namespaced_custom_object_scale(*args, "np")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1" and scale["spec"]["replicas"] == 2
    assert "selector" not in scale["status"]  # NodePool's scale subresource has no labelSelectorPath
    custom.patch_namespaced_custom_object_scale(*args, "np", {"spec": {"replicas": 4}})
    np = custom.get_namespaced_custom_object(*args, "np")
    assert np["spec"]["replicas"] == 4 and np["metadata"]["generation"] == 2


def test_scale_custom_resource_with_selector(api_client, raw, namespace, widget_crds):
    custom = client.CustomObjectsApi(api_client)
    args = (*WIDGETS, namespace, "widgets")
    custom.create_namespaced_custom_object(*args, m.widget("w", namespace, replicas=1))
    custom.patch_namespaced_custom_object_status(*args, "w", {"status": {"replicas": 1, "selector": "app=w"}})
    scale = custom.get_namespaced_custom_object_scale(*args, "w")
    assert scale["spec"]["replicas"] == 1 and scale["status"] == {"replicas": 1, "selector": "app=w"}
    out = custom.replace_namespaced_custom_object_scale(*args, "w", dict(scale, spec={"replicas": 3}))
    assert out["spec"]["replicas"] == 3
    assert custom.get_namespaced_custom_object(*args, "w")["spec"]["replicas"] == 3
    # Kinds without a scale subresource answer 404 there.
    client.CoreV1Api(api_client).create_namespaced_config_map(namespace, m.configmap("x", namespace))
    r = raw.get(f"/api/v1/namespaces/{namespace}/configmaps/x/scale")
    assert r.status_code == 404 and r.json()["reason"] == "NotFound"


def test_kubectl_scale(kubectl, api_client, namespace, crd_dir):
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, m.deployment("web", namespace))
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        "hypershift.openshift.io", "v1beta1", namespace, "nodepools", m.node_pool("np", namespace, replicas=1))
    out = kubectl.run("scale", "-n", namespace, "deployment/web", "nodepool/np", "--replicas=3").stdout.decode()
    assert "deployment.apps/web scaled" in out and "nodepool.hypershift.openshift.io/np scaled" in out
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 3
    assert kubectl.json("get", "nodepool", "np", "-n", namespace)["spec"]["replicas"] == 3
    # --current-replicas is a precondition.
    failed = kubectl.run("scale", "-n", namespace, "deployment/web", "--current-replicas=1", "--replicas=5", check=False)
    assert failed.returncode != 0
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 3
