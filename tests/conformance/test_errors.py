"""Failures come back as metav1.Status objects with a real server's code and reason, and the server keeps
answering after each one."""

from __future__ import annotations

import pytest
from kubernetes import client, config

from . import manifests as m
from .util import expect_api_error

CM = "/api/v1/namespaces/{ns}/configmaps"


def _status(r, code: int, reason: str) -> dict:
    assert r.status_code == code, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure", body
    assert body["code"] == code and body["reason"] == reason, body
    return body


@pytest.fixture
def alive(raw):
    """Every error test ends by checking that the server still answers."""
    yield
    assert raw.alive()


pytestmark = pytest.mark.usefixtures("alive")


def test_401_without_or_with_wrong_token(raw, kubeconfig):
    body = _status(raw.get("/api/v1/namespaces", auth=False), 401, "Unauthorized")
    assert body["message"] == "Unauthorized"
    _status(raw.get("/api/v1/namespaces", headers={"Authorization": "Bearer wrong"}), 401, "Unauthorized")
    _status(raw.get("/apis/apps/v1/deployments", headers={"Authorization": "Basic Zm9vOmJhcg=="}), 401, "Unauthorized")
    assert raw.get("/version", auth=False).status_code == 200  # public, as on a real cluster
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), context="c1", client_configuration=cfg)
    cfg.refresh_api_key_hook = None
    cfg.api_key = {"authorization": "Bearer not-the-token"}
    with client.ApiClient(cfg) as bad:
        expect_api_error(401, "Unauthorized", client.CoreV1Api(bad).list_namespace)


