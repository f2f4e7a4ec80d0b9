"""Pod runtime: pod sandboxes whose containers run as local processes. See pod_runtime.py."""

from hcpsim.runtime.pod_runtime import (
    CommandRunner,
    ContainerContext,
    ContainerRunner,
    ContainerSpec,
    ContainerState,
    NoProcessRunner,
    PodRuntime,
)
from hcpsim.runtime.sandbox import Mount, ProcessSpec

__all__ = [
    "CommandRunner", "ContainerContext", "ContainerRunner", "ContainerSpec", "ContainerState",
    "Mount", "NoProcessRunner", "PodRuntime", "ProcessSpec",
]
