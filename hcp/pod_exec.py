"""Commands in a pod's container through the API server's exec WebSocket (what `kubectl exec` does).

The official client (36.x) opens the connection; the frames are read here, because its `WSClient`
has quirks that matter for large binary output:

* it copies every stdout/stderr byte into `_all` (capture_all defaults to True and `stream()` cannot
  turn it off), so a 1 GiB `cat` would hold 1 GiB in memory;
* `returncode` raises (TypeError/KeyError) when no status arrived on the error channel, which is
  exactly what a cut stream looks like;
* `update()` polls the socket, which misses frames already decrypted in the TLS layer's buffer.

`run()` is for small commands (output in memory); `stream_stdout()` yields stdout as it arrives and
checks the exit status at the end: a missing status (the stream was cut) or a non-zero exit raises
`ExecStreamError`, so a consumer (an S3 upload) can abort instead of keeping a truncated copy.
"""

from __future__ import annotations

import json
import select
import shlex
import ssl
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.stream import stream
from websocket import ABNF, WebSocketConnectionClosedException, WebSocketTimeoutException

STDIN, STDOUT, STDERR, ERROR = 0, 1, 2, 3
_STDIN_FRAME = 1 << 20
_CLOSE_CHANNEL = 255
_STDERR_KEEP = 64 * 1024  # the tail of stderr kept for error messages


@dataclass(frozen=True)
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit_code: int

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")


class ExecError(RuntimeError):
    """A command in a pod failed or its stream broke; names cluster, namespace, pod and command."""

    def __init__(self, message: str, *, cluster: str, namespace: str, pod: str, container: str | None,
                 argv: Sequence[str], exit_code: int | None = None, stderr: bytes = b"") -> None:
        where = f"{namespace}/{pod}" + (f" container {container}" if container else "")
        tail = stderr.decode("utf-8", "replace").strip()[-2000:]
        super().__init__(f"cluster {cluster}, pod {where}, command {shlex.join(argv)}: {message}"
                         + (f"; stderr: {tail}" if tail else ""))
        self.cluster = cluster
        self.namespace = namespace
        self.pod = pod
        self.container = container
        self.argv = list(argv)
        self.exit_code = exit_code
        self.stderr = stderr


class CommandFailed(ExecError):
    """The command ran and exited non-zero (or could not start: the kubelet's InternalError)."""


class ExecStreamError(ExecError):
    """The exec stream ended without an exit status (cut), timed out, or the command failed while
    its output was being streamed (`exit_code` is None when no status arrived)."""


def run(api: client.ApiClient | client.CoreV1Api, namespace: str, pod: str, container: str | None,
        argv: Sequence[str], *, timeout: float = 60.0, cluster: str | None = None, check: bool = True) -> ExecResult:
    """Run `argv` and return its output. Raises `CommandFailed` on a non-zero exit (unless not
    `check`), `ExecStreamError` when the stream was cut or `timeout` seconds passed."""
    session = _Session(api, namespace, pod, container, argv, cluster)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        for channel, data in session.frames(idle_timeout=timeout, deadline=deadline):
            if channel == STDOUT:
                out += data
    finally:
        session.close()
    code = session.exit_code_or_raise(ExecStreamError)
    if code != 0 and check:
        raise session.error(CommandFailed, f"exited {code}: {session.status_message}", code)
    return ExecResult(bytes(out), bytes(session.stderr), code)


