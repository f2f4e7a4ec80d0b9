"""hcp.migration_objects on the simulated world (mgmt1 and mgmt2): what a migration copies, how it is
recreated on the destination (the real HyperShift/CAPI CRDs validate every object), and the teardown
that must never let the Cluster API terminate a worker's EC2 instance.

Each test makes SingleReplica hosted clusters of its own (one node each) and removes them after it."""

from __future__ import annotations

import base64
import uuid
from typing import Any, Callable, Iterator

import pytest
from kubernetes import client

from hcp.cluster_objects import SERVER_SET_METADATA
from hcp.migration_objects import (
    LABEL_OPERATION, MigrationObjects, MigrationObjectsError, collect_migration_objects, remove_hosted_cluster,
    restore_migration_objects,
)
from hcp.naming import new_operation_id
from hcpsim.world import World
from tests.conformance.util import wait_for

HS, HSV = "hypershift.openshift.io", "v1beta1"
CAPI, CAPIV = "cluster.x-k8s.io", "v1beta1"
NS = "clusters"


@pytest.fixture(scope="module")
def mgmt2_api(hcp_world: World) -> Iterator[client.ApiClient]:
    from kubernetes import config
    api = config.new_client_from_config(config_file=str(hcp_world.kubeconfig_path), context="mgmt2")
    yield api
    api.close()


def _hc(api: client.ApiClient, name: str) -> dict[str, Any] | None:
    try:
        return client.CustomObjectsApi(api).get_namespaced_custom_object(HS, HSV, NS, "hostedclusters", name)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _true(obj: dict[str, Any] | None, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True"
               for c in ((obj or {}).get("status") or {}).get("conditions") or [])


def _exists(read: Callable[[], Any]) -> bool:
    try:
        read()
        return True
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise


@pytest.fixture
def running_cluster(hcp_world: World, mgmt1_api: client.ApiClient,
                    mgmt2_api: client.ApiClient) -> Iterator[Callable[..., tuple[str, str]]]:
    """make(name=None) -> (name, clusterID): a SingleReplica hosted cluster on mgmt1, Available, its one
    machine Running. Whatever is left of it on either side is removed after the test."""
    made: list[str] = []

    def make(name: str | None = None) -> tuple[str, str]:
        name = name or f"m{uuid.uuid4().hex[:5]}"
        hcp_world.create_hosted_cluster(name, availability="SingleReplica")
        made.append(name)
        hc = wait_for(lambda: (lambda h: h if _true(h, "Available") else None)(_hc(mgmt1_api, name)),
                      f"{name} Available", timeout=90)
        cluster_id = hc["spec"]["clusterID"]
        wait_for(lambda: len(hcp_world.instances.running(cluster_id)) == 1, f"{name}'s machine running", timeout=60)
        wait_for(lambda: [m for m in client.CustomObjectsApi(mgmt1_api).list_namespaced_custom_object(
            CAPI, CAPIV, f"{NS}-{name}", "machines")["items"] if (m.get("status") or {}).get("phase") == "Running"],
            f"{name}'s Machine Running", timeout=60)
        return name, cluster_id

    yield make
    for name in made:
        for api in (mgmt2_api, mgmt1_api):
            remove_hosted_cluster(api, NS, name, timeout=60, secrets=[f"{name}-{s}" for s in (
                "pull-secret", "ssh-key", "etcd-encryption-key", "admin-kubeconfig")])


def _pause(api: client.ApiClient, name: str) -> None:
    """What the runbook does before collecting: HostedCluster and NodePool paused, the CAPI Cluster too."""
    custom = client.CustomObjectsApi(api)
    custom.patch_namespaced_custom_object(HS, HSV, NS, "hostedclusters", name, {"spec": {"pausedUntil": "true"}})
    custom.patch_namespaced_custom_object(HS, HSV, NS, "nodepools", name, {"spec": {"pausedUntil": "true"}})
    wait_for(lambda: all((c.get("spec") or {}).get("paused") for c in custom.list_namespaced_custom_object(
        CAPI, CAPIV, f"{NS}-{name}", "clusters")["items"]), "the CAPI Cluster paused by the operator")


def _walk_metadata(obj: dict[str, Any]) -> list[str]:
    """What a create must not carry: server-set metadata, owner references, finalizers, status."""
    meta = obj["metadata"]
    bad = [f"metadata.{k}" for k in (*SERVER_SET_METADATA, "ownerReferences", "finalizers") if k in meta]
    return bad + (["status"] if "status" in obj else [])


