"""list (label and field selectors, paging) and watch semantics."""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client, watch

from . import manifests as m
from .drivers import RES
from .util import expect_api_error, wait_for
from .watching import Collector

LABELLED = {"a": {"env": "prod", "tier": "web"}, "b": {"env": "dev", "tier": "web"}, "c": {"env": "qa"}, "d": {}}

SELECTORS = [
    ("env=prod", ["a"]),
    ("env==dev", ["b"]),
    ("env!=prod", ["b", "c", "d"]),  # != also matches objects without the key
    ("env in (prod,dev)", ["a", "b"]),
    ("env notin (prod,dev)", ["c", "d"]),
    ("tier", ["a", "b"]),
    ("!tier", ["c", "d"]),
    ("env=prod,tier=web", ["a"]),
    ("tier=web,env notin (prod)", ["b"]),
]


@pytest.fixture
def labelled(api_client, namespace) -> str:
    core = client.CoreV1Api(api_client)
    for name, labels in LABELLED.items():
        core.create_namespaced_config_map(namespace, m.configmap(name, namespace, labels))
    return namespace


def test_label_selectors(driver, labelled):
    got = {sel: driver.list_names(RES["ConfigMap"], labelled, label_selector=sel) for sel, _ in SELECTORS}
    assert got == dict(SELECTORS)


def test_invalid_label_selector_is_400(api_client, labelled):
    body = expect_api_error(400, "BadRequest", client.CoreV1Api(api_client).list_namespaced_config_map, labelled,
                            label_selector="env in prod")
    assert "unable to parse requirement" in body["message"] or "env in prod" in body["message"]


def test_field_selectors_on_name_and_namespace(driver, api_client, labelled, namespace):
    assert driver.list_names(RES["ConfigMap"], labelled, field_selector="metadata.name=b") == ["b"]
    assert driver.list_names(RES["ConfigMap"], labelled, field_selector="metadata.name!=b") == ["a", "c", "d"]
    # Cluster-wide list narrowed to one namespace by field selector.
    core = client.CoreV1Api(api_client)
    items = core.list_config_map_for_all_namespaces(field_selector=f"metadata.namespace={labelled}").items
    assert sorted(i.metadata.name for i in items) == ["a", "b", "c", "d"]
    both = core.list_config_map_for_all_namespaces(field_selector=f"metadata.namespace={labelled},metadata.name=c",
                                                   label_selector="env=qa").items
    assert [(i.metadata.namespace, i.metadata.name) for i in both] == [(labelled, "c")]


def test_field_selectors_on_pods(driver, api_client, namespace):
    core = client.CoreV1Api(api_client)
    # Bound to nodes that no kubelet serves: they stay as we write them.
    for name, node in (("p1", "node-a"), ("p2", "node-a"), ("p3", "node-b")):
        core.create_namespaced_pod(namespace, m.pod(name, namespace, node=node))
    core.patch_namespaced_pod_status("p2", namespace, {"status": {"phase": "Running"}})
    assert driver.list_names(RES["Pod"], namespace, field_selector="spec.nodeName=node-a") == ["p1", "p2"]
    assert driver.list_names(RES["Pod"], namespace, field_selector="status.phase=Running") == ["p2"]
    assert driver.list_names(RES["Pod"], namespace, field_selector="status.phase!=Running,spec.nodeName=node-a") == ["p1"]


def test_unknown_field_selector_is_400(api_client, namespace):
    body = expect_api_error(400, "BadRequest", client.CoreV1Api(api_client).list_namespaced_pod, namespace,
                            field_selector="spec.foo=bar")
    assert "spec.foo" in body["message"]
    custom = client.CustomObjectsApi(api_client)
    body = expect_api_error(400, "BadRequest", custom.list_namespaced_custom_object, "cluster.x-k8s.io", "v1beta2",
                            namespace, "clusters", field_selector="spec.paused=true")
    assert "spec.paused" in body["message"]


@pytest.fixture
def seven(api_client, namespace) -> list[str]:
    core = client.CoreV1Api(api_client)
    names = [f"cm-{i}" for i in range(7)]
    for i, name in enumerate(names):
        core.create_namespaced_config_map(namespace, m.configmap(name, namespace, {"parity": str(i % 2)}))
    return names


