"""The writes a hosted cluster's API servers make to its etcd: while any of kube-apiserver,
openshift-apiserver or openshift-oauth-apiserver has a ready pod, keys under /registry/... are
created and updated at a configurable rate, so backups hold real, growing data and a restore can
be checked key by key. Writes go to the real etcd members through etcd's v3 JSON gateway over TLS
with the control plane's etcd client certificate.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from hcpsim.apiserver.backend import Backend

log = logging.getLogger("hcpsim.etcd_writer")

WRITERS = ("kube-apiserver", "openshift-apiserver", "openshift-oauth-apiserver")


@dataclass
class WriterSettings:
    keys_per_second: float = 20.0
    value_bytes: int = 512
    # Every n-th write updates an existing key instead of adding one (real registries mostly update).
    update_every: int = 3


class EtcdClient:
    """A minimal etcd v3 client over the JSON gateway (POST /v3/kv/...), enough to write and verify."""

    def __init__(self, endpoints: list[str], ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> None:
        self.endpoints = endpoints
        self._ctx = ssl.create_default_context(cadata=ca_pem.decode())
        # Members are reached by pod IP; their certificates name the pods (the real clients use names).
        self._ctx.check_hostname = False
        # ssl loads a key pair from files only; the context keeps it in memory, so the files go at once (a
        # client that is never closed must not leave a directory behind in /tmp).
        with tempfile.TemporaryDirectory(prefix="hcpsim-etcd-client-") as scratch:
            cert, key = Path(scratch) / "client.crt", Path(scratch) / "client.key"
            cert.write_bytes(cert_pem)
            key.touch(mode=0o600)
            key.write_bytes(key_pem)
            self._ctx.load_cert_chain(str(cert), str(key))

    def _post(self, path: str, body: dict) -> dict:
        last: Exception | None = None
        for endpoint in self.endpoints:
            request = urllib.request.Request(endpoint + path, data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"}, method="POST")
            try:
                with urllib.request.urlopen(request, context=self._ctx, timeout=5) as response:
                    return json.loads(response.read() or b"{}")
            except (urllib.error.URLError, OSError) as e:
                last = e
        raise ConnectionError(f"no etcd endpoint answered: {last}")

    def put(self, key: str, value: bytes) -> int:
        out = self._post("/v3/kv/put", {"key": _b64(key.encode()), "value": _b64(value)})
        return int(out.get("header", {}).get("revision", 0))

    def put_many(self, items: list[tuple[str, bytes]]) -> int:
        """One transaction of puts (etcd accepts up to --max-txn-ops, 128 by default, per txn)."""
        ops = [{"requestPut": {"key": _b64(k.encode()), "value": _b64(v)}} for k, v in items]
        out = self._post("/v3/kv/txn", {"success": ops})
        return int(out.get("header", {}).get("revision", 0))

    def count(self, prefix: str) -> int:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        out = self._post("/v3/kv/range", {"key": _b64(prefix.encode()), "range_end": _b64(end.encode()), "count_only": True})
        return int(out.get("count", 0))

    def keys(self, prefix: str) -> tuple[set[str], int]:
        """The keys under `prefix` and the revision they were read at."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        out = self._post("/v3/kv/range", {"key": _b64(prefix.encode()), "range_end": _b64(end.encode()), "keys_only": True})
        keys = {base64.b64decode(kv["key"]).decode() for kv in out.get("kvs") or []}
        return keys, int(out.get("header", {}).get("revision", 0))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def client_for_namespace(backend: Backend, namespace: str) -> EtcdClient | None:
    """An etcd client for a control plane's members, from its etcd-client-tls Secret and etcd-ca
    ConfigMap (what kube-apiserver mounts), or None while they or the members are not there."""
    secret = backend.store.get(("", "secrets"), namespace, "etcd-client-tls")
    ca = backend.store.get(("", "configmaps"), namespace, "etcd-ca")
    if secret is None or ca is None:
        return None
    endpoints = [f"https://{p['status']['podIP']}:2379" for p in backend.store.items(("", "pods"), namespace)
                 if (p["metadata"].get("labels") or {}).get("app") == "etcd" and (p.get("status") or {}).get("podIP")
                 and (p.get("status") or {}).get("phase") == "Running"]
    if not endpoints:
        return None
    data = secret.get("data") or {}
    return EtcdClient(endpoints, ca["data"]["ca.crt"].encode(), base64.b64decode(data["etcd-client.crt"]),
                      base64.b64decode(data["etcd-client.key"]))


class EtcdWriter:
    """Writes into one control plane's etcd while its API servers run."""

    def __init__(self, backend: Backend, namespace: str, settings: WriterSettings | None = None) -> None:
        self.backend = backend
        self.namespace = namespace
        self.settings = settings or WriterSettings()
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"etcd-writer-{namespace}", daemon=True)
        self._thread.start()

    def api_servers_running(self) -> bool:
        for name in WRITERS:
            dep = self.backend.store.get(("apps", "deployments"), self.namespace, name)
            if dep is not None and ((dep.get("status") or {}).get("readyReplicas") or 0) > 0 \
                    and ((dep.get("spec") or {}).get("replicas") or 0) > 0:
                return True
        return False

    def _run(self) -> None:
        interval = 1.0 / max(self.settings.keys_per_second, 0.001)
        client = None
        n = 0
        while not self._stop.wait(interval):
            if not self.api_servers_running():
                continue
            try:
                if client is None:
                    client = client_for_namespace(self.backend, self.namespace)
                    if client is None:
                        continue
                n += 1
                if n % self.settings.update_every == 0 and self.written:
                    key = f"/registry/configmaps/openshift-config/state-{n % max(self.written, 1)}"
                else:
                    key = f"/registry/configmaps/openshift-config/state-{self.written}"
                    self.written += 1
                value = json.dumps({"kind": "ConfigMap", "n": n, "t": time.time(),
                                    "pad": "x" * self.settings.value_bytes}).encode()
                client.put(key, value)
            except (ConnectionError, OSError, ValueError):
                # etcd restarting or scaled down: the API servers would fail the same way; retry later.
                client = None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
