"""Patch application: JSON patch, merge patch and strategic merge patch.

Strategic-merge fixtures marked "upstream" are copied from k8s.io/apimachinery
pkg/util/strategicpatch/patch_test.go (customStrategicMergePatchTestCaseData and
customStrategicMergePatchRawTestCases), applied to the MergeItem test struct re-declared below.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from hcpsim.apiserver.errors import ApiError
from hcpsim.apiserver.patch import (
    GENERIC_422_MESSAGE,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
    json_patch_failure_reason,
    supports_strategic_merge,
)
from hcpsim.apiserver.patch.schemas import FieldMeta, merge_list
from hcpsim.apiserver.patch.strategic import strategic_merge

# ------------------------------------------------------------------------------ JSON patch


POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "p",
        "namespace": "default",
        "labels": {"app": "web", "a/b": "x"},
        "finalizers": ["example.com/f1", "example.com/f2"],
    },
    "spec": {"containers": [{"name": "c", "image": "nginx"}]},
}


def test_json_patch_add_replace_remove_and_escapes() -> None:
    result = apply_json_patch(
        POD,
        [
            {"op": "add", "path": "/metadata/labels/tier", "value": "front"},
            {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:2"},
            {"op": "remove", "path": "/metadata/labels/a~1b"},
            {"op": "remove", "path": "/metadata/finalizers"},
        ],
    )
    assert result["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert result["spec"]["containers"][0]["image"] == "nginx:2"
    assert "finalizers" not in result["metadata"]
    assert POD["metadata"]["labels"]["a/b"] == "x", "original must be untouched"


def test_json_patch_array_ops_and_move_copy() -> None:
    result = apply_json_patch(
        POD,
        [
            {"op": "add", "path": "/metadata/finalizers/-", "value": "example.com/f3"},
            {"op": "add", "path": "/metadata/finalizers/0", "value": "example.com/f0"},
            {"op": "remove", "path": "/metadata/finalizers/-1"},  # negative index: from the end
            {"op": "copy", "from": "/metadata/labels/app", "path": "/metadata/labels/copied"},
            {"op": "move", "from": "/metadata/labels/a~1b", "path": "/metadata/labels/moved"},
            {"op": "test", "path": "/metadata/labels/moved", "value": "x"},
        ],
    )
    assert result["metadata"]["finalizers"] == ["example.com/f0", "example.com/f1", "example.com/f2"]
    assert result["metadata"]["labels"] == {"app": "web", "copied": "web", "moved": "x"}


def test_json_patch_replace_of_missing_member_succeeds_like_json_patch_v4() -> None:
    # evanphx/json-patch v4 partialDoc.get never fails, so replace acts as add on objects.
    result = apply_json_patch(POD, [{"op": "replace", "path": "/metadata/annotations", "value": {"k": "v"}}])
    assert result["metadata"]["annotations"] == {"k": "v"}


def test_json_patch_test_null_on_missing_member_passes() -> None:
    apply_json_patch(POD, [{"op": "test", "path": "/metadata/annotations", "value": None}])


@pytest.mark.parametrize(
    "ops,reason",
    [
        ([{"op": "test", "path": "/metadata/labels/app", "value": "db"}], "testing value /metadata/labels/app failed: test failed"),
        ([{"op": "remove", "path": "/metadata/annotations"}], "Unable to remove nonexistent key: annotations: missing value"),
        ([{"op": "add", "path": "/spec/affinity/nodeAffinity", "value": {}}], 'add operation does not apply: doc is missing path: "/spec/affinity/nodeAffinity": missing value'),
        ([{"op": "replace", "path": "/spec/containers/5", "value": {}}], "replace operation does not apply: doc is missing key: /spec/containers/5: missing value"),
        ([{"op": "frobnicate", "path": "/x"}], "Unexpected kind: frobnicate"),
    ],
)
def test_json_patch_failed_operation_is_generic_422(ops: list, reason: str) -> None:
    with pytest.raises(ApiError) as err:
        apply_json_patch(POD, ops)
    assert (err.value.code, err.value.reason, err.value.message) == (422, "Invalid", GENERIC_422_MESSAGE)
    assert GENERIC_422_MESSAGE == "the server rejected our request due to an error in our request"
    assert reason in (json_patch_failure_reason(POD, ops) or "")


def test_json_patch_failed_test_leaves_nothing_applied() -> None:
    original = copy.deepcopy(POD)
    with pytest.raises(ApiError):
        apply_json_patch(POD, [{"op": "add", "path": "/metadata/labels/x", "value": "1"}, {"op": "test", "path": "/metadata/name", "value": "other"}])
    assert POD == original


@pytest.mark.parametrize(
    "body,message",
    [
        ({"op": "add"}, "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
        (["add"], "json: cannot unmarshal string into Go value of type jsonpatch.Operation"),
    ],
)
def test_json_patch_undecodable_body_is_400(body: object, message: str) -> None:
    with pytest.raises(ApiError) as err:
        apply_json_patch(POD, body)
    assert (err.value.code, err.value.reason, err.value.message) == (400, "BadRequest", message)


def test_json_patch_operation_limit_is_413() -> None:
    ops = [{"op": "test", "path": "/kind", "value": "Pod"}] * 10001
    with pytest.raises(ApiError) as err:
        apply_json_patch(POD, ops)
    assert err.value.code == 413
    assert err.value.message.endswith("The allowed maximum operations in a JSON patch is 10000, got 10001")


# ------------------------------------------------------------------------------ merge patch


def test_merge_patch_rfc7386() -> None:
    result = apply_merge_patch(
        POD,
        {"metadata": {"labels": {"app": None, "new": "1"}, "finalizers": None}, "spec": {"containers": [{"name": "d"}]}},
    )
    assert result["metadata"]["labels"] == {"a/b": "x", "new": "1"}
    assert "finalizers" not in result["metadata"]
    assert result["spec"]["containers"] == [{"name": "d"}], "lists are replaced whole"
    assert POD["metadata"]["labels"]["app"] == "web"


def test_merge_patch_prunes_nulls_of_new_objects() -> None:
    result = apply_merge_patch({"a": 1}, {"b": {"c": None, "d": 2}, "e": None})
    assert result == {"a": 1, "b": {"d": 2}}


@pytest.mark.parametrize("body", [None, "text", 3])
def test_merge_patch_non_object_body_is_400(body: object) -> None:
    with pytest.raises(ApiError) as err:
        apply_merge_patch(POD, body if body != "text" else '"text"')
    assert (err.value.code, err.value.message) == (400, "Invalid JSON Patch")


def test_merge_patch_array_body_is_422_on_patch_field() -> None:
    with pytest.raises(ApiError) as err:
        apply_merge_patch(POD, [1])
    assert err.value.code == 422
    assert err.value.details["causes"][0]["field"] == "patch"


# ------------------------------------------------------------------------------ strategic merge: upstream fixtures

# type MergeItem struct (patch_test.go): mergingList merge/name, nonMergingList none,
# mergingIntList merge, nonMergingIntList none, simpleMap map, retainKeysMap, retainKeysMergingList.
MERGE_ITEM: dict[str, FieldMeta] = {}
MERGE_ITEM.update(
    {
        "mergingList": merge_list("name", MERGE_ITEM),
        "nonMergingList": FieldMeta(schema=MERGE_ITEM),
        "mergingIntList": merge_list(),
        "retainKeysMap": FieldMeta(schema={"mergingIntList": merge_list(), "mergingList": merge_list("name", MERGE_ITEM)}),
        "retainKeysMergingList": merge_list("name", MERGE_ITEM),
        "replacingItem": FieldMeta(strategy="replace"),
    }
)

UPSTREAM_CASES = yaml.safe_load(
    """
