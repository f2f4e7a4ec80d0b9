"""Request paths of the Kubernetes API, parsed the way the real server's RequestInfoFactory does."""

from __future__ import annotations

from dataclasses import dataclass

from hcpsim.apiserver.errors import ApiError

# Paths that are not resources.
ROOT_PATHS = {"version", "healthz", "livez", "readyz", "openapi", "api", "apis", ""}


@dataclass
class ResourcePath:
    group: str
    version: str
    plural: str | None = None  # None: the group/version discovery document itself
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    watch_path: bool = False  # the deprecated /watch/ prefix


def parse_resource_path(path: str) -> ResourcePath | None:
    """The resource a path names, or None for non-resource paths (/version, /api, /apis, /apis/<g>...)."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    if parts[0] == "api":
        if len(parts) < 2:
            return None
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis":
        if len(parts) < 3:
            return None
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    info = ResourcePath(group=group, version=version)
    if not rest:
        return info
    if rest[0] == "watch":
        info.watch_path = True
        rest = rest[1:]
        if not rest:
            raise ApiError.path_not_found()
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and group == "" and rest[2] in ("status", "finalize")):
        info.namespace = rest[1]
        rest = rest[2:]
    if len(rest) > 3:
        raise ApiError.path_not_found()
    info.plural = rest[0]
    if len(rest) > 1:
        info.name = rest[1]
    if len(rest) > 2:
        info.subresource = rest[2]
    return info
