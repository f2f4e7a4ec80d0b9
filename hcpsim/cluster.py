"""A simulated cluster (its Backend served over HTTP) and the Simulator that runs several of them in
one process with one kubeconfig. This is the public entry point of the API layer; the HyperShift
world builds on it by adding controllers to clusters.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Iterable

from hcpsim.apiserver import crds
from hcpsim.apiserver.backend import Backend
from hcpsim.apiserver.faults import Faults
from hcpsim.apiserver.responses import ApiApp
from hcpsim.apiserver.server import ServerLoop, write_kubeconfig
from hcpsim.apiserver.store import Store
from hcpsim.controllers.kubelet import VOLUME_ZONES, Kubelet
from hcpsim.controllers.workloads import start_workload_controllers
from hcpsim.etcd import configure_runtime
from hcpsim.pki import CertificateAuthority
from hcpsim.runtime.pod_runtime import PodRuntime

log = logging.getLogger("hcpsim")


class SimCluster:
    def __init__(self, name: str, loop: ServerLoop, data_dir: Path, ca: CertificateAuthority, *,
                 history_size: int = 20000, binaries: dict[str, str] | None = None, own_node: bool = True) -> None:
        self.name = name
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.backend = Backend(name, Store(history_size=history_size))
        self.token = secrets.token_urlsafe(24)
        self.faults = Faults()
        self.app = ApiApp(self.backend, self.token, faults=self.faults)
        self._loop = loop
        self.tls = ca.issue(f"{name}-apiserver", hosts=["127.0.0.1", "localhost", "kubernetes.default.svc"],
                            directory=data_dir / "pki", file_stem="apiserver")
        self.port = loop.serve(self.app, tls=self.tls)
        self.url = f"https://127.0.0.1:{self.port}"
        self.runtime = PodRuntime(data_dir / "runtime", binaries=binaries)
        # Pods with the etcd image run real etcd members; /usr/bin/etcdctl etc. exist in every pod.
        configure_runtime(self.runtime)
        # A management cluster's volumes are zonal (hcpsim.controllers.kubelet); a hosted cluster's pods mount none.
        self.kubelet = Kubelet(self.backend, self.runtime, data_dir, f"{name}-node-0", own_node=own_node,
                               volume_zones=VOLUME_ZONES if own_node else ())
        self.app.pod_io = self.kubelet
        self.workloads = start_workload_controllers(self)

    def install_crds(self, definitions: Iterable[dict]) -> int:
        count = 0
        for crd in definitions:
            self.backend.install_crd(crd)
            count += 1
        return count

    def stop(self) -> None:
        self.workloads.close()
        self._loop.stop(self.port)
        self.kubelet.close()


class Simulator:
    """Several simulated clusters in this process, one kubeconfig context each.

    `crd_dir`: the upstream CRDs to load into every cluster; "default" means $HCPSIM_CRD_DIR or
    ../shared/crds when present, None loads none.
    """

    def __init__(self, data_dir: Path, *, crd_dir: Path | str | None = "default", history_size: int = 20000) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ca = CertificateAuthority(self.data_dir / "pki")
        self._loop = ServerLoop()
        self.clusters: dict[str, SimCluster] = {}
        self.unlisted: dict[str, SimCluster] = {}
        self.history_size = history_size
        resolved = crds.default_crd_dir() if crd_dir == "default" else (Path(crd_dir) if crd_dir else None)
        self.crd_dir = resolved
        self._crds = crds.load_crd_dir(resolved) if resolved else []

    def add_cluster(self, name: str, *, load_crds: bool = True, own_node: bool = True,
                    in_kubeconfig: bool = True) -> SimCluster:
        """A new cluster. `in_kubeconfig=False` keeps it out of this kubeconfig (a hosted cluster,
        reached through its own admin kubeconfig)."""
        cluster = SimCluster(name, self._loop, self.data_dir / name, self.ca, history_size=self.history_size,
                             own_node=own_node)
        if load_crds and self._crds:
            cluster.install_crds(self._crds)
        if in_kubeconfig:
            self.clusters[name] = cluster
        else:
            self.unlisted[name] = cluster
        return cluster

    def remove_cluster(self, name: str) -> None:
        cluster = self.clusters.pop(name, None) or self.unlisted.pop(name, None)
        if cluster is not None:
            cluster.stop()

    def kubeconfig(self, path: Path | None = None, current: str | None = None) -> Path:
        path = path or self.data_dir / "kubeconfig"
        return write_kubeconfig(path, {n: (c.url, c.token) for n, c in self.clusters.items()}, current, self.ca.cert_pem)

    def close(self) -> None:
        for cluster in [*self.clusters.values(), *self.unlisted.values()]:
            cluster.stop()
        self._loop.close()

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