def test_paging_with_limit_and_continue(api_client, namespace, seven):
    core = client.CoreV1Api(api_client)
    page1 = core.list_namespaced_config_map(namespace, limit=3)
    assert len(page1.items) == 3
    assert page1.metadata.remaining_item_count == 4 and page1.metadata._continue
    page2 = core.list_namespaced_config_map(namespace, limit=3, _continue=page1.metadata._continue)
    assert len(page2.items) == 3 and page2.metadata.remaining_item_count == 1
    # A write between pages does not show in later pages: they are served at the first page's resourceVersion.
    assert page2.metadata.resource_version == page1.metadata.resource_version
    page3 = core.list_namespaced_config_map(namespace, limit=3, _continue=page2.metadata._continue)
    assert len(page3.items) == 1
    assert not page3.metadata._continue and page3.metadata.remaining_item_count is None
    names = [i.metadata.name for p in (page1, page2, page3) for i in p.items]
    assert sorted(names) == sorted(seven) and len(set(names)) == 7


def test_paging_with_label_selector_has_no_remaining_count(api_client, namespace, seven):
    """ListMeta.remainingItemCount is not set when the list has a label or field selector."""
    core = client.CoreV1Api(api_client)
    names, token = [], None
    while True:
        page = core.list_namespaced_config_map(namespace, limit=2, label_selector="parity=0", _continue=token)
        names += [i.metadata.name for i in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count is None
    assert sorted(names) == ["cm-0", "cm-2", "cm-4", "cm-6"]


def test_kubectl_get_chunks_lists_everything(kubectl, namespace, seven):
    out = kubectl.run("get", "configmaps", "-n", namespace, "--chunk-size=2", "-o", "name").stdout.decode().split()
    assert sorted(out) == sorted(f"configmap/{n}" for n in seven)


def test_continue_token_expires_after_compaction(api_client, cluster, namespace, seven):
    core = client.CoreV1Api(api_client)
    page1 = core.list_namespaced_config_map(namespace, limit=3)
    core.create_namespaced_config_map(namespace, m.configmap("later", namespace))
    cluster.backend.store.compact()
    body = expect_api_error(410, "Expired", core.list_namespaced_config_map, namespace, limit=3,
                            _continue=page1.metadata._continue)
    assert "continue" in body["message"]
    # A fresh list works.
    assert len(core.list_namespaced_config_map(namespace).items) == 8


# Watch.


def test_watch_added_modified_deleted(api_client, namespace):
    core = client.CoreV1Api(api_client)
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    watcher = Collector(core.list_namespaced_config_map, namespace, resource_version=rv)
    core.create_namespaced_config_map(namespace, m.configmap("w1", namespace))
    core.patch_namespaced_config_map("w1", namespace, {"data": {"k": "v2"}})
    core.delete_namespaced_config_map("w1", namespace)
    core.create_namespaced_config_map(namespace, m.configmap("zz-stop", namespace))
    assert watcher.join() == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1"), ("ADDED", "zz-stop")]
    rvs = [int(raw["metadata"]["resourceVersion"]) for _, _, raw in watcher.events]
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs) and rvs[0] > int(rv)
    assert watcher.events[1][2]["data"] == {"k": "v2"}


def test_watch_without_resource_version_starts_with_current_state(api_client, namespace):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, m.configmap("existing", namespace))
    watcher = Collector(core.list_namespaced_config_map, namespace)
    wait_for(lambda: watcher.events, "initial ADDED")
    core.create_namespaced_config_map(namespace, m.configmap("zz-stop", namespace))
    assert watcher.join() == [("ADDED", "existing"), ("ADDED", "zz-stop")]


def test_watch_resumes_after_resource_version(api_client, namespace):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, m.configmap("r1", namespace))
    rv = core.patch_namespaced_config_map("r1", namespace, {"data": {"k": "v2"}}).metadata.resource_version
    core.create_namespaced_config_map(namespace, m.configmap("r2", namespace))
    core.patch_namespaced_config_map("r1", namespace, {"data": {"k": "v3"}})
    core.create_namespaced_config_map(namespace, m.configmap("zz-stop", namespace))
    watcher = Collector(core.list_namespaced_config_map, namespace, resource_version=rv)
    assert watcher.join() == [("ADDED", "r2"), ("MODIFIED", "r1"), ("ADDED", "zz-stop")]


def test_watch_single_object_by_name(api_client, namespace):
    core = client.CoreV1Api(api_client)
    rv = core.create_namespaced_config_map(namespace, m.configmap("other", namespace)).metadata.resource_version
    watcher = Collector(core.list_namespaced_config_map, namespace, resource_version=rv,
                        field_selector="metadata.name=zz-stop")
    core.patch_namespaced_config_map("other", namespace, {"data": {"x": "y"}})
    core.create_namespaced_config_map(namespace, m.configmap("zz-stop", namespace))
    assert watcher.join() == [("ADDED", "zz-stop")]


