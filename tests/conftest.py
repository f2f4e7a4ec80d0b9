"""Shared fixtures: a simulated cluster served over HTTP, the official client pointed at it through a
kubeconfig, and kubectl as a second, independent client where it is on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from kubernetes import client, config

from hcpsim.apiserver.crds import default_crd_dir
from hcpsim.cluster import SimCluster, Simulator

KUBECTL = shutil.which("kubectl")


@pytest.fixture(scope="session")
def crd_dir() -> Path:
    path = default_crd_dir()
    if path is None or not path.is_dir():
        pytest.skip("upstream HyperShift/CAPI CRDs not found (set HCPSIM_CRD_DIR or provide ../shared/crds)")
    return path


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    with Simulator(tmp_path_factory.mktemp("sim"), crd_dir="default") as sim:
        sim.add_cluster("c1")
        sim.kubeconfig()
        yield sim


@pytest.fixture(scope="session")
def cluster(simulator: Simulator) -> SimCluster:
    return simulator.clusters["c1"]


@pytest.fixture(scope="session")
def kubeconfig(simulator: Simulator) -> Path:
    return simulator.kubeconfig()


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(kubeconfig), context="c1")
    yield api
    api.close()


@pytest.fixture
def namespace(api_client: client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    try:
        core.delete_namespace(name)
    except client.ApiException:
        pass


class Kubectl:
    def __init__(self, kubeconfig: Path, context: str) -> None:
        self.kubeconfig = kubeconfig
        self.context = context

    def run(self, *args: str, input: str | bytes | None = None, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [KUBECTL or "kubectl", "--kubeconfig", str(self.kubeconfig), "--context", self.context, *args]
        data = input.encode() if isinstance(input, str) else input
        env = dict(os.environ, KUBECACHEDIR=str(self.kubeconfig.parent / "kubecache"))
        result = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout, env=env)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.decode()}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path) -> Kubectl:
    if KUBECTL is None:
        pytest.skip("kubectl is not on PATH")
    return Kubectl(kubeconfig, "c1")
