"""The simulated HyperShift operator, driven through the API as an SRE drives a real one."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import yaml
from kubernetes import client, config

from hcpsim.world import World
from tests.world.conftest import wait_for

HS = ("hypershift.openshift.io", "v1beta1")


def _hc(api: client.ApiClient, name: str, ns: str = "clusters") -> dict:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(*HS, ns, "hostedclusters", name)


def _cond(obj: dict, ctype: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == ctype), {})


def test_hosted_cluster_is_available_with_its_control_plane(world: World, mgmt1: client.ApiClient) -> None:
    hc = wait_for(lambda: (lambda h: h if h["status"]["version"]["history"][0]["state"] == "Completed" else None)(
        _hc(mgmt1, "demo")), "the first version completed", timeout=30)
    assert _cond(hc, "Available")["status"] == "True"
    assert _cond(hc, "ReconciliationActive")["status"] == "True"
    assert "hypershift.openshift.io/finalizer" in hc["metadata"]["finalizers"]
    assert hc["status"]["version"]["history"][0]["state"] == "Completed"
    core, apps = client.CoreV1Api(mgmt1), client.AppsV1Api(mgmt1)
    ns = core.read_namespace("clusters-demo")
    assert ns.metadata.labels["hypershift.openshift.io/hosted-control-plane"] == "true"
    deployments = {d.metadata.name: d for d in apps.list_namespaced_deployment("clusters-demo").items}
    for name in ("kube-apiserver", "openshift-apiserver", "openshift-oauth-apiserver", "control-plane-operator",
                 "cluster-version-operator"):
        assert deployments[name].status.ready_replicas == deployments[name].spec.replicas
    assert deployments["kube-apiserver"].spec.replicas == 1  # SingleReplica
    hcp = client.CustomObjectsApi(mgmt1).get_namespaced_custom_object(*HS, "clusters-demo", "hostedcontrolplanes", "demo")
    assert hcp["spec"]["releaseImage"] == hc["spec"]["release"]["image"]
    cluster = client.CustomObjectsApi(mgmt1).list_namespaced_custom_object("cluster.x-k8s.io", "v1beta1", "clusters-demo", "clusters")
    assert [c["metadata"]["name"] for c in cluster["items"]] == [hc["spec"]["infraID"]]
    cm = core.read_namespaced_config_map("supported-versions", "hypershift")
    assert cm.metadata.labels["hypershift.openshift.io/supported-versions"] == "true"
    assert apps.read_namespaced_deployment("operator", "hypershift").status.ready_replicas == 1


def test_admin_kubeconfig_reaches_the_hosted_cluster(world: World, mgmt1: client.ApiClient, tmp_path) -> None:
    secret = client.CoreV1Api(mgmt1).read_namespaced_secret("demo-admin-kubeconfig", "clusters")
    kubeconfig = tmp_path / "hosted.kubeconfig"
    kubeconfig.write_bytes(base64.b64decode(secret.data["kubeconfig"]))
    hosted = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        nodes = wait_for(lambda: [n for n in client.CoreV1Api(hosted).list_node().items
                                  if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])],
                         "a Ready node in the hosted cluster")
        assert nodes
        cv = client.CustomObjectsApi(hosted).get_cluster_custom_object("config.openshift.io", "v1", "clusterversions", "version")
        assert cv["metadata"]["name"] == "version"
    finally:
        hosted.close()
    assert _hc(mgmt1, "demo")["status"]["kubeconfig"]["name"] == "demo-admin-kubeconfig"


def test_api_hostname_published_in_route53(world: World) -> None:
    r53 = world.aws.client("route53")
    names = wait_for(lambda: {r["Name"] for r in r53.list_resource_record_sets(HostedZoneId=world.aws.zone_id)["ResourceRecordSets"]}
                     if "api-demo.hcp.example.com." in {r["Name"] for r in r53.list_resource_record_sets(
                         HostedZoneId=world.aws.zone_id)["ResourceRecordSets"]} else None, "API record")
    assert "api-demo.hcp.example.com." in names


def test_paused_cluster_is_not_reconciled(world: World, mgmt1: client.ApiClient, fresh_cluster) -> None:
    name = fresh_cluster()
    custom, apps = client.CustomObjectsApi(mgmt1), client.AppsV1Api(mgmt1)
    cp = f"clusters-{name}"
    wait_for(lambda: _cond(_hc(mgmt1, name), "Available").get("status") == "True", "cluster available", timeout=60)
    custom.patch_namespaced_custom_object(*HS, "clusters", "hostedclusters", name, {"spec": {"pausedUntil": "true"}})
    wait_for(lambda: _cond(_hc(mgmt1, name), "ReconciliationActive").get("reason") == "ReconciliationPaused", "paused condition")
    hcp = custom.get_namespaced_custom_object(*HS, cp, "hostedcontrolplanes", name)
    assert hcp["spec"]["pausedUntil"] == "true"
    capi = custom.list_namespaced_custom_object("cluster.x-k8s.io", "v1beta1", cp, "clusters")["items"][0]
    assert capi["spec"]["paused"] is True
    for deployment in ("control-plane-operator", "kube-apiserver"):
        apps.patch_namespaced_deployment_scale(deployment, cp, {"spec": {"replicas": 0}})
    apps.delete_namespaced_deployment("cluster-version-operator", cp)
    import time

    time.sleep(1.0)  # give a (wrong) scale-back every chance to happen
    assert apps.read_namespaced_deployment("kube-apiserver", cp).spec.replicas == 0
    assert apps.read_namespaced_deployment("control-plane-operator", cp).spec.replicas == 0
    assert "cluster-version-operator" not in [d.metadata.name for d in apps.list_namespaced_deployment(cp).items]
    # Unpaused: everything comes back.
    custom.patch_namespaced_custom_object(*HS, "clusters", "hostedclusters", name, {"spec": {"pausedUntil": None}})
    wait_for(lambda: apps.read_namespaced_deployment("kube-apiserver", cp).spec.replicas == 1, "kube-apiserver scaled back")
    wait_for(lambda: "cluster-version-operator" in [d.metadata.name for d in apps.list_namespaced_deployment(cp).items],
             "cluster-version-operator recreated")
    wait_for(lambda: _cond(_hc(mgmt1, name), "Available").get("status") == "True", "available again", timeout=60)
    assert _cond(_hc(mgmt1, name), "ReconciliationActive")["status"] == "True"


def test_paused_until_a_time_resumes_by_itself(world: World, mgmt1: client.ApiClient, fresh_cluster) -> None:
    name = fresh_cluster()
    custom = client.CustomObjectsApi(mgmt1)
    until = (datetime.now(timezone.utc) + timedelta(seconds=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
    custom.patch_namespaced_custom_object(*HS, "clusters", "hostedclusters", name, {"spec": {"pausedUntil": until}})
    wait_for(lambda: _cond(_hc(mgmt1, name), "ReconciliationActive").get("status") == "False", "paused")
    wait_for(lambda: _cond(_hc(mgmt1, name), "ReconciliationActive").get("status") == "True", "resumed", timeout=20)


def test_paused_from_creation_reports_conditions_without_a_version(world: World, mgmt1: client.ApiClient) -> None:
    """Paused before the operator ever accepted a release: status carries conditions but no
    version (the schema requires version.desired); unpausing brings the first version in."""
    from hcpsim.manifests import hosted_cluster
    name = f"p{datetime.now().strftime('%H%M%S%f')[-6:]}"
    hc = hosted_cluster(name, "clusters", availability="SingleReplica")
    hc["spec"]["pausedUntil"] = "true"
    custom = client.CustomObjectsApi(mgmt1)
    custom.create_namespaced_custom_object(*HS, "clusters", "hostedclusters", hc)
    paused = wait_for(lambda: (lambda h: h if _cond(h, "ReconciliationActive").get("status") == "False" else None)(
        _hc(mgmt1, name)), "paused conditions")
    assert "version" not in paused["status"]
    custom.patch_namespaced_custom_object(*HS, "clusters", "hostedclusters", name, {"spec": {"pausedUntil": None}})
    wait_for(lambda: ((_hc(mgmt1, name).get("status") or {}).get("version") or {}).get("desired", {}).get("image")
             == hc["spec"]["release"]["image"], "first version desired after unpausing")
    custom.delete_namespaced_custom_object(*HS, "clusters", "hostedclusters", name)


def test_upgrade_records_history(world: World, mgmt1: client.ApiClient, fresh_cluster) -> None:
    name = fresh_cluster()
    custom = client.CustomObjectsApi(mgmt1)
    wait_for(lambda: (_hc(mgmt1, name).get("status") or {}).get("version", {}).get("history", [{}])[0].get("state") == "Completed",
             "first version completed", timeout=60)
    target = "quay.io/openshift-release-dev/ocp-release:4.18.2-x86_64"
    custom.patch_namespaced_custom_object(*HS, "clusters", "hostedclusters", name, {"spec": {"release": {"image": target}}})
    hc = wait_for(lambda: (lambda h: h if h["status"]["version"]["desired"]["image"] == target else None)(_hc(mgmt1, name)),
                  "desired follows the new image")
    assert hc["status"]["version"]["history"][0]["state"] == "Partial"
    assert _cond(hc, "Progressing")["status"] == "True"
    hc = wait_for(lambda: (lambda h: h if h["status"]["version"]["history"][0]["state"] == "Completed" else None)(_hc(mgmt1, name)),
                  "upgrade completed", timeout=30)
    assert [h["version"] for h in hc["status"]["version"]["history"]][:2] == ["4.18.2", "4.17.9"]
    assert _cond(hc, "Progressing")["status"] == "False"
    hcp = custom.get_namespaced_custom_object(*HS, f"clusters-{name}", "hostedcontrolplanes", name)
    assert hcp["spec"]["releaseImage"] == target


def test_unsupported_release_is_refused(world: World, mgmt1: client.ApiClient, fresh_cluster) -> None:
    name = fresh_cluster()
    custom = client.CustomObjectsApi(mgmt1)
    wait_for(lambda: (_hc(mgmt1, name).get("status") or {}).get("version"), "version recorded", timeout=60)
    before = _hc(mgmt1, name)["status"]["version"]["desired"]["image"]
    custom.patch_namespaced_custom_object(*HS, "clusters", "hostedclusters", name,
                                          {"spec": {"release": {"image": "quay.io/openshift-release-dev/ocp-release:4.99.0-x86_64"}}})
    hc = wait_for(lambda: (lambda h: h if _cond(h, "ValidReleaseImage").get("status") == "False" else None)(_hc(mgmt1, name)),
                  "ValidReleaseImage=False")
    assert "4.99.0" in _cond(hc, "ValidReleaseImage")["message"]
    assert hc["status"]["version"]["desired"]["image"] == before


def test_deleting_a_hosted_cluster_removes_its_control_plane(world: World, mgmt1: client.ApiClient, fresh_cluster) -> None:
    name = fresh_cluster()
    custom, core = client.CustomObjectsApi(mgmt1), client.CoreV1Api(mgmt1)
    wait_for(lambda: _cond(_hc(mgmt1, name), "Available").get("status") == "True", "available", timeout=60)
    custom.delete_namespaced_custom_object(*HS, "clusters", "hostedclusters", name)

    def gone() -> bool:
        try:
            _hc(mgmt1, name)
            return False
        except client.ApiException as e:
            return e.status == 404

    wait_for(gone, "HostedCluster gone", timeout=60)
    wait_for(lambda: f"clusters-{name}" not in [n.metadata.name for n in core.list_namespace().items], "namespace gone", timeout=60)


def test_not_upgradeable_cluster_needs_force_upgrade_to(world: World, mgmt1: client.ApiClient, fresh_cluster,
                                                        tmp_path) -> None:
    name = fresh_cluster()
    custom, core = client.CustomObjectsApi(mgmt1), client.CoreV1Api(mgmt1)
    wait_for(lambda: (_hc(mgmt1, name).get("status") or {}).get("version", {}).get("history", [{}])[0].get("state") == "Completed",
             "first version completed", timeout=60)
    secret = core.read_namespaced_secret(f"{name}-admin-kubeconfig", "clusters")
    kubeconfig = tmp_path / "hosted"
    kubeconfig.write_bytes(base64.b64decode(secret.data["kubeconfig"]))
    hosted = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        # An operator inside the hosted cluster says it cannot be upgraded (the CVO's Upgradeable=False).
        hosted_custom = client.CustomObjectsApi(hosted)
        cv = hosted_custom.get_cluster_custom_object("config.openshift.io", "v1", "clusterversions", "version")
        conditions = [c for c in cv["status"]["conditions"] if c["type"] != "Upgradeable"] + [{
            "type": "Upgradeable", "status": "False", "reason": "AdminAckRequired",
            "message": "Kubernetes 1.31 removes APIs in use", "lastTransitionTime": "2026-11-26T00:00:00Z"}]
        hosted_custom.patch_cluster_custom_object_status("config.openshift.io", "v1", "clusterversions", "version",
                                                         {"status": {"conditions": conditions}})
    finally:
        hosted.close()
    wait_for(lambda: _cond(_hc(mgmt1, name), "ClusterVersionUpgradeable").get("status") == "False", "Upgradeable=False seen")
    before = _hc(mgmt1, name)["status"]["version"]["desired"]["image"]
    target = "quay.io/openshift-release-dev/ocp-release:4.17.12-x86_64"
    custom.patch_namespaced_custom_object(*HS, "clusters", "hostedclusters", name, {"spec": {"release": {"image": target}}})
    hc = wait_for(lambda: (lambda h: h if _cond(h, "ValidReleaseImage").get("status") == "False" else None)(_hc(mgmt1, name)),
                  "the upgrade refused")
    assert "force-upgrade-to" in _cond(hc, "ValidReleaseImage")["message"]
    assert hc["status"]["version"]["desired"]["image"] == before
    custom.patch_namespaced_custom_object(*HS, "clusters", "hostedclusters", name,
                                          {"metadata": {"annotations": {"hypershift.openshift.io/force-upgrade-to": target}}})
    wait_for(lambda: _hc(mgmt1, name)["status"]["version"]["desired"]["image"] == target, "the forced upgrade started")
