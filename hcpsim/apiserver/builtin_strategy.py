"""What the real server does to built-in kinds on write: defaults, status reset on create, and the
validations the runbooks and kubectl can trip over. Custom resources get theirs from the CRD schema.
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
from typing import Any

from hcpsim.apiserver.errors import FieldError
from hcpsim.apiserver.resources import ResourceType
from hcpsim.apiserver.selectors import label_selector_from_spec

_cluster_ips = itertools.count(10)


def prepare_for_create(rt: ResourceType, obj: dict) -> None:
    if rt.has_status and rt.kind not in ("Namespace",):
        obj.pop("status", None)
    defaulter = _DEFAULTERS.get((rt.group, rt.kind))
    if defaulter:
        defaulter(obj, None)


def prepare_for_update(rt: ResourceType, obj: dict, old: dict) -> None:
    defaulter = _DEFAULTERS.get((rt.group, rt.kind))
    if defaulter:
        defaulter(obj, old)


_SPEC_STATUS = ("spec", "status")
# Top-level fields of each built-in kind (its Go type). Anything else is dropped on decode, as the
# real server's typed decoding does, and is an error with fieldValidation=Strict.
_TOP_LEVEL_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "ConfigMap"): ("data", "binaryData", "immutable"),
    ("", "Secret"): ("data", "stringData", "type", "immutable"),
    ("", "Endpoints"): ("subsets",),
    ("", "ServiceAccount"): ("secrets", "imagePullSecrets", "automountServiceAccountToken"),
    ("", "Event"): ("involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp", "count", "type",
                    "eventTime", "series", "action", "related", "reportingComponent", "reportingInstance"),
    ("rbac.authorization.k8s.io", "Role"): ("rules",),
    ("rbac.authorization.k8s.io", "ClusterRole"): ("rules", "aggregationRule"),
    ("rbac.authorization.k8s.io", "RoleBinding"): ("subjects", "roleRef"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): ("subjects", "roleRef"),
    ("coordination.k8s.io", "Lease"): ("spec",),
}
# A ConfigMap's or Secret's data may hold at most 1 MiB (core validation MaxSecretSize / ConfigMap).
MAX_DATA_BYTES = 1024 * 1024


def drop_unknown_fields(rt: ResourceType, obj: dict) -> list[str]:
    """Remove top-level fields the kind does not have; returns their names."""
    known = {"apiVersion", "kind", "metadata", *_TOP_LEVEL_FIELDS.get((rt.group, rt.kind), _SPEC_STATUS)}
    unknown = [k for k in obj if k not in known]
    for k in unknown:
        del obj[k]
    return unknown


def validate(rt: ResourceType, obj: dict, old: dict | None) -> list[FieldError]:
    validator = _VALIDATORS.get((rt.group, rt.kind))
    return validator(obj, old) if validator else []


# Defaults (a subset of pkg/apis/*/v1/defaults.go: what clients commonly read back).


def _default_namespace(obj: dict, old: dict | None) -> None:
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    if old is None:
        obj["status"] = {"phase": "Active"}
    else:
        obj["status"] = old.get("status", {"phase": "Active"})
    labels = obj["metadata"].setdefault("labels", {})
    labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]


def _default_pod_spec(spec: dict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        image = container.get("image", "")
        tag_latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if tag_latest else "IfNotPresent")
        container.setdefault("resources", {})
        for port in container.get("ports", []):
            port.setdefault("protocol", "TCP")


def _default_pod(obj: dict, old: dict | None) -> None:
    _default_pod_spec(obj.setdefault("spec", {}))
    if old is None:
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}


def _default_template(obj: dict) -> None:
    template = obj.setdefault("spec", {}).setdefault("template", {})
    _default_pod_spec(template.setdefault("spec", {}))


def _default_deployment(obj: dict, old: dict | None) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        strategy.setdefault("type", "RollingUpdate")
        strategy.setdefault("rollingUpdate", {}).setdefault("maxSurge", "25%")
        strategy["rollingUpdate"].setdefault("maxUnavailable", "25%")
    _default_template(obj)


def _default_statefulset(obj: dict, old: dict | None) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("revisionHistoryLimit", 10)
    update = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
    if update.get("type") == "RollingUpdate":
        update.setdefault("rollingUpdate", {"partition": 0})
    spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
    for claim in spec.get("volumeClaimTemplates", []):
        claim.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
    _default_template(obj)


def _default_replicaset(obj: dict, old: dict | None) -> None:
    obj.setdefault("spec", {}).setdefault("replicas", 1)
    _default_template(obj)


def _default_service(obj: dict, old: dict | None) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if old is not None and old.get("spec", {}).get("clusterIP"):
        # clusterIP is allocated once and immutable; keep it when an update leaves it out.
        spec.setdefault("clusterIP", old["spec"]["clusterIP"])
        spec.setdefault("clusterIPs", old["spec"].get("clusterIPs", [old["spec"]["clusterIP"]]))
    elif spec.get("clusterIP") != "None" and not spec.get("clusterIP"):
        n = next(_cluster_ips)
        ip = str(ipaddress.IPv4Address("172.30.0.0") + n)
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]
    for port in spec.get("ports", []):
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    if old is None:
        obj["status"] = {"loadBalancer": {}}


def _default_secret(obj: dict, old: dict | None) -> None:
    obj.setdefault("type", "Opaque")
    # stringData is write-only: merged into data and never stored (core/v1 Secret docs).
    string_data = obj.pop("stringData", None) or {}
    if string_data:
        data = obj.setdefault("data", {})
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()


def _default_pvc(obj: dict, old: dict | None) -> None:
    obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
    if old is None:
        obj["status"] = {"phase": "Pending"}


def _default_node(obj: dict, old: dict | None) -> None:
    if old is None:
        obj.setdefault("status", {})


_DEFAULTERS = {
    ("", "Namespace"): _default_namespace,
    ("", "Pod"): _default_pod,
    ("", "Service"): _default_service,
    ("", "Secret"): _default_secret,
    ("", "PersistentVolumeClaim"): _default_pvc,
    ("", "Node"): _default_node,
    ("apps", "Deployment"): _default_deployment,
    ("apps", "StatefulSet"): _default_statefulset,
    ("apps", "ReplicaSet"): _default_replicaset,
}


# Validation (a subset of pkg/apis/*/validation: the checks a client is likely to hit).


def _validate_containers(spec: dict, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    containers = spec.get("containers")
    if not containers:
        errors.append(FieldError("FieldValueRequired", f"{path}.containers", ""))
        return errors
    seen: set[str] = set()
    for i, c in enumerate(containers):
        name = c.get("name")
        if not name:
            errors.append(FieldError("FieldValueRequired", f"{path}.containers[{i}].name", ""))
        elif name in seen:
            errors.append(FieldError("FieldValueDuplicate", f"{path}.containers[{i}].name", "", name, True))
        seen.add(name or "")
        if not c.get("image"):
            errors.append(FieldError("FieldValueRequired", f"{path}.containers[{i}].image", ""))
    return errors


def _validate_pod(obj: dict, old: dict | None) -> list[FieldError]:
    errors = _validate_containers(obj.get("spec") or {}, "spec")
    if old is not None:
        # Pod spec is immutable but for images and a few fields; the runbooks never change it.
        new_spec, old_spec = dict(obj.get("spec") or {}), dict(old.get("spec") or {})
        for s in (new_spec, old_spec):
            s.pop("activeDeadlineSeconds", None)
            s.pop("tolerations", None)
            s["containers"] = [{k: v for k, v in c.items() if k != "image"} for c in s.get("containers", [])]
            s["initContainers"] = [{k: v for k, v in c.items() if k != "image"} for c in s.get("initContainers", [])]
        if old_spec.get("nodeName") and new_spec.get("nodeName") != old_spec.get("nodeName"):
            errors.append(FieldError("FieldValueForbidden", "spec", "pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations)"))
    return errors


def _validate_workload(obj: dict, old: dict | None) -> list[FieldError]:
    errors: list[FieldError] = []
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    if not selector:
        errors.append(FieldError("FieldValueRequired", "spec.selector", ""))
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if selector and not label_selector_from_spec(selector).matches(labels):
        errors.append(FieldError("FieldValueInvalid", "spec.template.metadata.labels", "`selector` does not match template `labels`",
                                 labels, True))
    errors += _validate_containers(template.get("spec") or {}, "spec.template.spec")
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and replicas < 0:
        errors.append(FieldError("FieldValueInvalid", "spec.replicas", "must be greater than or equal to 0", replicas, True))
    if old is not None and old.get("spec", {}).get("selector") != selector:
        errors.append(FieldError("FieldValueInvalid", "spec.selector", "field is immutable", selector, True))
    return errors


def _validate_statefulset(obj: dict, old: dict | None) -> list[FieldError]:
    errors = _validate_workload(obj, old)
    if old is not None:
        spec, old_spec = obj.get("spec") or {}, old.get("spec") or {}
        mutable = {"replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
                   "minReadySeconds", "revisionHistoryLimit"}
        if {k: v for k, v in spec.items() if k not in mutable} != {k: v for k, v in old_spec.items() if k not in mutable}:
            errors.append(FieldError("FieldValueForbidden", "spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
    return errors


def _validate_service(obj: dict, old: dict | None) -> list[FieldError]:
    errors: list[FieldError] = []
    spec = obj.get("spec") or {}
    if spec.get("type") not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        errors.append(FieldError("FieldValueNotSupported", "spec.type",
                                 'supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"', spec.get("type"), True))
    if old is not None and old.get("spec", {}).get("clusterIP") and spec.get("clusterIP") != old["spec"]["clusterIP"]:
        errors.append(FieldError("FieldValueInvalid", "spec.clusterIPs[0]", "may not change once set", spec.get("clusterIP"), True))
    return errors


def _validate_pvc(obj: dict, old: dict | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errors: list[FieldError] = []
    if not spec.get("accessModes"):
        errors.append(FieldError("FieldValueRequired", "spec.accessModes", "at least 1 access mode is required"))
    if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
        errors.append(FieldError("FieldValueRequired", "spec.resources[storage]", ""))
    if old is not None:
        old_spec = old.get("spec") or {}
        # Size may grow, and the binder sets volumeName once.
        def strip(s: dict) -> dict:
            return {k: v for k, v in s.items() if k not in ("resources", "volumeName")}

        if strip(spec) != strip(old_spec) or (old_spec.get("volumeName") and spec.get("volumeName") != old_spec["volumeName"]):
            errors.append(FieldError("FieldValueForbidden", "spec", "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"))
    return errors


def _data_size(obj: dict) -> int:
    import base64 as b64

    size = sum(len(k) + len(v or "") for k, v in (obj.get("data") or {}).items()
               if obj.get("kind") == "ConfigMap")
    if obj.get("kind") == "Secret":
        size = sum(len(b64.b64decode(v or "", validate=False)) for v in (obj.get("data") or {}).values())
    size += sum(len(k) + len(b64.b64decode(v or "", validate=False)) for k, v in (obj.get("binaryData") or {}).items())
    return size


def _validate_configmap(obj: dict, old: dict | None) -> list[FieldError]:
    if _data_size(obj) > MAX_DATA_BYTES:
        return [FieldError("FieldValueTooLong", "[]", f"must have at most {MAX_DATA_BYTES} bytes")]
    if old is not None and old.get("immutable") and (old.get("data") != obj.get("data") or old.get("binaryData") != obj.get("binaryData")):
        return [FieldError("FieldValueForbidden", "data", "field is immutable when `immutable` is set")]
    return []


def _validate_secret(obj: dict, old: dict | None) -> list[FieldError]:
    errors: list[FieldError] = []
    for k, v in (obj.get("data") or {}).items():
        try:
            base64.b64decode(v or "", validate=True)
        except Exception:
            errors.append(FieldError("FieldValueInvalid", f"data[{k}]", "illegal base64 data", "", True))
    if not errors and _data_size(obj) > MAX_DATA_BYTES:
        errors.append(FieldError("FieldValueTooLong", "data", f"must have at most {MAX_DATA_BYTES} bytes"))
    if old is not None and old.get("type") != obj.get("type"):
        errors.append(FieldError("FieldValueInvalid", "type", "field is immutable", obj.get("type"), True))
    if old is not None and old.get("immutable") and (old.get("data") != obj.get("data")):
        errors.append(FieldError("FieldValueForbidden", "data", "field is immutable when `immutable` is set"))
    return errors


def _validate_lease(obj: dict, old: dict | None) -> list[FieldError]:
    spec: dict[str, Any] = obj.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (not isinstance(duration, int) or duration <= 0):
        return [FieldError("FieldValueInvalid", "spec.leaseDurationSeconds", "must be greater than 0", duration, True)]
    return []


_VALIDATORS = {
    ("", "Pod"): _validate_pod,
    ("", "Service"): _validate_service,
    ("", "PersistentVolumeClaim"): _validate_pvc,
    ("", "Secret"): _validate_secret,
    ("", "ConfigMap"): _validate_configmap,
    ("apps", "Deployment"): _validate_workload,
    ("apps", "ReplicaSet"): _validate_workload,
    ("apps", "StatefulSet"): _validate_statefulset,
    ("coordination.k8s.io", "Lease"): _validate_lease,
}
