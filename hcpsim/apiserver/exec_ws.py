"""The pod `exec` subresource over WebSocket, as the kubelet's streaming server speaks it.

    opts = parse_exec_options(request.query_params)       # raises ApiError 400 like the real server
    spec = runtime.exec_spec(uid, opts.container or first, opts.command)
    await serve_exec(websocket, spec, stdin=opts.stdin, stdout=opts.stdout, stderr=opts.stderr, tty=opts.tty)

Protocol (k8s.io/apimachinery/pkg/util/httpstream/wsstream and kubelet cri/streaming/remotecommand):
  * subprotocol: the first entry of the client's Sec-WebSocket-Protocol list that we support (the
    real server's rule; kubectl and the Python client both list v5 first). None offered -> "" which
    behaves as channel.k8s.io.
  * every message is [channel byte][payload]: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize
    (JSON {"Width","Height"}). Binary protocols accept text frames too (the Python client sends str
    stdin as text frames). base64 protocols: text frames, channel as ASCII digit, base64 payload.
  * after the handshake an empty frame goes out on the lowest writable channel (stdout, else
    stderr, else error), as the kubelet does.
  * v5 only: [255, ch] from the client closes channel ch; closing 0 closes the process's stdin.
  * when the process has exited and stdout/stderr reached EOF, the error channel carries a
    metav1.Status (v4/v5): Success, or Failure/NonZeroExitCode with causes [{reason: ExitCode,
    message: "<code>"}]; v1-v3 carry only the failure message. Then a normal close.
  * client disconnect -> SIGKILL to the process group.
Output is read in chunks of up to 128 KiB (one frame each; faster than 1 MiB frames, see FRAME) from
a pipe enlarged to 1 MiB, and each frame is awaited on the websocket send, so memory stays bounded and a slow reader slows the process down (backpressure).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import fcntl
import json
import os
import pty
import shutil
import signal
import struct
import subprocess
import termios
from dataclasses import dataclass
from typing import Any, Mapping

from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from hcpsim.apiserver.errors import ApiError
from hcpsim.apiserver.faults import ExecCut
from hcpsim.runtime.sandbox import ProcessSpec

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
V1 = "channel.k8s.io"
V1_BASE64 = "base64.channel.k8s.io"
SUBPROTOCOLS = (V5, V4, V4_BASE64, V1, V1_BASE64)

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
CHUNK = 1 << 20          # pipe size: the process may run up to 1 MiB ahead of the websocket
# Read and frame size. Measured with uvicorn on Python 3.11: 128 KiB frames stream ~2x faster than
# 1 MiB frames, because a frame the kernel socket buffer takes whole never lands in asyncio's transport
# buffer (partial sends there cost a memmove of the rest, and websockets' 64 KiB write limit stalls).
FRAME = 128 << 10
_F_SETPIPE_SZ = 1031


@dataclass(frozen=True)
class ExecOptions:
    command: list[str]
    container: str | None
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


def _flag(params: Mapping[str, str], name: str) -> bool:
    return (params.get(name) or "").lower() in ("true", "1", "yes")


def parse_exec_options(query: Any) -> ExecOptions:
    """From the request's query params (starlette QueryParams or a multi-dict with getlist)."""
    command = list(query.getlist("command")) if hasattr(query, "getlist") else list(query.get("command") or [])
    if not command:
        raise ApiError.bad_request("you must specify at least one command for the container")
    stdin, stdout, stderr, tty = (_flag(query, n) for n in ("stdin", "stdout", "stderr", "tty"))
    if not (stdin or stdout or stderr):
        raise ApiError.bad_request("you must specify at least 1 of stdin, stdout, stderr")
    return ExecOptions(command, query.get("container") or None, stdin, stdout, stderr, tty)


def select_subprotocol(header: str | None) -> str | None:
    """The client's first supported protocol; "" when none offered; None when none supported."""
    offered = [p.strip() for p in (header or "").split(",") if p.strip()]
    if not offered:
        return ""
    for p in offered:
        if p in SUBPROTOCOLS:
            return p
    return None


