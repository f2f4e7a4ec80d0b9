"""Custom resources: the upstream CRDs' OpenAPI and CEL validation through the API, and a CRD this suite
creates (discovery, short names, categories, printer columns, deletion)."""

from __future__ import annotations

import copy

import pytest
from kubernetes import client

from . import manifests as m
from .util import expect_api_error, wait_for

HC = ("hypershift.openshift.io", "v1beta1")
URL_FIELD = "spec.etcd.managed.storage.restoreSnapshotURL"


@pytest.fixture
def custom(api_client) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def _causes(body: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in body["details"].get("causes", []):
        out.setdefault(c["field"], []).append(c["message"])
    return out


@pytest.mark.usefixtures("crd_dir")
class TestHostedClusterValidation:
    def test_valid_minimal_and_with_snapshot_url(self, custom, namespace):
        args = (*HC, namespace, "hostedclusters")
        hc = custom.create_namespaced_custom_object(*args, m.hosted_cluster("plain", namespace))
        assert hc["spec"]["networking"]["networkType"] == "OVNKubernetes"
        # The schema's defaults are applied (persistentVolume.size defaults to 8Gi only when the parent exists).
        url = "https://bucket.s3.amazonaws.com/snap.db?X-Amz-Signature=abc"
        hc = custom.create_namespaced_custom_object(*args, m.hosted_cluster("restored", namespace, [url]))
        assert hc["spec"]["etcd"]["managed"]["storage"]["restoreSnapshotURL"] == [url]
        s3 = custom.create_namespaced_custom_object(*args, m.hosted_cluster("s3", namespace, ["s3://bucket/snap.db"]))
        assert s3["metadata"]["generation"] == 1

    def test_two_restore_urls_is_422_naming_the_field(self, custom, namespace):
        body = expect_api_error(422, "Invalid", custom.create_namespaced_custom_object, *HC, namespace, "hostedclusters",
                                m.hosted_cluster("two", namespace, ["https://a.example/1", "https://a.example/2"]))
        assert URL_FIELD in _causes(body)
        assert body["message"].startswith(f'HostedCluster.hypershift.openshift.io "two" is invalid: ')
        assert f"{URL_FIELD}: Too many: 2: must have at most 1 items" in body["message"]

    def test_http_url_is_422(self, custom, namespace):
        body = expect_api_error(422, "Invalid", custom.create_namespaced_custom_object, *HC, namespace, "hostedclusters",
                                m.hosted_cluster("plainhttp", namespace, ["http://insecure.example/snap.db"]))
        assert "restoreSnapshotURL must be a valid URL with scheme https or s3" in body["message"]
        assert URL_FIELD in _causes(body)

    def test_adding_restore_url_later_is_422(self, custom, namespace):
        args = (*HC, namespace, "hostedclusters")
        custom.create_namespaced_custom_object(*args, m.hosted_cluster("hc", namespace))
        patch = {"spec": {"etcd": {"managed": {"storage": {"restoreSnapshotURL": ["https://a.example/snap"]}}}}}
        body = expect_api_error(422, "Invalid", custom.patch_namespaced_custom_object, *args, "hc", patch)
        assert "restoreSnapshotURL cannot be added or removed after creation" in body["message"]
        assert "spec.etcd.managed.storage" in _causes(body)
        assert "restoreSnapshotURL" not in custom.get_namespaced_custom_object(*args, "hc")["spec"]["etcd"]["managed"]["storage"]

    def test_changing_or_removing_restore_url_is_422(self, custom, raw, namespace):
        args = (*HC, namespace, "hostedclusters")
        custom.create_namespaced_custom_object(*args, m.hosted_cluster("hc", namespace, ["https://a.example/1"]))
        body = expect_api_error(422, "Invalid", custom.patch_namespaced_custom_object, *args, "hc",
                                {"spec": {"etcd": {"managed": {"storage": {"restoreSnapshotURL": ["https://a.example/2"]}}}}})
        assert "restoreSnapshotURL is immutable" in body["message"]
        r = raw.request("PATCH", f"/apis/{HC[0]}/{HC[1]}/namespaces/{namespace}/hostedclusters/hc",
                        json=[{"op": "remove", "path": "/spec/etcd/managed/storage/restoreSnapshotURL"}],
                        headers={"Content-Type": "application/json-patch+json"})
        assert r.status_code == 422 and r.json()["reason"] == "Invalid"
        assert "restoreSnapshotURL cannot be added or removed after creation" in r.json()["message"]

    def test_required_fields_enums_and_list_rules(self, custom, namespace):
        args = (*HC, namespace, "hostedclusters")
        hc = m.hosted_cluster("broken", namespace)
        del hc["spec"]["release"]
        hc["spec"]["platform"]["type"] = "Mainframe"
        body = expect_api_error(422, "Invalid", custom.create_namespaced_custom_object, *args, hc)
        causes = _causes(body)
        assert "spec.release" in causes and "spec.platform.type" in causes
        assert 'spec.platform.type: Unsupported value: "Mainframe"' in body["message"]
        assert "spec.release: Required value" in body["message"]
        few = m.hosted_cluster("few", namespace)
        few["spec"]["services"] = few["spec"]["services"][:3]
        body = expect_api_error(422, "Invalid", custom.create_namespaced_custom_object, *args, few)
        assert "spec.services in body should have at least 4 items or 3 for IBMCloud" in body["message"]

    def test_services_are_immutable(self, custom, namespace):
        args = (*HC, namespace, "hostedclusters")
        custom.create_namespaced_custom_object(*args, m.hosted_cluster("hc", namespace))
        services = m.hosted_cluster("hc", namespace)["spec"]["services"]
        services[0]["servicePublishingStrategy"] = {"type": "Route"}
        body = expect_api_error(422, "Invalid", custom.patch_namespaced_custom_object, *args, "hc",
                                {"spec": {"services": services}})
        assert "Services is immutable" in body["message"]

    def test_nodepool_upgrade_type_is_immutable(self, custom, namespace):
        args = (*HC, namespace, "nodepools")
        custom.create_namespaced_custom_object(*args, m.node_pool("np", namespace, upgrade_type="Replace"))
        body = expect_api_error(422, "Invalid", custom.patch_namespaced_custom_object, *args, "np",
                                {"spec": {"management": {"upgradeType": "InPlace"}}})
        assert "UpgradeType is immutable" in body["message"]
        assert "spec.management.upgradeType" in _causes(body)
        assert custom.get_namespaced_custom_object(*args, "np")["spec"]["management"]["upgradeType"] == "Replace"
        # Mutable fields still change.
        assert custom.patch_namespaced_custom_object(*args, "np", {"spec": {"replicas": 5}})["spec"]["replicas"] == 5

    def test_unknown_fields_are_pruned(self, custom, namespace):
        args = (*HC, namespace, "nodepools")
        np = m.node_pool("np", namespace)
        np["spec"]["notAField"] = "dropped"
        np["unknownTopLevel"] = {"a": 1}
        out = custom.create_namespaced_custom_object(*args, np)
        assert "notAField" not in out["spec"] and "unknownTopLevel" not in out

    def test_dry_run_create_validates_but_stores_nothing(self, custom, namespace):
        args = (*HC, namespace, "hostedclusters")
        expect_api_error(422, "Invalid", custom.create_namespaced_custom_object, *args,
                         m.hosted_cluster("dry", namespace, ["http://x"]), dry_run="All")
        custom.create_namespaced_custom_object(*args, m.hosted_cluster("dry", namespace), dry_run="All")
        assert custom.list_namespaced_custom_object(*args)["items"] == []


# Our own CRD.


def test_discovery_of_own_crd(raw, widget_crds):
    doc = raw.get(f"/apis/{m.CONF_GROUP}/v1").json()
    resources = {r["name"]: r for r in doc["resources"]}
    widgets, gadgets = resources["widgets"], resources["gadgets"]
    assert widgets["kind"] == "Widget" and widgets["namespaced"] is True and gadgets["namespaced"] is False
    assert widgets["shortNames"] == ["wdg"] and widgets["categories"] == ["hcpsimconf"]
    assert set(widgets["verbs"]) == {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
    assert {"widgets/status", "widgets/scale", "gadgets/status", "gadgets/scale"} <= set(resources)
    crd = raw.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{m.CONF_GROUP}").json()
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
    assert crd["status"]["acceptedNames"]["kind"] == "Widget"


def test_cluster_scoped_custom_resource(api_client, raw, widget_crds, namespace):
    custom = client.CustomObjectsApi(api_client)
    g = custom.create_cluster_custom_object(m.CONF_GROUP, "v1", "gadgets", m.widget("gadget-a", None, kind="Gadget"))
    assert "namespace" not in g["metadata"]
    try:
        assert raw.get(f"/apis/{m.CONF_GROUP}/v1/namespaces/{namespace}/gadgets").status_code == 404
        assert raw.get(f"/apis/{m.CONF_GROUP}/v1/gadgets/gadget-a").json()["metadata"]["uid"] == g["metadata"]["uid"]
        # A namespaced kind listed across namespaces.
        custom.create_namespaced_custom_object(m.CONF_GROUP, "v1", namespace, "widgets", m.widget("w", namespace))
        everywhere = custom.list_cluster_custom_object(m.CONF_GROUP, "v1", "widgets")["items"]
        assert (namespace, "w") in [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere]
    finally:
        custom.delete_cluster_custom_object(m.CONF_GROUP, "v1", "gadgets", "gadget-a")


def test_invalid_crd_is_422(api_client):
    ext = client.ApiextensionsV1Api(api_client)
    crd = m.widget_crd("badthings", "BadThing")
    crd["spec"]["scope"] = "Everywhere"
    body = expect_api_error(422, "Invalid", ext.create_custom_resource_definition, crd)
    assert "spec.scope" in _causes(body)
    crd = m.widget_crd("badthings", "BadThing")
    crd["metadata"]["name"] = "wrong.name.example"
    body = expect_api_error(422, "Invalid", ext.create_custom_resource_definition, crd)
    assert "metadata.name" in _causes(body)


def test_crd_deletion_removes_its_objects(api_client, raw, namespace):
    ext = client.ApiextensionsV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    crd = m.widget_crd("sprockets", "Sprocket", short_names=(), categories=())
    ext.create_custom_resource_definition(crd)
    args = (m.CONF_GROUP, "v1", namespace, "sprockets")
    wait_for(lambda: raw.get(f"/apis/{m.CONF_GROUP}/v1/namespaces/{namespace}/sprockets").status_code == 200, "served")
    for name in ("s1", "s2"):
        custom.create_namespaced_custom_object(*args, m.widget(name, namespace, kind="Sprocket"))
    ext.delete_custom_resource_definition(crd["metadata"]["name"])
    wait_for(lambda: raw.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}").status_code == 404,
             "CRD gone")
    assert raw.get(f"/apis/{m.CONF_GROUP}/v1/namespaces/{namespace}/sprockets").status_code == 404
    assert "sprockets" not in {r["name"] for r in raw.get(f"/apis/{m.CONF_GROUP}/v1").json().get("resources", [])}
    # Recreated, the kind starts empty.
    ext.create_custom_resource_definition(copy.deepcopy(crd))
    try:
        wait_for(lambda: raw.get(f"/apis/{m.CONF_GROUP}/v1/namespaces/{namespace}/sprockets").status_code == 200, "served")
        assert custom.list_namespaced_custom_object(*args)["items"] == []
    finally:
        ext.delete_custom_resource_definition(crd["metadata"]["name"])


def test_kubectl_short_names_categories_and_api_resources(kubectl, api_client, namespace, widget_crds):
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(m.CONF_GROUP, "v1", namespace, "widgets", m.widget("w1", namespace, color="green"))
    custom.create_cluster_custom_object(m.CONF_GROUP, "v1", "gadgets", m.widget("g-" + namespace, None, kind="Gadget"))
    try:
        assert kubectl.run("get", "wdg", "-n", namespace, "-o", "name").stdout.decode().split() == [
            f"widget.{m.CONF_GROUP}/w1"]
        by_category = kubectl.run("get", "hcpsimconf", "-n", namespace, "-o", "name").stdout.decode().split()
        assert f"widget.{m.CONF_GROUP}/w1" in by_category and f"gadget.{m.CONF_GROUP}/g-{namespace}" in by_category
        table = kubectl.run("api-resources", f"--api-group={m.CONF_GROUP}").stdout.decode().splitlines()
        rows = {line.split()[0]: line.split() for line in table[1:]}
        assert rows["widgets"] == ["widgets", "wdg", f"{m.CONF_GROUP}/v1", "true", "Widget"]
        assert rows["gadgets"] == ["gadgets", "gdg", f"{m.CONF_GROUP}/v1", "false", "Gadget"]
        hs = kubectl.run("api-resources", "--api-group=hypershift.openshift.io", "-o", "name").stdout.decode().split()
        assert set(hs) >= {"hostedclusters.hypershift.openshift.io", "nodepools.hypershift.openshift.io"}
    finally:
        custom.delete_cluster_custom_object(m.CONF_GROUP, "v1", "gadgets", "g-" + namespace)


def test_kubectl_get_prints_additional_printer_columns(kubectl, api_client, namespace, widget_crds):
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        m.CONF_GROUP, "v1", namespace, "widgets", m.widget("w1", namespace, color="green"))
    lines = kubectl.run("get", "widgets", "-n", namespace).stdout.decode().splitlines()
    assert lines[0].split() == ["NAME", "COLOR", "AGE"]
    assert lines[1].split()[:2] == ["w1", "green"]
