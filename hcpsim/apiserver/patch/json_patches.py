"""RFC 6902 JSON patch and RFC 7386 merge patch, with the semantics and errors of kube-apiserver.

kube-apiserver applies both with gopkg.in/evanphx/json-patch.v4 (apiserver
pkg/endpoints/handlers/patch.go, `applyJSPatch`). That library has a few quirks this module keeps,
because clients see them:

* `replace` of a missing *object member* succeeds (partialDoc.get never fails), only a missing
  parent or an out-of-range array index fails;
* `test` of a missing member passes when the expected value is null;
* negative array indices count from the end;
* a path without the leading "/" silently drops its first segment (findObject splits on "/" and
  skips element 0).

Error mapping, from patch.go:
* the body does not decode as a list of operations -> 400 BadRequest with the decoder's message;
* more than 10000 operations -> 413 RequestEntityTooLarge;
* any failure while applying -> 422 via errors.NewGenericServerResponse(422, ...), whose message is
  the fixed "the server rejected our request due to an error in our request" (the library's own
  text is not sent to the client; it is kept here as the exception's __cause__ for logs).
* merge patch: a body that is null or not an object/array -> 400 "Invalid JSON Patch"
  (jsonpatch.ErrBadJSONPatch); an array body replaces the whole document, which then fails to
  decode as an object -> 422 Invalid on field "patch".
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from hcpsim.apiserver.errors import ApiError, FieldError

MAX_JSON_PATCH_OPERATIONS = 10000
# errors.NewGenericServerResponse(http.StatusUnprocessableEntity, ...) message.
GENERIC_422_MESSAGE = "the server rejected our request due to an error in our request"


class JsonPatchOpError(Exception):
    """A failed operation, worded as evanphx/json-patch words it (kept for logs and tests)."""


# --------------------------------------------------------------------------- JSON patch (6902)


def apply_json_patch(original: dict, operations: object) -> dict:
    """Apply an RFC 6902 patch to a copy of `original`.

    `operations` is the decoded request body (a list of dicts); raw bytes/str are accepted too.
    """
    ops = _decode_operations(operations)
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise ApiError(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: The allowed maximum operations in a JSON patch is "
            f"{MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}",
        )
    doc: Any = copy.deepcopy(original)
    for op in ops:
        try:
            doc = _apply_operation(doc, op)
        except JsonPatchOpError as exc:
            raise ApiError(422, "Invalid", GENERIC_422_MESSAGE) from exc
    return doc


def json_patch_failure_reason(original: dict, operations: object) -> str | None:
    """The library's own text for the first failing operation (None if the patch applies).

    The server does not send this text; it exists for diagnostics and tests.
    """
    doc: Any = copy.deepcopy(original)
    for op in _decode_operations(operations):
        try:
            doc = _apply_operation(doc, op)
        except JsonPatchOpError as exc:
            return str(exc)
    return None


def _decode_operations(operations: object) -> list[dict[str, Any]]:
    if isinstance(operations, (bytes, bytearray, str)):
        try:
            operations = json.loads(operations)
        except ValueError as exc:
            raise ApiError.bad_request(f"invalid character in JSON patch: {exc}") from exc
    # jsonpatch.DecodePatch unmarshals into `Patch []Operation` (Operation is a map); Go's decoder
    # names the JSON kind it found and the Go type it wanted.
    if operations is None:
        return []  # JSON null decodes into a nil Patch: no operations, no error.
    if not isinstance(operations, list):
        raise ApiError.bad_request(
            f"json: cannot unmarshal {_json_kind(operations)} into Go value of type jsonpatch.Patch"
        )
    for op in operations:
        if op is not None and not isinstance(op, dict):
            raise ApiError.bad_request(
                f"json: cannot unmarshal {_json_kind(op)} into Go value of type jsonpatch.Operation"
            )
    return [op or {} for op in operations]


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


_MISSING = object()


def _decode_key(part: str) -> str:
    # strings.NewReplacer("~1", "/", "~0", "~"): one left-to-right pass.
    return re.sub(r"~[01]", lambda m: "/" if m.group(0) == "~1" else "~", part)


def _string_field(op: dict[str, Any], name: str, verb: str) -> str:
    value = op.get(name)
    if not isinstance(value, str):
        raise JsonPatchOpError(f"{verb} operation failed to decode {name}")
    return value


def _find_container(doc: Any, path: str) -> tuple[Any, str] | None:
    """findObject: walk all but the last segment; None when a segment is missing."""
    split = path.split("/")
    if len(split) < 2:
        return None
    node = doc
    for part in split[1:-1]:
        key = _decode_key(part)
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list):
            idx = _parse_index(key)
            if idx is None or idx < 0 or idx >= len(node):
                return None
            node = node[idx]
        else:
            return None
        if not isinstance(node, (dict, list)):
            return None
    return node, _decode_key(split[-1])


def _parse_index(key: str) -> int | None:
    # strconv.Atoi accepts an optional sign and decimal digits only.
    if re.fullmatch(r"[+-]?[0-9]+", key):
        return int(key)
    return None


def _get(container: Any, key: str) -> Any:
    if isinstance(container, dict):
        return container.get(key, _MISSING)
    idx = _parse_index(key)
    if idx is None:
        raise JsonPatchOpError(f'strconv.Atoi: parsing "{key}": invalid syntax')
    if idx >= len(container) or idx < -len(container):
        raise JsonPatchOpError(f"Unable to access invalid index: {idx}: invalid index referenced")
    return container[idx]


def _add(container: Any, key: str, value: Any, path: str) -> None:
    if isinstance(container, dict):
        container[key] = value
        return
    if key == "-":
        container.append(value)
        return
    idx = _parse_index(key)
    if idx is None:
        raise JsonPatchOpError(
            f"error in add for path: '{path}': value was not a proper array index: '{key}': "
            f'strconv.Atoi: parsing "{key}": invalid syntax'
        )
    size = len(container) + 1
    if idx >= size or idx < -size:
        raise JsonPatchOpError(
            f"error in add for path: '{path}': Unable to access invalid index: {idx}: invalid index referenced"
        )
    if idx < 0:
        idx += size
    container.insert(idx, value)


def _remove(container: Any, key: str, path: str) -> Any:
    if isinstance(container, dict):
        if key not in container:
            raise JsonPatchOpError(
                f"error in remove for path: '{path}': Unable to remove nonexistent key: {key}: missing value"
            )
        return container.pop(key)
    idx = _parse_index(key)
    if idx is None:
        raise JsonPatchOpError(f'error in remove for path: \'{path}\': strconv.Atoi: parsing "{key}": invalid syntax')
    if idx >= len(container) or idx < -len(container):
        raise JsonPatchOpError(
            f"error in remove for path: '{path}': Unable to access invalid index: {idx}: invalid index referenced"
        )
    return container.pop(idx)


def _apply_operation(doc: Any, op: dict[str, Any]) -> Any:
    kind = op.get("op")
    kind = kind if isinstance(kind, str) else "unknown"
    value = op.get("value")  # an absent value behaves as JSON null in v4
    if kind == "add":
        path = _string_field(op, "path", "add")
        found = _find_container(doc, path)
        if found is None:
            raise JsonPatchOpError(f'add operation does not apply: doc is missing path: "{path}": missing value')
        _add(found[0], found[1], copy.deepcopy(value), path)
    elif kind == "remove":
        path = _string_field(op, "path", "remove")
        found = _find_container(doc, path)
        if found is None:
            raise JsonPatchOpError(f'remove operation does not apply: doc is missing path: "{path}": missing value')
        _remove(found[0], found[1], path)
    elif kind == "replace":
        path = _string_field(op, "path", "replace")
        found = _find_container(doc, path)
        if found is None:
            raise JsonPatchOpError(f"replace operation does not apply: doc is missing path: {path}: missing value")
        container, key = found
        if isinstance(container, dict):
            container[key] = copy.deepcopy(value)  # v4: a missing member is simply set
        else:
            idx = _parse_index(key)
            if idx is None or idx >= len(container) or idx < -len(container):
                raise JsonPatchOpError(
                    f"replace operation does not apply: doc is missing key: {path}: missing value"
                )
            container[idx] = copy.deepcopy(value)
    elif kind in ("move", "copy"):
        from_path = _string_field(op, "from", kind)
        found = _find_container(doc, from_path)
        if found is None:
            raise JsonPatchOpError(
                f"{kind} operation does not apply: doc is missing from path: {from_path}: missing value"
            )
        moved = _get(found[0], found[1])
        if moved is _MISSING:
            moved = None
        if kind == "move":
            _remove(found[0], found[1], found[1])
        else:
            moved = copy.deepcopy(moved)
        path = _string_field(op, "path", kind)
        dest = _find_container(doc, path)
        if dest is None:
            raise JsonPatchOpError(
                f"{kind} operation does not apply: doc is missing destination path: {path}: missing value"
            )
        _add(dest[0], dest[1], moved, path)
    elif kind == "test":
        path = _string_field(op, "path", "test")
        found = _find_container(doc, path)
        if found is None:
            raise JsonPatchOpError(f"test operation does not apply: is missing path: {path}: missing value")
        current = _get(found[0], found[1])
        if current is _MISSING or current is None:
            if value is None:
                return doc
            raise JsonPatchOpError(f"testing value {path} failed: test failed")
        if not _go_equal(current, value):
            raise JsonPatchOpError(f"testing value {path} failed: test failed")
    else:
        raise JsonPatchOpError(f"Unexpected kind: {kind}")
    return doc


def _go_equal(doc_value: Any, test_value: Any) -> bool:
    """lazyNode.equal: objects compare by the document's keys only (a document object that is a
    subset of the test value passes), arrays element-wise, scalars by JSON text."""
    if isinstance(doc_value, dict):
        if not isinstance(test_value, dict):
            return False
        for key, sub in doc_value.items():
            if key not in test_value:
                return False
            if sub is None and test_value[key] is None:
                continue
            if not _go_equal(sub, test_value[key]):
                return False
        return True
    if isinstance(doc_value, list):
        if not isinstance(test_value, list) or len(doc_value) != len(test_value):
            return False
        return all(_go_equal(a, b) for a, b in zip(doc_value, test_value))
    if isinstance(test_value, (dict, list)):
        return False
    return json.dumps(doc_value) == json.dumps(test_value)


# --------------------------------------------------------------------------- merge patch (7386)


def apply_merge_patch(original: dict, patch: object) -> dict:
    """Apply an RFC 7386 JSON merge patch to a copy of `original` (jsonpatch.MergePatch)."""
    if isinstance(patch, (bytes, bytearray, str)):
        try:
            patch = json.loads(patch)
        except ValueError as exc:
            raise ApiError.bad_request("Invalid JSON Patch") from exc
    if isinstance(patch, list):
        # The document becomes the array; decoding that into the kind's object fails.
        replaced = _prune_nulls(copy.deepcopy(patch))
        text = json.dumps(replaced, separators=(",", ":"))
        raise ApiError.invalid(
            "",
            "",
            "",
            [
                FieldError(
                    "FieldValueInvalid",
                    "patch",
                    "couldn't get version/kind; json parse error: json: cannot unmarshal array into Go value "
                    'of type struct { APIVersion string "json:\\"apiVersion,omitempty\\""; Kind string '
                    '"json:\\"kind,omitempty\\"" }',
                    value=text,
                    has_value=True,
                )
            ],
        )
    if not isinstance(patch, dict):
        raise ApiError.bad_request("Invalid JSON Patch")
    result = copy.deepcopy(original)
    _merge_docs(result, copy.deepcopy(patch))
    return result


def _merge_docs(doc: dict, patch: dict) -> None:
    for key, value in patch.items():
        if value is None:
            doc.pop(key, None)
            continue
        current = doc.get(key)
        if current is None:
            doc[key] = _prune_nulls(value)
        else:
            doc[key] = _merge_value(current, value)


def _merge_value(current: Any, patch: Any) -> Any:
    # merge(): a non-object current is replaced by the (null-pruned) patch; an object current
    # merged with a non-object patch is replaced by the patch as is.
    if not isinstance(current, dict):
        return _prune_nulls(patch)
    if not isinstance(patch, dict):
        return patch
    _merge_docs(current, patch)
    return current


def _prune_nulls(value: Any) -> Any:
    """pruneNulls: drop null members of objects, recursively (array elements are kept)."""
    if isinstance(value, dict):
        for key in [k for k, v in value.items() if v is None]:
            del value[key]
        for sub in value.values():
            _prune_nulls(sub)
    elif isinstance(value, list):
        for sub in value:
            if sub is not None:
                _prune_nulls(sub)
    return value
