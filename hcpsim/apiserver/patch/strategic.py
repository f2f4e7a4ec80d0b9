"""Server-side strategic merge patch: a port of k8s.io/apimachinery pkg/util/strategicpatch
`StrategicMergeMapPatch` (patch.go: mergeMap, mergeSlice, mergePatchIntoOriginal,
applyRetainKeysDirective, normalizeElementOrder, ...) with MergeParallelList=true and
IgnoreUnmatchedNulls=true, as kube-apiserver calls it.

The port keeps upstream behaviour that clients can observe, including the odd parts:
* items added to a merge list by a patch without `$setElementOrder` land *before* the server's
  items (mergeSortedSlice prefers the right-hand list when an item is not in the live order);
* `$patch: delete` on a nested map leaves an empty map, not an absent field;
* `$deleteFromPrimitiveList/<f>` removes values from <f> whatever its strategy, and is a no-op
  when <f> is absent or null (the patch_test.go fixtures of current apimachinery).

Errors are mapped as apiserver handlers/patch.go `interpretStrategicMergePatchError` does:
mergepatch.ErrBadJSONDoc / ErrBadPatchFormatFor* / ErrUnsupportedStrategicMergePatchFormat -> 400,
ErrNoListOfLists / ErrPatchContentNotMatchRetainKeys -> 422 (generic message), anything else
is not a metav1.Status and becomes 500 with reason "" (StatusReasonUnknown) and the raw message.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

from hcpsim.apiserver.errors import ApiError
from hcpsim.apiserver.patch.json_patches import GENERIC_422_MESSAGE
from hcpsim.apiserver.patch.schemas import NO_META, FieldMeta, Schema, schema_for

DIRECTIVE_MARKER = "$patch"
DELETE_DIRECTIVE = "delete"
REPLACE_DIRECTIVE = "replace"
MERGE_DIRECTIVE = "merge"
RETAIN_KEYS_DIRECTIVE = "$retainKeys"
DELETE_FROM_PRIMITIVE_LIST_PREFIX = "$deleteFromPrimitiveList"
SET_ELEMENT_ORDER_PREFIX = "$setElementOrder"

# mergepatch/errors.go sentinel messages.
ERR_BAD_JSON_DOC = "invalid JSON document"
ERR_NO_LIST_OF_LISTS = "lists of lists are not supported"
ERR_BAD_PATCH_FORMAT_FOR_PRIMITIVE_LIST = "invalid patch format of primitive list"
ERR_BAD_PATCH_FORMAT_FOR_RETAIN_KEYS = "invalid patch format of retainKeys"
ERR_BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER_LIST = "invalid patch format of setElementOrder list"
ERR_PATCH_CONTENT_NOT_MATCH_RETAIN_KEYS = "patch content doesn't match retainKeys list"

_BAD_REQUEST_ERRORS = {
    ERR_BAD_JSON_DOC,
    ERR_BAD_PATCH_FORMAT_FOR_PRIMITIVE_LIST,
    ERR_BAD_PATCH_FORMAT_FOR_RETAIN_KEYS,
    ERR_BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER_LIST,
    "strategic merge patch format is not supported",
}
_UNPROCESSABLE_ERRORS = {ERR_NO_LIST_OF_LISTS, ERR_PATCH_CONTENT_NOT_MATCH_RETAIN_KEYS}


class StrategicMergeError(Exception):
    """An error raised by the strategic merge algorithm, with the upstream message."""


def supports_strategic_merge(group: str, kind: str) -> bool:
    """True for kinds compiled into kube-apiserver; custom resources get 415 for strategic merge."""
    return schema_for(group, kind) is not None


def apply_strategic_merge_patch(original: dict, patch: object, group: str, kind: str) -> dict:
    """Apply a strategic merge patch to a copy of `original` for the built-in kind group/kind."""
    schema = schema_for(group, kind)
    if schema is None:
        raise ApiError.unsupported_media_type("application/strategic-merge-patch+json")
    if isinstance(patch, (bytes, bytearray, str)):
        try:
            patch = json.loads(patch)
        except ValueError as exc:
            raise ApiError.bad_request(f"invalid character in patch: {exc}") from exc
    if patch is None:
        patch = {}  # JSON null decodes into a nil map: nothing to merge.
    if not isinstance(patch, dict):
        # kjson.UnmarshalCaseSensitivePreserveInts(patchBytes, &patchMap) -> errors.NewBadRequest.
        raise ApiError.bad_request(
            f"json: cannot unmarshal {_json_kind(patch)} into Go value of type map[string]interface {{}}"
        )
    return strategic_merge(original, patch, schema)


def strategic_merge(original: dict, patch: dict, schema: Schema) -> dict:
    """StrategicMergeMapPatch against an explicit schema, on copies, with the server's errors."""
    try:
        merged = merge_map(copy.deepcopy(original), copy.deepcopy(patch), schema)
    except StrategicMergeError as exc:
        raise _interpret(str(exc)) from exc
    return _strip_directives(merged)


