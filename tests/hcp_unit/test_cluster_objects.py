"""hcp.cluster_objects: cleaning objects for re-creation, and reading documents back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hcp import cluster_objects as co
from hcp.backup_manifest import load

HC_READ: dict[str, Any] = {
    "apiVersion": "hypershift.openshift.io/v1beta1", "kind": "HostedCluster",
    "metadata": {
        "name": "prod", "namespace": "clusters", "uid": "0b9c", "resourceVersion": "812", "generation": 4,
        "creationTimestamp": "2026-01-02T03:04:05Z", "managedFields": [{"manager": "kubectl"}],
        "finalizers": ["hypershift.openshift.io/finalizer"],
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "1"}],
        "labels": {"team": "a", "hcp-runbooks/operation-id": "op-20260101T000000Z-000000"},
        "annotations": {"note": "mine", "hcp-runbooks/restored-from": "s3://b/x/"},
    },
    "spec": {"release": {"image": "img"}, "pausedUntil": "true", "clusterID": "c-1"},
    "status": {"conditions": [{"type": "Available", "status": "True"}]},
}
NP_READ: dict[str, Any] = {
    "apiVersion": "hypershift.openshift.io/v1beta1", "kind": "NodePool",
    "metadata": {"name": "prod", "namespace": "clusters", "uid": "u2", "resourceVersion": "9",
                 "annotations": {"hypershift.openshift.io/nodePoolCurrentConfig": "abc",
                                 "hypershift.openshift.io/nodePoolPlatformMachineTemplate": "prod-1",
                                 "user/keep": "yes"}},
    "spec": {"clusterName": "prod", "replicas": 2},
    "status": {"replicas": 2},
}


def test_server_set_metadata_status_finalizers_owners_and_own_labels_go() -> None:
    out = co.clean_for_recreate(HC_READ)
    assert out["metadata"] == {"name": "prod", "namespace": "clusters", "labels": {"team": "a"},
                               "annotations": {"note": "mine"}}
    assert "status" not in out
    assert out["spec"] == HC_READ["spec"]  # the user's spec, pausedUntil included, unchanged
    assert HC_READ["metadata"]["uid"] == "0b9c" and "status" in HC_READ  # the input is untouched


def test_operator_bookkeeping_annotations_of_a_nodepool_go_the_users_stay() -> None:
    out = co.clean_for_recreate(NP_READ)
    assert out["metadata"]["annotations"] == {"user/keep": "yes"}
    assert "status" not in out and out["spec"] == NP_READ["spec"]


def test_any_kind_is_cleaned_and_a_policy_can_keep_status() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "d", "resourceVersion": "1", "annotations": {"deployment.kubernetes.io/revision": "3"}},
                  "spec": {"replicas": 1}, "status": {"replicas": 1}}
    out = co.clean_for_recreate(deployment, co.CleanPolicy(status=False, annotations=frozenset(
        {"deployment.kubernetes.io/revision"})))
    assert out == {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 1},
                   "status": {"replicas": 1}}
    with pytest.raises(co.ClusterObjectsError, match="metadata.name"):
        co.clean_for_recreate({"kind": "ConfigMap", "metadata": {}})


def test_the_pause_a_backup_set_is_replaced_by_the_users_original() -> None:
    objects = co.HostedClusterObjects(HC_READ, [NP_READ])
    assert "pausedUntil" not in co.cleaned_for_backup(objects, None).hosted_cluster["spec"]
    assert co.cleaned_for_backup(objects, "2030-01-01T00:00:00Z").hosted_cluster["spec"]["pausedUntil"] == \
        "2030-01-01T00:00:00Z"
    assert co.cleaned_for_backup(objects).hosted_cluster["spec"]["pausedUntil"] == "true"  # the user's own pause


def test_documents_round_trip_as_a_list_and_parse_from_yaml() -> None:
    objects = co.cleaned_for_backup(co.HostedClusterObjects(HC_READ, [NP_READ]))
    text = co.to_json(objects.to_document())
    back = co.HostedClusterObjects.from_documents(co.parse_documents(text))
    assert back == objects
    yaml_text = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: clusters}\n---\n" + \
        json.dumps(objects.hosted_cluster) + "\n"
    docs = co.parse_documents(yaml_text)
    assert [d["kind"] for d in docs] == ["Namespace", "HostedCluster"]
    assert co.HostedClusterObjects.from_documents(docs).node_pools == []


@pytest.mark.parametrize("text, problem", [
    ("kind: [", "neither JSON nor YAML"),
    ("- a\n- b\n", "not a Kubernetes object"),
    ("kind: ConfigMap\nmetadata: {}\n", "no metadata.name"),
])
def test_bad_documents_are_refused(text: str, problem: str) -> None:
    with pytest.raises(co.ClusterObjectsError, match=problem):
        co.parse_documents(text)


def test_exactly_one_hosted_cluster_and_only_its_nodepools() -> None:
    with pytest.raises(co.ClusterObjectsError, match="exactly one HostedCluster"):
        co.HostedClusterObjects.from_documents([NP_READ])
    stranger = {**NP_READ, "spec": {"clusterName": "other"}}
    with pytest.raises(co.ClusterObjectsError, match="do not belong"):
        co.HostedClusterObjects.from_documents([HC_READ, stranger])


def _manifest(**extra: Any) -> dict[str, Any]:
    prefix = "p/mgmt1/clusters/prod/20260101T000000Z-op-20260101T000000Z-0a1b2c/"
    t = "2026-01-01T00:00:00Z"
    return {"schema_version": "1", "operation_id": "op-20260101T000000Z-0a1b2c", "management_cluster": "mgmt1",
            "namespace": "clusters", "name": "prod", "uid": "u", "release_image": "i", "release_version": "4.17.9",
            "member": "etcd-0", "revision": 5, "hash": 1, "total_keys": 9, "size_bytes": 100, "sha256": "a" * 64,
            "snapshot_key": prefix + "etcd-snapshot.db", "object_keys": [prefix + "etcd-snapshot.db"],
            "encryption_key_object": None, "mode": "online", "downtime_seconds": 0.0, "tool_versions": {"a": "b"},
            "timings": {k: t for k in ("started_at", "snapshot_started_at", "snapshot_finished_at",
                                       "upload_finished_at", "finished_at")}, **extra}


def test_manifests_without_cluster_objects_still_load_and_the_key_must_be_listed() -> None:
    assert load(json.dumps(_manifest())).cluster_objects_key is None
    prefix = _manifest()["snapshot_key"].rsplit("/", 1)[0] + "/"
    keys = [prefix + "etcd-snapshot.db", prefix + "cluster-objects.json"]
    ok = load(json.dumps(_manifest(object_keys=keys, cluster_objects_key=keys[1])))
    assert ok.cluster_objects_key == keys[1]
    with pytest.raises(ValueError, match="cluster_objects_key"):
        load(json.dumps(_manifest(cluster_objects_key=keys[1])))
