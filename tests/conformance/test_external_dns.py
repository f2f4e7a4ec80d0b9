"""external-dns of the simulated management clusters: Routes in the external DNS domain get Route53
records (CNAME + TXT ownership record), deleted Routes lose them after the removal delay, and a
control plane that moves to another management cluster gets its records from there once the
source's are gone. Routes are created through the API (the official client), as HyperShift would."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from kubernetes import client, config

from hcpsim.aws import AwsSim
from tests.conformance import util
from hcpsim.cluster import Simulator
from hcpsim.controllers.externaldns import ExternalDNS, record_name_of_txt, register_route_type, txt_record_name

DOMAIN = "hcp.example.com"
REMOVAL_DELAY = 0.5


class World:
    def __init__(self, sim: Simulator, aws: AwsSim) -> None:
        self.sim = sim
        self.aws = aws
        self.r53 = aws.client("route53")
        self.dns: dict[str, ExternalDNS] = {}
        self.apis: dict[str, client.ApiClient] = {}
        kubeconfig = sim.kubeconfig()
        for name, cluster in sim.clusters.items():
            register_route_type(cluster.backend.registry)
            self.dns[name] = ExternalDNS(cluster.backend, lambda: aws.client("route53", max_attempts=1), aws.zone_id, DOMAIN,
                                         owner_id=f"owner-{name}", removal_delay=REMOVAL_DELAY, interval=0.1,
                                         default_target=f"router-{name}.elb.us-east-1.amazonaws.com")
            self.apis[name] = config.new_client_from_config(config_file=str(kubeconfig), context=name)

    def close(self) -> None:
        for dns in self.dns.values():
            dns.close()
        for api in self.apis.values():
            api.close()

    def records(self) -> dict[tuple[str, str], list[str]]:
        out: dict[tuple[str, str], list[str]] = {}
        for page in self.r53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=self.aws.zone_id):
            for rr in page["ResourceRecordSets"]:
                out[(rr["Name"].rstrip("."), rr["Type"])] = [r["Value"] for r in rr.get("ResourceRecords", [])]
        return out

    def namespace(self, cluster: str) -> str:
        name = f"clusters-{uuid.uuid4().hex[:6]}"
        client.CoreV1Api(self.apis[cluster]).create_namespace({"metadata": {"name": name}})
        return name

    def create_route(self, cluster: str, namespace: str, name: str, host: str, **extra: Any) -> dict:
        body = {"apiVersion": "route.openshift.io/v1", "kind": "Route",
                "metadata": {"name": name, "labels": {"hypershift.openshift.io/hosted-control-plane": namespace},
                             **extra.pop("metadata", {})},
                "spec": {"host": host, "to": {"kind": "Service", "name": "kube-apiserver"},
                         "tls": {"termination": "passthrough"}, **extra.pop("spec", {})}}
        return client.CustomObjectsApi(self.apis[cluster]).create_namespaced_custom_object(
            "route.openshift.io", "v1", namespace, "routes", body)

    def delete_route(self, cluster: str, namespace: str, name: str) -> None:
        client.CustomObjectsApi(self.apis[cluster]).delete_namespaced_custom_object("route.openshift.io", "v1", namespace,
                                                                                   "routes", name)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """tests/conformance/util.wait_for, for DNS records."""
    return util.wait_for(predicate, "the DNS records", timeout)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base: Path = tmp_path_factory.mktemp("dnsworld")
    with Simulator(base / "sim", crd_dir=None) as sim:
        sim.add_cluster("mgmt-a", load_crds=False)
        sim.add_cluster("mgmt-b", load_crds=False)
        with AwsSim(base / "aws", sim.ca, external_dns_domain=DOMAIN) as aws:
            w = World(sim, aws)
            try:
                yield w
            finally:
                w.close()


def test_txt_registry_names() -> None:
    assert txt_record_name("api-foo.hcp.example.com", "CNAME") == "cname-api-foo-external-dns.hcp.example.com"
    assert record_name_of_txt("cname-api-foo-external-dns.hcp.example.com") == "api-foo.hcp.example.com"
    assert record_name_of_txt("api-foo-external-dns.hcp.example.com") == "api-foo.hcp.example.com"
    assert record_name_of_txt("api-foo.hcp.example.com") is None


def test_route_type_is_served(world: World) -> None:
    api = world.apis["mgmt-a"]
    resources = client.CustomObjectsApi(api).get_api_resources("route.openshift.io", "v1")
    routes = [r for r in resources.resources if r.name == "routes"]
    assert routes and routes[0].kind == "Route" and routes[0].namespaced
    assert any(r.name == "routes/status" for r in resources.resources)


def test_route_in_domain_gets_records_and_loses_them_after_delay(world: World) -> None:
    ns = world.namespace("mgmt-a")
    host = f"api-{ns}.{DOMAIN}"
    world.create_route("mgmt-a", ns, "kube-apiserver", host)
    records = wait_for(lambda: (r := world.records()) and (host, "CNAME") in r and r)
    assert records[(host, "CNAME")] == ["router-mgmt-a.elb.us-east-1.amazonaws.com"]
    txt = records[(txt_record_name(host, "CNAME"), "TXT")]
    assert txt == [f'"heritage=external-dns,external-dns/owner=owner-mgmt-a,external-dns/resource=route/{ns}/kube-apiserver"']

    world.delete_route("mgmt-a", ns, "kube-apiserver")
    deleted_at = time.monotonic()
    wait_for(lambda: (host, "CNAME") not in world.records())
    assert time.monotonic() - deleted_at >= REMOVAL_DELAY * 0.9
    assert (txt_record_name(host, "CNAME"), "TXT") not in world.records()


def test_routes_outside_domain_or_private_are_ignored(world: World) -> None:
    ns = world.namespace("mgmt-a")
    outside = f"api-{ns}.apps.other.example.org"
    private = f"api-private-{ns}.{DOMAIN}"
    public = f"oauth-{ns}.{DOMAIN}"
    world.create_route("mgmt-a", ns, "outside", outside)
    world.create_route("mgmt-a", ns, "private", private,
                       metadata={"labels": {"hypershift.openshift.io/route-visibility": "private"}})
    world.create_route("mgmt-a", ns, "oauth", public)
    wait_for(lambda: (public, "CNAME") in world.records())
    assert world.dns["mgmt-a"].wait_synced()
    names = {name for name, _ in world.records()}
    assert outside not in names and private not in names
    world.delete_route("mgmt-a", ns, "oauth")
    wait_for(lambda: (public, "CNAME") not in world.records())


def test_target_follows_route_status_and_annotation(world: World) -> None:
    ns = world.namespace("mgmt-a")
    host = f"api-{ns}.{DOMAIN}"
    world.create_route("mgmt-a", ns, "kas", host)
    wait_for(lambda: world.records().get((host, "CNAME")) == ["router-mgmt-a.elb.us-east-1.amazonaws.com"])
    objects = client.CustomObjectsApi(world.apis["mgmt-a"])
    objects.patch_namespaced_custom_object_status("route.openshift.io", "v1", ns, "routes", "kas", {"status": {"ingress": [
        {"host": host, "routerName": "router", "routerCanonicalHostname": "a1b2c3.elb.us-east-1.amazonaws.com",
         "conditions": [{"type": "Admitted", "status": "True"}]}]}})
    wait_for(lambda: world.records().get((host, "CNAME")) == ["a1b2c3.elb.us-east-1.amazonaws.com"])
    objects.patch_namespaced_custom_object("route.openshift.io", "v1", ns, "routes", "kas",
                                           {"metadata": {"annotations": {"external-dns.alpha.kubernetes.io/target": "192.0.2.10"}}})
    wait_for(lambda: world.records().get((host, "A")) == ["192.0.2.10"] and (host, "CNAME") not in world.records())
    world.delete_route("mgmt-a", ns, "kas")
    wait_for(lambda: (host, "A") not in world.records())


def test_second_cluster_takes_over_after_source_records_are_removed(world: World) -> None:
    ns = world.namespace("mgmt-a")
    client.CoreV1Api(world.apis["mgmt-b"]).create_namespace({"metadata": {"name": ns}})
    host = f"api-{ns}.{DOMAIN}"
    world.create_route("mgmt-a", ns, "kube-apiserver", host)
    wait_for(lambda: world.records().get((host, "CNAME")) == ["router-mgmt-a.elb.us-east-1.amazonaws.com"])

    # The control plane moves: the destination has the Route too, the source still holds the records.
    world.create_route("mgmt-b", ns, "kube-apiserver", host)
    assert world.dns["mgmt-b"].wait_synced()
    records = world.records()
    assert records[(host, "CNAME")] == ["router-mgmt-a.elb.us-east-1.amazonaws.com"]
    assert "owner=owner-mgmt-a" in records[(txt_record_name(host, "CNAME"), "TXT")][0]

    # The source's Routes go away: after its removal delay its records go, then the destination's appear.
    world.delete_route("mgmt-a", ns, "kube-apiserver")
    wait_for(lambda: world.records().get((host, "CNAME")) == ["router-mgmt-b.elb.us-east-1.amazonaws.com"])
    txt = world.records()[(txt_record_name(host, "CNAME"), "TXT")]
    assert "owner=owner-mgmt-b" in txt[0]

    world.delete_route("mgmt-b", ns, "kube-apiserver")
    wait_for(lambda: (host, "CNAME") not in world.records())


def test_route53_errors_are_retried(world: World) -> None:
    ns = world.namespace("mgmt-a")
    host = f"api-{ns}.{DOMAIN}"
    world.aws.faults.fail_next(3, code=400, error="Throttling", service="route53", method="POST")
    try:
        world.create_route("mgmt-a", ns, "kube-apiserver", host)
        wait_for(lambda: (host, "CNAME") in world.records())
    finally:
        world.aws.faults.clear()
    world.delete_route("mgmt-a", ns, "kube-apiserver")
    wait_for(lambda: (host, "CNAME") not in world.records())


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
def test_kubectl_applies_and_lists_routes(world: World, tmp_path: Path) -> None:
    ns = world.namespace("mgmt-b")
    host = f"api-{ns}.{DOMAIN}"
    manifest = (f"apiVersion: route.openshift.io/v1\nkind: Route\nmetadata: {{name: kube-apiserver, namespace: {ns}}}\n"
                f"spec: {{host: {host}, to: {{kind: Service, name: kube-apiserver}}, tls: {{termination: passthrough}}}}\n")
    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KUBECACHEDIR": str(tmp_path / "cache")}

    def kubectl(*args: str, input: str | None = None) -> str:
        result = subprocess.run(["kubectl", "--kubeconfig", str(world.sim.kubeconfig()), "--context", "mgmt-b", *args],
                                input=input, capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "created" in kubectl("apply", "-f", "-", input=manifest)
    listing = kubectl("get", "routes", "-n", ns)
    assert "HOST/PORT" in listing and host in listing
    wait_for(lambda: world.records().get((host, "CNAME")) == ["router-mgmt-b.elb.us-east-1.amazonaws.com"])
    kubectl("delete", "route", "kube-apiserver", "-n", ns)
    wait_for(lambda: (host, "CNAME") not in world.records())
