"""How a runbook reaches a Kubernetes API: a kubeconfig file and context, or the in-cluster service account.

`ClusterAccess` is the pydantic model at the edge (what a Prefect parameter or a config file holds);
`api_client()` turns it into an official-client `ApiClient`, with errors that name the context.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException
from pydantic import BaseModel, ConfigDict, Field, model_validator


class ClusterAccessError(RuntimeError):
    """The cluster cannot be reached with this access (missing kubeconfig/context, unreachable API)."""

    def __init__(self, cluster: str, message: str) -> None:
        super().__init__(f"cluster {cluster}: {message}")
        self.cluster = cluster


class ClusterAccess(BaseModel):
    """A kubeconfig path + context, or `in_cluster=True` (the pod's service account)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kubeconfig: Path | None = Field(default=None, description="kubeconfig file; default: $KUBECONFIG or ~/.kube/config")
    context: str | None = Field(default=None, description="context in the kubeconfig; default: its current-context")
    in_cluster: bool = False
    request_timeout: float = Field(default=10.0, gt=0, description="seconds for the reachability check")

    @model_validator(mode="after")
    def _one_way(self) -> ClusterAccess:
        if self.in_cluster and (self.kubeconfig is not None or self.context is not None):
            raise ValueError("in_cluster excludes kubeconfig and context")
        return self

    @property
    def name(self) -> str:
        """How errors and logs name this cluster."""
        if self.in_cluster:
            return "in-cluster"
        return self.context or f"current-context of {self._kubeconfig_path()}"

    def _kubeconfig_path(self) -> Path:
        if self.kubeconfig is not None:
            return Path(self.kubeconfig).expanduser()
        env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        return Path(env).expanduser() if env else Path("~/.kube/config").expanduser()

    def api_client(self, *, check: bool = True) -> client.ApiClient:
        """An ApiClient for this cluster; with `check`, GET /api is read first so that an unreachable
        cluster or refused credentials fail here, naming the context, rather than in the middle of a
        runbook (any answer but 401/403 means the API is there and took the credentials)."""
        api = self._load()
        if check:
            try:
                client.CoreApi(api).get_api_versions(_request_timeout=self.request_timeout)
            except client.ApiException as e:
                if e.status in (401, 403) or e.status == 0:
                    api.close()
                    raise ClusterAccessError(self.name, f"API {api.configuration.host} refused the credentials: "
                                                        f"{e.status} {e.reason}") from e
            except Exception as e:  # urllib3 connection errors, TLS errors, timeouts
                api.close()
                raise ClusterAccessError(self.name, f"API {api.configuration.host} is unreachable: {_short(e)}") from e
        api.hcp_cluster = self.name  # type: ignore[attr-defined]  # how hcp.pod_exec names the cluster in errors
        return api

    def _load(self) -> client.ApiClient:
        if self.in_cluster:
            configuration = client.Configuration()
            try:
                config.load_incluster_config(client_configuration=configuration)
            except ConfigException as e:
                raise ClusterAccessError(self.name, f"no in-cluster configuration: {e}") from e
            return client.ApiClient(configuration)
        path = self._kubeconfig_path()
        if not path.is_file():
            raise ClusterAccessError(self.name, f"kubeconfig {path} does not exist")
        try:
            contexts, _current = config.list_kube_config_contexts(config_file=str(path))
        except ConfigException as e:
            raise ClusterAccessError(self.name, f"kubeconfig {path} is invalid: {e}") from e
        names = [c["name"] for c in contexts or []]
        if self.context is not None and self.context not in names:
            raise ClusterAccessError(self.name, f"context {self.context!r} is not in kubeconfig {path} "
                                                f"(contexts: {', '.join(names) or 'none'})")
        try:
            return config.new_client_from_config(config_file=str(path), context=self.context)
        except ConfigException as e:
            raise ClusterAccessError(self.name, f"kubeconfig {path}: {e}") from e


def _short(e: BaseException) -> str:
    text: Any = getattr(e, "reason", None) or e
    text = str(text)
    return text if len(text) <= 300 else text[:300] + "..."