def test_collect_takes_this_clusters_objects_only(hcp_world: World, mgmt1_api: client.ApiClient,
                                                  running_cluster: Callable[..., tuple[str, str]]) -> None:
    name, _ = running_cluster()
    lookalike, _ = running_cluster(f"{name}-2")  # its secrets are named `<name>-2-...`: `<name>-*` too
    core = client.CoreV1Api(mgmt1_api)
    data = {"k": base64.b64encode(b"v").decode()}
    core.create_namespaced_secret(NS, {"metadata": {"name": f"{name}-notes"}, "data": data})
    core.create_namespaced_secret(NS, {"metadata": {"name": f"{name}x-notes"}, "data": data})  # not `<name>-`
    try:
        wait_for(lambda: _exists(lambda: core.read_namespaced_secret(f"{name}-admin-kubeconfig", NS)), "admin kubeconfig")
        objs = collect_migration_objects(mgmt1_api, NS, name)
    finally:
        for s in (f"{name}-notes", f"{name}x-notes"):
            core.delete_namespaced_secret(s, NS)

    assert (objs.namespace, objs.name, objs.control_plane_namespace) == (NS, name, f"{NS}-{name}")
    assert sorted(s["metadata"]["name"] for s in objs.secrets) == sorted(
        f"{name}-{s}" for s in ("admin-kubeconfig", "etcd-encryption-key", "notes", "pull-secret", "ssh-key"))
    assert objs.shared_secrets == [] and len(objs.own_secret_names()) == 5
    assert not [s for s in objs.secrets if s["metadata"]["name"].startswith(lookalike)]
    # The control-plane secrets, minus what the destination's controllers make (the page's egrep -v).
    source_cp = {s.metadata.name: s for s in core.list_namespaced_secret(f"{NS}-{name}").items}
    kept = {s["metadata"]["name"] for s in objs.control_plane_secrets}
    assert kept and kept <= set(source_cp)
    assert "pull-secret" in source_cp and "pull-secret" not in kept  # kubernetes.io/dockerconfigjson
    assert all(s["data"] == (source_cp[s["metadata"]["name"]].data or {}) for s in objs.control_plane_secrets)

    counts = objs.counts()
    assert {k: counts[k] for k in ("HostedCluster", "NodePool", "HostedControlPlane", "Cluster", "AWSCluster",
                                   "AWSMachine", "Machine", "MachineSet", "MachineDeployment")} == {
        "HostedCluster": 1, "NodePool": 1, "HostedControlPlane": 1, "Cluster": 1, "AWSCluster": 1, "AWSMachine": 1,
        "Machine": 1, "MachineSet": 1, "MachineDeployment": 1}
    assert counts["AWSMachineTemplate"] >= 1
    assert counts["Secret"] == len(objs.secrets) + len(objs.control_plane_secrets)
    kinds = [o["kind"] for o in objs.control_plane]
    assert kinds == sorted(kinds, key=["HostedControlPlane", "Cluster", "AWSCluster", "AWSMachineTemplate",
                                       "AWSMachine", "Machine", "MachineSet", "MachineDeployment"].index)
    # Nothing the server set, no status; the pause is not carried (the HC was not paused here anyway).
    every = [objs.hosted_cluster, *objs.node_pools, *objs.secrets, *objs.control_plane_secrets, *objs.control_plane]
    assert {f"{o['kind']} {o['metadata']['name']}": _walk_metadata(o) for o in every if _walk_metadata(o)} == {}
    assert all(o["metadata"]["namespace"] == f"{NS}-{name}" for o in [*objs.control_plane, *objs.control_plane_secrets])
    assert objs.hosted_cluster["spec"]["clusterID"] and "pausedUntil" not in objs.hosted_cluster["spec"]
    # Cluster API objects as stored (v1beta1), CAPA ones as v1beta2.
    assert {o["apiVersion"] for o in objs.control_plane if o["kind"] in ("Cluster", "Machine", "MachineSet")} == {
        "cluster.x-k8s.io/v1beta1"}
    # What the runbook writes to S3 reads back the same.
    assert MigrationObjects.model_validate_json(objs.model_dump_json()) == objs

    # The lookalike's own collection does not take the first cluster's secrets either.
    other = collect_migration_objects(mgmt1_api, NS, lookalike)
    assert all(s["metadata"]["name"].startswith(f"{lookalike}-") for s in other.secrets)


