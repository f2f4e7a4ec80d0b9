"""The simulated HyperShift world: two management clusters (mgmt1, mgmt2) each running the
simulated HyperShift operator, control-plane operator, NodePool controller and external-dns; S3 and
Route53 on loopback over HTTPS; hosted clusters on mgmt1 with their own APIs, reached through the
management cluster their external-DNS record points at; the EC2 instances of their nodes, which
belong to the account (a control plane restored on mgmt2 adopts them). What the README's main
job, every runbook rehearsal, the tests and the benches run against.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hcpsim.apiserver import crds
from hcpsim.apiserver.errors import ApiError
from hcpsim.aws import AwsSim
from hcpsim.cluster import SimCluster, Simulator
from hcpsim.controllers.externaldns import ExternalDNS, ZoneView, register_route_type
from hcpsim.ec2 import Ec2Instances
from hcpsim.etcd import etcd_objects
from hcpsim.hypershift.control_plane import ControlPlaneOperator, router_hostname
from hcpsim.hypershift.etcd_writer import WriterSettings
from hcpsim.hypershift.hosted_api import DnsRouting, HostedApis
from hcpsim.hypershift.nodepool import NodePoolController, NodePoolSettings
from hcpsim.hypershift.kinds import builtin_definitions
from hcpsim.hypershift.operator import (EXTERNAL_DNS, OPERATOR_NAMESPACE, HostedClusterController, OperatorSettings,
                                        encryption_key_secret, install_operator)
from hcpsim.manifests import hosted_cluster, node_pool

log = logging.getLogger("hcpsim.world")

MANAGEMENT_CLUSTERS = ("mgmt1", "mgmt2")
_GROUP_PLURAL = {"Secret": ("", "secrets"), "ConfigMap": ("", "configmaps"), "Service": ("", "services"),
                 "StatefulSet": ("apps", "statefulsets")}


@dataclass
class WorldSettings:
    hosted_clusters: int = 1
    availability: str = "HighlyAvailable"
    node_pool_replicas: int = 2
    external_dns_domain: str = "hcp.example.com"
    bucket: str = "hcp-backups"
    dns_removal_delay: float = 0.2
    dns_interval: float = 0.2
    operator: OperatorSettings = field(default_factory=OperatorSettings)
    nodepools: NodePoolSettings = field(default_factory=NodePoolSettings)
    writer: WriterSettings = field(default_factory=WriterSettings)
    # reset-member's wait for a member list when no member answers (upstream: 5 s).
    etcd_reset_member_timeout: str | None = "300ms"

    @classmethod
    def realistic(cls, **overrides: Any) -> WorldSettings:
        """Delays of the order the real system has, for demos and rehearsals."""
        base = cls(dns_removal_delay=60.0, dns_interval=10.0, operator=OperatorSettings.realistic(),
                   nodepools=NodePoolSettings.realistic(), etcd_reset_member_timeout=None)
        for k, v in overrides.items():
            setattr(base, k, v)
        return base


class World:
    def __init__(self, directory: Path, settings: WorldSettings | None = None) -> None:
        self.directory = Path(directory)
        self.settings = settings or WorldSettings()
        self.sim: Simulator | None = None
        self.aws: AwsSim | None = None
        self.hosted: HostedApis | None = None
        # The account's EC2 instances (worker machines survive a control plane's move) and what the
        # external DNS zone answers (the hosted APIs are reached through it).
        self.instances = Ec2Instances()
        self.zone = ZoneView(self.settings.external_dns_domain)
        self._closers: list[Any] = []
        self._etcd_rendered: dict[tuple, list[tuple[str, str, dict]]] = {}

    # Life cycle.

    def start(self) -> World:
        s = self.settings
        self.sim = Simulator(self.directory, crd_dir="default")
        self.aws = AwsSim(self.directory, self.sim.ca, bucket=s.bucket, external_dns_domain=s.external_dns_domain).start()
        self.hosted = HostedApis(self.sim)
        self.hosted.set_routing(DnsRouting(self.zone, {router_hostname(m): m for m in MANAGEMENT_CLUSTERS}))
        upstream = crds.load_crd_dir(self.sim.crd_dir) if self.sim.crd_dir else []
        for name in MANAGEMENT_CLUSTERS:
            cluster = self.sim.add_cluster(name, load_crds=False)
            cluster.install_crds(builtin_definitions())
            cluster.install_crds(upstream)  # the real definitions, when present, replace ours
            register_route_type(cluster.backend.registry)
            install_operator(cluster.backend)
            self._start_controllers(cluster)
        self.sim.kubeconfig(self.kubeconfig_path, current=MANAGEMENT_CLUSTERS[0])
        for i in range(s.hosted_clusters):
            self.create_hosted_cluster("demo" if i == 0 else f"demo-{i}")
        return self

    def _start_controllers(self, cluster: SimCluster) -> None:
        assert self.aws is not None
        backend = cluster.backend
        operator = HostedClusterController(backend, self.settings.operator)
        operator.start()
        hosted = self.hosted
        assert hosted is not None

        def serving(hcp: dict, management: str, ready: bool) -> None:
            cluster_id = (hcp.get("spec") or {}).get("clusterID")
            if cluster_id and hosted.get(cluster_id) is not None:
                hosted.set_serving(cluster_id, management, ready)

        cpo = ControlPlaneOperator(backend, etcd_objects=self._etcd_objects, hosted_apis=hosted, on_serving=serving,
                                   writer_settings=self.settings.writer, router=router_hostname(cluster.name))
        cpo.start()
        nodepools = NodePoolController(cluster, hosted, self.settings.nodepools, instances=self.instances)
        aws = self.aws
        dns = ExternalDNS(backend, lambda: aws.client("route53"), aws.zone_id, aws.domain, owner_id=cluster.name,
                          removal_delay=self.settings.dns_removal_delay, interval=self.settings.dns_interval,
                          view=self.zone, deployment=(OPERATOR_NAMESPACE, EXTERNAL_DNS))
        self._closers += [operator, cpo, dns, nodepools]

    def _etcd_objects(self, hcp: dict, namespace: str) -> list[tuple[str, str, dict]]:
        """The managed etcd of a control plane, rendered once per namespace (new keys each render)."""
        spec = hcp.get("spec") or {}
        urls = ((((spec.get("etcd") or {}).get("managed") or {}).get("storage") or {}).get("restoreSnapshotURL")) or []
        key = (namespace, spec.get("controllerAvailabilityPolicy", "HighlyAvailable"), tuple(urls))
        if key not in self._etcd_rendered:
            assert self.sim is not None
            extra = {} if self.settings.etcd_reset_member_timeout is None else {
                "reset_member_timeout": self.settings.etcd_reset_member_timeout}
            objs = etcd_objects(self.sim.ca, namespace, availability=key[1], restore_snapshot_url=urls[0] if urls else None,
                                **extra)
            self._etcd_rendered[key] = [(*_GROUP_PLURAL[o["kind"]], o) for o in objs]
        return self._etcd_rendered[key]

    def close(self) -> None:
        for closer in reversed(self._closers):
            try:
                closer.close()
            except Exception:
                log.exception("stopping %s", closer)
        self._closers.clear()
        if self.hosted is not None:
            self.hosted.close()
        if self.sim is not None:
            self.sim.close()
        if self.aws is not None:
            self.aws.stop()

    def __enter__(self) -> World:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # What users and tests reach.

    @property
    def kubeconfig_path(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def aws_env_path(self) -> Path:
        assert self.aws is not None
        return self.aws.env_file

    def cluster(self, name: str) -> SimCluster:
        assert self.sim is not None
        return self.sim.clusters[name]

    def create_hosted_cluster(self, name: str, namespace: str = "clusters", *, management: str = "mgmt1",
                              restore_snapshot_url: str | None = None, availability: str | None = None) -> None:
        """What `hypershift create cluster aws` does: secrets, the HostedCluster, its NodePool.
        `availability` (HighlyAvailable | SingleReplica): default the world's setting."""
        backend = self.cluster(management).backend
        s = self.settings
        ns_type = backend.type_for("", "namespaces")
        if backend.store.get(ns_type.key, "", namespace) is None:
            backend.create(ns_type, None, {"metadata": {"name": namespace}})
        secrets = backend.type_for("", "secrets")
        for secret in (
            {"metadata": {"name": f"{name}-pull-secret", "namespace": namespace}, "type": "kubernetes.io/dockerconfigjson",
             "data": {".dockerconfigjson": base64.b64encode(b'{"auths":{"quay.io":{"auth":"c2ltOnNpbQ=="}}}').decode()}},
            {"metadata": {"name": f"{name}-ssh-key", "namespace": namespace},
             "data": {"id_rsa.pub": base64.b64encode(b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHcpsim sim@hcpsim").decode()}},
            encryption_key_secret(name, namespace),
        ):
            try:
                backend.create(secrets, namespace, secret)
            except ApiError as e:
                if e.code != 409:
                    raise
        hc = hosted_cluster(name, namespace, external_dns_domain=s.external_dns_domain,
                            availability=availability or s.availability,
                            restore_snapshot_url=restore_snapshot_url)
        backend.create(backend.type_for("hypershift.openshift.io", "hostedclusters"), namespace, hc)
        backend.create(backend.type_for("hypershift.openshift.io", "nodepools"), namespace,
                       node_pool(name, namespace, replicas=s.node_pool_replicas))

    def wait_available(self, timeout: float = 60.0, management: str = "mgmt1") -> None:
        """Until every HostedCluster on `management` reports Available=True and its hosted API
        answers (through external DNS: the record follows the Routes a moment later)."""
        backend = self.cluster(management).backend
        deadline = time.monotonic() + timeout
        while True:
            pending = [hc["metadata"]["name"] for hc in backend.store.items(("hypershift.openshift.io", "hostedclusters"))
                       if not _condition_true(hc, "Available") or not self._answers(hc)]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"hosted clusters not Available after {timeout:.0f}s on {management}: {', '.join(pending)}")
            time.sleep(0.05)


    def _answers(self, hc: dict) -> bool:
        cluster_id = (hc.get("spec") or {}).get("clusterID")
        api = self.hosted.get(cluster_id) if self.hosted is not None and cluster_id else None
        return api is not None and api.serving


def _condition_true(obj: dict, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True" for c in (obj.get("status") or {}).get("conditions") or [])