def exit_status(argv: list[str], code: int) -> dict[str, Any]:
    """The metav1.Status the kubelet writes on the error channel for an exit code."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        # Wording of containerd's CodeExitError wrapped by the kubelet's streaming server.
        "message": f"command terminated with non-zero exit code: error executing command [{' '.join(argv)}], exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def internal_status(message: str) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {message}",
            "reason": "InternalError", "code": 500,
            "details": {"causes": [{"message": message}]}}


class _Channels:
    """Frames channel payloads for the negotiated protocol; serialises sends."""

    def __init__(self, ws: WebSocket, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.base64 = protocol in (V4_BASE64, V1_BASE64)
        self.lock = asyncio.Lock()

    async def send(self, channel: int, data: bytes) -> None:
        async with self.lock:
            if self.base64:
                await self.ws.send_text(chr(ord("0") + channel) + base64.b64encode(data).decode("ascii"))
            else:
                await self.ws.send_bytes(bytes((channel,)) + data)

    def decode(self, message: dict[str, Any]) -> tuple[int, bytes] | None:
        raw = message.get("bytes")
        if raw is None:
            text = message.get("text")
            if text is None:
                return None
            raw = text.encode("utf-8")
        if not raw:
            return None
        channel, payload = raw[0], raw[1:]
        if self.base64:
            channel -= ord("0")
            with contextlib.suppress(ValueError):
                payload = base64.b64decode(payload)
        return channel, payload


async def _wait_fd(fd: int, write: bool = False) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, ready)
    try:
        await fut
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


class StreamCut(Exception):
    """A fault injected by a test: the stream is cut mid-transfer (no exit status is sent)."""


async def _pump(fd: int, channel: int, out: _Channels, cut_after: int | None = None,
                cut_on: bytes | None = None) -> None:
    """Copy a process output fd to a channel until EOF (EIO: the pty slave side closed). Fault
    injection: `cut_after` bytes, or up to the end of `cut_on`, then StreamCut."""
    sent = 0
    tail = bytearray()  # the last bytes sent, to find `cut_on` across frames
    while True:
        try:
            data = os.read(fd, FRAME)
        except BlockingIOError:
            await _wait_fd(fd)
            continue
        except OSError as e:
            if e.errno == errno.EIO:
                return
            raise
        if not data:
            return
        if cut_after is not None and sent + len(data) > cut_after:
            await out.send(channel, data[:max(0, cut_after - sent)])
            raise StreamCut()
        if cut_on is not None:
            tail += data
            at = tail.find(cut_on)
            if at >= 0:
                await out.send(channel, data[:len(data) - (len(tail) - at - len(cut_on))])
                raise StreamCut()
            del tail[:-len(cut_on)]
        sent += len(data)
        await out.send(channel, data)


async def _write_all(fd: int, data: bytes) -> bool:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            await _wait_fd(fd, write=True)
            continue
        except (BrokenPipeError, OSError):
            return False   # the process closed its stdin; drop input like the kubelet does
        view = view[n:]
    return True


async def _wait_process(proc: subprocess.Popen[bytes]) -> int:
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return await asyncio.get_running_loop().run_in_executor(None, proc.wait)
    try:
        while proc.poll() is None:
            await _wait_fd(pidfd)
    finally:
        os.close(pidfd)
    return proc.returncode


def _set_nonblocking(fd: int) -> None:
    os.set_blocking(fd, False)


def _enlarge_pipe(fd: int) -> None:
    # Bigger reads mean fewer websocket frames; refused above the user's pipe quota: keep 64 KiB then.
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, CHUNK)


def _spawn(spec: ProcessSpec, *, stdin: bool, stdout: bool, stderr: bool, tty: bool
           ) -> tuple[subprocess.Popen[bytes], int | None, int | None, int | None]:
    """Start the process; returns (proc, stdin fd, stdout fd, stderr fd) - our ends, non-blocking."""
    if tty:
        master, slave = pty.openpty()
        argv = spec.argv
        setsid = shutil.which("setsid")
        kwargs: dict[str, Any] = {}
        if setsid:
            # setsid -c makes the pty the controlling terminal without an unsafe preexec_fn.
            argv = [setsid, "-c", *argv]
        else:
            kwargs = {"start_new_session": True,
                      "preexec_fn": lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0)}
        try:
            proc = subprocess.Popen(argv, env=spec.env, cwd=spec.cwd, stdin=slave, stdout=slave, stderr=slave,
                                    close_fds=True, **kwargs)
        finally:
            os.close(slave)
        _set_nonblocking(master)
        # One fd for both directions; stdin writes and output reads share it.
        return proc, (master if stdin else None), master, None
    proc = subprocess.Popen(
        spec.argv, env=spec.env, cwd=spec.cwd, start_new_session=True, close_fds=True,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE if stderr else subprocess.DEVNULL,
    )
    fds: list[int | None] = []
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is None:
            fds.append(None)
            continue
        fd = os.dup(f.fileno())
        f.close()
        _set_nonblocking(fd)
        _enlarge_pipe(fd)
        fds.append(fd)
    return proc, fds[0], fds[1], fds[2]


def _killpg(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


async def deny(websocket: WebSocket, error: ApiError) -> None:
    """Refuse the upgrade with a Status body (HTTP error) where the server allows it, else close."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(
            Response(json.dumps(error.status()), status_code=error.code, media_type="application/json"))
    else:
        await websocket.close(code=1008, reason=error.message[:120])


