"""The HTTP layer of one simulated cluster: a plain ASGI app that authenticates, decodes a request,
calls the Backend and encodes the answer (moto's `responses.py`). Watches stream, exec upgrades to
a websocket, logs stream from the container's log file.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

import orjson
import yaml

from hcpsim.apiserver import discovery, openapi, printers
from hcpsim.apiserver.backend import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, Backend, DeleteOptions
from hcpsim.apiserver.errors import ApiError
from hcpsim.apiserver.faults import Faults
from hcpsim.apiserver.podio import PodIO
from hcpsim.apiserver.resources import ResourceType
from hcpsim.apiserver.store import Event
from hcpsim.apiserver.urls import ResourcePath, parse_resource_path

log = logging.getLogger("hcpsim.api")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# The real server refuses request bodies over 3 MiB (apiserver MaxRequestBodyBytes).
MAX_BODY_BYTES = 3 * 1024 * 1024
_JSON = [(b"content-type", b"application/json")]
# Paths any client may read without a token, as a real cluster's default RBAC allows.
_ANONYMOUS_PATHS = {"/healthz", "/livez", "/readyz", "/version"}


def _flag(query: dict[str, str], name: str) -> bool:
    return query.get(name, "").lower() in ("true", "1")


class ApiApp:
    def __init__(self, backend: Backend, token: str | None = None, *, pod_io: PodIO | None = None,
                 faults: Faults | None = None) -> None:
        self.backend = backend
        self.token = token or secrets.token_urlsafe(24)
        self.pod_io = pod_io
        self.faults = faults or Faults()
        self.server_address = "127.0.0.1:0"
        # Set by the server (in its event loop) when it starts; watches end when it is set.
        self._watch_stop: asyncio.Event | None = None
        # The queue of every open watch: a None put there ends it at once (server stop).
        self._watch_queues: set[asyncio.Queue] = set()

    # ASGI entry point.

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})

    def stop_watches(self) -> None:
        if self._watch_stop is not None:
            self._watch_stop.set()
        for queue in list(self._watch_queues):
            queue.put_nowait(None)

    def _authorized(self, scope: Scope) -> bool:
        expected = b"bearer " + self.token.encode()
        for name, value in scope["headers"]:
            if name == b"authorization":
                return secrets.compare_digest(value.lower()[:7] + value[7:], expected)
        return False

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        # A trailing slash names the same thing (the official client asks for `/version/`).
        path = scope["path"].rstrip("/") or "/"
        try:
            if path not in _ANONYMOUS_PATHS and not self._authorized(scope):
                raise ApiError.unauthorized()
            fault = self.faults.take(method, path)
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                raise ApiError(fault.code or 504, "InternalError" if (fault.code or 504) == 500 else "ServiceUnavailable",
                               f"injected fault: {method} {path}")
            query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode(), keep_blank_values=True).items()}
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            await self._route(scope, receive, send, method, path, query, headers)
        except ApiError as e:
            await _send_json(send, e.code, e.status())
        except Exception as e:  # a bug must answer 500, never crash the server or hang the client
            log.exception("internal error on %s %s", method, path)
            err = ApiError.internal(f"{type(e).__name__}: {e}")
            await _send_json(send, 500, err.status())

    async def _route(self, scope: Scope, receive: Receive, send: Send, method: str, path: str,
                     query: dict[str, str], headers: dict[str, str]) -> None:
        registry = self.backend.registry
        if path in ("/healthz", "/livez", "/readyz"):
            await _send_bytes(send, 200, b"ok", b"text/plain")
            return
        if path == "/version":
            await _send_json(send, 200, discovery.KUBERNETES_VERSION)
            return
        if path == "/openapi/v3" or path == "/openapi/v3/":
            await _send_json(send, 200, openapi.root(registry))
            return
        if path.startswith("/openapi/v3/"):
            await _send_json(send, 200, openapi.group_version(registry, path[len("/openapi/v3/"):]))
            return
        if path.startswith("/openapi/"):
            raise ApiError.path_not_found()
        if path in ("/api", "/api/"):
            await _send_json(send, 200, discovery.api_versions(self.server_address))
            return
        if path in ("/apis", "/apis/"):
            await _send_json(send, 200, discovery.api_group_list(registry))
            return
        info = parse_resource_path(path)
        if info is None:
            parts = [p for p in path.split("/") if p]
            if len(parts) == 2 and parts[0] == "apis":
                await _send_json(send, 200, discovery.api_group(registry, parts[1]))
                return
            raise ApiError.path_not_found()
        if info.plural is None:
            if method != "GET":
                raise ApiError.method_not_allowed(method)
            await _send_json(send, 200, discovery.api_resource_list(registry, info.group, info.version))
            return
        rt = registry.lookup(info.group, info.version, info.plural)
        if info.namespace is not None and not rt.namespaced:
            raise ApiError.path_not_found()
        version = info.version
        dry_run = query.get("dryRun") == "All"

        if info.subresource is not None:
            await self._subresource(scope, receive, send, method, rt, info, query, headers, dry_run)
            return

        if method == "GET":
            if info.name is None:
                if info.watch_path or _flag(query, "watch"):
                    await self._watch(receive, send, rt, info.namespace, version, query,
                                      as_table=printers.wants_table(headers.get("accept", "")))
                    return
                limit = query.get("limit")
                result = self.backend.list(
                    rt, info.namespace, version=version, label_selector=query.get("labelSelector"),
                    field_selector=query.get("fieldSelector"), limit=_parse_int(limit, "limit") if limit else None,
                    continue_token=query.get("continue") or None)
                if printers.wants_table(headers.get("accept", "")):
                    result = printers.table(rt, version, result["items"], result["metadata"])
                await _send_json(send, 200, result)
            else:
                if info.watch_path:
                    query["fieldSelector"] = f"metadata.name={info.name}"
                    await self._watch(receive, send, rt, info.namespace, version, query)
                    return
                obj = self.backend.get(rt, info.namespace, info.name, version)
                if printers.wants_table(headers.get("accept", "")):
                    obj = printers.table(rt, version, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]})
                await _send_json(send, 200, obj)
        elif method == "POST":
            if info.name is not None:
                raise ApiError.method_not_allowed(method)
            if rt.namespaced and info.namespace is None:
                raise ApiError.method_not_allowed(method)
            body = await _read_object_body(receive, headers)
            created = self.backend.create(rt, info.namespace, body, version=version, dry_run=dry_run,
                                          field_validation=query.get("fieldValidation"))
            await _send_json(send, 201, created)
        elif method == "PUT":
            if info.name is None:
                raise ApiError.method_not_allowed(method)
            body = await _read_object_body(receive, headers)
            await _send_json(send, 200, self.backend.update(rt, info.namespace, info.name, body, version=version, dry_run=dry_run,
                                                            field_validation=query.get("fieldValidation")))
        elif method == "PATCH":
            if info.name is None:
                raise ApiError.method_not_allowed(method)
            patch_type = _media_type(headers)
            body = await _read_body(receive, headers)
            await _send_json(send, 200, self.backend.patch(rt, info.namespace, info.name, patch_type, body,
                                                           version=version, dry_run=dry_run,
                                                           field_validation=query.get("fieldValidation")))
        elif method == "DELETE":
            raw = await _read_body(receive, headers)
            body = _decode_json(raw) if raw.strip() else None
            options = DeleteOptions.from_body(body, query)
            options.dry_run = options.dry_run or dry_run
            if info.name is None:
                if rt.namespaced and info.namespace is None:
                    raise ApiError.method_not_allowed(method)
                result = self.backend.delete_collection(rt, info.namespace, query.get("labelSelector"),
                                                        query.get("fieldSelector"), options)
                await _send_json(send, 200, result)
                return
            obj, gone = self.backend.delete(rt, info.namespace, info.name, options)
            if gone and rt.builtin and rt.key != ("", "pods"):
                meta = obj["metadata"]
                await _send_json(send, 200, {
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": meta["name"], "group": rt.group, "kind": rt.plural, "uid": meta["uid"]}})
            else:
                await _send_json(send, 200, obj)
        else:
            raise ApiError.method_not_allowed(method)

    async def _subresource(self, scope: Scope, receive: Receive, send: Send, method: str, rt: ResourceType,
                           info: ResourcePath, query: dict[str, str], headers: dict[str, str], dry_run: bool) -> None:
        assert info.name is not None and info.subresource is not None
        sub = info.subresource
        if sub == "status" and rt.has_status:
            if method == "GET":
                await _send_json(send, 200, self.backend.get(rt, info.namespace, info.name, info.version))
            elif method == "PUT":
                body = await _read_object_body(receive, headers)
                await _send_json(send, 200, self.backend.update(rt, info.namespace, info.name, body, subresource="status",
                                                                version=info.version, dry_run=dry_run))
            elif method == "PATCH":
                body = await _read_body(receive, headers)
                await _send_json(send, 200, self.backend.patch(rt, info.namespace, info.name, _media_type(headers), body,
                                                               subresource="status", version=info.version, dry_run=dry_run))
            else:
                raise ApiError.method_not_allowed(method)
        elif sub == "scale" and rt.scale is not None:
            if method == "GET":
                await _send_json(send, 200, self.backend.get_scale(rt, info.namespace, info.name))
            elif method == "PUT":
                body = await _read_object_body(receive, headers)
                await _send_json(send, 200, self.backend.update_scale(rt, info.namespace, info.name, body, dry_run=dry_run))
            elif method == "PATCH":
                body = await _read_body(receive, headers)
                await _send_json(send, 200, self.backend.update_scale(rt, info.namespace, info.name, body,
                                                                      patch_type=_media_type(headers), dry_run=dry_run))
            else:
                raise ApiError.method_not_allowed(method)
        elif sub == "log" and rt.key == ("", "pods") and method == "GET":
            await self._log(receive, send, info, query)
        elif sub == "exec" and rt.key == ("", "pods"):
            raise ApiError.bad_request("Upgrade request required")
        elif sub == "finalize" and rt.key == ("", "namespaces") and method == "PUT":
            body = await _read_object_body(receive, headers)
            await _send_json(send, 200, self.backend.update(rt, None, info.name, body, version=info.version))
        else:
            raise ApiError.path_not_found()

    # Watch.

    async def _watch(self, receive: Receive, send: Send, rt: ResourceType, namespace: str | None, version: str,
                     query: dict[str, str], as_table: bool = False) -> None:
        backend = self.backend
        store = backend.store
        matches = backend.matcher(rt, query.get("labelSelector"), query.get("fieldSelector"))
        timeout = _parse_int(query["timeoutSeconds"], "timeoutSeconds") if query.get("timeoutSeconds") else 1800
        rv_param = query.get("resourceVersion", "")
        if rv_param not in ("", "0"):
            rv = _parse_int(rv_param, "resourceVersion")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()

        def on_event(event: Event) -> None:
            if event.key == rt.key and (namespace is None or event.namespace == namespace):
                loop.call_soon_threadsafe(queue.put_nowait, event)

        initial: list[tuple[str, dict]] = []
        backlog: list[Event] = []
        gone: ApiError | None = None
        with store.lock:
            if rv_param in ("", "0"):
                initial = [("ADDED", obj) for obj in store.items(rt.key, namespace) if matches(obj)]
            elif rv < store.compacted_rv:
                gone = ApiError.gone(f"too old resource version: {rv} ({store.compacted_rv})")
            elif rv > store.resource_version:
                # A client may not watch from the future; the real server waits then times out.
                # Answering Gone makes it relist, which is what it needs.
                gone = ApiError.gone(f"too large resource version: {rv}, current: {store.resource_version}")
            else:
                backlog = [e for e in store.history_since(rv)
                           if e.key == rt.key and (namespace is None or e.namespace == namespace)]
            unsubscribe = store.subscribe(on_event) if gone is None else (lambda: None)

        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-cache, private")]})
        api_version = rt.api_version(version)

        async def emit(event_type: str, obj: dict) -> None:
            out = dict(obj, apiVersion=api_version)
            if as_table:
                out = printers.table(rt, version, [out], {"resourceVersion": out["metadata"]["resourceVersion"]})
            body = orjson.dumps({"type": event_type, "object": out}) + b"\n"
            await send({"type": "http.response.body", "body": body, "more_body": True})

        disconnected = asyncio.Event()

        async def watch_disconnect() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    queue.put_nowait(None)
                    return

        disconnect_task = asyncio.create_task(watch_disconnect())
        self._watch_queues.add(queue)
        try:
            if gone is not None:
                body = orjson.dumps({"type": "ERROR", "object": gone.status()}) + b"\n"
                await send({"type": "http.response.body", "body": body, "more_body": True})
                return
            for event_type, obj in initial:
                await emit(event_type, obj)
            for event in backlog:
                await self._emit_event(emit, event, matches)
            deadline = loop.time() + timeout
            stop = self._watch_stop
            while not disconnected.is_set() and not (stop and stop.is_set()):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=remaining)
                except asyncio.TimeoutError:
                    break
                if event is None:
                    break
                await self._emit_event(emit, event, matches)
        finally:
            self._watch_queues.discard(queue)
            unsubscribe()
            disconnect_task.cancel()
            try:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except Exception:
                pass

    @staticmethod
    async def _emit_event(emit: Callable[[str, dict], Awaitable[None]], event: Event, matches: Callable[[dict], bool]) -> None:
        # Selector moves: an object that starts matching is ADDED, one that stops is DELETED (cacher.go).
        now = matches(event.obj)
        before = event.old is not None and matches(event.old)
        if event.type == "ADDED":
            if now:
                await emit("ADDED", event.obj)
        elif event.type == "DELETED":
            if now:
                await emit("DELETED", event.obj)
        elif now and before:
            await emit("MODIFIED", event.obj)
        elif now:
            await emit("ADDED", event.obj)
        elif before:
            await emit("DELETED", event.obj)

    # Pod logs and exec.

    def _pod_and_container(self, info: ResourcePath, container: str | None) -> tuple[dict, str]:
        pod = self.backend.get(self.backend.type_for("", "pods"), info.namespace, info.name or "")
        names = [c["name"] for c in (pod.get("spec") or {}).get("containers", [])]
        init_names = [c["name"] for c in (pod.get("spec") or {}).get("initContainers", [])]
        if not container:
            if len(names) != 1:
                raise ApiError.bad_request(
                    f"a container name must be specified for pod {info.name}, choose one of: [{' '.join(names)}]")
            container = names[0]
        elif container not in names and container not in init_names:
            raise ApiError.bad_request(f"container {container} is not valid for pod {info.name}")
        return pod, container

    async def _log(self, receive: Receive, send: Send, info: ResourcePath, query: dict[str, str]) -> None:
        pod, container = self._pod_and_container(info, query.get("container"))
        previous = _flag(query, "previous")
        path = self.pod_io.log_path(pod, container, previous) if self.pod_io else None
        if previous and (path is None or not path.exists()):
            # the kubelet's answer when the container has not restarted (kubectl logs --previous)
            raise ApiError.bad_request(f'previous terminated container "{container}" in pod "{info.name}" not found')
        if path is None or not path.exists():
            raise ApiError.bad_request(f'container "{container}" in pod "{info.name}" is waiting to start: ContainerCreating')
        data = path.read_bytes()
        if query.get("tailLines"):
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-_parse_int(query["tailLines"], "tailLines"):]) if int(query["tailLines"]) > 0 else b""
        if query.get("limitBytes"):
            data = data[:_parse_int(query["limitBytes"], "limitBytes")]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": data, "more_body": _flag(query, "follow")})
        if not _flag(query, "follow"):
            return
        offset = path.stat().st_size
        pods = self.backend.type_for("", "pods")
        disconnected = asyncio.Event()

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        task = asyncio.create_task(watch_disconnect())
        try:
            while not disconnected.is_set():
                size = path.stat().st_size if path.exists() else offset
                if size > offset:
                    with open(path, "rb") as f:
                        f.seek(offset)
                        chunk = f.read(size - offset)
                    offset = size
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                current = self.backend.store.get(pods.key, info.namespace or "", info.name or "")
                if current is None or current["metadata"]["uid"] != pod["metadata"]["uid"]:
                    break
                await asyncio.sleep(0.1)
        finally:
            task.cancel()
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        from starlette.websockets import WebSocket

        from hcpsim.apiserver import exec_ws

        websocket = WebSocket(scope, receive, send)
        try:
            if not self._authorized(scope):
                raise ApiError.unauthorized()
            info = parse_resource_path(scope["path"])
            if info is None or info.group != "" or info.plural != "pods" or info.subresource not in ("exec", "attach"):
                raise ApiError.path_not_found()
            if info.subresource == "attach":
                raise ApiError.bad_request("attach is not supported by this simulator; use exec")
            options = exec_ws.parse_exec_options(websocket.query_params)
            pod, container = self._pod_and_container(info, options.container)
            phase = (pod.get("status") or {}).get("phase")
            if phase != "Running":
                raise ApiError.bad_request(f"unable to upgrade connection: pod {info.name} is not running (phase {phase})")
            if self.pod_io is None:
                raise ApiError.bad_request("this cluster runs no pods (no kubelet)")
            spec = self.pod_io.exec_spec(pod, container, options.command)
        except ApiError as e:
            await exec_ws.deny(websocket, e)
            return
        await exec_ws.serve_exec(websocket, spec, stdin=options.stdin, stdout=options.stdout, stderr=options.stderr,
                                 tty=options.tty, command=options.command, cut=self.faults.take_exec_cut(options.command))


def _media_type(headers: dict[str, str]) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_body(receive: Receive, headers: dict[str, str]) -> bytes:
    declared = headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError.too_large(MAX_BODY_BYTES)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError.too_large(MAX_BODY_BYTES)
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _decode_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ApiError.bad_request(f"the body of the request could not be decoded as JSON: {e}") from None


async def _read_object_body(receive: Receive, headers: dict[str, str]) -> Any:
    media = _media_type(headers)
    raw = await _read_body(receive, headers)
    if media in ("", "application/json", "*/*"):
        return _decode_json(raw)
    if media in ("application/yaml", "application/x-yaml"):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ApiError.bad_request(f"the body of the request could not be decoded as YAML: {e}") from None
    raise ApiError(415, "UnsupportedMediaType",
                   f"the body of the request was in an unknown format - accepted media types include: "
                   f"application/json, application/yaml (got {media!r})")


def _parse_int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ApiError.bad_request(f"invalid value for {name}: {value!r}: must be an integer") from None


async def _send_bytes(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, payload: Any) -> None:
    await _send_bytes(send, status, orjson.dumps(payload), b"application/json")


__all__ = ["ApiApp", "MAX_BODY_BYTES", "MERGE_PATCH", "JSON_PATCH", "STRATEGIC_PATCH", "APPLY_PATCH"]