def stream_stdout(api: client.ApiClient | client.CoreV1Api, namespace: str, pod: str, container: str | None,
                  argv: Sequence[str], chunk_bytes: int = 1 << 20, *, idle_timeout: float = 60.0,
                  cluster: str | None = None, stderr_sink: bytearray | None = None,
                  live_stderr: bytearray | None = None, flush_mark: bytes | None = None) -> Iterator[bytes]:
    """Yield the command's stdout in chunks of about `chunk_bytes` (at most `chunk_bytes` plus one
    WebSocket frame is held); each chunk is a bytearray of its own (no copy to bytes). After the last chunk, raise `ExecStreamError` if no exit status came
    (the stream was cut), the command exited non-zero, or nothing arrived for `idle_timeout` seconds.
    Closing the generator early closes the connection (the server then kills the command).
    `stderr_sink`: when the command exited 0, its stderr (the last 64 KiB) is appended to it before
    the generator finishes: a side channel for what a command has to say while stdout carries data.
    `live_stderr`: stderr is appended to it as it arrives; once it holds `flush_mark`, what stdout
    holds is yielded at once (an empty chunk if nothing) and every later stdout frame as it comes:
    a command that says on stderr that its data is complete lets the reader finish with the data
    while the command goes on."""
    if chunk_bytes <= 0:
        raise ValueError("chunk_bytes must be positive")
    session = _Session(api, namespace, pod, container, argv, cluster)
    buf = bytearray()
    flushing = False
    try:
        for channel, data in session.frames(idle_timeout=idle_timeout):
            if channel != STDOUT:
                if live_stderr is not None:
                    live_stderr += data
                    if flush_mark is not None and not flushing and flush_mark in live_stderr:
                        flushing = True
                        chunk, buf = buf, bytearray()
                        yield chunk
                continue
            buf += data
            if flushing or len(buf) >= chunk_bytes:
                chunk, buf = buf, bytearray()  # handed over, not copied
                yield chunk
    finally:
        session.close()
    code = session.exit_code_or_raise(ExecStreamError)
    if code != 0:
        raise session.error(ExecStreamError, f"exited {code}: {session.status_message}", code)
    if stderr_sink is not None:
        stderr_sink += session.stderr[-_STDERR_KEEP:]
    if buf:
        yield buf


def run_with_input(api: client.ApiClient | client.CoreV1Api, namespace: str, pod: str, container: str | None,
                   argv: Sequence[str], chunks: Iterable[bytes], *, timeout: float = 600.0,
                   cluster: str | None = None) -> ExecResult:
    """Run `argv` with `chunks` written to its stdin (what `kubectl cp` into a pod amounts to).

    Stdin is never closed (the v4 protocol cannot say so): the command must know how much to read,
    e.g. `head -c SIZE > FILE`. Raises like `run()`; a cut stream is an `ExecStreamError`."""
    session = _Session(api, namespace, pod, container, argv, cluster, stdin=True)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        for chunk in chunks:
            for at in range(0, len(chunk), _STDIN_FRAME):
                try:
                    session.ws_client.write_channel(STDIN, bytes(chunk[at:at + _STDIN_FRAME]))
                except (WebSocketConnectionClosedException, OSError, ssl.SSLError) as e:
                    session.broken = f"connection lost while writing stdin: {e}"
                    raise session.error(ExecStreamError, session.broken) from e
            if time.monotonic() > deadline:
                raise session.error(ExecStreamError, f"stdin not written within {timeout:.0f}s (timed out)")
        for channel, data in session.frames(idle_timeout=max(1.0, deadline - time.monotonic()), deadline=deadline):
            if channel == STDOUT:
                out += data
    finally:
        session.close()
    code = session.exit_code_or_raise(ExecStreamError)
    if code != 0:
        raise session.error(CommandFailed, f"exited {code}: {session.status_message}", code)
    return ExecResult(bytes(out), bytes(session.stderr), code)