def test_collect_says_what_is_missing(hcp_world: World, mgmt1_api: client.ApiClient,
                                      mgmt2_api: client.ApiClient) -> None:
    with pytest.raises(MigrationObjectsError, match=r"hosted cluster clusters/nosuch not found .*oc get hostedclusters"):
        collect_migration_objects(mgmt1_api, NS, "nosuch")
    # A HostedCluster whose control plane was never made (mgmt2's operator stopped): no HostedControlPlane.
    apps, custom = client.AppsV1Api(mgmt2_api), client.CustomObjectsApi(mgmt2_api)
    core = client.CoreV1Api(mgmt2_api)
    name = f"x{uuid.uuid4().hex[:5]}"
    apps.patch_namespaced_deployment_scale("operator", "hypershift", {"spec": {"replicas": 0}})
    created_ns = not _exists(lambda: core.read_namespace(NS))
    try:
        wait_for(lambda: not (apps.read_namespaced_deployment("operator", "hypershift").status.ready_replicas or 0),
                 "mgmt2's operator down")
        from hcpsim.manifests import hosted_cluster
        if created_ns:
            core.create_namespace({"metadata": {"name": NS}})
        hc = hosted_cluster(name, NS)
        for ref in ("pullSecret", "sshKey"):
            core.create_namespaced_secret(NS, {"metadata": {"name": hc["spec"][ref]["name"]},
                                               "data": {"k": base64.b64encode(b"v").decode()}})
        hc["spec"].pop("secretEncryption", None)
        custom.create_namespaced_custom_object(HS, HSV, NS, "hostedclusters", hc)
        with pytest.raises(MigrationObjectsError, match=rf"no HostedControlPlane {NS}-{name}/{name} .*oc -n {NS}-{name}"):
            collect_migration_objects(mgmt2_api, NS, name)
        core.delete_namespaced_secret(hc["spec"]["sshKey"]["name"], NS)
        with pytest.raises(MigrationObjectsError, match=rf"{name}-ssh-key \(SSH key \(spec.sshKey\)\)"):
            collect_migration_objects(mgmt2_api, NS, name)
    finally:
        custom.delete_namespaced_custom_object(HS, HSV, NS, "hostedclusters", name)
        core.delete_namespaced_secret(f"{name}-pull-secret", NS)
        apps.patch_namespaced_deployment_scale("operator", "hypershift", {"spec": {"replicas": 1}})
        if created_ns:
            core.delete_namespace(NS)


