"""A small simulated world of its own for the product layer's tests (hcp/ never imports hcpsim)."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from kubernetes import client

from hcp.cluster_access import ClusterAccess
from hcpsim.world import World, WorldSettings

NAMESPACE = "clusters-demo"
POD = "etcd-0"
CONTAINER = "etcd"


@pytest.fixture(scope="session")
def hcp_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = WorldSettings(hosted_clusters=1, availability="SingleReplica", node_pool_replicas=1)
    with World(tmp_path_factory.mktemp("hcpworld"), settings) as w:
        w.wait_available(timeout=120)
        yield w


@pytest.fixture(scope="session")
def mgmt1_access(hcp_world: World) -> ClusterAccess:
    return ClusterAccess(kubeconfig=hcp_world.kubeconfig_path, context="mgmt1")


@pytest.fixture(scope="session")
def mgmt1_api(mgmt1_access: ClusterAccess) -> Iterator[client.ApiClient]:
    api = mgmt1_access.api_client()
    yield api
    api.close()


@pytest.fixture(scope="session")
def s3(hcp_world: World) -> Any:
    assert hcp_world.aws is not None
    return hcp_world.aws.client("s3")


@pytest.fixture(scope="session")
def bucket(hcp_world: World) -> str:
    return hcp_world.settings.bucket


@pytest.fixture(autouse=True)
def _no_leftover_faults(hcp_world: World) -> Iterator[None]:
    yield
    assert hcp_world.aws is not None and hcp_world.aws.faults is not None
    hcp_world.aws.faults.clear()
    hcp_world.cluster("mgmt1").faults.clear()
