"""What one runbook run acts on: a hosted cluster on a management cluster, under an operation id.

Every task receives it; its operation id scopes checkpoints, the lock holder, the undo journal and
the backup location, so a re-run with the same operation id continues the same operation."""

from __future__ import annotations

from kubernetes import client
from pydantic import BaseModel, ConfigDict

from hcp.cluster_access import ClusterAccess
from hcp.naming import HostedClusterRef
from hcp.params import HostedClusterName, ManagementClusterName, OperationId

__all__ = ["RunTarget"]


class RunTarget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    management: ClusterAccess
    management_cluster: ManagementClusterName  # the name backups and events use for the management cluster
    hosted_cluster: HostedClusterName  # NAMESPACE/NAME
    operation_id: OperationId

    @property
    def ref(self) -> HostedClusterRef:
        return HostedClusterRef.parse(self.hosted_cluster)

    def api_client(self) -> client.ApiClient:
        return self.management.api_client()

    def __str__(self) -> str:
        return f"{self.hosted_cluster} on {self.management_cluster}"
