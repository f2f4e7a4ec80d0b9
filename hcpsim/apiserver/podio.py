"""What the HTTP layer needs from whatever runs a cluster's pods (the kubelet of the simulated world):
a process to spawn for `exec`, and a container's log file for the `log` subresource.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class PodIO(Protocol):
    def exec_spec(self, pod: dict, container: str, argv: list[str]) -> Any:
        """The ProcessSpec (hcpsim.runtime) to run `argv` in that container; ApiError when it cannot."""

    def log_path(self, pod: dict, container: str, previous: bool = False) -> Path | None:
        """The container's log file (`previous`: its last terminated run's), or None when it has not started."""
