"""Object metadata validation and name generation as kube-apiserver does them.

Sources:
* k8s.io/apimachinery pkg/util/validation/validation.go (IsQualifiedName, IsValidLabelValue,
  IsDNS1123Label/Subdomain, IsDNS1035Label, RegexError, MaxLenError, EmptyError);
* k8s.io/apimachinery pkg/api/validation/objectmeta.go (ValidateObjectMetaAccessor,
  ValidateObjectMetaAccessorUpdate, ValidateAnnotations, ValidateOwnerReferences,
  ValidateFinalizers) and generic.go (NameIsDNSSubdomain, maskTrailingDash);
* k8s.io/apimachinery pkg/api/validation/path (IsValidPathSegmentName) used by RBAC names;
* k8s.io/apiserver pkg/storage/names (SimpleNameGenerator) and k8s.io/apimachinery
  pkg/util/rand (alphabet);
* k8s.io/apiserver pkg/registry/rest/update.go BeforeUpdate (fields carried over from the old object).

Errors are `FieldError`s with the paths and texts the server prints, e.g.
`metadata.name: Invalid value: "Foo": a lowercase RFC 1123 subdomain must consist of ...`.
"""

from __future__ import annotations

import random
import re
from typing import Any, Callable

from hcpsim.apiserver.errors import FieldError

# ----------------------------------------------------------------------------- string validators

QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QUALIFIED_NAME_ERR_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)
QUALIFIED_NAME_MAX_LENGTH = 63
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"
LABEL_VALUE_ERR_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
LABEL_VALUE_MAX_LENGTH = 63
DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_ERR_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
DNS1123_LABEL_MAX_LENGTH = 63
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
DNS1123_SUBDOMAIN_ERR_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
DNS1123_SUBDOMAIN_MAX_LENGTH = 253
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1035_LABEL_ERR_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
    "start with an alphabetic character, and end with an alphanumeric character"
)
DNS1035_LABEL_MAX_LENGTH = 63

