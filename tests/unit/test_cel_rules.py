"""x-kubernetes-validations (CEL) rules: the evaluator, the Kubernetes extension library and the
real HyperShift rules (restoreSnapshotURL, pausedUntil, NodePool upgradeType, ...)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hcpsim.apiserver.validation import compile_schema
from hcpsim.apiserver.validation.cel_eval import CelError, UnsupportedCel, compile_cel
from hcpsim.apiserver.validation.k8s_cel_ext import K8S_FUNCTIONS
# Shared CRD helpers live in the sibling test module (pytest puts tests/unit on sys.path: rootdir-less, prepend mode).
from test_schema_validation import crd_dir, hosted_cluster, load_crd, needs_crds, summaries

VARS = frozenset({"self", "oldSelf"})


def ev(rule: str, self: Any = None, **extra: Any) -> Any:
    return compile_cel(rule, K8S_FUNCTIONS, VARS).evaluate({"self": self, **extra})


# ---------------------------------------------------------------------------------------------
# evaluator semantics


@pytest.mark.parametrize(
    "rule,value,expected",
    [
        ("self.a == 1 && has(self.b)", {"a": 1, "b": None}, True),
        ("has(self.c) || self.a > 0", {"a": 1}, True),
        ("self.x == 1 || true", {}, True),  # error absorbed by ||
        ("false && self.x == 1", {}, False),
        ("self.all(x, self.exists_one(y, x == y))", ["a", "b"], True),
        ("self.all(x, self.exists_one(y, x == y))", ["a", "a"], False),
        ("[1, 2, 3].filter(x, x > 1).size() == 2", None, True),
        ("[1, 2].map(x, x * 2) == [2, 4]", None, True),
        ("size(self) <= 20 && self.startsWith('a') && self.endsWith('z') && self.contains('m')", "amz", True),
        ("self in ['1', '2', '3']", "2", True),
        ("1 == 'a'", None, False),
        ("1 == 1.0 && 2 > 1.5", None, True),
        ("7 / 2 == 3 && -7 / 2 == -3 && 7 % 3 == 1", None, True),
        ("int('42') + 1 == 43", None, True),
        ("self.split('/', 2)[0] != 'k8s.io'", "example.com/x/y", True),
        ("self.split('/', 2)[1] == 'x/y'", "example.com/x/y", True),
        ("self.lowerAscii() == 'abc' && self.upperAscii() == 'ABC'", "aBc", True),
        ("'a,b'.split(',').join('-') == 'a-b' && 'hello'.indexOf('l') == 2 && 'hello'.lastIndexOf('l') == 3", None, True),
        ("'hello'.substring(1, 3) == 'el' && ' x '.trim() == 'x' && 'abc'.charAt(1) == 'b' && 'aaa'.replace('a', 'b', 2) == 'bba'", None, True),
        ("'%s has %d items'.format(['list', 3]) == 'list has 3 items'", None, True),
        ("self.find('#(.+)$') == '' && self.find('[0-9]+') == '123'", "abc123", True),
        ("'a1b22'.findAll('[0-9]+') == ['1', '22']", None, True),
        ("[1, 2, 3].isSorted() && [3, 1].sum() == 4 && [3, 1].min() == 1 && [3, 1].max() == 3 && [1, 2].indexOf(2) == 1", None, True),
        ("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')", "my-cluster", True),
        ("duration('10m').getSeconds() >= 300", None, True),
        ("self.?a.b.orValue('none')", {"a": {"b": "x"}}, "x"),
        ("self.?a.b.orValue('none')", {"a": {}}, "none"),
        ("self.?a.b.orValue('none')", {}, "none"),
        ("optional.of(1).hasValue() && !optional.none().hasValue()", None, True),
        ('"a.?b" == "a." + "?b"', None, True),  # `.?` inside string literals is left alone
    ],
)
def test_evaluator(rule: str, value: Any, expected: Any) -> None:
    assert ev(rule, value) == expected


@pytest.mark.parametrize(
    "rule,value,error",
    [
        ("self.missing == 1", {}, "no such key: missing"),
        ("self[3] == 1", [1], "index out of bounds: 3"),
        ("1 / 0 == 1", None, "division by zero"),
        ("int('x') == 1", None, "cannot convert"),
        ("self + 1 == 2", "a", "no such overload"),
    ],
)
def test_evaluator_errors(rule: str, value: Any, error: str) -> None:
    with pytest.raises(CelError, match=error):
        ev(rule, value)


@pytest.mark.parametrize("rule", ["quantity(self).isGreaterThan(quantity('1Gi'))", "self.someUnknownFn()", "authorizer.allowed()", "Foo{a: 1}"])
def test_unsupported_is_reported_not_guessed(rule: str) -> None:
    with pytest.raises(UnsupportedCel):
        compile_cel(rule, K8S_FUNCTIONS, VARS)


@pytest.mark.parametrize(
    "rule,value,expected",
    [
        ("isURL(self) && url(self).getScheme() == 'https'", "https://oidc.example.com/x", True),
        ("isURL(self)", "not a url", False),
        ("isURL(self)", "http://x y", False),
        ("url(self).getHost() == 'h:8443' && url(self).getHostname() == 'h' && url(self).getPort() == '8443'", "https://h:8443/p", True),
        ("url(self).getEscapedPath() == '/a%20b' && url(self).getQuery() == {'q': ['1', '2']}", "https://h/a%20b?q=1&q=2", True),
        ("isURL(self) && url(self).getQuery() == {}", "https://h/p", True),
        ("url(self).getHostname() == '::1'", "https://[::1]:80/", True),
        ("isIP(self) && ip(self).family() == 4", "10.0.0.1", True),
        ("isIP(self)", "10.0.0.01", False),  # leading zeros are rejected, as Kubernetes does
        ("isIP(self)", "::ffff:1.2.3.4", False),  # IPv4-mapped IPv6 rejected
        ("isCIDR(self) && cidr(self).ip().family() == 6 && cidr(self).prefixLength() <= 125", "fd00::/48", True),
        ("isCIDR(self) && cidr(self).prefixLength() <= 30", "10.0.0.0/31", False),
        ("isCIDR(self)", "10.0.0.0/33", False),
        ("cidr(self).containsIP('10.1.2.3') && cidr(self).masked() == cidr('10.0.0.0/8')", "10.1.0.0/8", True),
        ("ip('10.0.0.1').isGlobalUnicast() && ip('127.0.0.1').isLoopback()", None, True),
    ],
)
def test_k8s_library(rule: str, value: Any, expected: Any) -> None:
    assert ev(rule, value) == expected


# ---------------------------------------------------------------------------------------------
# rule wiring on small schemas


def _schema(rules: list[dict[str, Any]], props: dict[str, Any], **node: Any) -> Any:
    return compile_schema({"type": "object", "properties": {"spec": {"type": "object", "properties": props, "x-kubernetes-validations": rules, **node}}})


def test_message_message_expression_reason_field_path() -> None:
    s = _schema(
        [
            {"rule": "self.a != 'bad'"},
            {"rule": "self.a != 'worse'", "messageExpression": "'a is ' + self.a", "reason": "FieldValueForbidden", "fieldPath": ".a"},
            {"rule": "has(self.b)", "message": "b is required", "reason": "FieldValueRequired", "fieldPath": ".b"},
        ],
        {"a": {"type": "string"}, "b": {"type": "string"}},
    )
    errs = s.validate({"spec": {"a": "bad", "b": "x"}})
    assert summaries(errs) == ["spec: Invalid value: failed rule: self.a != 'bad'"]
    errs = s.validate({"spec": {"a": "worse"}})
    assert [(e.type, e.field, e.message) for e in errs] == [
        ("FieldValueForbidden", "spec.a", "a is worse"),
        ("FieldValueRequired", "spec.b", "b is required"),
    ]


def test_scalar_rule_prints_value_and_runtime_error() -> None:
    s = compile_schema({"type": "object", "properties": {
        "n": {"type": "string", "x-kubernetes-validations": [{"rule": "int(self) < 10", "message": "n too big"}]}}})
    assert summaries(s.validate({"n": "12"})) == ['n: Invalid value: "12": n too big']
    assert summaries(s.validate({"n": "x"})) == ['n: Invalid value: "string": cannot convert \'x\' to int evaluating rule: n too big']


def test_transition_rules_correlation() -> None:
    item = {"type": "object", "properties": {"name": {"type": "string"}, "v": {"type": "string",
            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "immutable"}]}}}
    s = compile_schema({"type": "object", "properties": {
        "mapList": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "items": item},
        "plain": {"type": "array", "items": item},
        "byKey": {"type": "object", "additionalProperties": item},
        "opt": {"type": "string", "x-kubernetes-validations": [
            {"rule": "!oldSelf.hasValue() || oldSelf.value() == self", "message": "set once", "optionalOldSelf": True}]},
    }})
    old = {"mapList": [{"name": "a", "v": "1"}, {"name": "b", "v": "1"}], "plain": [{"name": "a", "v": "1"}], "byKey": {"k": {"v": "1"}}}
    new = {"mapList": [{"name": "b", "v": "2"}, {"name": "c", "v": "9"}], "plain": [{"name": "a", "v": "2"}], "byKey": {"k": {"v": "2"}}}
    assert s.validate(new) == []  # create: transition rules do not run
    assert sorted(e.field for e in s.validate(new, old)) == ["byKey[k].v", "mapList[0].v"]  # plain lists never correlate
    assert s.validate({"opt": "x"}) == [] and s.validate({"opt": "x"}, {"opt": "x"}) == []
    assert summaries(s.validate({"opt": "y"}, {"opt": "x"})) == ['opt: Invalid value: "y": set once']


def test_set_and_map_lists_compare_unordered() -> None:
    s = compile_schema({"type": "object", "properties": {
        "s": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"},
              "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "immutable"}]},
        "a": {"type": "array", "items": {"type": "string"}, "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "immutable"}]},
    }})
    assert s.validate({"s": ["b", "a"]}, {"s": ["a", "b"]}) == []
    assert summaries(s.validate({"a": ["b", "a"]}, {"a": ["a", "b"]})) == ["a: Invalid value: immutable"]


# ---------------------------------------------------------------------------------------------
# the real HyperShift rules


@pytest.fixture(scope="module")
def hc_schema() -> Any:
    if not crd_dir().is_dir():
        pytest.skip(f"upstream CRDs not found at {crd_dir()} (set HCPSIM_CRD_DIR)")
    return compile_schema(load_crd("hostedclusters-Hypershift-Default.crd.yaml")["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


@pytest.fixture()
def hc(hc_schema: Any) -> dict[str, Any]:
    o = hosted_cluster()
    hc_schema.apply_defaults(o)
    assert hc_schema.validate(o) == []
    return o


def _storage(o: dict[str, Any]) -> dict[str, Any]:
    return o["spec"]["etcd"]["managed"]["storage"]


@needs_crds
def test_restore_snapshot_url_at_most_one(hc_schema: Any, hc: dict[str, Any]) -> None:
    _storage(hc)["restoreSnapshotURL"] = ["https://bucket.s3.amazonaws.com/a.db", "s3://bucket/b.db"]
    errs = hc_schema.validate(hc)
    assert errs[0].field == "spec.etcd.managed.storage.restoreSnapshotURL"
    assert errs[0].summary() == "spec.etcd.managed.storage.restoreSnapshotURL: Too many: 2: must have at most 1 items"
    assert "some validation rules were not checked" in errs[-1].message


@needs_crds
def test_restore_snapshot_url_scheme(hc_schema: Any, hc: dict[str, Any]) -> None:
    _storage(hc)["restoreSnapshotURL"] = ["http://bucket/a.db"]
    errs = hc_schema.validate(hc)
    assert [(e.type, e.field) for e in errs] == [("FieldValueInvalid", "spec.etcd.managed.storage.restoreSnapshotURL")]
    assert "https or s3" in errs[0].message
    _storage(hc)["restoreSnapshotURL"] = ["s3://bucket/a.db"]
    assert hc_schema.validate(hc) == []


@needs_crds
def test_restore_snapshot_url_cannot_be_added_or_removed(hc_schema: Any, hc: dict[str, Any]) -> None:
    with_url = copy.deepcopy(hc)
    _storage(with_url)["restoreSnapshotURL"] = ["s3://bucket/a.db"]
    added = hc_schema.validate(with_url, hc)
    removed = hc_schema.validate(hc, with_url)
    for errs in (added, removed):
        assert [(e.type, e.field) for e in errs] == [("FieldValueInvalid", "spec.etcd.managed.storage")]
        assert "restoreSnapshotURL" in errs[0].message
    assert hc_schema.validate(with_url, copy.deepcopy(with_url)) == []
    assert hc_schema.validate(with_url) == []  # allowed on create


@needs_crds
@pytest.mark.parametrize("value,ok", [("2025-01-02T03:04:05Z", True), ("true", True), ("false", True), ("True", True), ("soon", False), ("2025-01-02", False)])
def test_paused_until(hc_schema: Any, hc: dict[str, Any], value: str, ok: bool) -> None:
    hc["spec"]["pausedUntil"] = value
    errs = hc_schema.validate(hc)
    assert (errs == []) == ok
    if not ok:
        assert errs[0].field == "spec.pausedUntil" and errs[0].value == value


@needs_crds
def test_hosted_cluster_immutable_and_cross_field_rules(hc_schema: Any, hc: dict[str, Any]) -> None:
    changed = copy.deepcopy(hc)
    changed["spec"]["infraID"] = "other"
    assert summaries(hc_schema.validate(changed, hc)) == ['spec.infraID: Invalid value: "other": infraID is immutable']
    changed = copy.deepcopy(hc)
    changed["spec"]["services"].pop()
    assert [e.field for e in hc_schema.validate(changed)] == ["spec"]
    changed = copy.deepcopy(hc)
    changed["spec"]["networking"]["serviceNetwork"] = [{"cidr": "10.132.0.0/14"}]
    assert [e.field for e in hc_schema.validate(changed)] == ["spec.networking"]
    changed = copy.deepcopy(hc)
    changed["spec"]["issuerURL"] = "issuer.example.com"  # isURL() needs an absolute URL
    assert [e.field for e in hc_schema.validate(changed)] == ["spec.issuerURL"]


@needs_crds
def test_nodepool_upgrade_type_immutable() -> None:
    s = compile_schema(load_crd("nodepools-Default.crd.yaml")["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    np_ = {"apiVersion": "hypershift.openshift.io/v1beta1", "kind": "NodePool", "metadata": {"name": "demo-a", "namespace": "clusters"},
           "spec": {"clusterName": "demo", "replicas": 2, "release": {"image": "quay.io/openshift-release-dev/ocp-release:4.17.0-x86_64"},
                    "management": {"upgradeType": "Replace"},
                    "platform": {"type": "AWS", "aws": {"instanceType": "m5.large", "subnet": {"id": "subnet-0123456789abcdef0"}}}}}
    s.apply_defaults(np_)
    assert s.validate(np_) == []
    changed = copy.deepcopy(np_)
    changed["spec"]["management"]["upgradeType"] = "InPlace"
    assert s.validate(changed) == []  # fine on create
    errs = s.validate(changed, np_)
    assert summaries(errs) == ['spec.management.upgradeType: Invalid value: "InPlace": UpgradeType is immutable']


@needs_crds
def test_rule_counts_per_crd(capsys: pytest.CaptureFixture[str]) -> None:
    rows = []
    for path in sorted(crd_dir().glob("*.yaml")):
        for v in load_crd(path.name)["spec"]["versions"]:
            s = compile_schema(v["schema"]["openAPIV3Schema"])
            skipped = s.cel_rules_skipped
            rows.append((path.name, v["name"], s.cel_rules_total, s.cel_rules_total - len(skipped), skipped))
    with capsys.disabled():
        print("\nCEL rules per CRD version: total / evaluable / skipped")
        for name, ver, total, ok, skipped in rows:
            if total:
                print(f"  {name} {ver}: {total} / {ok} / {len(skipped)}")
            for p, rule, why in skipped:
                print(f"    skipped {p}: {why}: {rule}")
    by_name = {(n, v): t for n, v, t, _, _ in rows}
    assert by_name[("hostedclusters-Hypershift-Default.crd.yaml", "v1beta1")] == 250
    for _, _, total, ok, skipped in rows:
        assert ok + len(skipped) == total
