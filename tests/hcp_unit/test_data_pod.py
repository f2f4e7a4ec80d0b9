"""The restore's data-access Deployment: where it may run while its member still runs."""

from __future__ import annotations

from hcp.etcd_restore import EtcdLayout, data_pod_deployment

TOLERATIONS = [{"key": "hypershift.openshift.io/control-plane", "operator": "Equal", "value": "true",
                "effect": "NoSchedule"},
               {"key": "hypershift.openshift.io/cluster", "operator": "Equal", "value": "clusters-a",
                "effect": "NoSchedule"}]


def _layout(tolerations: list[dict] | None = None) -> EtcdLayout:
    members = ["etcd-0", "etcd-1", "etcd-2"]
    peers = {m: f"https://{m}.etcd-discovery.clusters-a.svc:2380" for m in members}
    return EtcdLayout(namespace="clusters-a", image="etcd:4.17", replicas=3, members=members,
                      claims=[f"data-{m}" for m in members], initial_cluster=",".join(f"{m}={u}" for m, u in peers.items()),
                      token="etcd-cluster", peer_urls=peers, tolerations=tolerations or [])


def test_pinned_by_node_name_to_its_members_node_with_the_members_tolerations() -> None:
    spec = data_pod_deployment(_layout(TOLERATIONS), "op-1", "etcd-1", node="ip-10-0-1-5")["spec"]["template"]["spec"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["ip-10-0-1-5"]}]}]
    assert spec["tolerations"] == TOLERATIONS
    assert [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v] == \
        ["data-etcd-1"]  # its member's claim only


def test_a_member_without_a_node_leaves_the_placement_to_the_scheduler() -> None:
    spec = data_pod_deployment(_layout(), "op-1", "etcd-0", node=None)["spec"]["template"]["spec"]
    assert "affinity" not in spec and "tolerations" not in spec