def test_watch_timeout_seconds_ends_the_stream(api_client, namespace):
    core = client.CoreV1Api(api_client)
    start = time.monotonic()
    events = list(watch.Watch().stream(core.list_namespaced_config_map, namespace, timeout_seconds=1))
    elapsed = time.monotonic() - start
    assert events == []
    assert 0.9 <= elapsed < 4, elapsed


def test_watch_label_selector_moves(api_client, namespace):
    core = client.CoreV1Api(api_client)
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    watcher = Collector(core.list_namespaced_config_map, namespace, resource_version=rv, label_selector="sel=yes")
    core.create_namespaced_config_map(namespace, m.configmap("mover", namespace, {"sel": "yes"}))
    core.create_namespaced_config_map(namespace, m.configmap("never", namespace, {"sel": "no"}))
    core.patch_namespaced_config_map("mover", namespace, {"data": {"k": "changed"}})
    core.patch_namespaced_config_map("mover", namespace, {"metadata": {"labels": {"sel": "no"}}})  # leaves
    core.patch_namespaced_config_map("never", namespace, {"data": {"k": "changed"}})  # never matched
    core.patch_namespaced_config_map("mover", namespace, {"metadata": {"labels": {"sel": "yes"}}})  # comes back
    core.delete_namespaced_config_map("mover", namespace)
    core.create_namespaced_config_map(namespace, m.configmap("zz-stop", namespace, {"sel": "yes"}))
    assert watcher.join() == [("ADDED", "mover"), ("MODIFIED", "mover"), ("DELETED", "mover"), ("ADDED", "mover"),
                              ("DELETED", "mover"), ("ADDED", "zz-stop")]
    # The DELETED of an object leaving the selector carries its new state (labels no longer matching).
    assert watcher.events[2][2]["metadata"]["labels"] == {"sel": "no"}


def test_watch_from_compacted_resource_version_is_410(api_client, cluster, namespace):
    core = client.CoreV1Api(api_client)
    rv = core.create_namespaced_config_map(namespace, m.configmap("old", namespace)).metadata.resource_version
    core.patch_namespaced_config_map("old", namespace, {"data": {"k": "v2"}})
    cluster.backend.store.compact()
    with pytest.raises(client.ApiException) as exc:
        list(watch.Watch().stream(core.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=5))
    assert exc.value.status == 410
    assert "Expired" in str(exc.value.reason)
    # Relist and watch from the new resourceVersion works.
    fresh = core.list_namespaced_config_map(namespace).metadata.resource_version
    watcher = Collector(core.list_namespaced_config_map, namespace, resource_version=fresh)
    core.create_namespaced_config_map(namespace, m.configmap("zz-stop", namespace))
    assert watcher.join() == [("ADDED", "zz-stop")]


def test_watch_410_is_a_status_event_on_the_wire(raw, cluster, namespace, api_client):
    core = client.CoreV1Api(api_client)
    rv = core.create_namespaced_config_map(namespace, m.configmap("old", namespace)).metadata.resource_version
    core.patch_namespaced_config_map("old", namespace, {"data": {"k": "v2"}})
    cluster.backend.store.compact()
    r = raw.get(f"/api/v1/namespaces/{namespace}/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=3")
    assert r.status_code == 200
    lines = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0]["type"] == "ERROR"
    status = lines[0]["object"]
    assert status["kind"] == "Status" and status["code"] == 410 and status["reason"] == "Expired"
    assert "too old resource version" in status["message"]


def test_watch_custom_resources(api_client, namespace, widget_crds):
    custom = client.CustomObjectsApi(api_client)
    args = (m.CONF_GROUP, "v1", namespace, "widgets")
    rv = custom.list_namespaced_custom_object(*args)["metadata"]["resourceVersion"]
    watcher = Collector(custom.list_namespaced_custom_object, *args, resource_version=rv)
    custom.create_namespaced_custom_object(*args, m.widget("w1", namespace))
    custom.patch_namespaced_custom_object(*args, "w1", {"spec": {"color": "blue"}})
    custom.delete_namespaced_custom_object(*args, "w1")
    custom.create_namespaced_custom_object(*args, m.widget("zz-stop", namespace))
    assert watcher.join() == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1"), ("ADDED", "zz-stop")]
