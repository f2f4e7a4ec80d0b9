"""dr-migrate's pure checks: which hostnames a HostedCluster publishes, whether it can move, which
member's snapshot to restore."""

from __future__ import annotations

from typing import Any

import pytest

from hcp.dns_records import hostnames_outside, published_hostnames
from hcp.dr_checks import external_dns_problems, minor_version
from hcp.member_snapshots import MemberSnapshot, member_object_name, newest


def _hc(*services: tuple[str, str, str | None]) -> dict[str, Any]:
    out = []
    for service, kind, host in services:
        strategy: dict[str, Any] = {"type": kind}
        if host is not None:
            strategy["route"] = {"hostname": host}
        out.append({"service": service, "servicePublishingStrategy": strategy})
    return {"spec": {"services": out}}


def test_published_hostnames_are_the_routes_with_a_hostname() -> None:
    hc = _hc(("APIServer", "Route", "API-demo.hcp.example.com."), ("OAuthServer", "Route", "oauth-demo.hcp.example.com"),
             ("Konnectivity", "Route", None), ("Ignition", "LoadBalancer", None))
    assert published_hostnames(hc) == {"APIServer": "api-demo.hcp.example.com",
                                       "OAuthServer": "oauth-demo.hcp.example.com"}
    assert hostnames_outside(published_hostnames(hc), "hcp.example.com.") == {}
    assert hostnames_outside(published_hostnames(hc), "example.org") == published_hostnames(hc)
    # a suffix match is on a label boundary: xhcp.example.com is not inside hcp.example.com
    assert hostnames_outside({"APIServer": "api.xhcp.example.com"}, "hcp.example.com") == {
        "APIServer": "api.xhcp.example.com"}


@pytest.mark.parametrize("hc, expected", [
    (_hc(("APIServer", "LoadBalancer", None)), "not published through a Route"),
    (_hc(("APIServer", "Route", None)), "not published through a Route"),
    ({"spec": {}}, "not published through a Route"),
    (_hc(("APIServer", "Route", "api.other.org"), ("OAuthServer", "Route", "oauth.hcp.example.com")),
     "outside the external DNS domain hcp.example.com: APIServer api.other.org"),
])
def test_a_cluster_without_external_dns_cannot_move(hc: dict[str, Any], expected: str) -> None:
    problems = external_dns_problems(hc, "hcp.example.com", "HostedCluster clusters/demo on mgmt1")
    assert len(problems) == 1 and expected in problems[0] and "clusters/demo" in problems[0]


def test_a_published_cluster_can_move() -> None:
    hc = _hc(("APIServer", "Route", "api-demo.hcp.example.com"), ("OAuthServer", "Route", "oauth-demo.hcp.example.com"))
    assert external_dns_problems(hc, "hcp.example.com", "x") == []


def _snap(member: str, revision: int) -> MemberSnapshot:
    return MemberSnapshot(member=member, key=f"p/{member_object_name(member)}", revision=revision, hash=1, total_keys=2,
                          size_bytes=3, db_size_bytes=1, sha256="0" * 64)


def test_the_restore_uses_the_member_with_the_highest_revision() -> None:
    assert newest([_snap("etcd-0", 10), _snap("etcd-1", 12), _snap("etcd-2", 11)]).member == "etcd-1"
    assert newest([_snap("etcd-2", 10), _snap("etcd-0", 10), _snap("etcd-1", 10)]).member == "etcd-0"  # ties: lowest
    assert member_object_name("etcd-2") == "etcd-2-snapshot.db"
    with pytest.raises(ValueError):
        newest([])


def test_minor_version() -> None:
    assert minor_version("4.17.9") == "4.17" and minor_version("4.18.0-rc.1") == "4.18"
