"""GET and LIST latency through the official Python client, against a floor measured in the same run.

The floor is the same client calling a bare ASGI app on the same server stack (uvicorn + TLS) that
answers a fixed, pre-serialised object: what the client and transport cost with no simulator in
the way. Target (issue 2): simulator GET p50 under 2 ms.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson
from kubernetes import client, config

from bench.common import ms, percentile, summary, time_calls
from hcpsim.apiserver.server import ServerLoop
from hcpsim.cluster import Simulator
from hcpsim.pki import CertificateAuthority


class _FixedApp:
    """Answers every request with one pre-serialised object (the transport floor)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(self.body)).encode())]})
        await send({"type": "http.response.body", "body": self.body})


def run(gets: int = 2000, lists: int = 100, list_size: int = 1000) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, Simulator(Path(tmp), crd_dir=None) as sim:
        sim.add_cluster("bench")
        api = config.new_client_from_config(config_file=str(sim.kubeconfig()), context="bench")
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "bench"}})
        for i in range(list_size):
            core.create_namespaced_config_map("bench", {"metadata": {"name": f"cm-{i:04d}", "labels": {"i": str(i % 10)}},
                                                        "data": {"key": "value" * 10}})
        get_samples = time_calls(lambda: core.read_namespaced_config_map("cm-0001", "bench"), gets)
        list_samples = time_calls(lambda: core.list_namespaced_config_map("bench"), lists, warmup=5)

        # The floor: same client, same TLS and HTTP server, no simulator.
        one = api.sanitize_for_serialization(core.read_namespaced_config_map("cm-0001", "bench"))
        many = api.sanitize_for_serialization(core.list_namespaced_config_map("bench"))
        ca = CertificateAuthority(Path(tmp) / "floor-pki")
        tls = ca.issue("floor", hosts=["127.0.0.1"])
        loop = ServerLoop()
        try:
            get_port = loop.serve(_FixedApp(orjson.dumps(one)), tls=tls)  # type: ignore[arg-type]
            list_port = loop.serve(_FixedApp(orjson.dumps(many)), tls=tls)  # type: ignore[arg-type]
            floor_get = _floor_client(get_port, ca)
            floor_list = _floor_client(list_port, ca)
            floor_get_samples = time_calls(lambda: floor_get.read_namespaced_config_map("cm-0001", "bench"), gets)
            floor_list_samples = time_calls(lambda: floor_list.list_namespaced_config_map("bench"), lists, warmup=5)
        finally:
            loop.close()
        api.close()

    print(f"GET  configmap   simulator: {summary(get_samples)}")
    print(f"GET  configmap   floor:     {summary(floor_get_samples)}")
    print(f"LIST {list_size} objects simulator: {summary(list_samples)}")
    print(f"LIST {list_size} objects floor:     {summary(floor_list_samples)}")
    figures = {
        "get_p50_ms": percentile(get_samples, 50) * 1000,
        "get_p99_ms": percentile(get_samples, 99) * 1000,
        "list_p50_ms": percentile(list_samples, 50) * 1000,
        "list_p99_ms": percentile(list_samples, 99) * 1000,
        "get_p50_ratio": percentile(get_samples, 50) / percentile(floor_get_samples, 50),
        "list_p50_ratio": percentile(list_samples, 50) / percentile(floor_list_samples, 50),
    }
    verdict = "met" if figures["get_p50_ms"] < 2.0 else "MISSED"
    print(f"GET p50 {ms(figures['get_p50_ms'] / 1000)} (target < 2 ms: {verdict}); "
          f"simulator/floor ratio GET {figures['get_p50_ratio']:.2f}x, LIST {figures['list_p50_ratio']:.2f}x")
    return figures


def _floor_client(port: int, ca: CertificateAuthority) -> client.CoreV1Api:
    cfg = client.Configuration()
    cfg.host = f"https://127.0.0.1:{port}"
    cfg.ssl_ca_cert = str(ca.cert_path)
    return client.CoreV1Api(client.ApiClient(cfg))


if __name__ == "__main__":
    run()