def _interpret(message: str) -> ApiError:
    if message in _BAD_REQUEST_ERRORS:
        return ApiError.bad_request(message)
    if message in _UNPROCESSABLE_ERRORS:
        return ApiError(422, "Invalid", GENERIC_422_MESSAGE)
    return ApiError(500, "", message)


def _strip_directives(value: Any) -> Any:
    """Directive keys that survive the merge (inside values copied verbatim from the patch) are
    not fields of the Go type, so decoding into the typed object drops them."""
    if isinstance(value, dict):
        for key in [k for k in value if _is_directive_key(k)]:
            del value[key]
        for sub in value.values():
            _strip_directives(sub)
    elif isinstance(value, list):
        for sub in value:
            _strip_directives(sub)
    return value


def _is_directive_key(key: str) -> bool:
    return (
        key == DIRECTIVE_MARKER
        or key == RETAIN_KEYS_DIRECTIVE
        or key.startswith(SET_ELEMENT_ORDER_PREFIX)
        or key.startswith(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
    )


# ----------------------------------------------------------------------------- Go value helpers


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def go_format(value: Any) -> str:
    """fmt's %v of a decoded JSON value (map keys sorted, as fmt prints maps)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_format(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_format(v) for v in value) + "]"
    return str(value)


def _go_type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    return "%!s(<nil>)"


def _go_type(value: Any) -> type:
    # Go compares reflect.TypeOf: bool, int64 and float64 are distinct types.
    return type(value)


def _same(a: Any, b: Any) -> bool:
    """Go interface equality of two scalars (different dynamic types are never equal)."""
    return type(a) is type(b) and a == b


def err_bad_arg_type(expected: str, actual: Any) -> StrategicMergeError:
    return StrategicMergeError(f"expected a {expected}, but received a {_go_type_name(actual)}")


def err_no_merge_key(m: dict, key: str) -> StrategicMergeError:
    return StrategicMergeError(f"map: {go_format(m)} does not contain declared merge key: {key}")


def err_bad_patch_type(directive: Any, m: dict) -> StrategicMergeError:
    return StrategicMergeError(f"unknown patch type: {go_format(directive)} in map: {go_format(m)}")


def _lookup(schema: Schema, key: str) -> FieldMeta:
    # Go fails on a field the struct lacks; the simulator has no typed structs for every field,
    # so an unknown field merges like an untagged one.
    return schema.get(key, NO_META)


# ----------------------------------------------------------------------------- mergeMap


def merge_map(original: dict | None, patch: dict, schema: Schema) -> dict:
    if DIRECTIVE_MARKER in patch:
        return _handle_directive_in_merge_map(patch[DIRECTIVE_MARKER], patch)
    if original is None:
        original = {}
    _apply_retain_keys_directive(original, patch)
    _merge_patch_into_original(original, patch, schema)

    # Deletion lists run after the other keys: upstream iterates a Go map (random order); kubectl
    # never puts the same value in a list and its deletion list, so only the order is fixed here.
    keys = sorted(patch, key=lambda k: k.startswith(DELETE_FROM_PRIMITIVE_LIST_PREFIX))
    for key in keys:
        patch_value = patch[key]
        is_delete_list = False
        if key.startswith(DELETE_FROM_PRIMITIVE_LIST_PREFIX):
            key = _extract_key(key, DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            is_delete_list = True

        if patch_value is None:
            original.pop(key, None)
            continue  # IgnoreUnmatchedNulls
        if is_delete_list:
            # Current upstream: a deletion list never creates or retypes the field, and it
            # deletes from the list whatever the field's patch strategy.
            if isinstance(original.get(key), list):
                if not isinstance(patch_value, list):
                    raise err_bad_arg_type("[]interface {}", patch_value)
                original[key] = _merge_slice(original[key], patch_value, _lookup(schema, key), True)
            continue
        if key not in original:
            original[key] = patch_value
            continue
        if _go_type(original[key]) is not _go_type(patch_value):
            original[key] = patch_value
            continue
        meta = _lookup(schema, key)
        strategy = meta.strategy
        if isinstance(patch_value, dict):
            if strategy == REPLACE_DIRECTIVE:
                original[key] = patch_value
            else:
                original[key] = merge_map(original[key], patch_value, meta.schema)
        elif isinstance(patch_value, list):
            original[key] = _merge_slice_handler(original[key], patch_value, meta, is_delete_list)
        else:
            original[key] = patch_value
    return original


def _handle_directive_in_merge_map(directive: Any, patch: dict) -> dict:
    if directive == REPLACE_DIRECTIVE:
        del patch[DIRECTIVE_MARKER]
        return patch
    if directive == DELETE_DIRECTIVE:
        return {}
    raise err_bad_patch_type(directive, patch)


def _extract_key(key: str, prefix: str) -> str:
    parts = key.split("/", 1)
    if len(parts) <= 1 or parts[0] != prefix:
        if prefix == DELETE_FROM_PRIMITIVE_LIST_PREFIX:
            raise StrategicMergeError(ERR_BAD_PATCH_FORMAT_FOR_PRIMITIVE_LIST)
        raise StrategicMergeError(ERR_BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER_LIST)
    return parts[1]


def _apply_retain_keys_directive(original: dict, patch: dict) -> None:
    if RETAIN_KEYS_DIRECTIVE not in patch:
        return
    retain = patch.pop(RETAIN_KEYS_DIRECTIVE)
    if not isinstance(retain, list):
        raise StrategicMergeError(ERR_BAD_PATCH_FORMAT_FOR_RETAIN_KEYS)
    keep = [k for k in retain]
    for key, value in patch.items():
        if value is None or key.startswith(DELETE_FROM_PRIMITIVE_LIST_PREFIX) or key.startswith(SET_ELEMENT_ORDER_PREFIX):
            continue
        if not any(_same(key, k) for k in keep):
            raise StrategicMergeError(ERR_BAD_PATCH_FORMAT_FOR_RETAIN_KEYS)
    for key in list(original):
        if not any(_same(key, k) for k in keep):
            del original[key]


# ----------------------------------------------------------------------------- $setElementOrder


def _merge_patch_into_original(original: dict, patch: dict, schema: Schema) -> None:
    for key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER_PREFIX)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise err_bad_arg_type("[]interface {}", order)
        field_key = _extract_key(key, SET_ELEMENT_ORDER_PREFIX)
        found_original = field_key in original
        found_patch = field_key in patch
        original_list: list = []
        patch_list: list = []
        if found_original:
            if not isinstance(original[field_key], list):
                raise err_bad_arg_type("[]interface {}", original[field_key])
            original_list = original[field_key]
        if found_patch:
            if not isinstance(patch[field_key], list):
                raise err_bad_arg_type("[]interface {}", patch[field_key])
            patch_list = patch[field_key]
        meta = _lookup(schema, field_key)
        merge_key = meta.merge_key
        _validate_patch_with_set_order_list(patch_list, order, merge_key)

        if found_original and not found_patch:
            merged = original_list
        elif not found_original and found_patch:
            merged = patch_list
        elif found_original and found_patch:
            merged = _merge_slice_handler(original_list, patch_list, meta, False)
        else:
            continue

        if not merge_key:
            patch_items, server_only = _partition_primitives(merged, order)
        else:
            patch_items, server_only = _partition_maps(merged, order, merge_key)
        if not original_list and not patch_list:
            # Upstream errors ("no elements in any of the given slices"); an empty list keeps its order.
            original[field_key] = merged
            patch.pop(field_key, None)
            continue
        kind = _slice_element_type(original_list, patch_list)
        original[field_key] = _normalize_element_order(patch_items, server_only, order, original_list, merge_key, kind)
        patch.pop(field_key, None)


def _validate_patch_with_set_order_list(patch_list: list, order: list, merge_key: str) -> None:
    if not order or not patch_list:
        return
    if merge_key:
        non_delete, _ = _extract_to_delete_items(patch_list)
    else:
        non_delete = patch_list
    patch_index = order_index = 0
    while patch_index < len(non_delete) and order_index < len(order):
        if isinstance(non_delete[patch_index], dict) and DIRECTIVE_MARKER in non_delete[patch_index]:
            patch_index += 1
            continue
        if _merge_key_value_equal(non_delete[patch_index], order[order_index], merge_key):
            patch_index += 1
        order_index += 1
    if patch_index < len(non_delete) and order_index >= len(order):
        raise StrategicMergeError(
            f"The order in patch list:\n{go_format(patch_list)}\n doesn't match "
            f"{SET_ELEMENT_ORDER_PREFIX} list:\n{go_format(order)}\n"
        )


def _merge_key_value_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return _same(left, right)
    if not isinstance(left, dict):
        raise err_bad_arg_type("map[string]interface {}", left)
    if not isinstance(right, dict):
        raise err_bad_arg_type("map[string]interface {}", right)
    if merge_key not in left:
        raise err_no_merge_key(left, merge_key)
    if merge_key not in right:
        raise err_no_merge_key(right, merge_key)
    return _same(left[merge_key], right[merge_key])


def _partition_primitives(items: list, partition_by: list) -> tuple[list, list]:
    in_patch: list = []
    server_only: list = []
    for item in items:
        (in_patch if any(_same(item, p) for p in partition_by) else server_only).append(item)
    return in_patch, server_only


def _partition_maps(items: list, partition_by: list, merge_key: str) -> tuple[list, list]:
    in_patch: list = []
    server_only: list = []
    for item in items:
        if not isinstance(item, dict):
            raise err_bad_arg_type("map[string]interface {}", item)
        if merge_key not in item:
            raise err_no_merge_key(item, merge_key)
        if _find_map_in_slice(partition_by, merge_key, item[merge_key]) is None:
            server_only.append(item)
        else:
            in_patch.append(item)
    return in_patch, server_only


# ----------------------------------------------------------------------------- mergeSlice


def _merge_slice_handler(original: Any, patch: Any, meta: FieldMeta, is_delete_list: bool) -> list:
    if not isinstance(original, list):
        raise err_bad_arg_type("[]interface {}", original)
    if not isinstance(patch, list):
        raise err_bad_arg_type("[]interface {}", patch)
    if meta.strategy == MERGE_DIRECTIVE:
        return _merge_slice(original, patch, meta, is_delete_list)
    return patch


def _merge_slice(original: list, patch: list, meta: FieldMeta, is_delete_list: bool) -> list:
    if not original and not patch:
        return original
    kind = _slice_element_type(original, patch)
    merge_key = meta.merge_key
    if kind is not dict:
        if is_delete_list:
            return [v for v in original if not any(_same(v, d) for d in patch)]
        merged = _deduplicate_scalars(original + patch)
    else:
        if not merge_key:
            raise StrategicMergeError("cannot merge lists without merge key for type map")
        original, patch = _merge_slice_with_special_elements(original, patch, merge_key)
        merged = _merge_slice_without_special_elements(list(original), patch, merge_key, meta.schema)

    if not merge_key:
        patch_items, server_only = _partition_primitives(merged, patch)
    else:
        patch_items, server_only = _partition_maps(merged, patch, merge_key)
    return _normalize_element_order(patch_items, server_only, patch, original, merge_key, kind)


def _slice_element_type(*slices: list) -> type:
    previous: type | None = None
    for items in slices:
        for value in items:
            current = _go_type(value)
            if previous is None:
                previous = current
                if previous is list:
                    raise StrategicMergeError(ERR_NO_LIST_OF_LISTS)
            elif previous is not current:
                raise StrategicMergeError(
                    "list element types are not identical: " + go_format([list(s) for s in slices])
                )
    if previous is None:
        raise StrategicMergeError("no elements in any of the given slices")
    return previous


def _deduplicate_scalars(items: list) -> list:
    # deduplicateScalars moves the last element into each duplicate's slot; the order is then
    # re-imposed by normalizeElementOrder, but the same algorithm keeps ties identical.
    items = list(items)
    length = len(items) - 1
    i = 0
    while i < length:
        j = i + 1
        while j <= length:
            if _same(items[i], items[j]):
                items[j] = items[length]
                items = items[:length]
                length -= 1
                j -= 1
            j += 1
        i += 1
    return items


def _merge_slice_with_special_elements(original: list, patch: list, merge_key: str) -> tuple[list, list]:
    without_special: list = []
    replace = False
    for item in patch:
        if DIRECTIVE_MARKER not in item:
            without_special.append(item)
            continue
        directive = item[DIRECTIVE_MARKER]
        if directive == DELETE_DIRECTIVE:
            if merge_key not in item:
                raise err_no_merge_key(item, merge_key)
            original = [
                o for o in original if not (isinstance(o, dict) and merge_key in o and _same(o[merge_key], item[merge_key]))
            ]
        elif directive == REPLACE_DIRECTIVE:
            replace = True
        elif directive == MERGE_DIRECTIVE:
            raise StrategicMergeError("merging lists cannot yet be specified in the patch")
        else:
            raise err_bad_patch_type(directive, item)
    if replace:
        return without_special, []
    return original, without_special


def _merge_slice_without_special_elements(original: list, patch: list, merge_key: str, schema: Schema) -> list:
    for item in patch:
        if merge_key not in item:
            raise err_no_merge_key(item, merge_key)
        index = _find_map_in_slice(original, merge_key, item[merge_key])
        if index is not None:
            original[index] = merge_map(original[index], item, schema)
        else:
            original.append(item)
    return original


def _find_map_in_slice(items: list, key: str, value: Any) -> int | None:
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise StrategicMergeError(f"value for key {index} is not a map.")
        if key in item and _same(item[key], value):
            return index
    return None


def _extract_to_delete_items(items: list) -> tuple[list, list]:
    keep: list = []
    delete: list = []
    for item in items:
        if not isinstance(item, dict):
            raise err_bad_arg_type("map[string]interface {}", item)
        if item.get(DIRECTIVE_MARKER) == DELETE_DIRECTIVE:
            delete.append(item)
        else:
            keep.append(item)
    return keep, delete


# ----------------------------------------------------------------------------- ordering


def _index(items: list, value: Any, merge_key: str, kind: type) -> int:
    def key_of(item: Any) -> Any:
        if kind is dict:
            return item.get(merge_key) if isinstance(item, dict) else None
        return item

    wanted = key_of(value)
    for position, item in enumerate(items):
        if _same(key_of(item), wanted):
            return position
    return -1


def _normalize_slice_order(to_sort: list, order: list, merge_key: str, kind: type) -> list:
    to_delete: list = []
    if kind is dict:
        for items in (to_sort, order):
            for item in items:
                if not isinstance(item, dict):
                    raise err_bad_arg_type("map[string]interface {}", item)
                if merge_key not in item:
                    raise err_no_merge_key(item, merge_key)
        to_sort, to_delete = _extract_to_delete_items(to_sort)

    # sort.SliceStable with less(i, j) = index(i) < index(j) when both are found; items missing
    # from `order` do not occur here in practice (they were partitioned by presence).
    def compare(a: Any, b: Any) -> int:
        ia = _index(order, a, merge_key, kind)
        ib = _index(order, b, merge_key, kind)
        if ia >= 0 and ib >= 0:
            return -1 if ia < ib else (1 if ia > ib else 0)
        return 0

    return sorted(to_sort, key=functools.cmp_to_key(compare)) + to_delete


def _normalize_element_order(
    patch_items: list, server_only: list, patch_order: list, server_order: list, merge_key: str, kind: type
) -> list:
    patch_items = _normalize_slice_order(patch_items, patch_order, merge_key, kind)
    server_only = _normalize_slice_order(server_only, server_order, merge_key, kind)
    return _merge_sorted_slice(server_only, patch_items, server_order, merge_key, kind)


def _merge_sorted_slice(left: list, right: list, server_order: list, merge_key: str, kind: type) -> list:
    """mergeSortedSlice: a left (server-only) item goes first only when both it and the right
    (patch) item are in the live order and it comes earlier there."""
    result: list = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            result.append(right[j])
            j += 1
        elif j >= len(right):
            result.append(left[i])
            i += 1
        else:
            li = _index(server_order, left[i], merge_key, kind)
            ri = _index(server_order, right[j], merge_key, kind)
            if li >= 0 and ri >= 0 and li < ri:
                result.append(left[i])
                i += 1
            else:
                result.append(right[j])
                j += 1
    return result
