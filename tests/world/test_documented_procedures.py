"""The documented manual procedures, run by hand against the simulated world through kubectl and
the official client, with the results a real cluster gives: a quiesced etcd backup (pause, scale
the API servers down, snapshot in etcd-0, copy it out, restore it into a fresh data dir), the API
going away and coming back, and external DNS following the Routes."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client, config

from hcpsim.etcd import etcd_binary
from hcpsim.hypershift.etcd_writer import client_for_namespace
from hcpsim.world import World
from tests.conftest import KUBECTL
from tests.world.conftest import wait_for

HS = ("hypershift.openshift.io", "v1beta1")
ETCDCTL = ["env", "ETCDCTL_API=3", "/usr/bin/etcdctl", "--cacert", "/etc/etcd/tls/etcd-ca/ca.crt",
           "--cert", "/etc/etcd/tls/client/etcd-client.crt", "--key", "/etc/etcd/tls/client/etcd-client.key",
           "--endpoints=https://localhost:2379"]
WRITERS = ("kube-apiserver", "openshift-apiserver", "openshift-oauth-apiserver")


def _kubectl(world: World, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    if KUBECTL is None:
        pytest.skip("kubectl is not on PATH")
    result = subprocess.run([KUBECTL, "--kubeconfig", str(world.kubeconfig_path), "--context", "mgmt1", *args],
                            capture_output=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr.decode()}")
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_quiesced_backup_by_hand_holds_every_key(world: World, mgmt1: client.ApiClient, fresh_cluster, tmp_path: Path) -> None:
    name = fresh_cluster()
    cp = f"clusters-{name}"
    custom, apps = client.CustomObjectsApi(mgmt1), client.AppsV1Api(mgmt1)
    wait_for(lambda: _condition(custom.get_namespaced_custom_object(*HS, "clusters", "hostedclusters", name), "Available"),
             "cluster available", timeout=60)
    etcd = wait_for(lambda: client_for_namespace(world.cluster("mgmt1").backend, cp), "etcd client", timeout=60)
    wait_for(lambda: _count(etcd) >= 10, "the API servers writing keys", timeout=30)

    # 1. Pause reconciliation, 2. scale the writers to 0 (recording replicas).
    custom.patch_namespaced_custom_object(*HS, "clusters", "hostedclusters", name, {"spec": {"pausedUntil": "true"}})
    replicas = {d: apps.read_namespaced_deployment(d, cp).spec.replicas for d in WRITERS}
    for d in WRITERS:
        _kubectl(world, "-n", cp, "scale", f"deployment/{d}", "--replicas=0")
    wait_for(lambda: all(not (apps.read_namespaced_deployment(d, cp).status.ready_replicas or 0) for d in WRITERS),
             "writers down")
    time.sleep(0.3)
    keys_before = etcd.count("/registry/")
    time.sleep(0.5)
    assert etcd.count("/registry/") == keys_before, "writes continued with the API servers scaled to 0"

    # 3. Snapshot in etcd-0 exactly as documented, check it, copy it out.
    _kubectl(world, "-n", cp, "exec", "etcd-0", "-c", "etcd", "--", *ETCDCTL, "snapshot", "save", "/var/lib/data/snapshot.db")
    status = _kubectl(world, "-n", cp, "exec", "etcd-0", "-c", "etcd", "--", *ETCDCTL, "-w", "table",
                      "snapshot", "status", "/var/lib/data/snapshot.db").stdout.decode()
    assert "TOTAL KEYS" in status
    local = tmp_path / "snapshot.db"
    _kubectl(world, "-n", cp, "cp", "-c", "etcd", "etcd-0:/var/lib/data/snapshot.db", str(local))
    assert local.stat().st_size > 0

    # 4. Scale back to the recorded replicas and unpause: writes resume.
    for d, n in replicas.items():
        _kubectl(world, "-n", cp, "scale", f"deployment/{d}", f"--replicas={n}")
    custom.patch_namespaced_custom_object(*HS, "clusters", "hostedclusters", name, {"spec": {"pausedUntil": None}})
    wait_for(lambda: etcd.count("/registry/") > keys_before, "writes resumed", timeout=30)

    # 5. Restore the copy into a fresh data dir and count its keys with a throwaway etcd.
    data = tmp_path / "restored"
    subprocess.run([str(etcd_binary("etcdutl")), "snapshot", "restore", str(local), "--data-dir", str(data),
                    "--name", "etcd-0", "--initial-cluster-token", "etcd-cluster",
                    # Locally the member's name does not resolve (etcdutl 3.5.1 looks it up: etcd-io/etcd#14456).
                    "--initial-cluster", "etcd-0=http://127.0.0.1:2380",
                    "--initial-advertise-peer-urls", "http://127.0.0.1:2380"],
                   check=True, capture_output=True)
    client_port, peer_port = _free_port(), _free_port()
    proc = subprocess.Popen([str(etcd_binary("etcd")), "--data-dir", str(data), "--name", "etcd-0",
                             "--listen-client-urls", f"http://127.0.0.1:{client_port}",
                             "--advertise-client-urls", f"http://127.0.0.1:{client_port}",
                             "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                             "--initial-advertise-peer-urls", "http://127.0.0.1:2380"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def count() -> int | None:
            out = subprocess.run([str(etcd_binary("etcdctl")), f"--endpoints=http://127.0.0.1:{client_port}",
                                  "get", "/registry/", "--prefix", "--count-only", "-w", "fields"],
                                 capture_output=True, text=True)
            for line in out.stdout.splitlines():
                if line.startswith('"Count"'):
                    return int(line.split(":")[1])
            return None

        restored = wait_for(count, "the throwaway etcd answering", timeout=30)
        assert restored == keys_before
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_hosted_api_unavailable_while_scaled_down(world: World, mgmt1: client.ApiClient, fresh_cluster, tmp_path: Path) -> None:
    name = fresh_cluster()
    cp = f"clusters-{name}"
    custom, apps, core = client.CustomObjectsApi(mgmt1), client.AppsV1Api(mgmt1), client.CoreV1Api(mgmt1)
    secret = wait_for(lambda: _secret(core, f"{name}-admin-kubeconfig"), "admin kubeconfig", timeout=60)
    kubeconfig = tmp_path / "hosted"
    kubeconfig.write_bytes(base64.b64decode(secret.data["kubeconfig"]))
    hosted = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        def nodes() -> list:
            try:
                return client.CoreV1Api(hosted).list_node().items
            except client.ApiException:
                return []  # not served yet
        wait_for(nodes, "nodes in the hosted cluster", timeout=60)
        wait_for(lambda: (custom.get_namespaced_custom_object(*HS, "clusters", "nodepools", name).get("status") or {}).get("version"),
                 "the node pool settled at its version", timeout=60)
        wait_for(lambda: len(nodes()) == world.settings.node_pool_replicas, "the pool's nodes", timeout=60)
        nodes_before = {n.metadata.name for n in nodes()}
        custom.patch_namespaced_custom_object(*HS, "clusters", "hostedclusters", name, {"spec": {"pausedUntil": "true"}})
        apps.patch_namespaced_deployment_scale("kube-apiserver", cp, {"spec": {"replicas": 0}})

        def unavailable() -> bool:
            try:
                client.CoreV1Api(hosted).list_node(_request_timeout=2)
                return False
            except client.ApiException as e:  # ServiceException (5xx) is one
                return e.status == 503
        wait_for(unavailable, "the hosted API to go away")
        apps.patch_namespaced_deployment_scale("kube-apiserver", cp, {"spec": {"replicas": 1}})
        custom.patch_namespaced_custom_object(*HS, "clusters", "hostedclusters", name, {"spec": {"pausedUntil": None}})
        wait_for(lambda: not unavailable(), "the hosted API back")
        # Workloads kept running: the same nodes, still Ready.
        nodes = client.CoreV1Api(hosted).list_node().items
        assert {n.metadata.name for n in nodes} == nodes_before
        assert all(any(c.type == "Ready" and c.status == "True" for c in n.status.conditions) for n in nodes)
    finally:
        hosted.close()


def test_dns_records_follow_the_routes(world: World, mgmt1: client.ApiClient, fresh_cluster) -> None:
    name = fresh_cluster()
    cp = f"clusters-{name}"
    custom, apps = client.CustomObjectsApi(mgmt1), client.AppsV1Api(mgmt1)
    r53 = world.aws.client("route53")
    host = f"api-{name}.{world.settings.external_dns_domain}."

    def records() -> set[str]:
        pages = r53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=world.aws.zone_id,
                                                                         PaginationConfig={"PageSize": 300})
        return {r["Name"] for page in pages for r in page["ResourceRecordSets"]}

    wait_for(lambda: host in records(), "the API record", timeout=60)
    # As the disaster-recovery procedure does: pause, stop the control-plane-operator, delete the Routes.
    custom.patch_namespaced_custom_object(*HS, "clusters", "hostedclusters", name, {"spec": {"pausedUntil": "true"}})
    apps.patch_namespaced_deployment_scale("control-plane-operator", cp, {"spec": {"replicas": 0}})
    wait_for(lambda: not (apps.read_namespaced_deployment("control-plane-operator", cp).status.ready_replicas or 0), "cpo down")
    for route in custom.list_namespaced_custom_object("route.openshift.io", "v1", cp, "routes")["items"]:
        custom.delete_namespaced_custom_object("route.openshift.io", "v1", cp, "routes", route["metadata"]["name"])
    wait_for(lambda: host not in records(), "the API record removed", timeout=30)
    # Reconciliation back on: the Routes return, and so does the record.
    apps.patch_namespaced_deployment_scale("control-plane-operator", cp, {"spec": {"replicas": 1}})
    custom.patch_namespaced_custom_object(*HS, "clusters", "hostedclusters", name, {"spec": {"pausedUntil": None}})
    wait_for(lambda: host in records(), "the API record back", timeout=30)


def _count(etcd) -> int:  # type: ignore[no-untyped-def]
    try:
        return etcd.count("/registry/")
    except ConnectionError:
        return -1  # members still starting


def _condition(obj: dict, ctype: str) -> bool:
    return any(c["type"] == ctype and c["status"] == "True" for c in (obj.get("status") or {}).get("conditions") or [])


def _secret(core: client.CoreV1Api, name: str) -> client.V1Secret | None:
    try:
        return core.read_namespaced_secret(name, "clusters")
    except client.ApiException:
        return None


def test_new_hosted_cluster_restores_from_a_presigned_snapshot_url(world: World, mgmt1: client.ApiClient,
                                                                   fresh_cluster, tmp_path: Path) -> None:
    source = fresh_cluster()
    cp = f"clusters-{source}"
    custom = client.CustomObjectsApi(mgmt1)
    wait_for(lambda: _condition(custom.get_namespaced_custom_object(*HS, "clusters", "hostedclusters", source), "Available"),
             "source available", timeout=60)
    etcd = wait_for(lambda: client_for_namespace(world.cluster("mgmt1").backend, cp), "etcd client", timeout=60)
    wait_for(lambda: _count(etcd) >= 10, "keys written", timeout=30)
    _kubectl(world, "-n", cp, "exec", "etcd-0", "-c", "etcd", "--", *ETCDCTL, "snapshot", "save", "/var/lib/data/snap.db")
    local = tmp_path / "snap.db"
    _kubectl(world, "-n", cp, "cp", "-c", "etcd", "etcd-0:/var/lib/data/snap.db", str(local))
    status = _kubectl(world, "-n", cp, "exec", "etcd-0", "-c", "etcd", "--", *ETCDCTL, "-w", "fields",
                      "snapshot", "status", "/var/lib/data/snap.db").stdout.decode()
    snapshot_keys = int(next(l for l in status.splitlines() if l.startswith('"Keys"')).split(":")[1])
    s3 = world.aws.client("s3")
    s3.upload_file(str(local), world.aws.bucket, f"restore-test/{source}.db")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": world.aws.bucket, "Key": f"restore-test/{source}.db"},
                                    ExpiresIn=3600)
    assert url.startswith("https://")

    restored = f"{source}-r"
    world.create_hosted_cluster(restored, restore_snapshot_url=url)
    hc = custom.get_namespaced_custom_object(*HS, "clusters", "hostedclusters", restored)
    assert hc["spec"]["etcd"]["managed"]["storage"]["restoreSnapshotURL"] == [url]
    wait_for(lambda: _condition(custom.get_namespaced_custom_object(*HS, "clusters", "hostedclusters", restored), "Available"),
             "restored cluster available", timeout=90)
    restored_etcd = wait_for(lambda: client_for_namespace(world.cluster("mgmt1").backend, f"clusters-{restored}"),
                             "restored etcd", timeout=30)
    # Every key of the snapshot is there (the writers have added more since).
    assert wait_for(lambda: _count(restored_etcd) >= snapshot_keys - 1, "restored keys", timeout=30)
    assert _count(restored_etcd) >= 10
