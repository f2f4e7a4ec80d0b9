"""The verbs of the Kubernetes API with a real kube-apiserver's semantics, over one cluster's Store.

This is the simulator's model layer (moto's `models.py`): the HTTP layer (responses.py) only
decodes requests and encodes answers; controllers of the simulated world call the same Backend
in-process. Every write goes through here, so validation, defaults, generation, finalizers,
garbage collection and namespace cascade behave the same whoever writes.
"""

from __future__ import annotations

import base64
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from hcpsim.apiserver import builtin_strategy, crds, names, patch
from hcpsim.apiserver.clock import now_rfc3339
from hcpsim.apiserver.errors import ApiError, FieldError
from hcpsim.apiserver.resources import Registry, ResourceType
from hcpsim.apiserver.selectors import (
    fields_for_kind,
    label_selector_as_string,
    parse_field_selector,
    parse_label_selector,
)
from hcpsim.apiserver.store import Store, copy_obj

CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACE_KEY = ("", "namespaces")

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


@dataclass
class DeleteOptions:
    propagation_policy: str | None = None  # Orphan, Background, Foreground
    grace_period_seconds: int | None = None
    preconditions: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False

    @classmethod
    def from_body(cls, body: dict | None, query: dict[str, str]) -> DeleteOptions:
        body = body or {}
        policy = query.get("propagationPolicy") or body.get("propagationPolicy")
        orphan = body.get("orphanDependents", query.get("orphanDependents"))
        if policy is None and orphan is not None:
            policy = "Orphan" if str(orphan).lower() == "true" else "Background"
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise ApiError.unprocessable(
                f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "{policy}": '
                'supported values: "Foreground", "Background", "Orphan", "nil"')
        grace = query.get("gracePeriodSeconds", body.get("gracePeriodSeconds"))
        dry_run = query.get("dryRun") == "All" or body.get("dryRun") == ["All"]
        return cls(policy, int(grace) if grace is not None else None, body.get("preconditions") or {}, dry_run)


DeleteHook = Callable[[ResourceType, dict, DeleteOptions], bool]