def test_restore_on_mgmt2_resumes_refuses_foreign_objects_and_rolls_back(
        hcp_world: World, mgmt1_api: client.ApiClient, mgmt2_api: client.ApiClient,
        running_cluster: Callable[..., tuple[str, str]]) -> None:
    name, cluster_id = running_cluster()
    cp = f"{NS}-{name}"
    instances = {i.instance_id for i in hcp_world.instances.running(cluster_id)}
    _pause(mgmt1_api, name)
    objs = collect_migration_objects(mgmt1_api, NS, name)
    s3 = hcp_world.aws.client("s3")
    s3.put_object(Bucket=hcp_world.settings.bucket, Key=f"migration-test/{name}-snapshot.db", Body=b"not restored here")
    url = s3.generate_presigned_url("get_object", ExpiresIn=3600, Params={
        "Bucket": hcp_world.settings.bucket, "Key": f"migration-test/{name}-snapshot.db"})
    core2, custom2 = client.CoreV1Api(mgmt2_api), client.CustomObjectsApi(mgmt2_api)

    # An object of the same name that this operation did not create: refused, nothing created.
    op = new_operation_id()
    if not _exists(lambda: core2.read_namespace(NS)):
        core2.create_namespace({"metadata": {"name": NS}})  # as if made by hand
    foreign = {"metadata": {"name": f"{name}-ssh-key"}, "data": {"k": base64.b64encode(b"someone's").decode()}}
    core2.create_namespaced_secret(NS, foreign)
    with pytest.raises(MigrationObjectsError, match=rf"Secret {NS}/{name}-ssh-key already exists .*\(no hcp-runbooks/"
                                                    rf"operation label\), not by {op}"):
        restore_migration_objects(mgmt2_api, objs, url, operation_id=op)
    assert not _exists(lambda: core2.read_namespace(cp))
    assert [s.metadata.name for s in core2.list_namespaced_secret(NS).items if s.metadata.name.startswith(name)] == [
        f"{name}-ssh-key"]
    assert base64.b64decode(core2.read_namespaced_secret(f"{name}-ssh-key", NS).data["k"]) == b"someone's"
    core2.delete_namespaced_secret(f"{name}-ssh-key", NS)

    # Killed half-way (after the first Machine): the destination holds part of the objects.
    journal: list[str] = []

    def kill_at_machine(what: str) -> None:
        journal.append(what)
        if what.startswith("created Machine "):
            raise KeyboardInterrupt("killed")
    with pytest.raises(KeyboardInterrupt):
        restore_migration_objects(mgmt2_api, objs, url, operation_id=op, on_created=kill_at_machine)
    assert journal[0] == f"created Namespace {cp}" and journal[-1].startswith("created Machine ")
    assert _hc(mgmt2_api, name) is None
    machines = custom2.list_namespaced_custom_object(CAPI, CAPIV, cp, "machines")["items"]
    assert len(machines) == 1 and machines[0]["metadata"]["labels"][LABEL_OPERATION] == op
    # Another operation's rollback leaves it alone.
    assert all(line.startswith("left ") for line in remove_hosted_cluster(mgmt2_api, NS, name, timeout=30,
                                                                         only_operation=new_operation_id()))
    assert _exists(lambda: core2.read_namespace(cp))
    # Its own removes all of it, and no instance is terminated (the restored AWSMachine names it).
    done = remove_hosted_cluster(mgmt2_api, NS, name, timeout=60, only_operation=op, secrets=objs.own_secret_names())
    assert f"Namespace {cp} gone" in done and not any(line.startswith("left ") for line in done), done
    assert not _exists(lambda: core2.read_namespace(cp))
    assert not [s for s in core2.list_namespaced_secret(NS).items if s.metadata.name.startswith(f"{name}-")]
    assert {i.instance_id for i in hcp_world.instances.running(cluster_id)} == instances

    # The whole restore, then a re-run of the same operation: nothing changes.
    op = new_operation_id()
    created = restore_migration_objects(mgmt2_api, objs, url, operation_id=op)
    assert created[-2:] == [f"created HostedCluster {NS}/{name}", f"created NodePool {NS}/{name}"]
    versions = {line: None for line in created}
    hc2 = _hc(mgmt2_api, name)
    hcp2 = custom2.get_namespaced_custom_object(HS, HSV, cp, "hostedcontrolplanes", name)
    # The real CRDs took both with exactly one restoreSnapshotURL; no pause carried over.
    assert hc2["spec"]["etcd"]["managed"]["storage"]["restoreSnapshotURL"] == [url]
    assert hcp2["spec"]["etcd"]["managed"]["storage"]["restoreSnapshotURL"] == [url]
    assert "pausedUntil" not in hc2["spec"] and hc2["spec"]["clusterID"] == cluster_id
    assert "pausedUntil" not in custom2.get_namespaced_custom_object(HS, HSV, NS, "nodepools", name)["spec"]
    assert hc2["metadata"]["labels"][LABEL_OPERATION] == op
    assert core2.read_namespace(cp).metadata.labels[LABEL_OPERATION] == op

    def identities() -> dict[str, tuple[str, int | None]]:
        """uid (and spec generation) of what the restore made: the same objects, their specs untouched
        (status and the operator's own writes move resourceVersions)."""
        out = {f"Secret {s.metadata.name}": (s.metadata.uid, None) for s in core2.list_namespaced_secret(NS).items
               if s.metadata.name.startswith(f"{name}-")}
        for plural in ("nodepools", "hostedclusters"):
            out |= {f"{plural} {o['metadata']['name']}": (o["metadata"]["uid"], o["metadata"]["generation"])
                    for o in custom2.list_namespaced_custom_object(HS, HSV, NS, plural)["items"]}
        for o in custom2.list_namespaced_custom_object(CAPI, CAPIV, cp, "machines")["items"]:
            out[f"Machine {o['metadata']['name']}"] = (o["metadata"]["uid"], o["metadata"]["generation"])
        return out
    before = identities()
    again: list[str] = []
    rerun = restore_migration_objects(mgmt2_api, objs, url, operation_id=op, on_created=again.append)
    assert again == [] and all(line.endswith(f"(already created by {op})") for line in rerun) and len(rerun) == len(versions)
    assert identities() == before

    # The destination runs the control plane; the rollback still terminates nothing.
    wait_for(lambda: _exists(lambda: client.AppsV1Api(mgmt2_api).read_namespaced_deployment("cluster-api", cp)),
             "mgmt2's operator making the control plane", timeout=30)
    done = remove_hosted_cluster(mgmt2_api, NS, name, timeout=60, only_operation=op, secrets=objs.own_secret_names())
    assert done.index(f"paused HostedCluster {NS}/{name}") < done.index(f"every Deployment and StatefulSet pod of {cp} gone") \
        < done.index(f"deleted NodePool {NS}/{name} (finalizers removed first)") < done.index(f"Namespace {cp} gone") \
        < done.index(f"deleted HostedCluster {NS}/{name} (finalizers removed first)"), done
    assert _hc(mgmt2_api, name) is None and not _exists(lambda: core2.read_namespace(cp))
    assert not [s for s in core2.list_namespaced_secret(NS).items if s.metadata.name.startswith(f"{name}-")] \
        if _exists(lambda: core2.read_namespace(NS)) else True
    assert {i.instance_id for i in hcp_world.instances.running(cluster_id)} == instances
    # The source is as it was: paused, its machine there.
    assert _hc(mgmt1_api, name)["spec"]["pausedUntil"] == "true"
    assert len(client.CustomObjectsApi(mgmt1_api).list_namespaced_custom_object(CAPI, CAPIV, cp, "machines")["items"]) == 1


