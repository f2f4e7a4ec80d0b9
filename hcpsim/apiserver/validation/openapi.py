"""OpenAPI v3 value validation of a custom resource, worded as the kube-apiserver words it.

The real server validates with k8s.io/kube-openapi/pkg/validation/validate and converts each
errors.Validation into a field.Error in apiextensions-apiserver pkg/apiserver/validation
(kubeOpenAPIErrorToFieldError):
- RequiredFailCode      -> field.Required(path, "")                      "spec.x: Required value"
- EnumFailCode          -> field.NotSupported(path, value, values)       `Unsupported value: "x": supported values: "a", "b"`
- TooLongFailCode       -> field.TooLongMaxLength(path, value, max)      "Too long: may not be longer than 5"
- MaxItemsFailCode / TooManyPropertiesCode -> field.TooMany(path, n, max) "Too many: 2: must have at most 1 items"
- InvalidTypeCode (type and format) -> field.TypeInvalid(path, value, msg)
- everything else       -> field.Invalid(path, value, msg) with the kube-openapi message, e.g.
  "spec.x in body should match '^(https|s3)://'" (kube-openapi errors/schema.go).
Paths are kube-openapi's: `a.b` for properties and map keys, `a[0]` for items (slice_validator.go).
Composite anyOf/oneOf/not failures are not errors.Validation, so the server reports them as
field.Invalid(nil, "", msg), i.e. on the field "<nil>".
The x-kubernetes-list-type set/map uniqueness check is pkg/apiserver/schema/listtype/validation.go.
"""

from __future__ import annotations

import base64
import datetime as _dt
import ipaddress
import json
import re
import uuid
from typing import Any, Callable

from hcpsim.apiserver.errors import FieldError
from hcpsim.apiserver.validation.k8s_cel_ext import compile_regex, parse_go_duration
from hcpsim.apiserver.validation.nodes import SchemaNode

NIL_PATH = "<nil>"  # what Go's (*field.Path)(nil).String() prints


def json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def go_quote(s: str) -> str:
    """strconv.Quote / %q, close enough for validation messages."""
    return json.dumps(s, ensure_ascii=False)


