"""Serving: every simulated cluster's API on its own 127.0.0.1 port, all in one background event-loop
thread, plus the kubeconfig that points clients at them (one context per cluster).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import uvicorn
import yaml

from hcpsim.apiserver.responses import ApiApp
from hcpsim.pki import CertPair

log = logging.getLogger("hcpsim.server")


class ServerLoop:
    """One asyncio loop in a daemon thread that serves any number of ApiApps."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="hcpsim-api", daemon=True)
        self._servers: dict[int, tuple[uvicorn.Server, asyncio.Task, ApiApp]] = {}
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Any, timeout: float = 30) -> Any:
        future: Future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def serve(self, app: ApiApp, host: str = "127.0.0.1", port: int = 0, tls: CertPair | None = None) -> int:
        """Start serving `app` (HTTPS with `tls`); returns the bound port once it accepts connections."""
        # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets, and without it
        # Nagle + delayed ACK add 40 ms to every response written in two parts (headers, body).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        bound = sock.getsockname()[1]
        if isinstance(app, ApiApp):
            app.server_address = f"{host}:{bound}"
        config = uvicorn.Config(
            app, host=host, port=bound, log_level="warning", access_log=False, lifespan="off",
            http="httptools", ws="websockets-sansio", ws_max_size=64 * 1024 * 1024, ws_ping_interval=None,
            timeout_graceful_shutdown=1, timeout_keep_alive=30,
            ssl_certfile=str(tls.cert_path) if tls else None, ssl_keyfile=str(tls.key_path) if tls else None,
        )
        server = uvicorn.Server(config)

        async def start() -> asyncio.Task:
            if isinstance(app, ApiApp):
                app._watch_stop = asyncio.Event()
            task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.005)
            return task

        task = self.call(start())
        self._servers[bound] = (server, task, app)
        return bound

    def stop(self, port: int) -> None:
        entry = self._servers.pop(port, None)
        if entry is None:
            return
        server, task, app = entry

        async def shutdown() -> None:
            # Idle keep-alive connections of clients make uvicorn log an "error" at shutdown: not one.
            logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
            if isinstance(app, ApiApp):
                app.stop_watches()
            server.should_exit = True
            try:
                await asyncio.wait_for(task, timeout=5)
            except (asyncio.TimeoutError, Exception):
                server.force_exit = True

        self.call(shutdown(), timeout=10)

    def close(self) -> None:
        for port in list(self._servers):
            self.stop(port)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


def write_kubeconfig(path: Path, clusters: dict[str, tuple[str, str]], current: str | None = None,
                     ca_pem: bytes | None = None) -> Path:
    """A kubeconfig with one context per cluster: name -> (server URL, bearer token)."""
    cluster_entry: dict[str, Any] = {}
    if ca_pem:
        cluster_entry["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": dict(cluster_entry, server=url)} for n, (url, _) in clusters.items()],
        "users": [{"name": f"{n}-admin", "user": {"token": token}} for n, (_, token) in clusters.items()],
        "contexts": [{"name": n, "context": {"cluster": n, "user": f"{n}-admin", "namespace": "default"}} for n in clusters],
        "current-context": current or next(iter(clusters), ""),
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path
