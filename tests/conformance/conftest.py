"""Fixtures of the conformance suite: a raw HTTPS session for malformed-input cases, the two
drivers (official client / kubectl) the scenarios run through, and a CRD of our own.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest
import requests
from kubernetes import client

from . import manifests
from .drivers import ClientDriver, KubectlDriver


class Raw:
    """Plain HTTPS to one simulated cluster (requests): for what the official client cannot send."""

    def __init__(self, url: str, token: str, ca_file: str) -> None:
        self.url = url
        self.ca_file = ca_file
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override our CA, proxies must not apply
        self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, *, auth: bool = True, timeout: float = 15, **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if not auth:
            headers["Authorization"] = None  # requests drops headers set to None
        return self.session.request(method, self.url + path, headers=headers, timeout=timeout, verify=self.ca_file, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def alive(self) -> bool:
        """The server still answers an ordinary authenticated request."""
        r = self.get("/api/v1/namespaces/default", timeout=5)
        return r.status_code == 200 and r.json()["metadata"]["name"] == "default"


@pytest.fixture(scope="session")
def raw(cluster, api_client: client.ApiClient) -> Raw:
    # The kubeconfig loader wrote the cluster's CA (certificate-authority-data) to a file.
    ca = api_client.configuration.ssl_ca_cert
    assert ca, "the official client has no CA file"
    return Raw(cluster.url, cluster.token, ca)


@pytest.fixture(scope="session")
def client_driver(api_client: client.ApiClient) -> ClientDriver:
    return ClientDriver(api_client)


@pytest.fixture(params=["client", "kubectl"])
def driver(request: pytest.FixtureRequest, api_client: client.ApiClient):
    if request.param == "client":
        return request.getfixturevalue("client_driver")
    return KubectlDriver(request.getfixturevalue("kubectl"))


def _wait_served(api_client: client.ApiClient, group: str, version: str, plural: str) -> None:
    custom = client.CustomObjectsApi(api_client)
    deadline = time.monotonic() + 10
    while True:
        try:
            custom.list_cluster_custom_object(group, version, plural)
            return
        except client.ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="session")
def widget_crds(api_client: client.ApiClient) -> Iterator[dict[str, dict]]:
    """Our own CRDs, created through the API: Widget (namespaced) and Gadget (cluster-scoped), both
    with status and scale subresources, short names and a category."""
    ext = client.ApiextensionsV1Api(api_client)
    defs = {
        "widgets": manifests.widget_crd(),
        "gadgets": manifests.widget_crd("gadgets", "Gadget", "Cluster", ("gdg",), ("hcpsimconf",)),
    }
    for crd in defs.values():
        try:
            ext.delete_custom_resource_definition(crd["metadata"]["name"])
        except client.ApiException:
            pass
        ext.create_custom_resource_definition(crd)
        _wait_served(api_client, manifests.CONF_GROUP, "v1", crd["spec"]["names"]["plural"])
    yield defs
    for crd in defs.values():
        try:
            ext.delete_custom_resource_definition(crd["metadata"]["name"])
        except client.ApiException:
            pass
