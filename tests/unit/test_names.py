"""ObjectMeta validation and name generation (apimachinery pkg/util/validation and
pkg/api/validation/objectmeta.go wording)."""

from __future__ import annotations

import re

import pytest

from hcpsim.apiserver.errors import ApiError, FieldError
from hcpsim.apiserver.names import (
    MAX_GENERATED_NAME_LENGTH,
    RANDOM_ALPHABET,
    generate_name,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
    name_rule_for,
    prepare_metadata_update,
    validate_metadata_update,
    validate_object_meta,
)

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def summaries(errors: list[FieldError]) -> list[str]:
    return [e.summary() for e in errors]


def test_generate_name() -> None:
    name = generate_name("web-")
    assert re.fullmatch(f"web-[{RANDOM_ALPHABET}]{{5}}", name)
    long = generate_name("x" * 100)
    assert len(long) == 63 and long.startswith("x" * MAX_GENERATED_NAME_LENGTH)


def test_valid_meta_has_no_errors() -> None:
    meta = {
        "name": "web-1",
        "namespace": "default",
        "labels": {"app.kubernetes.io/name": "web", "empty": ""},
        "annotations": {"Example.com/Mixed_Case": "anything goes"},
        "finalizers": ["example.com/cleanup", "kubernetes"],
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": True}],
    }
    assert validate_object_meta(meta, True, "dns1123-subdomain") == []


def test_name_required_and_invalid() -> None:
    assert summaries(validate_object_meta({"namespace": "d"}, True, "dns1123-subdomain")) == [
        "metadata.name: Required value: name or generateName is required"
    ]
    assert summaries(validate_object_meta({"name": "Web", "namespace": "d"}, True, "dns1123-subdomain")) == [
        f'metadata.name: Invalid value: "Web": {SUBDOMAIN_MSG}'
    ]


def test_generate_name_prefix_may_end_with_dash_but_not_be_invalid() -> None:
    assert validate_object_meta({"generateName": "web-", "name": "web-abcde", "namespace": "d"}, True, "dns1123-subdomain") == []
    errs = validate_object_meta({"generateName": "Web-", "name": "Web-abcde", "namespace": "d"}, True, "dns1123-subdomain")
    assert [e.field for e in errs] == ["metadata.generateName", "metadata.name"]


def test_namespace_rules() -> None:
    assert summaries(validate_object_meta({"name": "a"}, True, "dns1123-subdomain")) == ["metadata.namespace: Required value"]
    assert summaries(validate_object_meta({"name": "a", "namespace": "x"}, False, "dns1123-subdomain")) == [
        "metadata.namespace: Forbidden: not allowed on this type"
    ]
    errs = validate_object_meta({"name": "a", "namespace": "my.ns"}, True, "dns1123-subdomain")
    assert summaries(errs) == ['metadata.namespace: Invalid value: "my.ns": must not contain dots']


def test_kind_name_rules() -> None:
    assert name_rule_for("", "Namespace") == "dns1123-label"
    assert name_rule_for("", "Service") == "dns1035-label"
    assert name_rule_for("rbac.authorization.k8s.io", "ClusterRole") == "path-segment"
    assert name_rule_for("apps", "Deployment") == "dns1123-subdomain"
    assert name_rule_for("example.com", "Widget") == "dns1123-subdomain"
    # Services must start with a letter (DNS-1035).
    errs = validate_object_meta({"name": "1svc", "namespace": "d"}, True, "dns1035-label")
    assert errs[0].message.startswith("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character")
    # RBAC names are path segments: colons and capitals are fine, slashes are not.
    assert validate_object_meta({"name": "system:Controller"}, False, "path-segment") == []
    assert summaries(validate_object_meta({"name": "a/b%c"}, False, "path-segment")) == [
        "metadata.name: Invalid value: \"a/b%c\": may not contain '/'",
        "metadata.name: Invalid value: \"a/b%c\": may not contain '%'",
    ]
    assert summaries(validate_object_meta({"name": ".."}, False, "path-segment")) == ["metadata.name: Invalid value: \"..\": may not be '..'"]
    # Namespaces: labels, no dots, 63 characters.
    assert is_dns1123_label("a" * 64) == ["must be no more than 63 characters"]


def test_label_key_and_value_errors() -> None:
    errs = validate_object_meta({"name": "a", "labels": {"bad key": "ok", "k": "-v-"}}, False, "dns1123-subdomain")
    assert [e.field for e in errs] == ["metadata.labels", "metadata.labels"]
    assert errs[0].summary().startswith('metadata.labels: Invalid value: "bad key": name part must consist of')
    assert errs[1].summary().startswith('metadata.labels: Invalid value: "-v-": a valid label must be an empty string')
    assert is_valid_label_value("x" * 64)[0] == "must be no more than 63 characters"
    assert is_qualified_name("/a") == ["prefix part must be non-empty"]
    assert is_qualified_name("Example.com/a")[0].startswith("prefix part a lowercase RFC 1123 subdomain")
    assert is_qualified_name("a/b/c")[0].startswith("a qualified name must consist of")
    assert is_qualified_name("a/" + "b" * 64) == ["name part must be no more than 63 characters"]
    assert is_dns1123_subdomain("a" * 254) == ["must be no more than 253 characters"]


