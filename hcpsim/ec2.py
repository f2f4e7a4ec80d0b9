"""The EC2 instances of the simulated world: the worker machines of every hosted cluster.

Instances belong to the AWS account, not to a management cluster: when a hosted cluster's control
plane moves to another management cluster (the disaster-recovery procedure restores its AWSMachines
there, `spec.instanceID`/`spec.providerID` included), the CAPA controller of the destination finds
the same instance by its id and adopts it (cluster-api-provider-aws, AWSMachineReconciler.findInstance:
with a providerID set it describes that instance and never launches another; an id it cannot find
is an error, `InstanceNotFound`). The machines keep running while no controller looks at them.

moto's EC2 would add nothing here (only the simulated CAPA launches instances), so this is an
in-memory registry shared by the NodePool controllers of one world.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

PENDING, RUNNING, SHUTTING_DOWN, TERMINATED = "pending", "running", "shutting-down", "terminated"


@dataclass(frozen=True)
class Instance:
    instance_id: str
    private_ip: str
    private_dns: str
    zone: str
    state: str
    # The hosted cluster (HostedCluster spec.clusterID) whose Node this instance's kubelet registers.
    cluster_id: str | None = None

    @property
    def provider_id(self) -> str:
        return f"aws:///{self.zone}/{self.instance_id}"


class Ec2Instances:
    """Instances by id (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instances: dict[str, Instance] = {}

    def launch(self, instance_id: str, private_ip: str, private_dns: str, zone: str, cluster_id: str | None) -> Instance:
        """A running instance (idempotent: launching an id that exists returns it unchanged)."""
        with self._lock:
            existing = self._instances.get(instance_id)
            if existing is not None:
                return existing
            instance = Instance(instance_id, private_ip, private_dns, zone, RUNNING, cluster_id)
            self._instances[instance_id] = instance
            return instance

    def get(self, instance_id: str | None) -> Instance | None:
        if not instance_id:
            return None
        with self._lock:
            return self._instances.get(instance_id)

    def terminate(self, instance_id: str) -> Instance | None:
        with self._lock:
            instance = self._instances.get(instance_id)
            if instance is None or instance.state == TERMINATED:
                return instance
            self._instances[instance_id] = replace(instance, state=TERMINATED)
            return self._instances[instance_id]

    def running(self, cluster_id: str | None = None) -> list[Instance]:
        with self._lock:
            return [i for i in self._instances.values() if i.state == RUNNING and (cluster_id is None or i.cluster_id == cluster_id)]


def instance_id_of(provider_id: str | None) -> str | None:
    """`aws:///us-east-1a/i-0abc` -> `i-0abc`."""
    if not provider_id or not provider_id.startswith("aws://"):
        return None
    return provider_id.rstrip("/").rsplit("/", 1)[-1] or None


__all__ = ["Ec2Instances", "Instance", "instance_id_of", "PENDING", "RUNNING", "SHUTTING_DOWN", "TERMINATED"]
