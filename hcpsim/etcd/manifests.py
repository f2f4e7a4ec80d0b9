"""The managed etcd of a hosted control plane, as HyperShift's control-plane-operator renders it:
the `etcd` StatefulSet, the `etcd-discovery` (headless) and `etcd-client` Services, the TLS Secrets
and the CA ConfigMaps, with certificates from the simulated world's CA.

Sources (openshift/hypershift, control-plane-operator/controllers/hostedcontrolplane/):
  * v2/assets/etcd/statefulset.yaml, discovery-service.yaml, service.yaml (the manifests);
  * etcd/statefulset.go (ETCD_INITIAL_CLUSTER, replicas 3 HighlyAvailable / 1 SingleReplica, the
    etcd-init container of restoreSnapshotURL: env RESTORE_URL_ETCD, `/bin/sh -ce etcd-init.sh`);
  * support/certs via pki/etcd.go (secret keys and SANs: server `etcd-client.<ns>.svc`,
    `*.etcd-discovery.<ns>.svc`, `etcd-client`, `localhost`; peer `*.etcd-discovery.<ns>.svc`, 127.0.0.1, ::1;
    client `etcd-client`, client auth only).

Differences forced by the simulated node (all pods share the host's network stack, each on its own
loopback IP; names come from a per-pod /etc/hosts where `localhost` is the pod IP):
  * listeners that upstream binds on all interfaces or on the pod's private 127.0.0.1 (metrics
    2382, the grpc-proxy's 2381/2383) bind the pod IP instead, and the client listener is only
    `https://$(POD_IP):2379` (`https://localhost:2379` would be the same address twice); clients
    still use `https://localhost:2379` and the names;
  * reset-member's endpoints are the members' own names (see scripts.py);
  * the etcd-metrics grpc-proxy gets no `--cert/--key/--cacert` client TLS: etcd 3.5.1's proxy
    refuses a client certificate with a Common Name ("cert has non empty Common Name"; the peer
    certificate has CN etcd-discovery, as upstream issues it) and cannot use --cacert alone, so it
    runs (listening on the pod IP) without scraping the member's metrics;
  * the etcd-init container gets CURL_CA_BUNDLE pointing at a bundle that also trusts the world CA
    (the world's S3 is signed by it). Its /tmp is the host's /tmp (shared by pods): a private /tmp
    emptyDir would hide the PVC directories when the simulator's data dir is under /tmp (the
    sandbox bind-mounts /tmp before /var/lib), so each etcd-init downloads to a file of its own
    (see scripts.py).
Probes are not rendered (the simulated kubelet does not run them; a running container is ready).
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any

from hcpsim.etcd.scripts import ETCD_INIT, reset_member_script
from hcpsim.pki import CertificateAuthority

NAME = "etcd"
DISCOVERY_SERVICE = "etcd-discovery"
CLIENT_SERVICE = "etcd-client"
DATA_TEMPLATE = "data"   # PVCs are data-etcd-N
DEFAULT_ETCD_IMAGE = "quay.io/openshift-release-dev/ocp-v4.0-art-dev:etcd-4.17.9"
DEFAULT_CPO_IMAGE = "quay.io/openshift-release-dev/ocp-v4.0-art-dev:hypershift-4.17.9"
DEFAULT_CEO_IMAGE = "quay.io/openshift-release-dev/ocp-v4.0-art-dev:cluster-etcd-operator-4.17.9"
TRUSTED_CA_BUNDLE = "etcd-trusted-ca-bundle"
SYSTEM_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")

CLIENT_CERT = "/etc/etcd/tls/client/etcd-client.crt"
CLIENT_KEY = "/etc/etcd/tls/client/etcd-client.key"
CA_CERT = "/etc/etcd/tls/etcd-ca/ca.crt"
DATA_DIR = "/var/lib/data"


def replicas_for(availability: str) -> int:
    """HighlyAvailable -> 3, SingleReplica -> 1 (etcd/statefulset.go)."""
    return 3 if availability == "HighlyAvailable" else 1


def member_names(replicas: int) -> list[str]:
    return [f"{NAME}-{i}" for i in range(replicas)]


def peer_url(member: str, namespace: str) -> str:
    return f"https://{member}.{DISCOVERY_SERVICE}.{namespace}.svc:2380"


def client_url(member: str, namespace: str) -> str:
    return f"https://{member}.{DISCOVERY_SERVICE}.{namespace}.svc:2379"


def initial_cluster(namespace: str, replicas: int) -> str:
    return ",".join(f"{m}={peer_url(m, namespace)}" for m in member_names(replicas))


def client_endpoints(namespace: str, replicas: int) -> list[str]:
    """Client URLs of all members (what `--endpoints` needs from outside a member pod)."""
    return [client_url(m, namespace) for m in member_names(replicas)]


# --- TLS ---------------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _secret(name: str, namespace: str, data: dict[str, bytes]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": {"hypershift.openshift.io/managed-by": "control-plane-operator"}},
            "data": {k: _b64(v) for k, v in data.items()}}


def _configmap(name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": {"hypershift.openshift.io/managed-by": "control-plane-operator"}},
            "data": data}


def server_sans(namespace: str, replicas: int = 3) -> list[str]:
    return [f"{CLIENT_SERVICE}.{namespace}.svc", f"{CLIENT_SERVICE}.{namespace}.svc.cluster.local",
            f"*.{DISCOVERY_SERVICE}.{namespace}.svc", f"*.{DISCOVERY_SERVICE}.{namespace}.svc.cluster.local",
            CLIENT_SERVICE, "localhost"]


def peer_sans(namespace: str, replicas: int = 3) -> list[str]:
    return [f"*.{DISCOVERY_SERVICE}.{namespace}.svc", f"*.{DISCOVERY_SERVICE}.{namespace}.svc.cluster.local",
            "127.0.0.1", "::1"]


def tls_objects(ca: CertificateAuthority, namespace: str, *, replicas: int = 3) -> list[dict[str, Any]]:
    """Secrets etcd-server-tls (server.crt/key), etcd-peer-tls (peer.crt/key), etcd-client-tls and
    etcd-metrics-client-tls (etcd-client.crt/key, plus etcd-client-ca.crt for older documented
    commands), ConfigMaps etcd-ca and etcd-metrics-ca (ca.crt) — all signed by the world CA."""
    ca_pem = ca.cert_pem
    with tempfile.TemporaryDirectory(prefix="hcpsim-etcd-pki-") as tmp:
        d = Path(tmp)

        def issue(cn: str, stem: str, hosts: list[str], server: bool, client: bool) -> tuple[bytes, bytes]:
            pair = ca.issue(cn, hosts=hosts, server=server, client=client, directory=d, file_stem=stem)
            return pair.cert_path.read_bytes(), pair.key_path.read_bytes()

        server = issue("etcd-server", "server", server_sans(namespace, replicas), True, True)
        peer = issue("etcd-discovery", "peer", peer_sans(namespace, replicas), True, True)
        client = issue("etcd-client", "client", [], False, True)
        metrics = issue("etcd-metrics-client", "metrics", [], False, True)
    return [
        _secret("etcd-server-tls", namespace, {"server.crt": server[0], "server.key": server[1], "ca.crt": ca_pem}),
        _secret("etcd-peer-tls", namespace, {"peer.crt": peer[0], "peer.key": peer[1], "ca.crt": ca_pem}),
        _secret("etcd-client-tls", namespace, {"etcd-client.crt": client[0], "etcd-client.key": client[1],
                                               "etcd-client-ca.crt": ca_pem, "ca.crt": ca_pem}),
        _secret("etcd-metrics-client-tls", namespace, {"etcd-client.crt": metrics[0], "etcd-client.key": metrics[1],
                                                       "etcd-client-ca.crt": ca_pem}),
        _configmap("etcd-ca", namespace, {"ca.crt": ca_pem.decode()}),
        _configmap("etcd-metrics-ca", namespace, {"ca.crt": ca_pem.decode()}),
    ]


def trusted_ca_bundle(ca: CertificateAuthority, namespace: str) -> dict[str, Any]:
    """The host's system roots plus the world CA (what etcd-init's curl trusts)."""
    system = ""
    for path in SYSTEM_CA_BUNDLES:
        p = Path(path)
        if p.is_file():
            system = p.read_text()
            break
    return _configmap(TRUSTED_CA_BUNDLE, namespace, {"tls-ca-bundle.pem": system.rstrip("\n") + "\n" + ca.cert_pem.decode()})


# --- Services ----------------------------------------------------------------------------------

def discovery_service(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": DISCOVERY_SERVICE, "namespace": namespace},
            "spec": {"clusterIP": "None", "type": "ClusterIP", "publishNotReadyAddresses": True, "selector": {"app": NAME},
                     "ports": [{"name": "peer", "port": 2380, "protocol": "TCP", "targetPort": "peer"},
                               {"name": "etcd-client", "port": 2379, "protocol": "TCP", "targetPort": "client"}]}}


def client_service(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": CLIENT_SERVICE, "namespace": namespace, "labels": {"app": NAME},
                         "annotations": {"service.kubernetes.io/topology-mode": "Auto"}},
            "spec": {"type": "ClusterIP", "selector": {"app": NAME},
                     "ports": [{"name": "etcd-client", "port": 2379, "protocol": "TCP", "targetPort": "client"},
                               {"name": "metrics", "port": 2381, "protocol": "TCP", "targetPort": "metrics"}]}}


# --- StatefulSet -------------------------------------------------------------------------------

def _field(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def _etcd_container(image: str, namespace: str, replicas: int) -> dict[str, Any]:
    env = [
        _field("POD_IP", "status.podIP"), _field("NAMESPACE", "metadata.namespace"), _field("HOSTNAME", "metadata.name"),
        {"name": "ETCD_NAME", "value": "$(HOSTNAME)"},
        {"name": "ETCD_QUOTA_BACKEND_BYTES", "value": "8589934592"},
        {"name": "ETCD_DATA_DIR", "value": DATA_DIR},
        {"name": "ETCD_INITIAL_ADVERTISE_PEER_URLS", "value": f"https://$(HOSTNAME).{DISCOVERY_SERVICE}.$(NAMESPACE).svc:2380"},
        {"name": "ETCD_LISTEN_PEER_URLS", "value": "https://$(POD_IP):2380"},
        {"name": "ETCD_LISTEN_CLIENT_URLS", "value": "https://$(POD_IP):2379"},
        {"name": "ETCD_ADVERTISE_CLIENT_URLS", "value": f"https://$(HOSTNAME).{DISCOVERY_SERVICE}.$(NAMESPACE).svc:2379"},
        {"name": "ETCD_LISTEN_METRICS_URLS", "value": "https://$(POD_IP):2382"},
        {"name": "ETCD_SNAPSHOT_COUNT", "value": "10000"},
        {"name": "ETCD_PEER_CLIENT_CERT_AUTH", "value": "true"},
        {"name": "ETCD_PEER_CERT_FILE", "value": "/etc/etcd/tls/peer/peer.crt"},
        {"name": "ETCD_PEER_KEY_FILE", "value": "/etc/etcd/tls/peer/peer.key"},
        {"name": "ETCD_PEER_TRUSTED_CA_FILE", "value": CA_CERT},
        {"name": "ETCD_CLIENT_CERT_AUTH", "value": "true"},
        {"name": "ETCD_CERT_FILE", "value": "/etc/etcd/tls/server/server.crt"},
        {"name": "ETCD_KEY_FILE", "value": "/etc/etcd/tls/server/server.key"},
        {"name": "ETCD_TRUSTED_CA_FILE", "value": CA_CERT},
        {"name": "ETCD_ENABLE_PPROF", "value": "true"},
        {"name": "ETCD_INITIAL_CLUSTER", "value": initial_cluster(namespace, replicas)},
        {"name": "ETCD_TLS_MIN_VERSION", "value": "TLS1.2"},
    ]
    return {
        "name": "etcd", "image": image, "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", "-c", "ETCD_INITIAL_CLUSTER_STATE=$(cat /etc/etcd/clusterstate/state) /usr/bin/etcd"],
        "env": env,
        "ports": [{"containerPort": 2379, "name": "client", "protocol": "TCP"},
                  {"containerPort": 2380, "name": "peer", "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "300m", "memory": "600Mi"}},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "volumeMounts": [{"mountPath": "/var/lib", "name": "data"},
                         {"mountPath": "/etc/etcd/tls/peer", "name": "peer-tls"},
                         {"mountPath": "/etc/etcd/tls/server", "name": "server-tls"},
                         {"mountPath": "/etc/etcd/tls/client", "name": "client-tls"},
                         {"mountPath": "/etc/etcd/tls/etcd-ca", "name": "etcd-ca"},
                         {"mountPath": "/etc/etcd/clusterstate", "name": "cluster-state"}],
    }


def _metrics_container(image: str) -> dict[str, Any]:
    return {
        "name": "etcd-metrics", "image": image, "imagePullPolicy": "IfNotPresent", "command": ["etcd"],
        "args": ["grpc-proxy", "start", "--endpoints=https://localhost:2382", "--advertise-client-url=",
                 "--key-file=/etc/etcd/tls/server/server.key", "--cert-file=/etc/etcd/tls/server/server.crt",
                 "--trusted-ca-file=/etc/etcd/tls/etcd-metrics-ca/ca.crt",
                 "--listen-addr=$(POD_IP):2383", "--metrics-addr=https://$(POD_IP):2381"],
        "env": [_field("POD_IP", "status.podIP")],
        "ports": [{"containerPort": 2381, "name": "metrics", "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "40m", "memory": "200Mi"}},
        "volumeMounts": [{"mountPath": "/etc/etcd/tls/peer", "name": "peer-tls"},
                         {"mountPath": "/etc/etcd/tls/server", "name": "server-tls"},
                         {"mountPath": "/etc/etcd/tls/etcd-ca", "name": "etcd-ca"},
                         {"mountPath": "/etc/etcd/tls/etcd-metrics-ca", "name": "etcd-metrics-ca"}],
    }


def _healthz_container(image: str) -> dict[str, Any]:
    return {
        "name": "healthz", "image": image, "imagePullPolicy": "IfNotPresent", "command": ["cluster-etcd-operator"],
        "args": ["readyz", "--target=https://localhost:2379", "--listen-port=9980",
                 "--serving-cert-file=/etc/etcd/tls/server/server.crt", "--serving-key-file=/etc/etcd/tls/server/server.key",
                 "--client-cert-file=/etc/etcd/tls/client/etcd-client.crt", "--client-key-file=/etc/etcd/tls/client/etcd-client.key",
                 "--client-cacert-file=/etc/etcd/tls/etcd-ca/ca.crt"],
        "ports": [{"containerPort": 9980, "name": "healthz", "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "10m", "memory": "50Mi"}},
        "volumeMounts": [{"mountPath": "/etc/etcd/tls/server", "name": "server-tls"},
                         {"mountPath": "/etc/etcd/tls/client", "name": "client-tls"},
                         {"mountPath": "/etc/etcd/tls/etcd-ca", "name": "etcd-ca"}],
    }


def _init_containers(image: str, cpo_image: str, namespace: str, replicas: int, restore_url: str | None,
                     command_timeout: str | None) -> list[dict[str, Any]]:
    endpoints = [f"https://{m}.{DISCOVERY_SERVICE}.${{NAMESPACE}}.svc:2379" for m in member_names(replicas)]
    inits = [
        {"name": "ensure-dns", "image": cpo_image, "imagePullPolicy": "IfNotPresent", "command": ["/bin/bash"],
         "args": ["-c", f"exec control-plane-operator resolve-dns ${{HOSTNAME}}.{DISCOVERY_SERVICE}.${{NAMESPACE}}.svc"],
         "env": [_field("NAMESPACE", "metadata.namespace")]},
        {"name": "reset-member", "image": image, "imagePullPolicy": "IfNotPresent", "command": ["/bin/bash"],
         "args": ["-c", reset_member_script(endpoints, probe_timeout=command_timeout)],
         "env": [_field("NAMESPACE", "metadata.namespace")],
         "volumeMounts": [{"mountPath": "/var/lib", "name": "data"},
                          {"mountPath": "/etc/etcd/tls/server", "name": "server-tls"},
                          {"mountPath": "/etc/etcd/tls/etcd-ca", "name": "etcd-ca"},
                          {"mountPath": "/etc/etcd/clusterstate", "name": "cluster-state"}]},
    ]
    if restore_url:
        inits.append({
            "name": "etcd-init", "image": image, "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sh", "-ce", ETCD_INIT],
            "env": [{"name": "RESTORE_URL_ETCD", "value": restore_url},
                    {"name": "CURL_CA_BUNDLE", "value": "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"}],
            "volumeMounts": [{"mountPath": "/var/lib", "name": "data"},
                             {"mountPath": "/etc/pki/ca-trust/extracted/pem", "name": "trusted-ca-bundle"}],
        })
    return inits


def statefulset(namespace: str, *, replicas: int = 3, image: str = DEFAULT_ETCD_IMAGE,
                restore_snapshot_url: str | None = None, cpo_image: str = DEFAULT_CPO_IMAGE,
                ceo_image: str = DEFAULT_CEO_IMAGE, storage_size: str = "8Gi",
                storage_class: str | None = None, reset_member_timeout: str | None = None) -> dict[str, Any]:
    """The `etcd` StatefulSet (v2/assets/etcd/statefulset.yaml + etcd/statefulset.go).

    `reset_member_timeout` (e.g. "2s"): ETCDCTL_COMMAND_TIMEOUT for reset-member, whose
    `etcdctl member list` otherwise waits etcdctl's default 5s when no member is up yet (a test-speed
    knob; unset renders upstream's behaviour)."""
    volumes: list[dict[str, Any]] = [
        {"name": "peer-tls", "secret": {"defaultMode": 420, "secretName": "etcd-peer-tls"}},
        {"name": "server-tls", "secret": {"defaultMode": 420, "secretName": "etcd-server-tls"}},
        {"name": "client-tls", "secret": {"defaultMode": 420, "secretName": "etcd-client-tls"}},
        {"name": "etcd-ca", "configMap": {"defaultMode": 420, "name": "etcd-ca"}},
        {"name": "etcd-metrics-ca", "configMap": {"defaultMode": 420, "name": "etcd-metrics-ca"}},
        {"name": "cluster-state", "emptyDir": {}},
    ]
    if restore_snapshot_url:
        volumes += [{"name": "trusted-ca-bundle", "configMap": {"defaultMode": 420, "name": TRUSTED_CA_BUNDLE}}]
    claim_spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage_size}},
                                  "volumeMode": "Filesystem"}
    if storage_class:
        claim_spec["storageClassName"] = storage_class
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": NAME, "namespace": namespace, "labels": {"hypershift.openshift.io/managed-by": "control-plane-operator"}},
        "spec": {
            "replicas": replicas,
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "podManagementPolicy": "Parallel",
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": NAME}},
            "serviceName": DISCOVERY_SERVICE,
            "template": {
                "metadata": {"labels": {"app": NAME, "hypershift.openshift.io/control-plane-component": NAME}},
                "spec": {
                    "initContainers": _init_containers(image, cpo_image, namespace, replicas, restore_snapshot_url,
                                                       reset_member_timeout),
                    "containers": [_etcd_container(image, namespace, replicas), _metrics_container(image), _healthz_container(ceo_image)],
                    "priorityClassName": "hypershift-etcd",
                    "restartPolicy": "Always",
                    "schedulerName": "default-scheduler",
                    "terminationGracePeriodSeconds": 30,
                    # HyperShift's control plane isolation (support/config DeploymentConfig.setControlPlaneIsolation):
                    # the taints of management nodes dedicated to control planes, and to this one
                    "tolerations": [
                        {"key": "hypershift.openshift.io/control-plane", "operator": "Equal", "value": "true",
                         "effect": "NoSchedule"},
                        {"key": "hypershift.openshift.io/cluster", "operator": "Equal", "value": namespace,
                         "effect": "NoSchedule"}],
                    "volumes": volumes,
                },
            },
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "volumeClaimTemplates": [{"metadata": {"name": DATA_TEMPLATE}, "spec": claim_spec}],
        },
    }


def etcd_objects(ca: CertificateAuthority, namespace: str, *, availability: str = "HighlyAvailable",
                 replicas: int | None = None, image: str = DEFAULT_ETCD_IMAGE,
                 restore_snapshot_url: str | None = None, **sts_kw: Any) -> list[dict[str, Any]]:
    """Everything a hosted control plane's managed etcd needs, in apply order: TLS Secrets, CA
    ConfigMaps (plus the trusted bundle when restoring from a URL), Services, the StatefulSet."""
    n = replicas if replicas is not None else replicas_for(availability)
    objs = tls_objects(ca, namespace, replicas=n)
    if restore_snapshot_url:
        objs.append(trusted_ca_bundle(ca, namespace))
    objs += [discovery_service(namespace), client_service(namespace),
             statefulset(namespace, replicas=n, image=image, restore_snapshot_url=restore_snapshot_url, **sts_kw)]
    return objs