class _Session:
    def __init__(self, api: client.ApiClient | client.CoreV1Api, namespace: str, pod: str, container: str | None,
                 argv: Sequence[str], cluster: str | None, *, stdin: bool = False) -> None:
        core = api if isinstance(api, client.CoreV1Api) else client.CoreV1Api(api)
        self.namespace, self.pod, self.container, self.argv = namespace, pod, container, list(argv)
        self.cluster = cluster or getattr(core.api_client, "hcp_cluster", None) or core.api_client.configuration.host
        self.stderr = bytearray()
        self.status: dict[str, Any] | None = None
        self.status_message = ""
        self.broken: str | None = None
        kwargs: dict[str, Any] = {"command": self.argv, "stdin": stdin, "stdout": True, "stderr": True, "tty": False,
                                  "binary": True, "_preload_content": False}
        if container:
            kwargs["container"] = container
        try:
            self.ws_client = stream(core.connect_get_namespaced_pod_exec, pod, namespace, **kwargs)
        except Exception as e:
            # The client wraps a refused upgrade (400/403/404 Status) in ApiException(status=0); the
            # Status text is in the exception's context.
            detail = f"{e}" + (f" ({e.__context__})" if e.__context__ else "")
            raise self.error(ExecStreamError, f"exec could not start: {detail[:1000]}") from e
        self.ws_client._all = _Discard()  # see the module docstring: never accumulate the output
        self.sock = self.ws_client.sock

    def error(self, cls: type[ExecError], message: str, exit_code: int | None = None) -> ExecError:
        return cls(message, cluster=self.cluster, namespace=self.namespace, pod=self.pod, container=self.container,
                   argv=self.argv, exit_code=exit_code, stderr=bytes(self.stderr))

    def frames(self, *, idle_timeout: float, deadline: float | None = None) -> Iterator[tuple[int, memoryview]]:
        """(channel, payload) for stdout and stderr until the server closes the connection. Keeps the
        status and a stderr tail; sets `broken` when the connection ended abnormally or timed out.
        A payload is a view into the frame: copy what you keep."""
        raw = self.sock.sock
        self.sock.settimeout(idle_timeout)  # a frame that starts but never completes
        while True:
            wait = idle_timeout if deadline is None else max(0.0, min(idle_timeout, deadline - time.monotonic()))
            if not self._readable(raw, wait):
                self.broken = f"no data for {wait:.0f}s (timed out)"
                return
            try:
                opcode, frame = self.sock.recv_data_frame(True)
            except (WebSocketConnectionClosedException, WebSocketTimeoutException, OSError, ssl.SSLError) as e:
                self.broken = f"connection lost: {e}"
                return
            if opcode == ABNF.OPCODE_CLOSE:
                if self.status is None:
                    self.broken = f"connection closed without an exit status{_close_reason(frame.data)}"
                return
            if opcode not in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT):
                continue
            data = frame.data
            if isinstance(data, str):
                data = data.encode("utf-8", "surrogateescape")
            if not data:
                continue
            channel = data[0]
            if channel == _CLOSE_CHANNEL:  # v5: the server closed one of its channels
                continue
            payload = memoryview(data)[1:]  # no copy: every byte of a large stream passes here
            if channel == ERROR:
                self._set_status(bytes(payload))
            elif channel == STDERR:
                self.stderr += payload
                if len(self.stderr) > 2 * _STDERR_KEEP:
                    del self.stderr[:-_STDERR_KEEP]
                yield channel, payload
            elif channel == STDOUT:
                yield channel, payload
            if deadline is not None and time.monotonic() > deadline:
                self.broken = "timed out"
                return

    @staticmethod
    def _readable(raw: Any, timeout: float) -> bool:
        if isinstance(raw, ssl.SSLSocket) and raw.pending():
            return True
        poller = select.poll()
        poller.register(raw, select.POLLIN)
        return bool(poller.poll(timeout * 1000))

    def _set_status(self, payload: bytes) -> None:
        try:
            status = json.loads(payload)
        except ValueError:
            status = {"status": "Failure", "message": payload.decode("utf-8", "replace")}
        self.status = status if isinstance(status, dict) else {"status": "Failure", "message": str(status)}
        self.status_message = str(self.status.get("message") or self.status.get("reason") or "")

    def exit_code_or_raise(self, cls: type[ExecError]) -> int:
        if self.status is None:
            raise self.error(cls, f"the exec stream ended without an exit status: {self.broken or 'closed'}")
        if self.status.get("status") == "Success":
            return 0
        for cause in (self.status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                try:
                    return int(cause.get("message"))
                except (TypeError, ValueError):
                    break
        # InternalError (e.g. the executable was not found): the command did not run.
        raise self.error(CommandFailed if cls is not ExecStreamError else cls,
                         f"exec failed: {self.status_message or self.status}")

    def close(self) -> None:
        try:
            self.ws_client.close()
        except Exception:
            pass


class _Discard:
    def write(self, _data: Any) -> None:
        pass

    def getvalue(self) -> bytes:
        return b""


def _close_reason(data: bytes) -> str:
    if len(data) >= 2:
        code = int.from_bytes(data[:2], "big")
        reason = data[2:].decode("utf-8", "replace")
        return f" (close code {code}{': ' + reason if reason else ''})"
    return ""


