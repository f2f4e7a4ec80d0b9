"""Upstream CRDs reach a simulated cluster three ways: a directory, a `kubectl get crd -o yaml`
file, and a real (here: another simulated) cluster read through a kubeconfig context."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client, config

from hcpsim.apiserver.crds import crds_from_documents, fetch_crds_from_cluster, load_crd_dir, load_crd_file
from hcpsim.cluster import Simulator


def _served_groups(kubeconfig: Path, context: str) -> set[str]:
    api = config.new_client_from_config(config_file=str(kubeconfig), context=context)
    try:
        return {g.name for g in client.ApisApi(api).get_api_versions().groups}
    finally:
        api.close()


def test_crds_from_kubectl_output_file_and_from_a_cluster(crd_dir: Path, kubeconfig: Path, tmp_path: Path) -> None:
    upstream = load_crd_dir(crd_dir)
    # What `kubectl get crd -o yaml` prints: one List document.
    listing = tmp_path / "crds.yaml"
    listing.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": upstream}))
    assert [c["metadata"]["name"] for c in load_crd_file(listing)] == [c["metadata"]["name"] for c in upstream]

    # From the session cluster (which loaded the directory) through its kubeconfig context.
    fetched = fetch_crds_from_cluster(str(kubeconfig), "c1", groups=["hypershift.openshift.io"])
    assert sorted(c["metadata"]["name"] for c in fetched) == [
        "hostedclusters.hypershift.openshift.io", "hostedcontrolplanes.hypershift.openshift.io",
        "nodepools.hypershift.openshift.io"]

    with Simulator(tmp_path / "sim", crd_dir=None) as sim:
        bare = sim.add_cluster("bare")
        assert "hypershift.openshift.io" not in _served_groups(sim.kubeconfig(), "bare")
        bare.install_crds(crds_from_documents(fetched))
        assert "hypershift.openshift.io" in _served_groups(sim.kubeconfig(), "bare")
        assert "cluster.x-k8s.io" not in _served_groups(sim.kubeconfig(), "bare")