_QUALIFIED_NAME_RE = re.compile("^" + QUALIFIED_NAME_FMT + "$")
_LABEL_VALUE_RE = re.compile("^" + LABEL_VALUE_FMT + "$")
_DNS1123_LABEL_RE = re.compile("^" + DNS1123_LABEL_FMT + "$")
_DNS1123_SUBDOMAIN_RE = re.compile("^" + DNS1123_SUBDOMAIN_FMT + "$")
_DNS1035_LABEL_RE = re.compile("^" + DNS1035_LABEL_FMT + "$")


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """validation.RegexError, including its double spaces between examples."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    text = msg + " (e.g. "
    for i, example in enumerate(examples):
        if i > 0:
            text += " or "
        text += f"'{example}', "
    return text + f"regex used for validation is '{fmt}')"


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def empty_error() -> str:
    return "must be non-empty"


def _full(regex: re.Pattern[str], value: str) -> bool:
    # Go's MatchString with ^...$ : "$" must not accept a trailing newline as Python's does.
    return regex.fullmatch(value) is not None


def is_qualified_name(value: str) -> list[str]:
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + empty_error())
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name "
            + regex_error(QUALIFIED_NAME_ERR_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part " + empty_error())
    elif len(name) > QUALIFIED_NAME_MAX_LENGTH:
        errs.append("name part " + max_len_error(QUALIFIED_NAME_MAX_LENGTH))
    if not _full(_QUALIFIED_NAME_RE, name):
        errs.append("name part " + regex_error(QUALIFIED_NAME_ERR_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def is_valid_label_value(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) > LABEL_VALUE_MAX_LENGTH:
        errs.append(max_len_error(LABEL_VALUE_MAX_LENGTH))
    if not _full(_LABEL_VALUE_RE, value):
        errs.append(regex_error(LABEL_VALUE_ERR_MSG, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_dns1123_label(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) > DNS1123_LABEL_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_LABEL_MAX_LENGTH))
    if not _full(_DNS1123_LABEL_RE, value):
        if _full(_DNS1123_SUBDOMAIN_RE, value):
            # A valid subdomain that is not a valid label can only be failing on its dots.
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(DNS1123_LABEL_ERR_MSG, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _full(_DNS1123_SUBDOMAIN_RE, value):
        errs.append(regex_error(DNS1123_SUBDOMAIN_ERR_MSG, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) > DNS1035_LABEL_MAX_LENGTH:
        errs.append(max_len_error(DNS1035_LABEL_MAX_LENGTH))
    if not _full(_DNS1035_LABEL_RE, value):
        errs.append(regex_error(DNS1035_LABEL_ERR_MSG, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_valid_path_segment_name(name: str) -> list[str]:
    for illegal in (".", ".."):
        if name == illegal:
            return [f"may not be '{illegal}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


# ----------------------------------------------------------------------------- name functions

def _mask_trailing_dash(name: str) -> str:
    # generic.go maskTrailingDash keeps name[:len-2] + "a" (it drops two characters, as upstream).
    if len(name) > 1 and name.endswith("-"):
        return name[:-2] + "a"
    return name


def name_is_dns_subdomain(name: str, prefix: bool) -> list[str]:
    return is_dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool) -> list[str]:
    return is_dns1123_label(_mask_trailing_dash(name) if prefix else name)


def name_is_dns1035_label(name: str, prefix: bool) -> list[str]:
    return is_dns1035_label(_mask_trailing_dash(name) if prefix else name)


def name_is_path_segment(name: str, prefix: bool) -> list[str]:
    if prefix:
        return [f"may not contain '{c}'" for c in ("/", "%") if c in name]
    return is_valid_path_segment_name(name)


NAME_RULES: dict[str, Callable[[str, bool], list[str]]] = {
    "dns1123-subdomain": name_is_dns_subdomain,
    "dns1123-label": name_is_dns_label,
    "dns1035-label": name_is_dns1035_label,
    "path-segment": name_is_path_segment,
}

# Kinds whose strategy validates names with something other than NameIsDNSSubdomain.
_KIND_NAME_RULES: dict[tuple[str, str], str] = {
    ("", "Namespace"): "dns1123-label",  # ValidateNamespaceName = NameIsDNSLabel
    ("", "Service"): "dns1035-label",  # ValidateServiceName = NameIsDNS1035Label
    ("rbac.authorization.k8s.io", "Role"): "path-segment",  # ValidateRBACName
    ("rbac.authorization.k8s.io", "ClusterRole"): "path-segment",
    ("rbac.authorization.k8s.io", "RoleBinding"): "path-segment",
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): "path-segment",
}


def name_rule_for(group: str, kind: str) -> str:
    """The name rule of a kind (custom resources and most built-ins: DNS-1123 subdomain)."""
    return _KIND_NAME_RULES.get((group, kind), "dns1123-subdomain")


# ----------------------------------------------------------------------------- generateName

# k8s.io/apimachinery/pkg/util/rand: consonants and digits that cannot spell words.
RANDOM_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MAX_NAME_LENGTH = 63
RANDOM_LENGTH = 5
MAX_GENERATED_NAME_LENGTH = MAX_NAME_LENGTH - RANDOM_LENGTH

_rng = random.SystemRandom()


def generate_name(prefix: str) -> str:
    """SimpleNameGenerator.GenerateName: prefix cut to 58 characters plus 5 random ones."""
    if len(prefix) > MAX_GENERATED_NAME_LENGTH:
        prefix = prefix[:MAX_GENERATED_NAME_LENGTH]
    return prefix + "".join(_rng.choice(RANDOM_ALPHABET) for _ in range(RANDOM_LENGTH))


# ----------------------------------------------------------------------------- ObjectMeta

TOTAL_ANNOTATION_SIZE_LIMIT_B = 256 * (1 << 10)
FIELD_IMMUTABLE_ERROR_MSG = "field is immutable"
FINALIZER_ORPHAN_DEPENDENTS = "orphan"
FINALIZER_DELETE_DEPENDENTS = "foregroundDeletion"


def _invalid(path: str, value: Any, message: str) -> FieldError:
    return FieldError("FieldValueInvalid", path, message, value=value, has_value=True)


def validate_labels(labels: Any, path: str = "metadata.labels") -> list[FieldError]:
    errs: list[FieldError] = []
    for key, value in (labels or {}).items():
        errs.extend(_invalid(path, key, m) for m in is_qualified_name(key))
        errs.extend(_invalid(path, value, m) for m in is_valid_label_value(str(value)))
    return errs


def validate_annotations(annotations: Any, path: str = "metadata.annotations") -> list[FieldError]:
    errs: list[FieldError] = []
    annotations = annotations or {}
    for key in annotations:
        # QualifiedName rules, except that case does not matter.
        errs.extend(_invalid(path, key, m) for m in is_qualified_name(key.lower()))
    total = sum(len(k.encode()) + len(str(v).encode()) for k, v in annotations.items())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B:
        errs.append(FieldError("FieldValueTooLong", path, f"may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT_B} bytes"))
    return errs


def validate_owner_references(refs: Any, path: str = "metadata.ownerReferences") -> list[FieldError]:
    errs: list[FieldError] = []
    first_controller = ""
    for ref in refs or []:
        api_version = ref.get("apiVersion", "") or ""
        kind = ref.get("kind", "") or ""
        version = api_version.split("/", 1)[1] if "/" in api_version else api_version
        group = api_version.split("/", 1)[0] if "/" in api_version else ""
        if not version:
            errs.append(_invalid(f"{path}.apiVersion", api_version, "version must not be empty"))
        if not kind:
            errs.append(_invalid(f"{path}.kind", kind, "must not be empty"))
        if not ref.get("name"):
            errs.append(_invalid(f"{path}.name", ref.get("name", ""), "must not be empty"))
        if not ref.get("uid"):
            errs.append(_invalid(f"{path}.uid", ref.get("uid", ""), "must not be empty"))
        if group == "" and version == "v1" and kind == "Event":
            errs.append(_invalid(path, ref, "/v1, Kind=Event is disallowed from being an owner"))
        if ref.get("controller") is True:
            current = f"{kind}/{ref.get('name', '')}"
            if first_controller:
                errs.append(
                    _invalid(
                        path,
                        refs,
                        "Only one reference can have Controller set to true. "
                        f'Found "true" in references for {first_controller} and {current}',
                    )
                )
            else:
                first_controller = current
    return errs


def validate_finalizers(finalizers: Any, path: str = "metadata.finalizers") -> list[FieldError]:
    errs: list[FieldError] = []
    finalizers = list(finalizers or [])
    for name in finalizers:
        errs.extend(_invalid(path, name, m) for m in is_qualified_name(name))
    if FINALIZER_ORPHAN_DEPENDENTS in finalizers and FINALIZER_DELETE_DEPENDENTS in finalizers:
        errs.append(
            _invalid(
                path,
                finalizers,
                f"finalizer {FINALIZER_ORPHAN_DEPENDENTS} and {FINALIZER_DELETE_DEPENDENTS} cannot be both set",
            )
        )
    return errs


def _common(meta: dict, namespaced: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    namespace = meta.get("namespace") or ""
    if namespaced:
        if not namespace:
            errs.append(FieldError("FieldValueRequired", "metadata.namespace", ""))
        else:
            errs.extend(_invalid("metadata.namespace", namespace, m) for m in name_is_dns_label(namespace, False))
    elif namespace:
        errs.append(FieldError("FieldValueForbidden", "metadata.namespace", "not allowed on this type"))
    generation = meta.get("generation")
    if isinstance(generation, int) and generation < 0:
        errs.append(_invalid("metadata.generation", generation, "must be greater than or equal to 0"))
    errs.extend(validate_labels(meta.get("labels")))
    errs.extend(validate_annotations(meta.get("annotations")))
    errs.extend(validate_owner_references(meta.get("ownerReferences")))
    errs.extend(validate_finalizers(meta.get("finalizers")))
    return errs


def validate_object_meta(meta: dict, namespaced: bool, name_rule: str) -> list[FieldError]:
    """ValidateObjectMetaAccessor for a create, after name generation (call generate_name first
    when only generateName is set). `name_rule` is a key of NAME_RULES (see name_rule_for)."""
    name_fn = NAME_RULES[name_rule]
    errs: list[FieldError] = []
    generate = meta.get("generateName") or ""
    if generate:
        errs.extend(_invalid("metadata.generateName", generate, m) for m in name_fn(generate, True))
    name = meta.get("name") or ""
    if not name:
        errs.append(FieldError("FieldValueRequired", "metadata.name", "name or generateName is required"))
    else:
        errs.extend(_invalid("metadata.name", name, m) for m in name_fn(name, False))
    return errs + _common(meta, namespaced)


def prepare_metadata_update(new: dict, old: dict) -> dict:
    """rest.BeforeUpdate's carry-overs, applied to `new` in place (and returned): generation is
    the server's, a missing uid and the creation timestamp come from the old object, and a
    deletionTimestamp / deletionGracePeriodSeconds once set cannot be dropped."""
    if "generation" in old:
        new["generation"] = old["generation"]
    else:
        new.pop("generation", None)
    if not new.get("uid") and old.get("uid"):
        new["uid"] = old["uid"]
    if old.get("creationTimestamp"):
        new["creationTimestamp"] = old["creationTimestamp"]
    if old.get("deletionTimestamp") and new.get("deletionTimestamp") != old["deletionTimestamp"]:
        new["deletionTimestamp"] = old["deletionTimestamp"]
    if old.get("deletionGracePeriodSeconds") is not None and new.get("deletionGracePeriodSeconds") is None:
        new["deletionGracePeriodSeconds"] = old["deletionGracePeriodSeconds"]
    return new


def validate_metadata_update(new: dict, old: dict) -> list[FieldError]:
    """ValidateObjectMetaAccessorUpdate: immutable identity fields, no new finalizers while
    deleting, resourceVersion present, generation not decremented, labels/annotations/owners valid.

    The real registry fills resourceVersion for unconditional updates before validating, so
    callers do the same before calling this.
    """
    errs: list[FieldError] = []
    if old.get("deletionTimestamp"):
        extra = sorted(set(new.get("finalizers") or []) - set(old.get("finalizers") or []))
        if extra:
            listed = ", ".join(f'"{f}"' for f in extra)
            errs.append(
                FieldError(
                    "FieldValueForbidden",
                    "metadata.finalizers",
                    f"no new finalizers can be added if the object is being deleted, found new finalizers []string{{{listed}}}",
                )
            )
    if not new.get("resourceVersion"):
        errs.append(_invalid("metadata.resourceVersion", new.get("resourceVersion") or "", "must be specified for an update"))
    if (new.get("generation") or 0) < (old.get("generation") or 0):
        errs.append(_invalid("metadata.generation", new.get("generation") or 0, "must not be decremented"))
    for key, empty in (
        ("name", ""),
        ("namespace", ""),
        ("uid", ""),
        ("creationTimestamp", None),
        ("deletionTimestamp", None),
        ("deletionGracePeriodSeconds", None),
    ):
        # Absent and empty are the same value (Go zero values); 0 grace seconds is a real value.
        new_value = empty if new.get(key) in (None, "") else new.get(key)
        old_value = empty if old.get(key) in (None, "") else old.get(key)
        if new_value != old_value:
            errs.append(_invalid(f"metadata.{key}", new_value, FIELD_IMMUTABLE_ERROR_MSG))
    errs.extend(validate_labels(new.get("labels")))
    errs.extend(validate_annotations(new.get("annotations")))
    errs.extend(validate_owner_references(new.get("ownerReferences")))
    return errs
