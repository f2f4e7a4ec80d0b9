"""Server-side printing: the meta.k8s.io/v1 Table that `kubectl get` asks for (Accept: ...;as=Table).

Built-in kinds get the columns kubectl users know (a subset of pkg/printers/internalversion);
custom resources get Name, their CRD's additionalPrinterColumns and Age, as the real server prints.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Callable

from hcpsim.apiserver.clock import parse_rfc3339
from hcpsim.apiserver.resources import ResourceType


def wants_table(accept: str) -> bool:
    return "as=Table" in accept and "g=meta.k8s.io" in accept


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    if h < 24 * 365 * 8:
        days = h // 24 - (h // 24 // 365) * 365
        return f"{h // 24 // 365}y{days}d" if days else f"{h // 24 // 365}y"
    return f"{h // 24 // 365}y"


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    return human_duration((datetime.now(timezone.utc) - parse_rfc3339(timestamp)).total_seconds())


# A small JSONPath (the subset printer columns use): .a.b, [n], [*], [?(@.k=="v")].
_TOKEN = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*(==|!=)\s*[\"']([^\"']*)[\"']\)\]")


def json_path(obj: Any, path: str) -> list[Any]:
    values = [obj]
    pos = 0
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            return []
        pos = m.end()
        field, index, filter_key, op, filter_value = m.groups()
        out: list[Any] = []
        for v in values:
            if field is not None and isinstance(v, dict) and field in v:
                out.append(v[field])
            elif index is not None and isinstance(v, list):
                out.extend(v if index == "*" else v[int(index):int(index) + 1])
            elif filter_key is not None and isinstance(v, list):
                for item in v:
                    got = json_path(item, "." + filter_key)
                    if got and (str(got[0]) == filter_value) == (op == "=="):
                        out.append(item)
        values = out
    return values


def _cell(values: list[Any], column_type: str) -> Any:
    if not values:
        return None
    value = values[0]  # the apiextensions table convertor prints the first match
    if column_type == "date" and isinstance(value, str):
        return _age(value)
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value)
    return value


Column = tuple[str, str, int, Callable[[dict], Any]]  # name, type, priority, getter


def _pod_columns() -> list[Column]:
    def ready(p: dict) -> str:
        statuses = (p.get("status") or {}).get("containerStatuses") or []
        total = len((p.get("spec") or {}).get("containers") or [])
        return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"

    def status(p: dict) -> str:
        if p["metadata"].get("deletionTimestamp"):
            return "Terminating"
        # kubectl's printPod: an unfinished init container shows as Init:<reason> or Init:<done>/<all>.
        inits = (p.get("status") or {}).get("initContainerStatuses") or []
        for i, s in enumerate(inits):
            state = s.get("state") or {}
            if (state.get("terminated") or {}).get("exitCode") == 0:
                continue
            reason = (state.get("terminated") or {}).get("reason") or (state.get("waiting") or {}).get("reason")
            if reason and reason != "PodInitializing":
                return f"Init:{reason}"
            return f"Init:{i}/{len(inits)}"
        for s in (p.get("status") or {}).get("containerStatuses") or []:
            waiting = (s.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason"):
                return waiting["reason"]
            terminated = (s.get("state") or {}).get("terminated")
            if terminated and terminated.get("reason"):
                return terminated["reason"]
        return (p.get("status") or {}).get("phase", "Unknown")

    def restarts(p: dict) -> int:
        return sum(s.get("restartCount", 0) for s in (p.get("status") or {}).get("containerStatuses") or [])

    return [("Ready", "string", 0, ready), ("Status", "string", 0, status), ("Restarts", "integer", 0, restarts),
            ("Age", "string", 0, lambda p: _age(p["metadata"].get("creationTimestamp"))),
            ("IP", "string", 1, lambda p: (p.get("status") or {}).get("podIP") or "<none>"),
            ("Node", "string", 1, lambda p: (p.get("spec") or {}).get("nodeName") or "<none>")]


def _g(*path: str, default: Any = 0) -> Callable[[dict], Any]:
    def get(obj: dict) -> Any:
        value: Any = obj
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        return default if value is None else value

    return get


def _age_col() -> Column:
    return ("Age", "string", 0, lambda o: _age(o["metadata"].get("creationTimestamp")))


def _builtin_columns(rt: ResourceType) -> list[Column] | None:
    kind = (rt.group, rt.kind)
    if kind == ("", "Pod"):
        return _pod_columns()
    if kind == ("apps", "Deployment"):
        return [("Ready", "string", 0, lambda d: f"{_g('status', 'readyReplicas')(d)}/{_g('spec', 'replicas')(d)}"),
                ("Up-to-date", "integer", 0, _g("status", "updatedReplicas")),
                ("Available", "integer", 0, _g("status", "availableReplicas")), _age_col()]
    if kind == ("apps", "StatefulSet"):
        return [("Ready", "string", 0, lambda d: f"{_g('status', 'readyReplicas')(d)}/{_g('spec', 'replicas')(d)}"), _age_col()]
    if kind == ("apps", "ReplicaSet"):
        return [("Desired", "integer", 0, _g("spec", "replicas")), ("Current", "integer", 0, _g("status", "replicas")),
                ("Ready", "integer", 0, _g("status", "readyReplicas")), _age_col()]
    if kind == ("", "Service"):
        def ports(s: dict) -> str:
            return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in (s.get("spec") or {}).get("ports") or []) or "<none>"
        return [("Type", "string", 0, _g("spec", "type", default="ClusterIP")),
                ("Cluster-IP", "string", 0, _g("spec", "clusterIP", default="<none>")),
                ("External-IP", "string", 0, lambda s: "<none>"), ("Port(s)", "string", 0, ports), _age_col()]
    if kind == ("", "PersistentVolumeClaim"):
        return [("Status", "string", 0, _g("status", "phase", default="Pending")),
                ("Volume", "string", 0, _g("spec", "volumeName", default="")),
                ("Capacity", "string", 0, _g("status", "capacity", "storage", default="")),
                ("Access Modes", "string", 0, lambda c: ",".join(
                    {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}.get(m, m)
                    for m in (c.get("status") or {}).get("accessModes") or [])),
                ("StorageClass", "string", 0, _g("spec", "storageClassName", default="<unset>")), _age_col()]
    if kind == ("", "Namespace"):
        return [("Status", "string", 0, _g("status", "phase", default="Active")), _age_col()]
    if kind == ("", "Node"):
        def ready(n: dict) -> str:
            for c in (n.get("status") or {}).get("conditions") or []:
                if c.get("type") == "Ready":
                    return "Ready" if c.get("status") == "True" else "NotReady"
            return "Unknown"

        def roles(n: dict) -> str:
            found = sorted(k.split("/", 1)[1] for k in (n["metadata"].get("labels") or {}) if k.startswith("node-role.kubernetes.io/"))
            return ",".join(found) or "<none>"
        return [("Status", "string", 0, ready), ("Roles", "string", 0, roles), _age_col(),
                ("Version", "string", 0, _g("status", "nodeInfo", "kubeletVersion", default=""))]
    if kind == ("", "Secret"):
        return [("Type", "string", 0, _g("type", default="Opaque")), ("Data", "integer", 0, lambda s: len(s.get("data") or {})), _age_col()]
    if kind == ("", "ConfigMap"):
        return [("Data", "integer", 0, lambda c: len(c.get("data") or {}) + len(c.get("binaryData") or {})), _age_col()]
    if kind == ("coordination.k8s.io", "Lease"):
        return [("Holder", "string", 0, _g("spec", "holderIdentity", default="")), _age_col()]
    return None


def columns_for(rt: ResourceType, version: str | None) -> list[Column]:
    builtin = _builtin_columns(rt)
    if builtin is not None:
        return builtin
    columns: list[Column] = []
    for pc in rt.printer_columns.get(version or rt.versions[0], []):
        path, ctype = pc["jsonPath"], pc.get("type", "string")
        columns.append((pc["name"], ctype, int(pc.get("priority", 0)),
                        lambda o, path=path, ctype=ctype: _cell(json_path(o, path), ctype)))
    if not any(c[0] == "Age" for c in columns):
        columns.append(_age_col())
    return columns


def table(rt: ResourceType, version: str | None, objects: list[dict], list_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    columns = columns_for(rt, version)
    definitions = [{"name": "Name", "type": "string", "format": "name", "description": "Name of the object", "priority": 0}]
    definitions += [{"name": name, "type": ctype, "format": "", "description": name, "priority": priority}
                    for name, ctype, priority, _ in columns]
    rows = []
    for obj in objects:
        cells = [obj["metadata"]["name"]] + [getter(obj) for _, _, _, getter in columns]
        rows.append({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                                "metadata": obj["metadata"]}})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta or {},
            "columnDefinitions": definitions, "rows": rows}
