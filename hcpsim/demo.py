"""The README's main job until the runbooks land: start the simulated HyperShift world and show it
working through the official client and kubectl, as an SRE would look at a real one: the hosted
cluster Available, its etcd members healthy, keys growing, the API published in Route53, the
hosted cluster's own API with its nodes."""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

from kubernetes import client, config
from kubernetes.stream import stream

from hcpsim.world import World, WorldSettings

Echo = Callable[[str], None]
ETCDCTL = ["env", "ETCDCTL_API=3", "/usr/bin/etcdctl", "--cacert", "/etc/etcd/tls/etcd-ca/ca.crt",
           "--cert", "/etc/etcd/tls/client/etcd-client.crt", "--key", "/etc/etcd/tls/client/etcd-client.key",
           "--endpoints=https://localhost:2379"]


def _etcd(core: client.CoreV1Api, namespace: str, *args: str) -> str:
    return stream(core.connect_get_namespaced_pod_exec, "etcd-0", namespace, container="etcd",
                  command=[*ETCDCTL, *args], stderr=True, stdin=False, stdout=True, tty=False)


def _key_count(core: client.CoreV1Api, namespace: str) -> int:
    out = _etcd(core, namespace, "get", "/registry/", "--prefix", "--count-only", "-w", "fields")
    for line in out.splitlines():
        if line.startswith('"Count"'):
            return int(line.split(":")[1])
    return -1


def run_smoke(data_dir: Path, echo: Echo = print, settings: WorldSettings | None = None) -> None:
    t0 = time.monotonic()
    with World(data_dir, settings) as world:
        echo(f"started the world in {time.monotonic() - t0:.1f}s: management clusters mgmt1 and mgmt2, S3 and Route53 at "
             f"{world.aws.url if world.aws else '?'}")
        world.wait_available(timeout=300)
        echo(f"hosted cluster clusters/demo is Available after {time.monotonic() - t0:.1f}s")
        echo(f"  kubeconfig: {world.kubeconfig_path}")
        echo(f"  aws env:    {world.aws_env_path}")
        api = config.new_client_from_config(config_file=str(world.kubeconfig_path), context="mgmt1")
        core = client.CoreV1Api(api)
        cp = "clusters-demo"
        echo("etcd in clusters-demo, through `kubectl exec etcd-0 -c etcd -- etcdctl endpoint health --cluster -w table`:")
        for line in _etcd(core, cp, "endpoint", "health", "--cluster", "-w", "table").splitlines():
            echo(f"  {line}")
        first = _key_count(core, cp)
        time.sleep(2)
        second = _key_count(core, cp)
        echo(f"keys under /registry/ written by the API servers: {first} -> {second} two seconds later")

        r53 = world.aws.client("route53") if world.aws else None
        if r53 is not None:
            names = sorted(r["Name"] for r in r53.list_resource_record_sets(HostedZoneId=world.aws.zone_id)["ResourceRecordSets"]
                           if r["Type"] == "CNAME")
            echo(f"external DNS records in {world.settings.external_dns_domain}: {', '.join(names)}")

        secret = core.read_namespaced_secret("demo-admin-kubeconfig", "clusters")
        with tempfile.NamedTemporaryFile("wb", suffix=".kubeconfig", delete=False) as f:
            f.write(base64.b64decode(secret.data["kubeconfig"]))
        hosted = config.new_client_from_config(config_file=f.name)
        nodes = client.CoreV1Api(hosted).list_node().items
        ready = [n.metadata.name for n in nodes if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)]
        echo(f"hosted cluster API (admin kubeconfig): {len(ready)}/{len(nodes)} nodes Ready: {', '.join(ready)}")
        hosted.close()
        Path(f.name).unlink()

        kubectl = shutil.which("kubectl")
        if kubectl:
            for args in (["get", "hostedclusters,nodepools", "-n", "clusters"], ["get", "pods", "-n", cp]):
                result = subprocess.run([kubectl, "--kubeconfig", str(world.kubeconfig_path), "--context", "mgmt1", *args],
                                        capture_output=True, text=True, timeout=60)
                echo(f"kubectl {' '.join(args)}:")
                for line in (result.stdout or result.stderr).splitlines():
                    echo(f"  {line}")
        else:
            echo("kubectl is not on PATH: skipped the kubectl views")
        api.close()
    echo(f"smoke scenario done in {time.monotonic() - t0:.1f}s; everything it started is stopped")
