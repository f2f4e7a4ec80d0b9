"""Manifests of the simulated world's objects, shaped as `hypershift create cluster aws --render`
writes them, valid against the real HyperShift CRDs (../shared/crds).
"""

from __future__ import annotations

import uuid
from typing import Any

DEFAULT_RELEASE_IMAGE = "quay.io/openshift-release-dev/ocp-release:4.17.9-x86_64"
_ACCOUNT = "123456789012"


def hosted_cluster(
    name: str,
    namespace: str = "clusters",
    *,
    release_image: str = DEFAULT_RELEASE_IMAGE,
    external_dns_domain: str = "hcp.example.com",
    base_domain: str = "example.com",
    availability: str = "HighlyAvailable",
    region: str = "us-east-1",
    restore_snapshot_url: str | None = None,
) -> dict[str, Any]:
    """A HostedCluster on AWS with its API published through external DNS (Route + hostname)."""
    roles = {f"{role}ARN": f"arn:aws:iam::{_ACCOUNT}:role/{name}-{role}" for role in (
        "controlPlaneOperator", "imageRegistry", "ingress", "kubeCloudController", "network", "nodePoolManagement", "storage")}

    def route(service: str, host: str | None) -> dict[str, Any]:
        strategy: dict[str, Any] = {"type": "Route"}
        if host:
            strategy["route"] = {"hostname": host}
        return {"service": service, "servicePublishingStrategy": strategy}

    storage: dict[str, Any] = {"type": "PersistentVolume", "persistentVolume": {"size": "8Gi"}}
    if restore_snapshot_url:
        storage["restoreSnapshotURL"] = [restore_snapshot_url]
    return {
        "apiVersion": "hypershift.openshift.io/v1beta1",
        "kind": "HostedCluster",
        "metadata": {"name": name, "namespace": namespace, "labels": {"hypershift.openshift.io/managed-by": "hcp-runbooks"}},
        "spec": {
            "release": {"image": release_image},
            "pullSecret": {"name": f"{name}-pull-secret"},
            "sshKey": {"name": f"{name}-ssh-key"},
            "infraID": f"{name}-infra",
            # Unique per cluster: the hosted cluster's identity (its own API, its nodes) hangs on it.
            "clusterID": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.{namespace}.{base_domain}")),
            "issuerURL": f"https://{name}-oidc.s3.{region}.amazonaws.com/{name}-infra",
            "dns": {"baseDomain": base_domain, "privateZoneID": "ZPRIVATE0001", "publicZoneID": "ZPUBLIC0001"},
            "networking": {
                "networkType": "OVNKubernetes",
                "clusterNetwork": [{"cidr": "10.132.0.0/14"}],
                "serviceNetwork": [{"cidr": "172.31.0.0/16"}],
                "machineNetwork": [{"cidr": "10.0.0.0/16"}],
            },
            "platform": {
                "type": "AWS",
                "aws": {
                    "region": region,
                    "rolesRef": roles,
                    "endpointAccess": "Public",
                    "cloudProviderConfig": {"vpc": f"vpc-{name}", "zone": f"{region}a", "subnet": {"id": f"subnet-{name}"}},
                },
            },
            "controllerAvailabilityPolicy": availability,
            "infrastructureAvailabilityPolicy": availability,
            "etcd": {"managementType": "Managed", "managed": {"storage": storage}},
            "secretEncryption": {"type": "aescbc", "aescbc": {"activeKey": {"name": f"{name}-etcd-encryption-key"}}},
            "services": [
                route("APIServer", f"api-{name}.{external_dns_domain}"),
                route("OAuthServer", f"oauth-{name}.{external_dns_domain}"),
                route("Konnectivity", f"konnectivity-{name}.{external_dns_domain}"),
                route("Ignition", f"ignition-{name}.{external_dns_domain}"),
            ],
        },
    }


def node_pool(cluster_name: str, namespace: str = "clusters", *, replicas: int = 2,
              release_image: str = DEFAULT_RELEASE_IMAGE, upgrade_type: str = "Replace") -> dict[str, Any]:
    """The NodePool `hypershift create cluster aws` renders for a HostedCluster."""
    management: dict[str, Any] = {"upgradeType": upgrade_type, "autoRepair": False}
    if upgrade_type == "Replace":
        management["replace"] = {"strategy": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    return {
        "apiVersion": "hypershift.openshift.io/v1beta1",
        "kind": "NodePool",
        "metadata": {"name": cluster_name, "namespace": namespace},
        "spec": {
            "clusterName": cluster_name,
            "replicas": replicas,
            "release": {"image": release_image},
            "management": management,
            "nodeDrainTimeout": "30s",
            "platform": {"type": "AWS", "aws": {"instanceType": "m6i.xlarge", "rootVolume": {"size": 120, "type": "gp3"},
                                                "subnet": {"id": f"subnet-{cluster_name}"}}},
            "arch": "amd64",
        },
    }