- description: unique scalars when merging lists
  original: {mergingIntList: [1, 2]}
  twoWay: {mergingIntList: [2, 3]}
  modified: {mergingIntList: [1, 2, 3]}
- description: delete map from nested map
  original: {simpleMap: {key1: 1, key2: 1}}
  twoWay: {simpleMap: {$patch: delete}}
  modified: {simpleMap: {}}
- description: delete all items from merging list
  original: {mergingList: [{name: 1}, {name: 2}]}
  twoWay: {mergingList: [{$patch: replace}]}
  modified: {mergingList: []}
- description: merge empty merging lists
  original: {mergingList: []}
  twoWay: {mergingList: []}
  modified: {mergingList: []}
- description: delete all keys from map
  original: {name: 1, value: 1}
  twoWay: {$patch: replace}
  modified: {}
- description: add key and delete all keys from map
  original: {name: 1, value: 1}
  twoWay: {other: a, $patch: replace}
  modified: {other: a}
- description: delete all duplicate entries in a merging list
  original: {mergingList: [{name: 1}, {name: 1}, {name: 2, value: a}, {name: 3}, {name: 3}]}
  twoWay: {mergingList: [{name: 1, $patch: delete}, {name: 3, $patch: delete}]}
  modified: {mergingList: [{name: 2, value: a}]}