async def serve_exec(websocket: WebSocket, spec: ProcessSpec, *, stdin: bool, stdout: bool, stderr: bool,
                     tty: bool, command: list[str] | None = None, cut: ExecCut | None = None) -> None:
    """Accept the websocket, run `spec`, stream it, report its exit; returns when all is done.

    `command` (the user's argv, for the failure message) defaults to spec.argv.
    `cut` (fault injection): where to drop the connection (see hcpsim.apiserver.faults.ExecCut).
    """
    protocol = select_subprotocol(websocket.headers.get("sec-websocket-protocol"))
    if protocol is None:
        await deny(websocket, ApiError.bad_request(
            f"requested protocol(s) are not supported: {websocket.headers.get('sec-websocket-protocol')}; "
            f"supports {list(SUBPROTOCOLS)}"))
        return
    if tty:
        stderr = False   # the kubelet drops stderr with a tty: the terminal merges it into stdout
    await websocket.accept(subprotocol=protocol or None)
    ch = _Channels(websocket, protocol)
    v4_status = protocol in (V5, V4, V4_BASE64)
    user_argv = command if command is not None else spec.argv

    async def write_status(status: dict[str, Any]) -> None:
        if v4_status:
            await ch.send(ERROR, json.dumps(status).encode())
        elif status.get("status") != "Success":
            await ch.send(ERROR, status["message"].encode())

    try:
        proc, in_fd, out_fd, err_fd = _spawn(spec, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty)
    except OSError as e:
        with contextlib.suppress(Exception):
            await write_status(internal_status(f"error executing command in container: {e}"))
            await websocket.close()
        return
    if spec.on_start:
        spec.on_start(proc.pid)
    own_fds = {fd for fd in (in_fd, out_fd, err_fd) if fd is not None}
    stdin_open = in_fd is not None

    async def receive() -> None:
        nonlocal stdin_open
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            frame = ch.decode(message)
            if frame is None:
                continue
            channel, payload = frame
            if channel == STDIN and stdin_open and in_fd is not None:
                if payload and not await _write_all(in_fd, payload):
                    stdin_open = False
            elif channel == RESIZE and tty and out_fd is not None:
                with contextlib.suppress(ValueError, OSError, KeyError, TypeError):
                    size = json.loads(payload)
                    fcntl.ioctl(out_fd, termios.TIOCSWINSZ,
                                struct.pack("HHHH", int(size["Height"]), int(size["Width"]), 0, 0))
            elif channel == CLOSE and protocol == V5 and payload[:1] == bytes((STDIN,)):
                if stdin_open and in_fd is not None and not tty:
                    stdin_open = False
                    os.close(in_fd)
                    own_fds.discard(in_fd)
                elif tty and in_fd is not None:
                    # A terminal has no half-close: send EOF (^D) as a terminal user would.
                    await _write_all(in_fd, b"\x04")

    tasks: list[asyncio.Task[Any]] = []
    try:
        # The first frame tells the client the stream is established.
        first = STDOUT if stdout else (STDERR if stderr else ERROR)
        await ch.send(first, b"")
        receiver = asyncio.create_task(receive())
        waiter = asyncio.create_task(_wait_process(proc))
        pumps = [asyncio.create_task(_pump(fd, c, ch, cut.stdout_after if cut and c == STDOUT else None,
                                           cut.stderr_mark if cut and c == STDERR else None))
                 for fd, c in ((out_fd, STDOUT), (err_fd, STDERR)) if fd is not None]
        tasks = [receiver, waiter, *pumps]
        pending: set[asyncio.Task[Any]] = {waiter, *pumps}
        while pending:
            done, _ = await asyncio.wait(pending | {receiver}, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()   # the receiver only finishes by raising (disconnect / protocol error)
            pending -= done
            if waiter in done and tty and pending:
                # A pty master never reaches EOF while some other process holds the slave; after the
                # exit, give the pump a moment to drain the terminal buffer, then stop.
                await asyncio.wait(pending, timeout=0.2)
                pending = set()
        code = proc.returncode
        code = 128 - code if code < 0 else code   # killed by signal N -> 128+N, as runc reports
        await write_status(exit_status(user_argv, code))
        await websocket.close()
    except (WebSocketDisconnect, ConnectionError, RuntimeError):
        pass   # the client went away: the finally below kills the process group
    except StreamCut:
        with contextlib.suppress(Exception):
            await websocket.close(code=1011, reason="stream cut (injected fault)")
    finally:
        for t in tasks:
            t.cancel()
        # Let cancelled tasks unregister their fds before the fds are closed (numbers get reused).
        await asyncio.gather(*tasks, return_exceptions=True)
        for fd in own_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        if proc.poll() is None:
            # Client disconnect (or server shutdown): nothing may outlive the session.
            _killpg(proc)
            with contextlib.suppress(Exception):
                await asyncio.get_running_loop().run_in_executor(None, proc.wait)
        if spec.on_exit:
            spec.on_exit(proc.pid)