def go_num(v: float | int) -> str:
    """Go's %v for the float64 bounds kube-openapi formats."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if v.is_integer():
        return format(v, "g") if abs(v) >= 1e21 or (abs(v) >= 1e6 and format(v, "g").find("e") >= 0) else str(int(v))
    return repr(v)


def _fp(name: str) -> str:
    return name if name else NIL_PATH


# ---------------------------------------------------------------------------------------------
# formats: the subset of kube-openapi strfmt the apiextensions server keeps
# (apiextensions-apiserver pkg/apiserver/validation/formats.go supportedFormats); others are ignored.

_HOSTNAME_RE = re.compile(
    r"^[a-zA-Z0-9\p{L}]?$|^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?))*\.?$".replace(r"\p{L}", "")
)
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
_MAC_RE = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}([0-9A-Fa-f]{2})$|^([0-9A-Fa-f]{4}\.){2}[0-9A-Fa-f]{4}$")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.I)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$")
_HEXCOLOR_RE = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_BSON_RE = re.compile(r"^[0-9a-fA-F]{24}$")
_SCALA_DURATION_RE = re.compile(r"^\s*(\d+)\s*(ns|us|ms|s|m|h|d|w|nanoseconds?|microseconds?|milliseconds?|seconds?|minutes?|hours?|days?|weeks?)\s*$")


def _is_datetime(s: str) -> bool:
    if not _DATETIME_RE.match(s):
        return False
    try:
        _dt.date.fromisoformat(s[:10])
    except ValueError:
        return False
    return True


def _is_date(s: str) -> bool:
    if not _DATE_RE.match(s):
        return False
    try:
        _dt.date.fromisoformat(s)
        return True
    except ValueError:
        return False


def _is_ip(version: int) -> Callable[[str], bool]:
    def check(s: str) -> bool:
        try:
            return ipaddress.ip_address(s).version == version
        except ValueError:
            return False

    return check


def _is_cidr(s: str) -> bool:
    try:
        ipaddress.ip_network(s, strict=False)
        return "/" in s
    except ValueError:
        return False


def _is_byte(s: str) -> bool:
    try:
        base64.b64decode(s, validate=True)
        return True
    except (ValueError, TypeError):
        return False


def _is_duration(s: str) -> bool:
    try:
        parse_go_duration(s)
        return True
    except Exception:
        return bool(_SCALA_DURATION_RE.match(s))


def _is_uri(s: str) -> bool:
    from hcpsim.apiserver.validation.k8s_cel_ext import is_url

    return is_url(s)


def _is_uuid(s: str) -> bool:
    if not _UUID_RE.match(s):
        return False
    try:
        uuid.UUID(s)
        return True
    except ValueError:
        return False


FORMAT_CHECKS: dict[str, Callable[[str], bool]] = {
    "datetime": _is_datetime,
    "date": _is_date,
    "byte": _is_byte,
    "ipv4": _is_ip(4),
    "ipv6": _is_ip(6),
    "cidr": _is_cidr,
    "hostname": lambda s: bool(_HOSTNAME_RE.match(s)) and len(s) <= 255,
    "email": lambda s: bool(_EMAIL_RE.match(s)),
    "mac": lambda s: bool(_MAC_RE.match(s)),
    "uuid": _is_uuid,
    "uuid3": _is_uuid,
    "uuid4": _is_uuid,
    "uuid5": _is_uuid,
    "duration": _is_duration,
    "uri": _is_uri,
    "hexcolor": lambda s: bool(_HEXCOLOR_RE.match(s)),
    "bsonobjectid": lambda s: bool(_BSON_RE.match(s)),
    "password": lambda s: True,
}


def _format_check(fmt: str) -> Callable[[str], bool] | None:
    # strfmt normalizes names by dropping dashes/underscores and lower-casing ("date-time" == "datetime")
    return FORMAT_CHECKS.get(fmt.replace("-", "").replace("_", "").lower())


# ---------------------------------------------------------------------------------------------


def _type_matches(want: str, v: Any) -> bool:
    got = json_type(v)
    if got == want:
        return True
    if want == "number" and got == "integer":
        return True
    # kube-openapi type.go isFloatInt: a JSON number with no fractional part passes as integer
    # (the apiserver decodes `3.0` as float64 and accepts it for an integer field).
    return want == "integer" and got == "number" and float(v).is_integer()


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return bool(a == b) and type(a) in (int, float, str, type(None)) and type(b) in (int, float, str, type(None))


def validate_value(n: SchemaNode, v: Any, name: str, errs: list[FieldError], dups: list[FieldError]) -> None:
    """kube-openapi SchemaValidator.Validate for one node; `name` is the kube-openapi path."""
    if v is None:
        if n.nullable or n.type is None:
            return
        errs.append(FieldError("FieldValueTypeInvalid", _fp(name), f"{name} in body must be of type {n.type}: \"null\"", "null", True))
        return

    if n.type is not None and not _type_matches(n.type, v):
        got = json_type(v)
        errs.append(FieldError("FieldValueTypeInvalid", _fp(name), f"{name} in body must be of type {n.type}: {go_quote(got)}", got, True))
        _check_enum(n, v, name, errs)
        return

    if n.any_of or n.one_of or n.all_of or n.not_ is not None:
        _composite(n, v, name, errs)

    if isinstance(v, str):
        _check_string(n, v, name, errs)
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        _check_number(n, v, name, errs)
    elif isinstance(v, list):
        _check_array(n, v, name, errs, dups)
    elif isinstance(v, dict):
        _check_object(n, v, name, errs, dups)
    _check_enum(n, v, name, errs)


def _check_enum(n: SchemaNode, v: Any, name: str, errs: list[FieldError]) -> None:
    if n.enum is None:
        return
    for allowed in n.enum:
        if _json_equal(allowed, v):
            return
    values = ", ".join(go_quote(a if isinstance(a, str) else json.dumps(a)) for a in n.enum)
    errs.append(FieldError("FieldValueNotSupported", _fp(name), f"supported values: {values}", v, True))


def _check_string(n: SchemaNode, v: str, name: str, errs: list[FieldError]) -> None:
    if n.max_length is not None and len(v) > n.max_length:
        # TooLong does not print the value (field.Error.ErrorBody)
        errs.append(FieldError("FieldValueTooLong", _fp(name), f"may not be longer than {n.max_length}", v, False))
    if n.min_length is not None and len(v) < n.min_length:
        errs.append(FieldError("FieldValueInvalid", _fp(name), f"{name} in body should be at least {n.min_length} chars long", v, True))
    if n.pattern is not None:
        try:
            ok = compile_regex(n.pattern).search(v) is not None
        except Exception:
            ok = True  # an uncompilable pattern would have been rejected at CRD creation
        if not ok:
            errs.append(FieldError("FieldValueInvalid", _fp(name), f"{name} in body should match '{n.pattern}'", v, True))
    if n.format:
        check = _format_check(n.format)
        if check is not None and not check(v):
            errs.append(FieldError("FieldValueTypeInvalid", _fp(name), f"{name} in body must be of type {n.format}: {go_quote(v)}", v, True))


def _check_number(n: SchemaNode, v: float | int, name: str, errs: list[FieldError]) -> None:
    if n.multiple_of:
        q = v / n.multiple_of
        if not float(q).is_integer():
            errs.append(FieldError("FieldValueInvalid", _fp(name), f"{name} in body should be a multiple of {go_num(n.multiple_of)}", v, True))
    if n.maximum is not None:
        bad = v >= n.maximum if n.exclusive_maximum else v > n.maximum
        if bad:
            rel = "less than" if n.exclusive_maximum else "less than or equal to"
            bound = int(n.maximum) if isinstance(v, int) else n.maximum
            errs.append(FieldError("FieldValueInvalid", _fp(name), f"{name} in body should be {rel} {go_num(bound)}", v, True))
    if n.minimum is not None:
        bad = v <= n.minimum if n.exclusive_minimum else v < n.minimum
        if bad:
            rel = "greater than" if n.exclusive_minimum else "greater than or equal to"
            bound = int(n.minimum) if isinstance(v, int) else n.minimum
            errs.append(FieldError("FieldValueInvalid", _fp(name), f"{name} in body should be {rel} {go_num(bound)}", v, True))


def _check_array(n: SchemaNode, v: list[Any], name: str, errs: list[FieldError], dups: list[FieldError]) -> None:
    if n.items is not None:
        for i, item in enumerate(v):
            validate_value(n.items, item, f"{name}[{i}]", errs, dups)
    size = len(v)
    if n.min_items is not None and size < n.min_items:
        errs.append(FieldError("FieldValueInvalid", _fp(name), f"{name} in body should have at least {n.min_items} items", size, True))
    if n.max_items is not None and size > n.max_items:
        errs.append(FieldError("FieldValueTooMany", _fp(name), f"must have at most {n.max_items} items", size, True))
    if n.unique_items and _has_duplicates(v):
        errs.append(FieldError("FieldValueInvalid", _fp(name), f"{name} in body shouldn't contain duplicates", "", True))
    if n.list_type == "set":
        _set_duplicates(v, name, dups)
    elif n.list_type == "map":
        _map_duplicates(v, n.list_map_keys, name, dups)


def _canon(x: Any) -> str:
    return json.dumps(x, sort_keys=True, separators=(",", ":"))


def _has_duplicates(v: list[Any]) -> bool:
    seen = set()
    for x in v:
        c = _canon(x)
        if c in seen:
            return True
        seen.add(c)
    return False


def _set_duplicates(v: list[Any], name: str, dups: list[FieldError]) -> None:
    # listtype.validateListSet: report the first repeated appearance of each duplicated value
    counts: dict[str, int] = {}
    for i, x in enumerate(v):
        c = _canon(x)
        counts[c] = counts.get(c, 0) + 1
        if counts[c] == 2:
            dups.append(FieldError("FieldValueDuplicate", f"{_fp(name)}[{i}]", "", x, True))


def _map_duplicates(v: list[Any], keys: list[str], name: str, dups: list[FieldError]) -> None:
    for i, x in enumerate(v):
        if x is not None and not isinstance(x, dict):
            dups.append(FieldError("FieldValueInvalid", f"{_fp(name)}[{i}]", "must be an object for an array of list-type map", x, True))
            return
    counts: dict[str, int] = {}
    for i, x in enumerate(v):
        key = {k: x[k] for k in keys if isinstance(x, dict) and k in x}
        c = _canon(key)
        counts[c] = counts.get(c, 0) + 1
        if counts[c] == 2:
            dups.append(FieldError("FieldValueDuplicate", f"{_fp(name)}[{i}]", "", key, True))


def _check_object(n: SchemaNode, v: dict[str, Any], name: str, errs: list[FieldError], dups: list[FieldError]) -> None:
    nprops = len(v)
    if n.max_properties is not None and nprops > n.max_properties:
        errs.append(FieldError("FieldValueTooMany", _fp(name), f"must have at most {n.max_properties} items", nprops, True))
    if n.min_properties is not None and nprops < n.min_properties:
        errs.append(FieldError("FieldValueInvalid", _fp(name), f"{name} in body should have at least {n.min_properties} properties", n.min_properties, True))
    for req in n.required:
        if req not in v:
            errs.append(FieldError("FieldValueRequired", f"{name}.{req}" if name else req, "", None, False))
    for k, sub in v.items():
        child = f"{name}.{k}" if name else k
        node = n.properties.get(k)
        if node is not None:
            validate_value(node, sub, child, errs, dups)
        elif isinstance(n.additional, SchemaNode):
            validate_value(n.additional, sub, child, errs, dups)
        elif n.additional is False and not n.preserve_unknown:
            errs.append(FieldError("FieldValueInvalid", _fp(name), f"{name}.{k} in body is a forbidden property", k, True))


def _composite(n: SchemaNode, v: Any, name: str, errs: list[FieldError]) -> None:
    # kube-openapi schema_props.go; composite messages are plain errors -> field.Invalid(nil, "", msg)
    def run(s: SchemaNode) -> list[FieldError]:
        out: list[FieldError] = []
        validate_value(s, v, name, out, [])
        return out

    if n.all_of:
        failed = False
        for s in n.all_of:
            sub = run(s)
            if sub:
                failed = True
                errs.extend(sub)
        if failed:
            errs.append(FieldError("FieldValueInvalid", NIL_PATH, f"{go_quote(name)} must validate all the schemas (allOf)", "", True))
    if n.any_of:
        results = [run(s) for s in n.any_of]
        if all(results):
            errs.append(FieldError("FieldValueInvalid", NIL_PATH, f"{go_quote(name)} must validate at least one schema (anyOf)", "", True))
            errs.extend(min(results, key=len))
    if n.one_of:
        results = [run(s) for s in n.one_of]
        valid = sum(1 for r in results if not r)
        if valid != 1:
            detail = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
            errs.append(FieldError("FieldValueInvalid", NIL_PATH, f"{go_quote(name)} must validate one and only one schema (oneOf). {detail}", "", True))
            if valid == 0:
                errs.extend(min(results, key=len))
    if n.not_ is not None and not run(n.not_):
        errs.append(FieldError("FieldValueInvalid", NIL_PATH, f"{go_quote(name)} must not validate the schema (not)", "", True))