def test_404_unknown_object(raw, namespace):
    body = _status(raw.get(CM.format(ns=namespace) + "/nope"), 404, "NotFound")
    assert body["message"] == 'configmaps "nope" not found'
    assert body["details"]["name"] == "nope" and body["details"]["kind"] == "configmaps"
    body = _status(raw.get("/apis/apps/v1/namespaces/default/deployments/nope"), 404, "NotFound")
    assert body["message"] == 'deployments.apps "nope" not found'
    assert body["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}
    _status(raw.get("/api/v1/namespaces/no-such-namespace"), 404, "NotFound")


def test_404_details_omit_the_empty_core_group(raw, namespace):
    body = _status(raw.get(CM.format(ns=namespace) + "/nope"), 404, "NotFound")
    assert body["details"] == {"name": "nope", "kind": "configmaps"}


@pytest.mark.parametrize("path", [
    "/api/v1/namespaces/default/frobnicators",
    "/apis/nope.example.com/v1/things",
    "/apis/apps/v9/deployments",
    "/apis/hypershift.openshift.io/v1alpha1/hostedclusters",
    "/api/v1/namespaces/default/configmaps/x/y/z",
    "/not-an-api",
])
def test_404_unknown_resource_path(raw, path):
    body = _status(raw.get(path), 404, "NotFound")
    assert body["message"] == "the server could not find the requested resource"


def test_404_on_cluster_scoped_kind_under_a_namespace(raw):
    _status(raw.get("/api/v1/namespaces/default/nodes"), 404, "NotFound")


def test_405_method_not_allowed(raw, namespace):
    _status(raw.request("POST", CM.format(ns=namespace) + "/x", json=m.configmap("x", namespace)), 405, "MethodNotAllowed")
    _status(raw.request("PUT", CM.format(ns=namespace), json=m.configmap("x", namespace)), 405, "MethodNotAllowed")
    _status(raw.request("PATCH", CM.format(ns=namespace), data="{}",
                        headers={"Content-Type": "application/merge-patch+json"}), 405, "MethodNotAllowed")


def test_409_already_exists(raw, namespace):
    assert raw.request("POST", CM.format(ns=namespace), json=m.configmap("dup", namespace)).status_code == 201
    body = _status(raw.request("POST", CM.format(ns=namespace), json=m.configmap("dup", namespace)), 409, "AlreadyExists")
    assert body["message"] == 'configmaps "dup" already exists'
    assert body["details"]["name"] == "dup" and body["details"]["kind"] == "configmaps"


def test_409_conflict(raw, namespace):
    created = raw.request("POST", CM.format(ns=namespace), json=m.configmap("c", namespace)).json()
    raw.request("PATCH", CM.format(ns=namespace) + "/c", data='{"data":{"k":"2"}}',
                headers={"Content-Type": "application/merge-patch+json"})
    body = _status(raw.request("PUT", CM.format(ns=namespace) + "/c", json=created), 409, "Conflict")
    assert body["message"] == ('Operation cannot be fulfilled on configmaps "c": the object has been modified; '
                               "please apply your changes to the latest version and try again")


def test_415_unsupported_media_types(raw, namespace, widget_crds):
    _status(raw.request("POST", CM.format(ns=namespace), data="name: x", headers={"Content-Type": "text/plain"}),
            415, "UnsupportedMediaType")
    raw.request("POST", CM.format(ns=namespace), json=m.configmap("p", namespace))
    # PATCH needs one of the patch media types; plain JSON is not one.
    _status(raw.request("PATCH", CM.format(ns=namespace) + "/p", data='{"data":{"k":"x"}}',
                        headers={"Content-Type": "application/json"}), 415, "UnsupportedMediaType")
    # Custom resources have no protobuf encoding and no strategic merge patch.
    widgets = f"/apis/{m.CONF_GROUP}/v1/namespaces/{namespace}/widgets"
    _status(raw.request("POST", widgets, data=b"k8s\x00\x0a\x02", headers={"Content-Type": "application/vnd.kubernetes.protobuf"}),
            415, "UnsupportedMediaType")
    raw.request("POST", widgets, json=m.widget("w", namespace))
    _status(raw.request("PATCH", widgets + "/w", data='{"spec":{"color":"blue"}}',
                        headers={"Content-Type": "application/strategic-merge-patch+json"}), 415, "UnsupportedMediaType")


def test_422_invalid_names_the_field(raw, namespace, widget_crds):
    body = _status(raw.request("POST", CM.format(ns=namespace), json=m.configmap("Bad_Name", namespace)), 422, "Invalid")
    assert body["message"].startswith('ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": '
                                      "a lowercase RFC 1123 subdomain must consist of")
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert body["details"]["causes"][0]["reason"] == "FieldValueInvalid"

    dep = m.deployment("web", namespace, containers=[{"name": "main"}])
    body = _status(raw.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", json=dep), 422, "Invalid")
    assert body["details"]["kind"] == "Deployment" and body["details"]["group"] == "apps"
    assert {"reason": "FieldValueRequired", "field": "spec.template.spec.containers[0].image"}.items() <= \
        body["details"]["causes"][0].items()

    widgets = f"/apis/{m.CONF_GROUP}/v1/namespaces/{namespace}/widgets"
    body = _status(raw.request("POST", widgets, json=m.widget("w", namespace, color="purple", replicas=-1)), 422, "Invalid")
    fields = {c["field"]: c["reason"] for c in body["details"]["causes"]}
    assert fields == {"spec.color": "FieldValueNotSupported", "spec.replicas": "FieldValueInvalid"}
    assert 'spec.color: Unsupported value: "purple": supported values: "red", "green", "blue"' in body["message"]
    assert body["message"].startswith(f'Widget.{m.CONF_GROUP} "w" is invalid: [')
    body = _status(raw.request("POST", widgets, json=m.widget("w", namespace, size="x" * 11)), 422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "spec.size"
    assert body["details"]["causes"][0]["reason"] == "FieldValueTooLong"


def test_422_wrong_type_in_custom_resource(raw, namespace, widget_crds):
    widgets = f"/apis/{m.CONF_GROUP}/v1/namespaces/{namespace}/widgets"
    body = _status(raw.request("POST", widgets, json=m.widget("w", namespace, replicas="three")), 422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "spec.replicas"
    assert 'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"' in body["message"]


def test_413_request_entity_too_large(raw, namespace):
    huge = m.configmap("huge", namespace, data={"k": "x" * (3 * 1024 * 1024 + 10)})
    body = _status(raw.request("POST", CM.format(ns=namespace), json=huge, timeout=30), 413, "RequestEntityTooLarge")
    assert "limit is 3145728" in body["message"]
    assert raw.get(CM.format(ns=namespace) + "/huge").status_code == 404


def test_422_configmap_over_one_mebibyte(raw, namespace):
    big = m.configmap("big", namespace, data={"k": "x" * (1536 * 1024)})
    _status(raw.request("POST", CM.format(ns=namespace), json=big, timeout=30), 422, "Invalid")


@pytest.mark.parametrize("data", ['{"metadata": {"name": "x"', "[1, 2]", "not json at all", '"a string"'])
def test_400_malformed_body(raw, namespace, data):
    _status(raw.request("POST", CM.format(ns=namespace), data=data, headers={"Content-Type": "application/json"}),
            400, "BadRequest")


def test_400_malformed_patch(raw, namespace):
    raw.request("POST", CM.format(ns=namespace), json=m.configmap("p", namespace))
    _status(raw.request("PATCH", CM.format(ns=namespace) + "/p", data="{not json",
                        headers={"Content-Type": "application/merge-patch+json"}), 400, "BadRequest")


def test_400_name_or_namespace_mismatch(raw, namespace):
    raw.request("POST", CM.format(ns=namespace), json=m.configmap("a", namespace))
    body = _status(raw.request("PUT", CM.format(ns=namespace) + "/a", json=m.configmap("b", namespace)), 400, "BadRequest")
    assert body["message"] == "the name of the object (b) does not match the name on the URL (a)"
    body = _status(raw.request("POST", CM.format(ns=namespace), json=m.configmap("c", "other-ns")), 400, "BadRequest")
    assert body["message"] == "the namespace of the provided object does not match the namespace sent on the request"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    _status(raw.request("POST", CM.format(ns=namespace), json=secret), 400, "BadRequest")


def test_400_bad_query_parameters(raw, namespace):
    _status(raw.get(CM.format(ns=namespace) + "?limit=abc"), 400, "BadRequest")
    _status(raw.get(CM.format(ns=namespace) + "?watch=1&resourceVersion=abc&timeoutSeconds=1"), 400, "BadRequest")
    _status(raw.get(CM.format(ns=namespace) + "?continue=not-a-token"), 400, "BadRequest")


def test_injected_faults_are_status_errors_and_pass(api_client, cluster, namespace):
    core = client.CoreV1Api(api_client)
    cluster.faults.fail_next(1, code=503, method="GET", path_contains=f"/namespaces/{namespace}/configmaps")
    expect_api_error(503, "ServiceUnavailable", core.list_namespaced_config_map, namespace)
    cluster.faults.fail_next(1, code=500, method="POST", path_contains=f"/namespaces/{namespace}/configmaps")
    expect_api_error(500, "InternalError", core.create_namespaced_config_map, namespace, m.configmap("x", namespace))
    assert core.list_namespaced_config_map(namespace).items == []
    core.create_namespaced_config_map(namespace, m.configmap("x", namespace))


def test_discovery_documents(raw, crd_dir):
    version = raw.get("/version").json()
    assert version["major"] == "1" and version["gitVersion"].startswith("v1.")
    core = raw.get("/api").json()
    assert core["kind"] == "APIVersions" and core["versions"] == ["v1"]
    groups = {g["name"]: g for g in raw.get("/apis").json()["groups"]}
    assert groups["apps"]["preferredVersion"]["version"] == "v1"
    assert groups["cluster.x-k8s.io"]["preferredVersion"]["version"] == "v1beta2"
    assert {v["version"] for v in groups["cluster.x-k8s.io"]["versions"]} == {"v1beta1", "v1beta2"}
    hs = raw.get("/apis/hypershift.openshift.io/v1beta1").json()
    resources = {r["name"]: r for r in hs["resources"]}
    assert resources["nodepools"]["shortNames"] == ["np", "nps"] and resources["nodepools"]["namespaced"] is True
    assert {"nodepools/scale", "nodepools/status", "hostedclusters/status"} <= set(resources)
    assert resources["nodepools/scale"]["kind"] == "Scale" and resources["nodepools/scale"]["group"] == "autoscaling"
    assert raw.get("/healthz", auth=False).text == "ok"


def test_400_unknown_field_with_strict_field_validation(raw, namespace, crd_dir):
    cm = dict(m.configmap("strict", namespace), bogus="x")
    body = _status(raw.request("POST", CM.format(ns=namespace) + "?fieldValidation=Strict", json=cm), 400, "BadRequest")
    assert 'strict decoding error: unknown field "bogus"' in body["message"]
    np = m.node_pool("np", namespace)
    np["spec"]["notAField"] = 1
    body = _status(raw.request("POST", f"/apis/hypershift.openshift.io/v1beta1/namespaces/{namespace}/nodepools"
                                       "?fieldValidation=Strict", json=np), 400, "BadRequest")
    assert 'unknown field "spec.notAField"' in body["message"]


def test_unknown_fields_of_builtin_kinds_are_dropped(raw, namespace):
    cm = dict(m.configmap("loose", namespace), bogus="x")
    r = raw.request("POST", CM.format(ns=namespace) + "?fieldValidation=Ignore", json=cm)
    assert r.status_code == 201
    assert "bogus" not in r.json()
    assert "bogus" not in raw.get(CM.format(ns=namespace) + "/loose").json()


def test_version_endpoint_through_the_official_client(api_client):
    """The client asks for `/version/` (trailing slash), which the real server serves like `/version`."""
    from kubernetes import client as k8s

    info = k8s.VersionApi(api_client).get_code()
    assert info.major == "1" and info.git_version.startswith("v1.")