def test_source_teardown_leaves_nothing_of_the_cluster_and_the_others_untouched(
        hcp_world: World, mgmt1_api: client.ApiClient, running_cluster: Callable[..., tuple[str, str]]) -> None:
    name, cluster_id = running_cluster()
    other, other_id = running_cluster(f"{name}-2")
    cp = f"{NS}-{name}"
    core, custom = client.CoreV1Api(mgmt1_api), client.CustomObjectsApi(mgmt1_api)
    instances = {i.instance_id for i in hcp_world.instances.running(cluster_id)}
    other_instances = {i.instance_id for i in hcp_world.instances.running(other_id)}
    other_hc = _hc(mgmt1_api, other)
    other_secrets = {s.metadata.name for s in core.list_namespaced_secret(NS).items if s.metadata.name.startswith(f"{other}-")}
    other_cp = {o["metadata"]["name"] for o in custom.list_namespaced_custom_object(CAPI, CAPIV, f"{NS}-{other}", "machines")["items"]}
    _pause(mgmt1_api, name)
    objs = collect_migration_objects(mgmt1_api, NS, name)

    done = remove_hosted_cluster(mgmt1_api, NS, name, timeout=60, secrets=objs.own_secret_names())
    assert done[0] == f"paused NodePool {NS}/{name}" or done[0].startswith("scaled to 0"), done  # the HC was paused
    assert f"Namespace {cp} gone" in done and done[-1].startswith(f"kept Namespace {NS}: it holds ") \
        and f"HostedCluster {other}" in done[-1], done
    # The hypershift operator, if the teardown had to stop it for the HostedCluster's delete, runs again.
    assert client.AppsV1Api(mgmt1_api).read_namespaced_deployment("operator", "hypershift").spec.replicas == 1
    assert _hc(mgmt1_api, name) is None and not _exists(lambda: core.read_namespace(cp))
    assert not [p for p in custom.list_namespaced_custom_object(HS, HSV, NS, "nodepools")["items"]
                if p["spec"]["clusterName"] == name]
    assert not [s.metadata.name for s in core.list_namespaced_secret(NS).items if s.metadata.name.startswith(f"{name}-")
                and not s.metadata.name.startswith(f"{other}-")]
    # Its worker keeps running (the migrated control plane adopts it), and the other cluster is as it was.
    assert {i.instance_id for i in hcp_world.instances.running(cluster_id)} == instances
    assert {i.instance_id for i in hcp_world.instances.running(other_id)} == other_instances
    now = _hc(mgmt1_api, other)
    assert now["metadata"]["uid"] == other_hc["metadata"]["uid"] and _true(now, "Available")
    assert {s.metadata.name for s in core.list_namespaced_secret(NS).items if s.metadata.name.startswith(f"{other}-")} \
        == other_secrets
    assert {o["metadata"]["name"] for o in custom.list_namespaced_custom_object(
        CAPI, CAPIV, f"{NS}-{other}", "machines")["items"]} == other_cp
    # Idempotent: a second run finds nothing to do.
    again = remove_hosted_cluster(mgmt1_api, NS, name, timeout=30, secrets=objs.own_secret_names())
    assert len(again) == 1 and again[0].startswith(f"kept Namespace {NS}: it holds "), again
