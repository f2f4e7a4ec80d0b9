"""The exec websocket protocol against the official Python client, kubectl and raw websockets.

A tiny starlette app (not the real API server) serves the exec route with serve_exec and a PodRuntime
pod, plus the pod GET and discovery kubectl asks for before it execs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import uvicorn
import websocket as wsclient
from kubernetes import client as k8s
from kubernetes.stream import stream
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from hcpsim.apiserver.errors import ApiError
from hcpsim.apiserver.exec_ws import deny, parse_exec_options, serve_exec
from hcpsim.runtime import ContainerSpec, Mount, PodRuntime

POD = "pod1"
UID = "uid-pod1"


def _pod_json() -> dict[str, Any]:
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": POD, "namespace": "default", "uid": UID},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        "status": {"phase": "Running",
                   "containerStatuses": [{"name": "main", "ready": True, "restartCount": 0, "image": "busybox",
                                          "imageID": "", "state": {"running": {}}}]},
    }


def make_app(runtime: PodRuntime, exec_pids: list[int]) -> Starlette:
    async def exec_route(ws: WebSocket) -> None:
        try:
            opts = parse_exec_options(ws.query_params)
            if ws.path_params["name"] != POD:
                raise ApiError.not_found("", "pods", ws.path_params["name"])
        except ApiError as e:
            await deny(ws, e)
            return
        spec = runtime.exec_spec(UID, opts.container or "main", opts.command)
        inner_start = spec.on_start

        def on_start(pid: int) -> None:
            exec_pids.append(pid)
            if inner_start:
                inner_start(pid)

        spec.on_start = on_start
        await serve_exec(ws, spec, stdin=opts.stdin, stdout=opts.stdout, stderr=opts.stderr, tty=opts.tty,
                         command=opts.command)

    async def get_pod(request: Request) -> JSONResponse:
        if request.path_params["name"] != POD:
            e = ApiError.not_found("", "pods", request.path_params["name"])
            return JSONResponse(e.status(), status_code=404)
        return JSONResponse(_pod_json())

    async def api(request: Request) -> JSONResponse:
        return JSONResponse({"kind": "APIVersions", "versions": ["v1"],
                             "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})

    async def apis(request: Request) -> JSONResponse:
        return JSONResponse({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})

    async def api_v1(request: Request) -> JSONResponse:
        return JSONResponse({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "shortNames": ["po"],
             "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
            {"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions",
             "verbs": ["create", "get"]},
        ]})

    return Starlette(routes=[
        Route("/api", api), Route("/apis", apis), Route("/api/v1", api_v1),
        Route("/api/v1/namespaces/{ns}/pods/{name}", get_pod),
        WebSocketRoute("/api/v1/namespaces/{ns}/pods/{name}/exec", exec_route),
    ])


class ServerThread:
    def __init__(self, app: Starlette) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("execws")
    vol = base / "vol"
    vol.mkdir()
    runtime = PodRuntime(base / "rt")
    runtime.start_pod(UID, "default", POD, [ContainerSpec("main", "busybox")],
                      {"main": [Mount("/var/lib/data", vol)]})
    pids: list[int] = []
    with ServerThread(make_app(runtime, pids)) as srv:
        cfg = k8s.Configuration(host=f"http://127.0.0.1:{srv.port}")
        api = k8s.CoreV1Api(k8s.ApiClient(cfg))
        yield {"port": srv.port, "api": api, "vol": vol, "base": base, "pids": pids, "runtime": runtime}
    runtime.close()


def _exec(api: k8s.CoreV1Api, command: list[str], **kw: Any) -> Any:
    opts: dict[str, Any] = {"stderr": True, "stdin": False, "stdout": True, "tty": False}
    opts.update(kw)
    return stream(api.connect_get_namespaced_pod_exec, POD, "default", command=command, **opts)


# --- official Python client ----------------------------------------------------------------------

def test_text_output(env: dict[str, Any]) -> None:
    out = _exec(env["api"], ["sh", "-c", "echo hello; echo oops >&2"])
    assert "hello\n" in out and "oops\n" in out


def test_mounted_path_in_exec(env: dict[str, Any]) -> None:
    (env["vol"] / "x").write_text("from the volume\n")
    assert _exec(env["api"], ["cat", "/var/lib/data/x"]) == "from the volume\n"


def test_binary_output(env: dict[str, Any]) -> None:
    payload = bytes(range(256)) * 4096 + os.urandom(3 << 20)
    (env["vol"] / "bin").write_bytes(payload)
    out = _exec(env["api"], ["cat", "/var/lib/data/bin"], stderr=False, binary=True)
    assert isinstance(out, bytes)
    assert hashlib.sha256(out).hexdigest() == hashlib.sha256(payload).hexdigest()


@pytest.mark.parametrize("code", [0, 3, 42])
def test_exit_codes(env: dict[str, Any], code: int) -> None:
    resp = _exec(env["api"], ["sh", "-c", f"echo x; exit {code}"], _preload_content=False)
    resp.run_forever(timeout=30)
    assert resp.returncode == code


def test_exit_status_wording(env: dict[str, Any]) -> None:
    resp = _exec(env["api"], ["sh", "-c", "exit 7"], _preload_content=False)
    resp.run_forever(timeout=30)
    status = json.loads(resp.read_channel(3))
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]
    assert status["message"].startswith("command terminated with non-zero exit code:")


def test_stdin_with_close(env: dict[str, Any]) -> None:
    resp = _exec(env["api"], ["sh", "-c", "cat; echo done"], stdin=True, _preload_content=False)
    resp.write_stdin("line one\n")
    resp.write_stdin(b"\x00\xffbytes\n")
    resp.close_channel(0)   # v5: closes the process's stdin -> cat ends
    out = b""
    deadline = time.time() + 30
    while resp.is_open() and time.time() < deadline:
        resp.update(timeout=1)
        out += resp.read_stdout(timeout=0).encode("utf-8", "surrogateescape") if resp.peek_stdout() else b""
    assert resp.returncode == 0
    assert out.startswith(b"line one\n") and out.endswith(b"done\n")


def test_stdin_binary_mode(env: dict[str, Any]) -> None:
    resp = _exec(env["api"], ["sh", "-c", "cat > /var/lib/data/upload"], stdin=True, binary=True,
                 _preload_content=False)
    data = os.urandom(1 << 20)
    for i in range(0, len(data), 64 << 10):
        resp.write_stdin(data[i:i + (64 << 10)])
    resp.close_channel(0)
    resp.run_forever(timeout=30)
    assert resp.returncode == 0
    assert (env["vol"] / "upload").read_bytes() == data


def test_command_not_found(env: dict[str, Any]) -> None:
    resp = _exec(env["api"], ["no-such-command-xyz"], _preload_content=False)
    resp.run_forever(timeout=30)
    assert resp.returncode == 127
    assert 'exec: "no-such-command-xyz": executable file not found in $PATH' in resp.read_stderr()


def test_disconnect_kills_process_group(env: dict[str, Any]) -> None:
    marker = f"7{os.getpid()}"   # recognised as the argument of GNU sleep
    resp = _exec(env["api"], ["sh", "-c", f"sleep {marker}1 & sleep {marker}2"], _preload_content=False)
    deadline = time.time() + 10
    while len(_procs_with(f"sleep {marker}")) < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert len(_procs_with(f"sleep {marker}")) >= 2
    resp.close()
    deadline = time.time() + 10
    while _procs_with(f"sleep {marker}") and time.time() < deadline:
        time.sleep(0.05)
    assert not _procs_with(f"sleep {marker}")


def _procs_with(needle: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if needle in cmd:
                found.append(int(d.name))
    return found


# --- raw websockets: protocol negotiation, older protocols, large output -------------------------

def _raw(port: int, query: str, protocols: list[str]) -> wsclient.WebSocket:
    ws = wsclient.WebSocket()
    ws.connect(f"ws://127.0.0.1:{port}/api/v1/namespaces/default/pods/{POD}/exec?{query}",
               subprotocols=protocols)
    return ws


def _collect(ws: wsclient.WebSocket) -> list[tuple[int, bytes]]:
    frames = []
    while True:
        try:
            op, data = ws.recv_data()
        except wsclient.WebSocketConnectionClosedException:
            break
        if op == wsclient.ABNF.OPCODE_CLOSE:
            break
        assert op == wsclient.ABNF.OPCODE_BINARY
        frames.append((data[0], data[1:]))
    return frames


def test_v4_protocol_and_first_empty_frame(env: dict[str, Any]) -> None:
    ws = _raw(env["port"], "command=sh&command=-c&command=echo+hi%3B+exit+2&stdout=true&stderr=true",
              ["v4.channel.k8s.io"])
    assert ws.subprotocol == "v4.channel.k8s.io"
    frames = _collect(ws)
    assert frames[0] == (1, b"")
    assert b"".join(d for c, d in frames if c == 1) == b"hi\n"
    status = json.loads(b"".join(d for c, d in frames if c == 3))
    assert status["details"]["causes"][0]["message"] == "2"


def test_base64_protocol(env: dict[str, Any]) -> None:
    import base64
    ws = _raw(env["port"], "command=echo&command=b64&stdout=true", ["v4.base64.channel.k8s.io"])
    assert ws.subprotocol == "v4.base64.channel.k8s.io"
    out = b""
    while True:
        try:
            op, data = ws.recv_data()
        except wsclient.WebSocketConnectionClosedException:
            break
        if op == wsclient.ABNF.OPCODE_CLOSE:
            break
        assert op == wsclient.ABNF.OPCODE_TEXT
        if data[:1] == b"1":
            out += base64.b64decode(data[1:])
    assert out == b"b64\n"


def test_unsupported_protocol_refused(env: dict[str, Any]) -> None:
    with pytest.raises(wsclient.WebSocketBadStatusException) as e:
        _raw(env["port"], "command=true&stdout=true", ["v9.nonsense"])
    assert e.value.status_code == 400


def test_missing_command_refused(env: dict[str, Any]) -> None:
    with pytest.raises(wsclient.WebSocketBadStatusException) as e:
        _raw(env["port"], "stdout=true", ["v5.channel.k8s.io"])
    assert e.value.status_code == 400
    assert b"you must specify at least one command" in (e.value.resp_body or b"")


def test_large_output_with_websockets_library(env: dict[str, Any]) -> None:
    import websockets.asyncio.client as wsc
    size = 64 << 20
    with open(env["vol"] / "big", "wb") as f:
        f.write(os.urandom(1 << 20) * (size >> 20))
    expected = hashlib.sha256((env["vol"] / "big").read_bytes()).hexdigest()

    async def run() -> tuple[str, int]:
        h = hashlib.sha256()
        url = (f"ws://127.0.0.1:{env['port']}/api/v1/namespaces/default/pods/{POD}/exec"
               "?command=cat&command=/var/lib/data/big&stdout=true")
        async with wsc.connect(url, subprotocols=["v5.channel.k8s.io"], max_size=None) as ws:
            async for msg in ws:
                assert isinstance(msg, bytes)
                if msg[0] == 1:
                    h.update(msg[1:])
                elif msg[0] == 3:
                    assert json.loads(msg[1:])["status"] == "Success"
        return h.hexdigest(), 0

    digest, _ = asyncio.run(run())
    assert digest == expected


# --- kubectl ---------------------------------------------------------------------------------------

kubectl = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(kubectl is None, reason="kubectl not on PATH")


def _kubectl(env: dict[str, Any], *args: str, input: bytes | None = None, cwd: Path | None = None
             ) -> subprocess.CompletedProcess[bytes]:
    kenv = {"PATH": os.environ.get("PATH", ""), "HOME": str(env["base"]), "KUBECONFIG": "/dev/null"}
    return subprocess.run([kubectl or "kubectl", "--server", f"http://127.0.0.1:{env['port']}", *args],
                          input=input, capture_output=True, timeout=60, env=kenv, cwd=cwd)


@needs_kubectl
@pytest.mark.kubectl
def test_kubectl_exec(env: dict[str, Any]) -> None:
    r = _kubectl(env, "exec", POD, "--", "sh", "-c", "echo out; echo err >&2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"out\n" and b"err\n" in r.stderr


@needs_kubectl
@pytest.mark.kubectl
def test_kubectl_exit_code(env: dict[str, Any]) -> None:
    r = _kubectl(env, "exec", POD, "--", "sh", "-c", "exit 5")
    assert r.returncode == 5
    assert b"command terminated with exit code 5" in r.stderr


@needs_kubectl
@pytest.mark.kubectl
def test_kubectl_exec_stdin(env: dict[str, Any]) -> None:
    r = _kubectl(env, "exec", "-i", POD, "--", "sh", "-c", "wc -c", input=b"x" * 100000)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == b"100000"


@needs_kubectl
@pytest.mark.kubectl
def test_kubectl_cp_both_ways(env: dict[str, Any], tmp_path: Path) -> None:
    src = tmp_path / "local.bin"
    data = os.urandom(5 << 20)
    src.write_bytes(data)
    r = _kubectl(env, "cp", str(src), f"{POD}:/var/lib/data/copied.bin")
    assert r.returncode == 0, r.stderr
    assert (env["vol"] / "copied.bin").read_bytes() == data
    r = _kubectl(env, "cp", f"{POD}:/var/lib/data/copied.bin", str(tmp_path / "back.bin"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "back.bin").read_bytes() == data
