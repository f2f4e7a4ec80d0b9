"""OpenAPI v3 structural validation, defaulting and pruning (hcpsim.apiserver.validation).

Messages are checked against the kube-apiserver's wording (kube-openapi errors/schema.go messages,
converted by apiextensions-apiserver kubeOpenAPIErrorToFieldError, printed by field.Error)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from hcpsim.apiserver.errors import ApiError, FieldError
from hcpsim.apiserver.validation import CompiledSchema, compile_schema


def crd_dir() -> Path:
    env = os.environ.get("HCPSIM_CRD_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "crds"


def summaries(errs: list[FieldError]) -> list[str]:
    return [e.summary() for e in errs]


def obj(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec}


SMALL = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["mode"],
            "properties": {
                "mode": {"type": "string", "enum": ["Fast", "Slow"]},
                "name": {"type": "string", "maxLength": 5, "minLength": 2},
                "url": {"type": "string", "pattern": "^(https|s3)://"},
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                "ratio": {"type": "number", "exclusiveMaximum": True, "maximum": 1.5},
                "tags": {"type": "array", "maxItems": 2, "minItems": 1, "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}, "port": {"type": "integer", "default": 80}},
                    },
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 2},
                "when": {"type": "string", "format": "date-time"},
                "size": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                "nested": {
                    "type": "object",
                    "default": {},
                    "properties": {"level": {"type": "string", "default": "info"}, "opt": {"type": "string", "nullable": True}},
                },
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True, "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}},
            },
        },
    },
}


@pytest.fixture(scope="module")
def small() -> CompiledSchema:
    return compile_schema(SMALL)


def test_valid_small_object(small: CompiledSchema) -> None:
    assert small.validate(obj({"mode": "Fast", "name": "abc", "url": "s3://b/k", "replicas": 3, "size": "1Gi"})) == []
    assert small.validate(obj({"mode": "Slow", "size": 3, "ratio": 1.0, "when": "2024-05-01T10:00:00Z"})) == []


def test_required(small: CompiledSchema) -> None:
    errs = small.validate(obj({}))
    assert summaries(errs)[0] == "spec.mode: Required value"
    assert errs[0].type == "FieldValueRequired"


def test_enum(small: CompiledSchema) -> None:
    errs = small.validate(obj({"mode": "Medium"}))
    assert errs[0].type == "FieldValueNotSupported"
    assert errs[0].summary() == 'spec.mode: Unsupported value: "Medium": supported values: "Fast", "Slow"'


def test_max_and_min_length(small: CompiledSchema) -> None:
    errs = small.validate(obj({"mode": "Fast", "name": "toolongname"}))
    assert errs[0].type == "FieldValueTooLong"
    assert errs[0].summary() == "spec.name: Too long: may not be longer than 5"
    errs = small.validate(obj({"mode": "Fast", "name": "a"}))
    assert errs[0].summary() == 'spec.name: Invalid value: "a": spec.name in body should be at least 2 chars long'


def test_max_length_counts_characters_not_bytes(small: CompiledSchema) -> None:
    assert small.validate(obj({"mode": "Fast", "name": "ééééé"})) == []


def test_pattern(small: CompiledSchema) -> None:
    errs = small.validate(obj({"mode": "Fast", "url": "http://x"}))
    assert errs[0].type == "FieldValueInvalid"
    assert errs[0].summary() == "spec.url: Invalid value: \"http://x\": spec.url in body should match '^(https|s3)://'"


def test_type_errors(small: CompiledSchema) -> None:
    errs = small.validate(obj({"mode": "Fast", "replicas": "three"}))
    assert errs[0].type == "FieldValueTypeInvalid"
    assert errs[0].summary() == 'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"'
    # 1.5 is not an integer; true is not an integer (bool is not int in JSON)
    assert small.validate(obj({"mode": "Fast", "replicas": 1.5}))[0].type == "FieldValueTypeInvalid"
    assert small.validate(obj({"mode": "Fast", "replicas": True}))[0].type == "FieldValueTypeInvalid"
    assert small.validate(obj({"mode": "Fast", "spec": 1}))  == []  # unknown field: pruned, not validated
    assert small.validate(obj({"mode": "Fast", "labels": {"a": 1}}))[0].field == "spec.labels.a"


def test_null_for_non_nullable(small: CompiledSchema) -> None:
    errs = small.validate(obj({"mode": "Fast", "name": None}))
    assert errs[0].summary() == 'spec.name: Invalid value: "null": spec.name in body must be of type string: "null"'
    assert small.validate(obj({"mode": "Fast", "nested": {"opt": None}})) == []


def test_numbers(small: CompiledSchema) -> None:
    errs = small.validate(obj({"mode": "Fast", "replicas": 11}))
    assert errs[0].summary() == "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"
    errs = small.validate(obj({"mode": "Fast", "replicas": -1}))
    assert errs[0].summary() == "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"
    errs = small.validate(obj({"mode": "Fast", "ratio": 1.5}))
    assert errs[0].summary() == "spec.ratio: Invalid value: 1.5: spec.ratio in body should be less than 1.5"


def test_items_and_list_types(small: CompiledSchema) -> None:
    errs = small.validate(obj({"mode": "Fast", "tags": ["a", "b", "c"]}))
    assert errs[0].type == "FieldValueTooMany"
    assert errs[0].summary() == "spec.tags: Too many: 3: must have at most 2 items"
    errs = small.validate(obj({"mode": "Fast", "tags": []}))
    assert errs[0].summary() == "spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items"
    errs = small.validate(obj({"mode": "Fast", "tags": ["a", "a"]}))
    assert [(e.type, e.field) for e in errs] == [("FieldValueDuplicate", "spec.tags[1]")]
    errs = small.validate(obj({"mode": "Fast", "ports": [{"name": "http"}, {"name": "https"}, {"name": "http", "port": 1}]}))
    assert [(e.type, e.field, e.value) for e in errs] == [("FieldValueDuplicate", "spec.ports[2]", {"name": "http"})]
    errs = small.validate(obj({"mode": "Fast", "ports": [{"port": 1}]}))
    assert summaries(errs) == ["spec.ports[0].name: Required value"]


def test_max_properties_and_format(small: CompiledSchema) -> None:
    errs = small.validate(obj({"mode": "Fast", "labels": {"a": "1", "b": "2", "c": "3"}}))
    assert errs[0].summary() == "spec.labels: Too many: 3: must have at most 2 items"
    errs = small.validate(obj({"mode": "Fast", "when": "yesterday"}))
    assert errs[0].type == "FieldValueTypeInvalid"
    assert errs[0].summary() == 'spec.when: Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday"'


def test_int_or_string_any_of(small: CompiledSchema) -> None:
    assert small.validate(obj({"mode": "Fast", "size": 5})) == []
    errs = small.validate(obj({"mode": "Fast", "size": True}))
    assert any("must validate at least one schema (anyOf)" in e.message for e in errs)


def test_defaults_applied(small: CompiledSchema) -> None:
    o = obj({"mode": "Fast", "ports": [{"name": "http"}], "replicas": None})
    small.apply_defaults(o)
    assert o["spec"]["replicas"] == 1  # absent or null-and-non-nullable -> default
    assert o["spec"]["nested"] == {"level": "info"}  # defaulted object is itself defaulted
    assert o["spec"]["ports"] == [{"name": "http", "port": 80}]
    o = obj({"mode": "Fast", "name": None, "replicas": 4})
    small.apply_defaults(o)
    assert "name" not in o["spec"] and o["spec"]["replicas"] == 4  # non-nullable null without default dropped


def test_defaults_are_copies(small: CompiledSchema) -> None:
    a, b = obj({"mode": "Fast"}), obj({"mode": "Fast"})
    small.apply_defaults(a)
    small.apply_defaults(b)
    a["spec"]["nested"]["level"] = "debug"
    assert b["spec"]["nested"]["level"] == "info"


def test_prune_unknown_fields(small: CompiledSchema) -> None:
    o = obj({"mode": "Fast", "bogus": 1, "ports": [{"name": "a", "extra": True}],
             "free": {"anything": {"deep": 1}, "known": {"a": "x", "b": "gone"}},
             "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": "1", "y": "2"}, "status": {}}})
    o["status"] = {"x": 1}
    pruned = small.prune(o)
    assert "bogus" not in o["spec"] and "extra" not in o["spec"]["ports"][0]
    assert o["spec"]["free"]["anything"] == {"deep": 1}  # preserve-unknown-fields keeps unknowns
    assert o["spec"]["free"]["known"] == {"a": "x"}  # ...but known children are still pruned
    assert o["spec"]["template"] == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": "1"}}
    assert o["apiVersion"] == "example.com/v1" and o["metadata"] == {"name": "w"} and "status" not in o
    assert sorted(pruned) == sorted(["spec.bogus", "spec.ports[0].extra", "spec.free.known.b", "spec.template.spec.y", "spec.template.status", "status"])


def test_blocking_errors_skip_cel() -> None:
    schema = compile_schema({"type": "object", "properties": {"spec": {"type": "object",
        "x-kubernetes-validations": [{"rule": "self.a == 'x'", "message": "a must be x"}],
        "properties": {"a": {"type": "string", "enum": ["x", "y"]}}}}})
    errs = schema.validate({"spec": {"a": "z"}})
    assert summaries(errs) == [
        'spec.a: Unsupported value: "z": supported values: "x", "y"',
        '<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; '
        "correct the existing errors to complete validation",
    ]
    assert summaries(schema.validate({"spec": {"a": "y"}})) == ["spec: Invalid value: a must be x"]


def test_invalid_status_from_errors(small: CompiledSchema) -> None:
    errs = small.validate(obj({"mode": "Medium"}))
    st = ApiError.invalid("Widget", "example.com", "w", errs).status()
    assert st["code"] == 422 and st["reason"] == "Invalid"
    assert st["details"]["causes"][0]["field"] == "spec.mode"


# ---------------------------------------------------------------------------------------------
# the real CRDs

def needs_crds(fn: Any) -> Any:
    """Tests that read the real CRDs: marked upstream_crds and skipped when the directory is absent."""
    skip = pytest.mark.skipif(not crd_dir().is_dir(), reason=f"upstream CRDs not found at {crd_dir()} (set HCPSIM_CRD_DIR)")
    return pytest.mark.upstream_crds(skip(fn))


def load_crd(name: str) -> dict[str, Any]:
    return yaml.load((crd_dir() / name).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def hosted_cluster() -> dict[str, Any]:
    arn = "arn:aws:iam::123456789012:role/demo-"
    return {
        "apiVersion": "hypershift.openshift.io/v1beta1",
        "kind": "HostedCluster",
        "metadata": {"name": "demo", "namespace": "clusters"},
        "spec": {
            "release": {"image": "quay.io/openshift-release-dev/ocp-release:4.17.0-x86_64"},
            "pullSecret": {"name": "demo-pull-secret"},
            "sshKey": {"name": "demo-ssh-key"},
            "infraID": "demo-x7k2p",
            "networking": {
                "networkType": "OVNKubernetes",
                "clusterNetwork": [{"cidr": "10.132.0.0/14"}],
                "serviceNetwork": [{"cidr": "172.31.0.0/16"}],
                "machineNetwork": [{"cidr": "10.0.0.0/16"}],
            },
            "platform": {
                "type": "AWS",
                "aws": {
                    "region": "us-east-1",
                    "cloudProviderConfig": {"vpc": "vpc-0123456789abcdef0", "zone": "us-east-1a", "subnet": {"id": "subnet-0123456789abcdef0"}},
                    "rolesRef": {k: arn + k for k in ("ingressARN", "imageRegistryARN", "storageARN", "networkARN",
                                                       "kubeCloudControllerARN", "nodePoolManagementARN", "controlPlaneOperatorARN")},
                    "endpointAccess": "Public",
                },
            },
            "services": [
                {"service": "APIServer", "servicePublishingStrategy": {"type": "LoadBalancer"}},
                {"service": "OAuthServer", "servicePublishingStrategy": {"type": "Route"}},
                {"service": "Konnectivity", "servicePublishingStrategy": {"type": "Route"}},
                {"service": "Ignition", "servicePublishingStrategy": {"type": "Route"}},
            ],
            "etcd": {"managementType": "Managed", "managed": {"storage": {"type": "PersistentVolume", "persistentVolume": {"size": "8Gi"}}}},
        },
    }


@needs_crds
def test_compile_all_crds() -> None:
    docs = [load_crd(p.name) for p in sorted(crd_dir().glob("*.yaml"))]
    for d in docs:
        for v in d["spec"]["versions"]:
            compile_schema(v["schema"]["openAPIV3Schema"])  # raises on anything it cannot compile


@needs_crds
def test_hosted_cluster_defaults_prune_validate() -> None:
    s = compile_schema(load_crd("hostedclusters-Hypershift-Default.crd.yaml")["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    hc = hosted_cluster()
    hc["spec"]["notAField"] = True
    assert s.prune(hc) == ["spec.notAField"]
    s.apply_defaults(hc)
    assert hc["spec"]["controllerAvailabilityPolicy"] == "HighlyAvailable"
    assert s.validate(hc) == []
    assert s.validate(hc, copy.deepcopy(hc)) == []
    # (speed belongs in bench/, never in a timed unit test)
    assert s.validate(hc, hc) == []


@needs_crds
def test_hosted_cluster_schema_errors() -> None:
    s = compile_schema(load_crd("hostedclusters-Hypershift-Default.crd.yaml")["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    hc = hosted_cluster()
    del hc["spec"]["release"]
    hc["spec"]["platform"]["type"] = "Bogus"
    got = summaries(s.validate(hc))
    assert "spec.release: Required value" in got
    assert any(g.startswith('spec.platform.type: Unsupported value: "Bogus": supported values: "AWS"') for g in got)
    assert json.dumps(got)  # plain strings, serialisable
