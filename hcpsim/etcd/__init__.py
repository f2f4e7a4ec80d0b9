"""HyperShift's managed etcd in the simulated world: real etcd 3.5 members in StatefulSet pods.

    from hcpsim.etcd import etcd_binaries, etcd_objects, configure_runtime
    cluster = SimCluster(..., binaries=etcd_binaries())     # /usr/bin/{etcd,etcdctl,etcdutl,bash,sh}
    configure_runtime(cluster.runtime)                      # the etcd image runs its own command
    for obj in etcd_objects(world_ca, "clusters-foo"): create it through the API

manifests.py renders the objects, scripts.py holds the init scripts, binaries.py finds etcd.
"""

from __future__ import annotations

from typing import Any

from hcpsim.etcd.binaries import etcd_binaries, etcd_binary, etcd_bin_dir
from hcpsim.etcd.manifests import (
    CA_CERT, CLIENT_CERT, CLIENT_KEY, DEFAULT_ETCD_IMAGE, client_endpoints, etcd_objects, initial_cluster,
    peer_url, replicas_for, statefulset, tls_objects,
)

def is_etcd_image(image: str) -> bool:
    """Images whose containers run their own command: the etcd image of a release (`...:etcd-4.17.9`,
    `.../etcd:v3.5`, `quay.io/coreos/etcd`, `...-etcd`), not cluster-etcd-operator."""
    last = image.rsplit("/", 1)[-1].split("@", 1)[0]
    name, _, tag = last.partition(":")
    return (image == DEFAULT_ETCD_IMAGE or name == "etcd" or name.endswith("-etcd") or name.startswith("etcd-")
            or tag == "etcd" or tag.startswith("etcd-"))


def configure_runtime(runtime: Any, images: Any = None) -> None:
    """Give a PodRuntime the etcd binaries and make etcd-image containers run their command+args.

    `images`: an image prefix / exact image / predicate (default: `is_etcd_image`). Binaries added
    here apply to pods started afterwards (same effect as PodRuntime(binaries=etcd_binaries())).
    """
    runtime.binaries.update(etcd_binaries())
    runtime.register_runner(images or is_etcd_image, EtcdImageRunner())


class EtcdImageRunner:
    """Runs an etcd-image container's own command, except the etcd-metrics grpc-proxy: a second
    etcd process per member that scrapes nothing here (see manifests.py) would only cost memory,
    so that container counts as running without a process."""

    def main_argv(self, ctx: Any) -> list[str] | None:
        from hcpsim.runtime import CommandRunner

        if ctx.spec.name == "etcd-metrics":
            return None
        return CommandRunner().main_argv(ctx)


__all__ = [
    "CA_CERT", "CLIENT_CERT", "CLIENT_KEY", "DEFAULT_ETCD_IMAGE", "client_endpoints", "configure_runtime",
    "etcd_bin_dir", "etcd_binaries", "etcd_binary", "etcd_objects", "initial_cluster", "is_etcd_image", "peer_url",
    "replicas_for", "statefulset", "tls_objects",
]