- description: retainKeys map can delete a field when no retainKeys directive present
  original: {retainKeysMap: {name: foo, value: a}}
  twoWay: {retainKeysMap: {value: null}}
  modified: {retainKeysMap: {name: foo}}
- description: retainKeys list can add a field when no retainKeys directive present
  original: {retainKeysMergingList: [{name: bar}, {name: foo}]}
  twoWay: {retainKeysMergingList: [{name: foo, value: a}]}
  modified: {retainKeysMergingList: [{name: bar}, {name: foo, value: a}]}
- description: preserve the order from the patch in a merging list
  original: {mergingList: [{name: 1}, {name: 2, value: b}, {name: 3}]}
  twoWay: {mergingList: [{name: 3, value: c}, {name: 1, value: a}, {name: 2, other: x}]}
  modified: {mergingList: [{name: 3, value: c}, {name: 1, value: a}, {name: 2, value: b, other: x}]}
- description: preserve the order from the patch in a merging list 2
  original: {mergingList: [{name: 1}, {name: 2, value: b}, {name: 3}]}
  twoWay: {mergingList: [{name: 3, value: c}, {name: 1, value: a}]}
  modified: {mergingList: [{name: 2, value: b}, {name: 3, value: c}, {name: 1, value: a}]}
- description: preserve the order from the patch in a merging int list
  original: {mergingIntList: [1, 2, 3]}
  twoWay: {mergingIntList: [3, 1]}
  modified: {mergingIntList: [2, 3, 1]}
- description: $setElementOrder contains item that is not present in the list to be merged
  original: {mergingList: [{name: 1}, {name: 3}]}
  twoWay:
    $setElementOrder/mergingList: [{name: 3}, {name: 2}, {name: 1}]
    mergingList: [{name: 3, value: 3}, {name: 1, value: 1}]
  modified: {mergingList: [{name: 3, value: 3}, {name: 1, value: 1}]}
- description: $setElementOrder contains item that is not present in the int list to be merged
  original: {mergingIntList: [1, 3]}
  twoWay: {$setElementOrder/mergingIntList: [3, 2, 1]}
  modified: {mergingIntList: [3, 1]}
- description: $deleteFromPrimitiveList of nonexistent item in primitive list should not add the item to the list
  original: {mergingIntList: [1, 2]}
  twoWay: {$deleteFromPrimitiveList/mergingIntList: [3]}
  modified: {mergingIntList: [1, 2]}
- description: $deleteFromPrimitiveList on empty primitive list should not add the item to the list
  original: {mergingIntList: null}
  twoWay: {$deleteFromPrimitiveList/mergingIntList: [3]}
  modified: {mergingIntList: null}
- description: $deleteFromPrimitiveList on nonexistent primitive list should not add the primitive list
  original: {foo: [bar]}
  twoWay: {$deleteFromPrimitiveList/mergingIntList: [3]}
  modified: {foo: [bar]}
- description: $deleteFromPrimitiveList should delete item from a list with merge patch strategy
  original: {mergingIntList: [1, 2, 3]}
  twoWay: {$deleteFromPrimitiveList/mergingIntList: [2]}
  modified: {mergingIntList: [1, 3]}
- description: $deleteFromPrimitiveList should delete item from a list without merge patch strategy
  original: {nonMergingIntList: [1, 2, 3]}
  twoWay: {$deleteFromPrimitiveList/nonMergingIntList: [2]}
  modified: {nonMergingIntList: [1, 3]}
- description: delete items in lists of scalars (three-way result on current)
  original: {mergingIntList: [1, 2, 3, 4]}
  twoWay:
    $setElementOrder/mergingIntList: [1, 2]
    $deleteFromPrimitiveList/mergingIntList: [3]
  modified: {mergingIntList: [1, 2, 4]}
