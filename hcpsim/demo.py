"""The smoke scenario of the README's main job: start the simulated management clusters and use them
through the official client (and kubectl when present) the way the runbooks will, printing each step.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

from kubernetes import client, config, watch
from kubernetes.stream import stream

from hcpsim.cluster import Simulator
from hcpsim.manifests import hosted_cluster

Echo = Callable[[str], None]


def run_smoke(data_dir: Path, echo: Echo = print) -> None:
    t0 = time.monotonic()
    with Simulator(data_dir) as sim:
        for name in ("mgmt1", "mgmt2"):
            sim.add_cluster(name)
        kubeconfig = sim.kubeconfig()
        crds = len(sim.clusters["mgmt1"].backend.registry.all()) - 20
        echo(f"started 2 simulated management clusters in {time.monotonic() - t0:.2f}s "
             f"({crds} custom resource kinds from {sim.crd_dir or 'no CRD directory'})")
        for name, cluster in sim.clusters.items():
            echo(f"  {name}: {cluster.url}")
        echo(f"  kubeconfig: {kubeconfig}")

        api = config.new_client_from_config(config_file=str(kubeconfig), context="mgmt1")
        core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)

        core.create_namespace({"metadata": {"name": "clusters"}})
        if crds:
            hc = custom.create_namespaced_custom_object("hypershift.openshift.io", "v1beta1", "clusters", "hostedclusters",
                                                        hosted_cluster("demo"))
            echo(f"created HostedCluster clusters/demo (uid {hc['metadata']['uid'][:8]}, resourceVersion "
                 f"{hc['metadata']['resourceVersion']}), validated against the upstream CRD")
            bad = hosted_cluster("bad", restore_snapshot_url="http://example.com/snap.db")
            bad["spec"]["etcd"]["managed"]["storage"]["restoreSnapshotURL"].append("https://example.com/other.db")
            try:
                custom.create_namespaced_custom_object("hypershift.openshift.io", "v1beta1", "clusters", "hostedclusters", bad)
                echo("ERROR: an invalid HostedCluster was accepted")
            except client.ApiException as e:
                echo(f"rejected an invalid HostedCluster: {e.status} {json.loads(e.body)['message'][:160]}")

        core.create_namespaced_persistent_volume_claim("clusters", {
            "metadata": {"name": "data-demo-0"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
        core.create_namespaced_pod("clusters", {
            "metadata": {"name": "toolbox", "labels": {"app": "toolbox"}},
            "spec": {"containers": [{"name": "shell", "image": "registry.access.redhat.com/ubi9/ubi:latest",
                                     "volumeMounts": [{"name": "data", "mountPath": "/var/lib"}]}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-demo-0"}}]}})
        w = watch.Watch()
        for event in w.stream(core.list_namespaced_pod, "clusters", field_selector="metadata.name=toolbox", timeout_seconds=30):
            if event["object"].status.phase == "Running":
                w.stop()
        echo("pod clusters/toolbox is Running (watched)")
        out = stream(core.connect_get_namespaced_pod_exec, "toolbox", "clusters",
                     command=["sh", "-c", "mkdir -p /var/lib/data && echo written-in-pod > /var/lib/data/note && cat /var/lib/data/note"],
                     stderr=True, stdin=False, stdout=True, tty=False)
        echo(f"exec in the pod wrote and read /var/lib/data/note on its PVC: {out.strip()!r}")

        apps.create_namespaced_deployment("clusters", {
            "metadata": {"name": "kube-apiserver"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "kube-apiserver"}},
                     "template": {"metadata": {"labels": {"app": "kube-apiserver"}},
                                  "spec": {"containers": [{"name": "kube-apiserver", "image": "quay.io/openshift/kube-apiserver:4.17"}]}}}})
        scale = apps.patch_namespaced_deployment_scale("kube-apiserver", "clusters", {"spec": {"replicas": 0}})
        echo(f"scaled deployment clusters/kube-apiserver 3 -> {scale.spec.replicas} through the scale subresource")

        kubectl = shutil.which("kubectl")
        if kubectl:
            result = subprocess.run([kubectl, "--kubeconfig", str(kubeconfig), "--context", "mgmt1", "get",
                                     "hostedclusters,deployments,pods,pvc", "-n", "clusters"],
                                    capture_output=True, text=True, timeout=60)
            echo("kubectl get hostedclusters,deployments,pods,pvc -n clusters:")
            for line in (result.stdout or result.stderr).splitlines():
                echo(f"  {line}")
        else:
            echo("kubectl is not on PATH: skipped the kubectl step")
        api.close()
    echo(f"smoke scenario done in {time.monotonic() - t0:.2f}s; everything it started is stopped")
