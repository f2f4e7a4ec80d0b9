"""What one runbook run acts on: a hosted cluster on a management cluster, under an operation id.

Every task receives it; its operation id scopes checkpoints, the lock holder, the undo journal and
the backup location, so a re-run with the same operation id continues the same operation."""

from __future__ import annotations

from kubernetes import client
from pydantic import BaseModel, ConfigDict, field_validator

from hcp.cluster_access import ClusterAccess
from hcp.naming import HostedClusterRef, validate_management_cluster, validate_operation_id

__all__ = ["RunTarget"]


class RunTarget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    management: ClusterAccess
    management_cluster: str  # the name backups and events use for the management cluster
    hosted_cluster: str  # NAMESPACE/NAME
    operation_id: str

    @field_validator("hosted_cluster")
    @classmethod
    def _ref(cls, value: str) -> str:
        HostedClusterRef.parse(value)
        return value

    @field_validator("operation_id")
    @classmethod
    def _op(cls, value: str) -> str:
        return validate_operation_id(value)

    @field_validator("management_cluster")
    @classmethod
    def _mgmt(cls, value: str) -> str:
        return validate_management_cluster(value)

    @property
    def ref(self) -> HostedClusterRef:
        return HostedClusterRef.parse(self.hosted_cluster)

    def api_client(self) -> client.ApiClient:
        return self.management.api_client()

    def __str__(self) -> str:
        return f"{self.hosted_cluster} on {self.management_cluster}"
