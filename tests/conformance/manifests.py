"""Manifests the conformance suite creates: built-in kinds, upstream HyperShift / Cluster API custom
resources (valid per the upstream CRDs' required fields and CEL rules), and a small CRD of our own.
"""

from __future__ import annotations

import copy
from typing import Any

RELEASE_IMAGE = "quay.io/openshift-release-dev/ocp-release:4.17.0-x86_64"

CONF_GROUP = "conformance.hcpsim.io"


def configmap(name: str, namespace: str, labels: dict | None = None, data: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "data": data if data is not None else {"k": "v"}}


def secret(name: str, namespace: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque", "data": {"a": "YWFh"}, "stringData": {"b": "bbb"}}


def service(name: str, namespace: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def pvc(name: str, namespace: str) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": namespace},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}


def pod_template(app: str, containers: list[dict] | None = None) -> dict:
    return {"metadata": {"labels": {"app": app}},
            "spec": {"containers": containers or [{"name": "main", "image": "registry.example/app:1.0"}]}}


def deployment(name: str, namespace: str, replicas: int = 1, containers: list[dict] | None = None) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": pod_template(name, containers)}}


def statefulset(name: str, namespace: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "serviceName": name, "selector": {"matchLabels": {"app": name}},
                     "template": pod_template(name)}}


def lease(name: str, namespace: str) -> dict:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name, "namespace": namespace},
            "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15,
                     "renewTime": "2024-01-02T03:04:05.123456Z"}}


def role(name: str, namespace: str) -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name, "namespace": namespace},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}


def pod(name: str, namespace: str, node: str | None = None, labels: dict | None = None) -> dict:
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "registry.example/app:1.0"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": spec}


# HyperShift / Cluster API (upstream CRDs).

def hosted_cluster(name: str, namespace: str, restore_urls: list[str] | None = None) -> dict:
    storage: dict[str, Any] = {"type": "PersistentVolume"}
    if restore_urls is not None:
        storage["restoreSnapshotURL"] = list(restore_urls)
    return {
        "apiVersion": "hypershift.openshift.io/v1beta1",
        "kind": "HostedCluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "release": {"image": RELEASE_IMAGE},
            "pullSecret": {"name": "pull-secret"},
            "platform": {"type": "None"},
            "etcd": {"managementType": "Managed", "managed": {"storage": storage}},
            "networking": {"networkType": "OVNKubernetes",
                           "clusterNetwork": [{"cidr": "10.132.0.0/14"}],
                           "serviceNetwork": [{"cidr": "172.31.0.0/16"}]},
            "services": [
                {"service": "APIServer", "servicePublishingStrategy": {"type": "LoadBalancer"}},
                {"service": "OAuthServer", "servicePublishingStrategy": {"type": "Route"}},
                {"service": "Konnectivity", "servicePublishingStrategy": {"type": "Route"}},
                {"service": "Ignition", "servicePublishingStrategy": {"type": "Route"}},
            ],
        },
    }


def node_pool(name: str, namespace: str, cluster: str = "hc1", replicas: int = 2, upgrade_type: str = "Replace") -> dict:
    return {
        "apiVersion": "hypershift.openshift.io/v1beta1",
        "kind": "NodePool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterName": cluster, "replicas": replicas,
                 "management": {"upgradeType": upgrade_type},
                 "platform": {"type": "None"},
                 "release": {"image": RELEASE_IMAGE}},
    }


def capi_cluster(name: str, namespace: str) -> dict:
    return {"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
            "metadata": {"name": name, "namespace": namespace, "labels": {"cluster.x-k8s.io/cluster-name": name}},
            "spec": {"paused": False}}


def capi_machine(name: str, namespace: str, cluster: str = "c1") -> dict:
    return {"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Machine",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterName": cluster,
                     "bootstrap": {"dataSecretName": f"{name}-bootstrap"},
                     "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "AWSMachine",
                                           "name": name}}}


# A small CRD of our own, created through the API.

def _widget_schema() -> dict:
    return {"openAPIV3Schema": {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {
                "replicas": {"type": "integer", "minimum": 0},
                "color": {"type": "string", "enum": ["red", "green", "blue"]},
                "size": {"type": "string", "maxLength": 10},
                "selector": {"type": "string"},
            }},
            "status": {"type": "object", "properties": {
                "replicas": {"type": "integer"},
                "selector": {"type": "string"},
                "phase": {"type": "string"},
                "conditions": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }},
        },
    }}


def widget_crd(plural: str = "widgets", kind: str = "Widget", scope: str = "Namespaced",
               short_names: tuple[str, ...] = ("wdg",), categories: tuple[str, ...] = ("hcpsimconf",)) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{CONF_GROUP}"},
        "spec": {
            "group": CONF_GROUP,
            "scope": scope,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List",
                      "shortNames": list(short_names), "categories": list(categories)},
            "versions": [{
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": copy.deepcopy(_widget_schema()),
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                         "statusReplicasPath": ".status.replicas",
                                                         "labelSelectorPath": ".status.selector"}},
                "additionalPrinterColumns": [{"name": "Color", "type": "string", "jsonPath": ".spec.color"}],
            }],
        },
    }


def widget(name: str, namespace: str | None, kind: str = "Widget", **spec: Any) -> dict:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": f"{CONF_GROUP}/v1", "kind": kind, "metadata": meta,
            "spec": spec or {"replicas": 1, "color": "red"}}
