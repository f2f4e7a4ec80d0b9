"""Runbooks end to end: a Prefect test server, a simulated world with S3, and the real flows."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from hcp.cluster_access import ClusterAccess
from hcpsim.world import World, WorldSettings
from tests.conformance.util import wait_for


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    storage = tmp_path_factory.mktemp("prefect-results")
    # The tests call the flows in this process, as `hcp-runbooks run` does: without heartbeats (cli.adhoc).
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        with prefect_test_harness(server_startup_timeout=120):
            yield storage


@pytest.fixture(scope="session")
def rb_world(tmp_path_factory: pytest.TempPathFactory, monkeypatch_session: pytest.MonkeyPatch) -> Iterator[World]:
    settings = WorldSettings(hosted_clusters=1, availability="SingleReplica", node_pool_replicas=1)
    with World(tmp_path_factory.mktemp("rbworld"), settings) as w:
        w.wait_available(timeout=120)
        assert w.aws is not None
        # The standard AWS configuration, as a runner would have it.
        for line in w.aws_env_path.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                monkeypatch_session.setenv(key.removeprefix("export ").strip(), value.strip().strip('"'))
        yield w


@pytest.fixture(scope="session")
def monkeypatch_session() -> Iterator[pytest.MonkeyPatch]:
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="session")
def access(rb_world: World) -> ClusterAccess:
    return ClusterAccess(kubeconfig=rb_world.kubeconfig_path, context="mgmt1")


@pytest.fixture(scope="session")
def mgmt(access: ClusterAccess) -> Iterator[client.ApiClient]:
    api = access.api_client()
    yield api
    api.close()


@pytest.fixture(scope="session")
def s3(rb_world: World) -> Any:
    assert rb_world.aws is not None
    return rb_world.aws.client("s3")


@pytest.fixture(scope="session")
def bucket(rb_world: World) -> str:
    return rb_world.settings.bucket


@pytest.fixture
def new_cluster(rb_world: World, mgmt: client.ApiClient) -> Iterator[Callable[[], str]]:
    """A hosted cluster of the test's own, Available; returns NAMESPACE/NAME. Deleted after the test
    (its control plane and etcd processes go with it), so the session's world stays small."""
    custom = client.CustomObjectsApi(mgmt)
    made: list[str] = []

    def make() -> str:
        name = f"r{uuid.uuid4().hex[:6]}"
        rb_world.create_hosted_cluster(name)
        made.append(name)

        def available() -> bool:
            hc = custom.get_namespaced_custom_object("hypershift.openshift.io", "v1beta1", "clusters", "hostedclusters", name)
            return any(c["type"] == "Available" and c["status"] == "True"
                       for c in (hc.get("status") or {}).get("conditions") or [])
        wait_for(available, f"hosted cluster {name} available", timeout=90)
        return f"clusters/{name}"

    yield make
    for name in made:
        try:
            custom.delete_namespaced_custom_object("hypershift.openshift.io", "v1beta1", "clusters", "hostedclusters",
                                                   name)
        except ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture(autouse=True)
def _clear_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "rb_world" in request.fixturenames:
        world: World = request.getfixturevalue("rb_world")
        assert world.aws is not None and world.aws.faults is not None
        world.aws.faults.clear()
        world.cluster("mgmt1").faults.clear()