class Backend:
    def __init__(self, name: str, store: Store | None = None, registry: Registry | None = None) -> None:
        self.name = name
        self.store = store or Store()
        self.registry = registry or Registry()
        # A hook may take over a delete (a pod with a grace period is stopped by the kubelet first);
        # it returns True when it did and the object stays with deletionTimestamp set. It is asked again
        # when the object is already terminating (a shorter grace period brings the stop forward).
        self.graceful_delete_hooks: dict[tuple[str, str], DeleteHook] = {}
        self._dependents: dict[str, set[tuple[tuple[str, str], str, str]]] = {}
        self._gc_lock = threading.RLock()
        self.store.subscribe(self._index_owners)
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create(self.registry.require(*NAMESPACE_KEY), None, {"metadata": {"name": ns}})

    # Reads.

    def get(self, rt: ResourceType, namespace: str | None, name: str, version: str | None = None) -> dict:
        obj = self.store.get(rt.key, namespace or "", name)
        if obj is None:
            raise ApiError.not_found(rt.group, rt.plural, name)
        return self._out(rt, obj, version)

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> dict:
        matches = self.matcher(rt, label_selector, field_selector)
        with self.store.lock:
            rv = self.store.resource_version
            items = self.store.items(rt.key, namespace)
            start: tuple[str, str] | None = None
            if continue_token:
                token_rv, start = _decode_continue(continue_token)
                if token_rv < self.store.compacted_rv:
                    raise ApiError.gone("The provided continue parameter is too old to display a consistent list result. "
                                        "You can start a new list without the continue parameter, or use the continue token "
                                        "in this response to retrieve the remainder of the results.")
                rv = token_rv
            selected: list[dict] = []
            next_token = None
            remaining = 0
            for obj in items:
                meta = obj["metadata"]
                position = (meta.get("namespace", ""), meta["name"])
                if start is not None and position <= start:
                    continue
                if not matches(obj):
                    continue
                if limit and len(selected) >= limit:
                    remaining += 1
                    continue
                selected.append(obj)
            if remaining:
                last = selected[-1]["metadata"]
                next_token = _encode_continue(rv, (last.get("namespace", ""), last["name"]))
            out_items = [self._out(rt, obj, version) for obj in selected]
        metadata: dict[str, Any] = {"resourceVersion": str(rv)}
        if next_token:
            metadata["continue"] = next_token
            if not label_selector and not field_selector:
                # Unset with selectors: the server cannot know the count without a full scan (ListMeta docs).
                metadata["remainingItemCount"] = remaining
        return {"kind": rt.list_kind, "apiVersion": rt.api_version(version), "metadata": metadata, "items": out_items}

    def matcher(self, rt: ResourceType, label_selector: str | None, field_selector: str | None) -> Callable[[dict], bool]:
        labels = parse_label_selector(label_selector) if label_selector else None
        fields = parse_field_selector(field_selector, fields_for_kind(rt.group, rt.kind)) if field_selector else None

        def matches(obj: dict) -> bool:
            if labels is not None and not labels.matches(obj["metadata"].get("labels")):
                return False
            return fields is None or fields.matches(obj)

        return matches

    # Writes.

    def create(self, rt: ResourceType, namespace: str | None, body: Any, *, version: str | None = None,
               dry_run: bool = False, field_validation: str | None = None) -> dict:
        obj = self._decode_body(rt, body, version)
        meta = obj.setdefault("metadata", {})
        self._check_namespace(rt, namespace, meta)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = names.generate_name(meta["generateName"])
        with self.store.lock:
            if rt.namespaced:
                self._require_live_namespace(namespace or "")
            if self.store.get(rt.key, meta.get("namespace", ""), meta.get("name", "")) is not None:
                raise ApiError.already_exists(rt.group, rt.plural, meta["name"])
            for server_field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
                meta.pop(server_field, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            meta.pop("generation", None)
            if _tracks_generation(rt):
                meta["generation"] = 1
            if rt.builtin:
                builtin_strategy.prepare_for_create(rt, obj)
            elif rt.has_status:
                obj.pop("status", None)
            self._validate(rt, obj, None, version, field_validation)
            if rt.key == CRD_KEY:
                new_type = crds.resource_type_from_crd(obj)
                obj["status"] = crds.established_status(obj)
            if dry_run:
                return self._out(rt, obj, version)
            self.store.put(rt.key, obj, "ADDED")
            if rt.key == CRD_KEY:
                self.registry.add(new_type)
            return self._out(rt, obj, version)

    def update(self, rt: ResourceType, namespace: str | None, name: str, body: Any, *, subresource: str | None = None,
               version: str | None = None, dry_run: bool = False, field_validation: str | None = None) -> dict:
        if version is None:
            version = _stored_version(rt, self.store.get(rt.key, namespace or "", name))
        new = self._decode_body(rt, body, version)
        if not rt.builtin and not (new.get("metadata") or {}).get("resourceVersion"):
            # Custom resources do not allow unconditional updates (customresource strategy).
            raise ApiError.invalid(rt.kind, rt.group, name, [FieldError(
                "FieldValueInvalid", "metadata.resourceVersion", "must be specified for an update", 0, True)])
        with self.store.lock:
            old = self.store.get(rt.key, namespace or "", name)
            if old is None:
                raise ApiError.not_found(rt.group, rt.plural, name)
            return self._commit_update(rt, old, new, subresource=subresource, version=version, dry_run=dry_run,
                                       field_validation=field_validation)

    def patch(self, rt: ResourceType, namespace: str | None, name: str, patch_type: str, patch_body: bytes, *,
              subresource: str | None = None, version: str | None = None, dry_run: bool = False,
              field_validation: str | None = None) -> dict:
        document = _decode_patch(patch_type, patch_body)
        if patch_type == STRATEGIC_PATCH and not patch.supports_strategic_merge(rt.group, rt.kind):
            raise ApiError.unsupported_media_type(patch_type)
        with self.store.lock:
            old = self.store.get(rt.key, namespace or "", name)
            if old is None:
                raise ApiError.not_found(rt.group, rt.plural, name)
            version = version or _stored_version(rt, old)
            current = self._out(rt, old, version)
            patched = _apply_patch(patch_type, current, document, rt.group, rt.kind)
            if not isinstance(patched, dict):
                raise ApiError.bad_request("the patch produced something that is not an object")
            # A patch without resourceVersion applies to the current object (no conflict possible).
            patched.setdefault("metadata", {})
            if "resourceVersion" not in (document.get("metadata") or {} if isinstance(document, dict) else {}):
                patched["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            return self._commit_update(rt, old, patched, subresource=subresource, version=version, dry_run=dry_run,
                                       field_validation=field_validation)

    def delete(self, rt: ResourceType, namespace: str | None, name: str, options: DeleteOptions | None = None) -> tuple[dict, bool]:
        """Delete one object. Returns (the object, True if it is gone now / False if deletion is pending)."""
        options = options or DeleteOptions()
        with self.store.lock:
            obj = self.store.get(rt.key, namespace or "", name)
            if obj is None:
                raise ApiError.not_found(rt.group, rt.plural, name)
            meta = obj["metadata"]
            pre = options.preconditions
            if pre.get("uid") and pre["uid"] != meta["uid"]:
                raise ApiError.conflict(rt.group, rt.plural, name,
                                        f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta['uid']}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
                raise ApiError.conflict(rt.group, rt.plural, name,
                                        f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                                        f"ResourceVersion in object meta: {meta['resourceVersion']}")
            if options.dry_run:
                return self._out(rt, obj, None), not meta.get("finalizers")
            finalizers = list(meta.get("finalizers") or [])
            policy = options.propagation_policy
            if policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            elif policy == "Foreground" and "foregroundDeletion" not in finalizers and self._has_dependents(meta["uid"]):
                finalizers.append("foregroundDeletion")
            if rt.key == NAMESPACE_KEY:
                return self._delete_namespace(rt, obj), False
            hook = self.graceful_delete_hooks.get(rt.key)
            if not finalizers and hook and hook(rt, obj, options):
                return self._out(rt, self.store.get(rt.key, namespace or "", name) or obj, None), False
            if finalizers:
                if meta.get("deletionTimestamp") and finalizers == list(meta.get("finalizers") or []):
                    return self._out(rt, obj, None), False
                updated = copy_obj(obj)
                updated["metadata"]["finalizers"] = finalizers
                updated["metadata"].setdefault("deletionTimestamp", now_rfc3339())
                updated["metadata"].setdefault("deletionGracePeriodSeconds", 0)
                self.store.put(rt.key, updated, "MODIFIED")
                self._process_gc_finalizers(rt, updated)
                current = self.store.get(rt.key, namespace or "", name)
                return self._out(rt, current or updated, None), current is None
            removed = self._remove(rt, obj)
            return self._out(rt, removed, None), True

    def delete_collection(self, rt: ResourceType, namespace: str | None, label_selector: str | None,
                          field_selector: str | None, options: DeleteOptions | None = None) -> dict:
        matches = self.matcher(rt, label_selector, field_selector)
        deleted: list[dict] = []
        with self.store.lock:
            for obj in list(self.store.items(rt.key, namespace)):
                if matches(obj):
                    out, _ = self.delete(rt, obj["metadata"].get("namespace"), obj["metadata"]["name"], options)
                    deleted.append(out)
        return {"kind": rt.list_kind, "apiVersion": rt.api_version(), "metadata": {"resourceVersion": str(self.store.resource_version)},
                "items": deleted}

    # The scale subresource (autoscaling/v1 Scale).

    def get_scale(self, rt: ResourceType, namespace: str | None, name: str) -> dict:
        if rt.scale is None:
            raise ApiError.path_not_found()
        obj = self.store.get(rt.key, namespace or "", name)
        if obj is None:
            raise ApiError.not_found(rt.group, rt.plural, name)
        return self._scale_of(rt, obj)

    def update_scale(self, rt: ResourceType, namespace: str | None, name: str, scale: Any, *,
                     patch_type: str | None = None, dry_run: bool = False) -> dict:
        if rt.scale is None:
            raise ApiError.path_not_found()
        with self.store.lock:
            obj = self.store.get(rt.key, namespace or "", name)
            if obj is None:
                raise ApiError.not_found(rt.group, rt.plural, name)
            current = self._scale_of(rt, obj)
            if patch_type is not None:
                document = _decode_patch(patch_type, scale)
                # Scale is a built-in type: a strategic patch of it is a plain merge (no lists).
                kind = MERGE_PATCH if patch_type == STRATEGIC_PATCH else patch_type
                scale = _apply_patch(kind, current, document, "autoscaling", "Scale")
                scale.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
            if not isinstance(scale, dict):
                raise ApiError.bad_request("the body of the request was not a Scale object")
            replicas = (scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise ApiError.invalid("Scale", "autoscaling", name, [
                    FieldError("FieldValueInvalid", "spec.replicas", "must be greater than or equal to 0", replicas, True)])
            rv = (scale.get("metadata") or {}).get("resourceVersion")
            if rv and rv != obj["metadata"]["resourceVersion"]:
                raise ApiError.conflict(rt.group, rt.plural, name, _MODIFIED)
            new = copy_obj(obj)
            _set_path(new, rt.scale.spec_replicas_path, replicas)
            self._commit_update(rt, obj, new, subresource=None, version=None, dry_run=dry_run, internal=True)
            return self._scale_of(rt, self.store.get(rt.key, namespace or "", name) if not dry_run else new)

    # Internals.

    def _commit_update(self, rt: ResourceType, old: dict, new: dict, *, subresource: str | None, version: str | None,
                       dry_run: bool, internal: bool = False, field_validation: str | None = None) -> dict:
        meta = new.setdefault("metadata", {})
        old_meta = old["metadata"]
        name = old_meta["name"]
        if meta.get("name") and meta["name"] != name:
            raise ApiError.bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        if meta.get("namespace") and rt.namespaced and meta["namespace"] != old_meta.get("namespace"):
            raise ApiError.bad_request("the namespace of the provided object does not match the namespace sent on the request")
        rv = meta.get("resourceVersion")
        if rv and rv != old_meta["resourceVersion"]:
            raise ApiError.conflict(rt.group, rt.plural, name, _MODIFIED)
        if meta.get("uid") and meta["uid"] != old_meta["uid"]:
            raise ApiError.conflict(rt.group, rt.plural, name,
                                    f"Precondition failed: UID in precondition: {meta['uid']}, UID in object meta: {old_meta['uid']}")
        if subresource == "status":
            # The status subresource writes status alone (plus nothing of spec or metadata).
            merged = copy_obj(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
            meta = new["metadata"]
        else:
            new["metadata"] = meta = dict(meta)
            for server_field in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
                if server_field in old_meta:
                    meta[server_field] = old_meta[server_field]
                else:
                    meta.pop(server_field, None)
            meta["name"] = name
            if rt.namespaced:
                meta["namespace"] = old_meta.get("namespace")
            meta.pop("managedFields", None)
            if rt.has_status and not internal:
                if "status" in old:
                    new["status"] = copy_obj(old["status"])
                else:
                    new.pop("status", None)
            if old_meta.get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
                if added:
                    raise ApiError.invalid(rt.kind, rt.group, name, [FieldError(
                        "FieldValueForbidden", "metadata.finalizers", "no new finalizers can be added if the object is being deleted",
                        sorted(added), True)])
            if rt.builtin:
                builtin_strategy.prepare_for_update(rt, new, old)
        new["apiVersion"] = rt.api_version(version) if version else old.get("apiVersion", rt.api_version())
        new["kind"] = rt.kind
        # An unconditional update (no resourceVersion) applies to the current object, as the real registry.
        meta["resourceVersion"] = old_meta["resourceVersion"]
        self._validate(rt, new, old, version, field_validation)
        if _spec_changed(new, old) and subresource != "status" and _tracks_generation(rt):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if new == old:
            return self._out(rt, old, version)  # a no-op write commits nothing, as the real server
        if dry_run:
            return self._out(rt, new, version)
        if rt.key == CRD_KEY and subresource != "status":
            self.registry.add(crds.resource_type_from_crd(new))
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            # The last finalizer went: the object is deleted by this write, with one DELETED event.
            return self._out(rt, self._remove(rt, new), version)
        self.store.put(rt.key, new, "MODIFIED")
        if meta.get("deletionTimestamp"):
            self._process_gc_finalizers(rt, new)
            current = self.store.get(rt.key, meta.get("namespace", ""), name)
            if current is not None and not current["metadata"].get("finalizers"):
                return self._out(rt, self._remove(rt, current), version)
            return self._out(rt, current or new, version)
        return self._out(rt, new, version)

    def _validate(self, rt: ResourceType, obj: dict, old: dict | None, version: str | None,
                  field_validation: str | None = None) -> None:
        errors: list[FieldError] = []
        meta = obj["metadata"]
        errors += names.validate_object_meta(meta, rt.namespaced, names.name_rule_for(rt.group, rt.kind))
        if old is not None:
            errors += names.validate_metadata_update(meta, old["metadata"])
        if rt.builtin:
            unknown = builtin_strategy.drop_unknown_fields(rt, obj)
            if unknown and field_validation == "Strict":
                raise ApiError.bad_request("strict decoding error: " + ", ".join(f'unknown field "{k}"' for k in unknown))
            errors += builtin_strategy.validate(rt, obj, old)
        else:
            schema = rt.schemas.get(version or rt.versions[0])
            if schema is not None:
                unknown = schema.prune(obj)
                if unknown and field_validation == "Strict":
                    raise ApiError.bad_request("strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in unknown))
                schema.apply_defaults(obj)
                errors += schema.validate(obj, old)
        if errors:
            raise ApiError.invalid(rt.kind, rt.group, meta.get("name", ""), errors)

    def _decode_body(self, rt: ResourceType, body: Any, version: str | None) -> dict:
        if isinstance(body, (bytes, bytearray, str)):
            try:
                body = orjson.loads(body)
            except orjson.JSONDecodeError as e:
                raise ApiError.bad_request(f"the body of the request could not be decoded as JSON: {e}") from None
        else:
            body = copy_obj(body)
        if not isinstance(body, dict):
            raise ApiError.bad_request("the body of the request must be a JSON object")
        expected = rt.api_version(version)
        api_version = body.get("apiVersion")
        if api_version and api_version != expected:
            raise ApiError.bad_request(f"the API version in the data ({api_version}) does not match the expected API version ({expected})")
        kind = body.get("kind")
        if kind and kind != rt.kind:
            raise ApiError.bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")
        if not isinstance(body.get("metadata", {}), dict):
            raise ApiError.bad_request("metadata must be an object")
        # Stored with the version it was written in: versions share storage without conversion, and
        # an in-process update (no version given) is validated against the same version's schema.
        body["apiVersion"] = expected
        body["kind"] = rt.kind
        return body

    def _check_namespace(self, rt: ResourceType, namespace: str | None, meta: dict) -> None:
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and namespace and body_ns != namespace:
                raise ApiError.bad_request("the namespace of the provided object does not match the namespace sent on the request")
            ns = namespace or body_ns
            if not ns:
                raise ApiError.bad_request("a namespace is required for a namespaced resource")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)

    def _require_live_namespace(self, namespace: str) -> None:
        ns = self.store.get(NAMESPACE_KEY, "", namespace)
        if ns is None:
            raise ApiError.not_found("", "namespaces", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError(403, "Forbidden",
                           f"unable to create new content in namespace {namespace} because it is being terminated",
                           {"name": namespace, "kind": "namespaces",
                            "causes": [{"reason": "NamespaceTerminating", "message": f"namespace {namespace} is being terminated",
                                        "field": "metadata.namespace"}]})

    def _out(self, rt: ResourceType, obj: dict, version: str | None) -> dict:
        out = copy_obj(obj)
        out["apiVersion"] = rt.api_version(version)
        return out

    def _scale_of(self, rt: ResourceType, obj: dict) -> dict:
        assert rt.scale is not None
        meta = obj["metadata"]
        status: dict[str, Any] = {"replicas": _get_path(obj, rt.scale.status_replicas_path) or 0}
        if rt.scale.label_selector_path:
            selector = _get_path(obj, rt.scale.label_selector_path)
            if rt.scale.selector_is_spec and isinstance(selector, dict):
                selector = label_selector_as_string(selector)
            if selector:
                status["selector"] = selector
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta},
            "spec": {"replicas": _get_path(obj, rt.scale.spec_replicas_path) or 0},
            "status": status,
        }

    def _remove(self, rt: ResourceType, obj: dict) -> dict:
        meta = obj["metadata"]
        removed = self.store.remove(rt.key, meta.get("namespace", ""), meta["name"], final=obj)
        assert removed is not None
        if rt.key == CRD_KEY:
            served = self.registry.get(obj["spec"]["group"], obj["spec"]["names"]["plural"])
            if served is not None and served.crd_name == meta["name"]:
                self.registry.remove(served.group, served.plural)
                self.store.drop_type(served.key)
        self._collect_dependents(meta["uid"])
        self._release_foreground_owners(removed)
        if rt.namespaced:
            self._maybe_finish_namespace(meta.get("namespace", ""))
        return removed

    # Garbage collection by ownerReferences (the garbage collector controller, done synchronously).

    def _index_owners(self, event: Any) -> None:
        ref = (event.key, event.namespace, event.name)
        if event.old is not None:
            for owner in event.old["metadata"].get("ownerReferences") or []:
                self._dependents.get(owner.get("uid", ""), set()).discard(ref)
        owners = [] if event.type == "DELETED" else event.obj["metadata"].get("ownerReferences") or []
        if event.type == "DELETED":
            for owner in event.obj["metadata"].get("ownerReferences") or []:
                self._dependents.get(owner.get("uid", ""), set()).discard(ref)
        for owner in owners:
            self._dependents.setdefault(owner.get("uid", ""), set()).add(ref)

    def _has_dependents(self, uid: str) -> bool:
        return bool(self._dependents.get(uid))

    def _dependent_objects(self, uid: str) -> list[tuple[ResourceType, dict]]:
        out = []
        for key, ns, name in sorted(self._dependents.get(uid, set())):
            rt = self.registry.get(*key)
            obj = self.store.get(key, ns, name)
            if rt is not None and obj is not None:
                out.append((rt, obj))
        return out

    def _collect_dependents(self, owner_uid: str) -> None:
        for rt, obj in self._dependent_objects(owner_uid):
            refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid]
            live = [r for r in refs if self._owner_exists(r, obj)]
            if live:
                updated = copy_obj(obj)
                updated["metadata"]["ownerReferences"] = refs
                self.store.put(rt.key, updated, "MODIFIED")
            elif not obj["metadata"].get("deletionTimestamp") or obj["metadata"].get("finalizers"):
                try:
                    self.delete(rt, obj["metadata"].get("namespace"), obj["metadata"]["name"], DeleteOptions("Background"))
                except ApiError:
                    pass

    def _owner_exists(self, ref: dict, dependent: dict) -> bool:
        api_version = ref.get("apiVersion", "")
        group = api_version.split("/")[0] if "/" in api_version else ""
        rt = self.registry.by_kind(group, ref.get("kind", ""))
        if rt is None:
            return False
        ns = dependent["metadata"].get("namespace", "") if rt.namespaced else ""
        owner = self.store.get(rt.key, ns, ref.get("name", ""))
        return owner is not None and owner["metadata"]["uid"] == ref.get("uid")

    def _process_gc_finalizers(self, rt: ResourceType, obj: dict) -> None:
        meta = obj["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        changed = False
        if "orphan" in finalizers:
            for dep_rt, dep in self._dependent_objects(meta["uid"]):
                updated = copy_obj(dep)
                updated["metadata"]["ownerReferences"] = [r for r in dep["metadata"].get("ownerReferences") or []
                                                          if r.get("uid") != meta["uid"]]
                if not updated["metadata"]["ownerReferences"]:
                    del updated["metadata"]["ownerReferences"]
                self.store.put(dep_rt.key, updated, "MODIFIED")
            finalizers.remove("orphan")
            changed = True
        if "foregroundDeletion" in finalizers:
            for dep_rt, dep in self._dependent_objects(meta["uid"]):
                if not dep["metadata"].get("deletionTimestamp"):
                    self.delete(dep_rt, dep["metadata"].get("namespace"), dep["metadata"]["name"], DeleteOptions("Foreground"))
            if not self._dependent_objects(meta["uid"]):
                finalizers.remove("foregroundDeletion")
                changed = True
        if changed:
            current = self.store.get(rt.key, meta.get("namespace", ""), meta["name"])
            if current is None:
                return
            updated = copy_obj(current)
            updated["metadata"]["finalizers"] = finalizers
            if not finalizers:
                updated["metadata"].pop("finalizers")
                self.store.put(rt.key, updated, "MODIFIED")
                self._remove(rt, updated)
            else:
                self.store.put(rt.key, updated, "MODIFIED")

    def _release_foreground_owners(self, removed: dict) -> None:
        """Owners waiting in foreground deletion finish once their last dependent is gone."""
        for ref in removed["metadata"].get("ownerReferences") or []:
            api_version = ref.get("apiVersion", "")
            owner_rt = self.registry.by_kind(api_version.split("/")[0] if "/" in api_version else "", ref.get("kind", ""))
            if owner_rt is None:
                continue
            ns = removed["metadata"].get("namespace", "") if owner_rt.namespaced else ""
            owner = self.store.get(owner_rt.key, ns, ref.get("name", ""))
            if owner is not None and "foregroundDeletion" in (owner["metadata"].get("finalizers") or []):
                self._process_gc_finalizers(owner_rt, owner)

    # Namespaces (the namespace controller, done synchronously).

    def _delete_namespace(self, rt: ResourceType, ns_obj: dict) -> dict:
        name = ns_obj["metadata"]["name"]
        if not ns_obj["metadata"].get("deletionTimestamp"):
            updated = copy_obj(ns_obj)
            updated["metadata"]["deletionTimestamp"] = now_rfc3339()
            updated["metadata"]["deletionGracePeriodSeconds"] = 0
            updated["status"] = {"phase": "Terminating"}
            self.store.put(rt.key, updated, "MODIFIED")
        for content_rt in self.registry.all():
            if not content_rt.namespaced:
                continue
            for obj in list(self.store.items(content_rt.key, name)):
                if not obj["metadata"].get("deletionTimestamp"):
                    try:
                        self.delete(content_rt, name, obj["metadata"]["name"], DeleteOptions("Background"))
                    except ApiError:
                        pass
        self._maybe_finish_namespace(name)
        return self.store.get(rt.key, "", name) or updated

    def _maybe_finish_namespace(self, namespace: str) -> None:
        ns_obj = self.store.get(NAMESPACE_KEY, "", namespace)
        if ns_obj is None or not ns_obj["metadata"].get("deletionTimestamp"):
            return
        if self.store.count_in_namespace(namespace) == 0:
            self.store.remove(NAMESPACE_KEY, "", namespace)

    # Helpers for controllers of the simulated world.

    def type_for(self, group: str, plural: str) -> ResourceType:
        return self.registry.require(group, plural)

    def install_crd(self, crd: dict) -> dict:
        """Create or replace a CRD (loading upstream definitions at start)."""
        rt = self.registry.require(*CRD_KEY)
        existing = self.store.get(CRD_KEY, "", crd["metadata"]["name"])
        if existing is None:
            return self.create(rt, None, crd)
        body = copy_obj(crd)
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        return self.update(rt, None, crd["metadata"]["name"], body)


_MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"
# Built-in kinds whose registry strategy maintains metadata.generation (custom resources always do).
_GENERATION_KINDS = {("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "ReplicaSet"),
                     ("apiextensions.k8s.io", "CustomResourceDefinition")}


def _tracks_generation(rt: ResourceType) -> bool:
    return not rt.builtin or (rt.group, rt.kind) in _GENERATION_KINDS


def _spec_changed(new: dict, old: dict) -> bool:
    strip = lambda o: {k: v for k, v in o.items() if k not in ("metadata", "status", "apiVersion", "kind")}  # noqa: E731
    return strip(new) != strip(old)


def _stored_version(rt: ResourceType, obj: dict | None) -> str | None:
    api_version = (obj or {}).get("apiVersion", "")
    version = api_version.rsplit("/", 1)[-1] if api_version else None
    return version if version in rt.versions else None


def _decode_patch(patch_type: str, body: Any) -> Any:
    if patch_type not in (MERGE_PATCH, JSON_PATCH, STRATEGIC_PATCH):
        if patch_type == APPLY_PATCH:
            raise ApiError(415, "UnsupportedMediaType",
                           "server-side apply is not supported by this simulator; use client-side `kubectl apply` or a merge patch")
        raise ApiError.unsupported_media_type(patch_type)
    if isinstance(body, (bytes, bytearray, str)):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise ApiError.bad_request(f"error decoding patch: {e}") from None
    return body


def _apply_patch(patch_type: str, current: dict, document: Any, group: str, kind: str) -> Any:
    if patch_type == MERGE_PATCH:
        return patch.apply_merge_patch(current, document)
    if patch_type == JSON_PATCH:
        return patch.apply_json_patch(current, document)
    return patch.apply_strategic_merge_patch(current, document, group, kind)


def _get_path(obj: dict, path: str) -> Any:
    value: Any = obj
    for part in path.strip(".").split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _set_path(obj: dict, path: str, value: Any) -> None:
    parts = path.strip(".").split(".")
    target = obj
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def _encode_continue(rv: int, start: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"rv": rv, "start": list(start)})).decode()


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), (str(data["start"][0]), str(data["start"][1]))
    except Exception:
        raise ApiError.bad_request("continue key is not valid: illegal base64 data or malformed token") from None


__all__ = ["Backend", "DeleteOptions", "MERGE_PATCH", "JSON_PATCH", "STRATEGIC_PATCH", "APPLY_PATCH"]