def test_annotation_size_limit() -> None:
    meta = {"name": "a", "annotations": {"big": "x" * (256 * 1024)}}
    errs = validate_object_meta(meta, False, "dns1123-subdomain")
    assert summaries(errs) == ["metadata.annotations: Too long: may not be more than 262144 bytes"]
    meta = {"name": "a", "annotations": {"k": "x" * (256 * 1024 - 1)}}
    assert validate_object_meta(meta, False, "dns1123-subdomain") == []


def test_finalizer_and_owner_reference_errors() -> None:
    errs = validate_object_meta({"name": "a", "finalizers": ["bad finalizer", "orphan", "foregroundDeletion"]}, False, "dns1123-subdomain")
    assert [e.field for e in errs] == ["metadata.finalizers", "metadata.finalizers"]
    assert errs[1].message == "finalizer orphan and foregroundDeletion cannot be both set"
    errs = validate_object_meta(
        {
            "name": "a",
            "ownerReferences": [
                {"apiVersion": "", "kind": "", "name": "", "uid": ""},
                {"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "u"},
                {"apiVersion": "v1", "kind": "A", "name": "x", "uid": "u1", "controller": True},
                {"apiVersion": "v1", "kind": "B", "name": "y", "uid": "u2", "controller": True},
            ],
        },
        False,
        "dns1123-subdomain",
    )
    assert [e.field for e in errs] == [
        "metadata.ownerReferences.apiVersion",
        "metadata.ownerReferences.kind",
        "metadata.ownerReferences.name",
        "metadata.ownerReferences.uid",
        "metadata.ownerReferences",
        "metadata.ownerReferences",
    ]
    assert errs[0].message == "version must not be empty"
    assert errs[4].message == "/v1, Kind=Event is disallowed from being an owner"
    assert errs[5].message == 'Only one reference can have Controller set to true. Found "true" in references for A/x and B/y'


def test_invalid_error_renders_like_the_server() -> None:
    err = ApiError.invalid("Pod", "", "Bad", validate_object_meta({"name": "Bad", "namespace": "d"}, True, "dns1123-subdomain"))
    assert err.code == 422
    assert err.message == f'Pod "Bad" is invalid: metadata.name: Invalid value: "Bad": {SUBDOMAIN_MSG}'


OLD = {
    "name": "a",
    "namespace": "d",
    "uid": "u1",
    "resourceVersion": "5",
    "creationTimestamp": "2024-01-01T00:00:00Z",
    "generation": 2,
    "finalizers": ["example.com/f"],
}


def test_metadata_update_ok_and_immutable_fields() -> None:
    assert validate_metadata_update(dict(OLD, labels={"x": "y"}), OLD) == []
    errs = validate_metadata_update(dict(OLD, name="b", uid="u2", namespace="e"), OLD)
    assert summaries(errs) == [
        'metadata.name: Invalid value: "b": field is immutable',
        'metadata.namespace: Invalid value: "e": field is immutable',
        'metadata.uid: Invalid value: "u2": field is immutable',
    ]


def test_metadata_update_resource_version_generation_and_finalizers() -> None:
    new = dict(OLD, resourceVersion="", generation=1)
    assert summaries(validate_metadata_update(new, OLD)) == [
        'metadata.resourceVersion: Invalid value: "": must be specified for an update',
        "metadata.generation: Invalid value: 1: must not be decremented",
    ]
    deleting = dict(OLD, deletionTimestamp="2024-01-02T00:00:00Z", deletionGracePeriodSeconds=0)
    new = dict(deleting, finalizers=["example.com/f", "example.com/g"])
    assert summaries(validate_metadata_update(new, deleting)) == [
        'metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"example.com/g"}'
    ]
    # Removing finalizers while deleting is how deletion completes: allowed.
    assert validate_metadata_update(dict(deleting, finalizers=[]), deleting) == []


def test_prepare_metadata_update_carries_server_fields() -> None:
    new = {"name": "a", "namespace": "d", "resourceVersion": "5", "generation": 9, "creationTimestamp": "1999-01-01T00:00:00Z"}
    prepared = prepare_metadata_update(new, OLD)
    assert prepared["uid"] == "u1"
    assert prepared["generation"] == 2
    assert prepared["creationTimestamp"] == OLD["creationTimestamp"]
    assert validate_metadata_update(prepared, OLD) == []
