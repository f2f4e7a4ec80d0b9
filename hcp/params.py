"""Validated parameter types shared by every runbook's parameter model (the UI's forms): bad
input is refused when the run is created, before anything is read or changed."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from hcp.cluster_access import ClusterAccess
from hcp.naming import HostedClusterRef, normalize_prefix, validate_bucket, validate_dns1123_label, \
    validate_management_cluster, validate_operation_id

__all__ = ["HostedClusterName", "BucketName", "KeyPrefix", "OperationId", "ManagementClusterName", "NamespaceName",
           "ManagementParams"]


def _hosted_cluster(value: str) -> str:
    HostedClusterRef.parse(value)
    return value


HostedClusterName = Annotated[str, AfterValidator(_hosted_cluster)]  # NAMESPACE/NAME
BucketName = Annotated[str, AfterValidator(validate_bucket)]
KeyPrefix = Annotated[str, AfterValidator(normalize_prefix)]
OperationId = Annotated[str, AfterValidator(validate_operation_id)]
ManagementClusterName = Annotated[str, AfterValidator(validate_management_cluster)]
NamespaceName = Annotated[str, AfterValidator(lambda v: validate_dns1123_label(v, "namespace"))]


class ManagementParams(BaseModel):
    """How a runbook reaches its management cluster, and the name backups and events give it."""

    model_config = ConfigDict(extra="forbid")

    management: ClusterAccess = Field(default_factory=ClusterAccess, description="how to reach the management cluster")
    management_cluster: ManagementClusterName | None = Field(
        default=None, description="the management cluster's name in backup paths and events; default: the "
        "kubeconfig context")

    @model_validator(mode="after")
    def _named(self) -> ManagementParams:
        if self.management_cluster is None:
            if not self.management.context:
                raise ValueError("management_cluster is required when management.context is not given")
            validate_management_cluster(self.management.context)
        return self

    @property
    def management_cluster_name(self) -> str:
        return self.management_cluster or self.management.context or ""
