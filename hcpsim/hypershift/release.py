"""OpenShift release images and versions as the simulated operator reads them."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

SUPPORTED_VERSIONS_LABEL = "hypershift.openshift.io/supported-versions"
SUPPORTED_VERSIONS = ["4.18", "4.17", "4.16", "4.15", "4.14"]

_TAG = re.compile(r":(\d+)\.(\d+)\.(\d+)(?:[-_][\w.\-]+)?$")


def version_of(image: str) -> str:
    """`quay.io/openshift-release-dev/ocp-release:4.17.9-x86_64` -> `4.17.9` (digests: `0.0.0-unknown`)."""
    m = _TAG.search(image or "")
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}" if m else "0.0.0-unknown"


def minor_of(version: str) -> tuple[int, int]:
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def supported_versions_data(versions: list[str] | None = None) -> dict[str, str]:
    """The data of the operator's `supported-versions` ConfigMap, as the real operator writes it."""
    return {"supported-versions": json.dumps({"versions": versions or SUPPORTED_VERSIONS})}


def is_supported(version: str, configmap_data: dict[str, str] | None) -> bool:
    try:
        versions = json.loads((configmap_data or {}).get("supported-versions", "{}")).get("versions", [])
    except ValueError:
        versions = []
    major, minor = minor_of(version)
    return f"{major}.{minor}" in versions


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def paused(paused_until: str | None) -> bool:
    """`spec.pausedUntil`: "true" pauses indefinitely, an RFC3339 time pauses until then."""
    if not paused_until:
        return False
    if paused_until.lower() == "true":
        return True
    if paused_until.lower() == "false":
        return False
    try:
        until = datetime.fromisoformat(paused_until.replace("Z", "+00:00"))
    except ValueError:
        return False
    return until > datetime.now(timezone.utc)


def seconds_until(paused_until: str | None) -> float | None:
    if not paused_until or paused_until.lower() in ("true", "false"):
        return None
    try:
        until = datetime.fromisoformat(paused_until.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (until - datetime.now(timezone.utc)).total_seconds())
