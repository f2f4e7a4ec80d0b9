"""The simulated HyperShift world, shared by the world tests (it costs seconds to start).

Tests that change a hosted cluster (pause, upgrade, delete) make their own with
`world.create_hosted_cluster(...)` so they do not disturb each other.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
from kubernetes import client, config

from hcpsim.hypershift.operator import OperatorSettings
from hcpsim.world import World, WorldSettings
from tests.conformance.util import wait_for as _wait_for


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # Upgrades take 2 s here so a test can see the Partial state before it completes.
    settings = WorldSettings(hosted_clusters=1, availability="SingleReplica", node_pool_replicas=1,
                             operator=OperatorSettings(upgrade_seconds=2.0))
    with World(tmp_path_factory.mktemp("world"), settings) as w:
        w.wait_available(timeout=120)
        yield w


@pytest.fixture(scope="session")
def mgmt1(world: World) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(world.kubeconfig_path), context="mgmt1")
    yield api
    api.close()


@pytest.fixture(scope="session")
def mgmt2(world: World) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(world.kubeconfig_path), context="mgmt2")
    yield api
    api.close()


@pytest.fixture
def fresh_cluster(world: World) -> Callable[..., str]:
    """Create a hosted cluster of its own for a test; returns its name."""

    def make(**kw: object) -> str:
        name = f"t{uuid.uuid4().hex[:6]}"
        world.create_hosted_cluster(name, **kw)  # type: ignore[arg-type]
        return name

    return make


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 30.0, interval: float = 0.05) -> object:
    """tests/conformance/util.wait_for with the world's longer default (controllers chain here)."""
    return _wait_for(predicate, what, timeout, interval)