- description: merge lists of maps (three-way result on current)
  original: {mergingList: [{name: 1, other: a}, {name: 2, value: 2, other: b}]}
  twoWay:
    $setElementOrder/mergingList: [{name: 4}, {name: 1}, {name: 2}, {name: 3}]
    mergingList: [{name: 4, value: 4}, {name: 3, value: 3}]
  modified: {mergingList: [{name: 4, value: 4}, {name: 1, other: a}, {name: 2, value: 2, other: b}, {name: 3, value: 3}]}
- description: nested patch merge with empty list (two-way result)
  original: {name: hi}
  twoWay: {mergingList: [{name: hello}, {$patch: delete, name: doesntexist}]}
  modified: {name: hi, mergingList: [{name: hello}, {name: doesntexist}]}
- description: defined null values should propagate removing original fields
  original: {name: original-name, value: original-value}
  twoWay: {name: modified-name, value: null}
  modified: {name: modified-name}
- description: replacing item with replace strategy
  original: {replacingItem: {a: 1, b: 2}}
  twoWay: {replacingItem: {c: 3}}
  modified: {replacingItem: {c: 3}}
"""
)


@pytest.mark.parametrize("case", UPSTREAM_CASES, ids=[c["description"] for c in UPSTREAM_CASES])
def test_strategic_merge_upstream_fixture(case: dict) -> None:
    assert strategic_merge(case["original"], case["twoWay"], MERGE_ITEM) == case["modified"]


@pytest.mark.parametrize(
    "original,patch,code,fragment",
    [
        # upstream: "should check if order in $setElementOrder and patch list match"
        (
            {"mergingList": [{"name": 1}, {"name": 3}, {"name": 2}]},
            {"$setElementOrder/mergingList": [{"name": 1}, {"name": 2}, {"name": 3}], "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]},
            500,
            "doesn't match",
        ),
        # upstream: "missing merge key should error out"
        ({"mergingList": [{"name": 1, "value": "a"}]}, {"mergingList": [{"value": "b"}]}, 500, "map: map[value:b] does not contain declared merge key: name"),
        ({"mergingList": [{"name": 1}]}, {"mergingList": [{"name": 1, "$patch": "merge"}]}, 500, "merging lists cannot yet be specified in the patch"),
        ({"simpleMap": {"a": "b"}}, {"simpleMap": {"$patch": "bogus"}}, 500, "unknown patch type: bogus in map: map[$patch:bogus]"),
        ({"name": 1}, {"$retainKeys": "name"}, 400, "invalid patch format of retainKeys"),
        ({"name": 1}, {"$retainKeys": ["name"], "value": 2}, 400, "invalid patch format of retainKeys"),
        ({"mergingIntList": [1]}, {"$setElementOrder": [1]}, 400, "invalid patch format of setElementOrder list"),
        ({"mergingIntList": [[1]]}, {"mergingIntList": [[2]]}, 422, GENERIC_422_MESSAGE),
    ],
)
def test_strategic_merge_errors(original: dict, patch: dict, code: int, fragment: str) -> None:
    with pytest.raises(ApiError) as err:
        strategic_merge(original, patch, MERGE_ITEM)
    assert err.value.code == code
    assert fragment in err.value.message


def test_retain_keys_clears_unlisted_fields() -> None:
    result = strategic_merge(
        {"retainKeysMap": {"name": "foo", "value": "a", "other": "x"}},
        {"retainKeysMap": {"$retainKeys": ["name", "value"], "value": "b"}},
        MERGE_ITEM,
    )
    assert result == {"retainKeysMap": {"name": "foo", "value": "b"}}


# ------------------------------------------------------------------------------ strategic merge: built-in kinds


DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a.io/x"]},
    "spec": {
        "replicas": 1,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "nginx:1",
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        "ports": [{"containerPort": 80, "name": "http"}],
                        "args": ["--a", "--b"],
                    },
                    {"name": "sidecar", "image": "envoy"},
                ],
                "tolerations": [{"key": "k1", "operator": "Exists"}],
                "volumes": [{"name": "data", "emptyDir": {}}],
            },
        },
    },
}


def test_kubectl_patch_style_container_image_update_merges_by_name() -> None:
    result = apply_strategic_merge_patch(
        DEPLOYMENT, {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}}, "apps", "Deployment"
    )
    containers = result["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["app", "sidecar"]
    assert containers[0]["image"] == "nginx:2"
    assert containers[0]["env"] == DEPLOYMENT["spec"]["template"]["spec"]["containers"][0]["env"]
    assert DEPLOYMENT["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"


def test_env_merge_delete_and_atomic_lists() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "env": [{"name": "B", "$patch": "delete"}, {"name": "C", "value": "3"}],
                            "args": ["--c"],
                        }
                    ],
                    "tolerations": [{"key": "k2", "operator": "Exists"}],
                }
            }
        }
    }
    result = apply_strategic_merge_patch(DEPLOYMENT, patch, "apps", "Deployment")
    app = result["spec"]["template"]["spec"]["containers"][0]
    # New merge-list items go before the live ones (mergeSortedSlice) when no $setElementOrder.
    assert app["env"] == [{"name": "C", "value": "3"}, {"name": "A", "value": "1"}]
    assert app["args"] == ["--c"], "args has no patch strategy: replaced"
    assert result["spec"]["template"]["spec"]["tolerations"] == [{"key": "k2", "operator": "Exists"}]


def test_kubectl_apply_style_patch_with_set_element_order_and_retain_keys() -> None:
    # What client-side `kubectl apply` sends after the user drops env B, adds env C at the end
    # and switches the strategy to Recreate.
    patch = {
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {
            "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None},
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                    "containers": [
                        {
                            "name": "app",
                            "$setElementOrder/env": [{"name": "A"}, {"name": "C"}],
                            "env": [{"name": "C", "value": "3"}, {"name": "B", "$patch": "delete"}],
                        }
                    ],
                }
            },
        },
    }
    result = apply_strategic_merge_patch(DEPLOYMENT, patch, "apps", "Deployment")
    assert result["spec"]["strategy"] == {"type": "Recreate"}
    app = result["spec"]["template"]["spec"]["containers"][0]
    assert app["env"] == [{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]
    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == ["app", "sidecar"]
    assert "$setElementOrder/env" not in app
    assert result["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] == "{}"


def test_finalizers_are_a_merged_set_with_delete_list() -> None:
    result = apply_strategic_merge_patch(
        DEPLOYMENT, {"metadata": {"finalizers": ["a.io/x", "b.io/y"], "$deleteFromPrimitiveList/finalizers": ["a.io/x"]}}, "apps", "Deployment"
    )
    assert result["metadata"]["finalizers"] == ["b.io/y"]
    result = apply_strategic_merge_patch(DEPLOYMENT, {"metadata": {"finalizers": None}}, "apps", "Deployment")
    assert "finalizers" not in result["metadata"]


def test_service_ports_merge_by_port_and_configmap_data_by_key() -> None:
    svc = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}], "selector": {"app": "a"}}}
    result = apply_strategic_merge_patch(svc, {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}, "", "Service")
    assert result["spec"]["ports"] == [{"port": 80, "targetPort": 9090}, {"port": 443}]
    cm = {"data": {"a": "1", "b": "2"}}
    assert apply_strategic_merge_patch(cm, {"data": {"b": None, "c": "3"}}, "", "ConfigMap") == {"data": {"a": "1", "c": "3"}}


def test_status_conditions_merge_by_type() -> None:
    pod = {"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}}
    result = apply_strategic_merge_patch(pod, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, "", "Pod")
    assert result["status"]["conditions"] == [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]


def test_rbac_rules_are_atomic() -> None:
    role = {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
    patch = {"rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list"]}]}
    assert apply_strategic_merge_patch(role, patch, "rbac.authorization.k8s.io", "Role") == patch


def test_strategic_merge_support_by_kind() -> None:
    assert supports_strategic_merge("", "Pod")
    assert supports_strategic_merge("apps", "StatefulSet")
    assert supports_strategic_merge("networking.k8s.io", "Ingress")  # built-in, metadata-only schema
    assert not supports_strategic_merge("hypershift.openshift.io", "HostedCluster")
    with pytest.raises(ApiError) as err:
        apply_strategic_merge_patch({}, {}, "example.com", "Widget")
    assert err.value.code == 415


def test_strategic_merge_non_object_body_is_400() -> None:
    with pytest.raises(ApiError) as err:
        apply_strategic_merge_patch(DEPLOYMENT, [1], "apps", "Deployment")
    assert err.value.code == 400
    assert err.value.message == "json: cannot unmarshal array into Go value of type map[string]interface {}"
