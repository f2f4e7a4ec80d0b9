"""The AWS of the simulated world: S3 (the backup bucket) and Route53 (the external DNS zone) from
moto, served on loopback over HTTPS with a certificate of the world's CA.

moto keeps its state in module globals (and `mock_aws` in a test resets them), so the server runs
in a child process of its own: `python -m hcpsim.aws serve ...`. That child serves moto's WSGI app
under werkzeug's threaded server (TLS handshakes happen in the connection's thread), behind a WSGI
middleware that injects faults (slow or failing requests). The middleware also answers a small
control API on `/_hcpsim/faults`, which `AwsSim.faults` (FaultsClient) uses from the parent. The
child exits when the parent closes its stdin (or dies).

`AwsSim.start()` creates the bucket and a public hosted zone, and writes `DIR/aws.env`: variables a
shell can `set -a; source` and with which a plain `boto3.client("s3")` / `aws s3` works against
the simulator (presigned URLs are `https://127.0.0.1:PORT/...`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

from hcpsim.pki import CertificateAuthority

log = logging.getLogger("hcpsim.aws")

CONTROL_PATH = "/_hcpsim/faults"
ACCESS_KEY_ID = "AKIAHCPSIMEXAMPLE000"
SECRET_ACCESS_KEY = "hcpsim/secret/access/key/not/a/real/one0"

# ---------------------------------------------------------------------------------------------
# Fault injection (runs inside the server process).


def _service_of(environ: dict) -> str:
    """The AWS service a request is for, from its SigV4 credential scope (header or presigned query)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = re.search(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request", auth)
    if not m:
        m = re.search(r"X-Amz-Credential=[^&/]+(?:/|%2F)\d{8}(?:/|%2F)[^&/%]+(?:/|%2F)([^&/%]+)(?:/|%2F)aws4_request",
                      environ.get("QUERY_STRING", ""))
    if m:
        return m.group(1)
    if environ.get("PATH_INFO", "").startswith("/2013-04-01/"):
        return "route53"
    return "s3"


_DEFAULT_ERRORS = {
    400: "BadRequest", 403: "AccessDenied", 404: "NoSuchKey", 409: "OperationAborted", 429: "Throttling",
    500: "InternalError", 501: "NotImplemented", 502: "BadGateway", 503: "SlowDown", 504: "GatewayTimeout",
}
_DEFAULT_MESSAGES = {
    "InternalError": "We encountered an internal error. Please try again.",
    "SlowDown": "Please reduce your request rate.",
    "ServiceUnavailable": "Service is unable to handle request.",
    "AccessDenied": "Access Denied",
    "NoSuchKey": "The specified key does not exist.",
    "Throttling": "Rate exceeded",
}

_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 429: "Too Many Requests",
            500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
            504: "Gateway Timeout"}


class _Rule:
    def __init__(self, spec: dict) -> None:
        self.remaining = int(spec.get("n", 1))
        self.code = int(spec.get("code", 503))
        self.service = spec.get("service", "s3")
        self.method = (spec.get("method") or "").upper() or None
        self.path = re.compile(spec["path"]) if spec.get("path") else None
        self.error = spec.get("error") or (
            "ServiceUnavailable" if self.code == 503 and self.service != "s3" else _DEFAULT_ERRORS.get(self.code, "InternalError"))
        self.message = spec.get("message") or _DEFAULT_MESSAGES.get(self.error, self.error)

    def matches(self, service: str, method: str, path: str) -> bool:
        return (self.remaining > 0 and (self.service in (None, "*") or self.service == service)
                and (self.method is None or self.method == method) and (self.path is None or bool(self.path.search(path))))


class _Throttled:
    """A wsgi.input that reads at most `rate` bytes per second."""

    def __init__(self, stream: Any, rate: float) -> None:
        self._stream = stream
        self._rate = rate

    def read(self, size: int = -1) -> bytes:
        chunk = max(1024, int(self._rate / 20))
        if size is None or size < 0 or size > chunk:
            parts = []
            while True:
                want = chunk if size is None or size < 0 else min(chunk, size - sum(map(len, parts)))
                if want <= 0:
                    break
                data = self._read_chunk(want)
                if not data:
                    break
                parts.append(data)
            return b"".join(parts)
        return self._read_chunk(size)

    def _read_chunk(self, size: int) -> bytes:
        data = self._stream.read(size)
        if data:
            time.sleep(len(data) / self._rate)
        return data

    def readline(self, *args: Any) -> bytes:
        data = self._stream.readline(*args)
        if data:
            time.sleep(len(data) / self._rate)
        return data

    def __iter__(self) -> Iterable[bytes]:
        return iter(self.readline, b"")


class FaultMiddleware:
    """Slow or failing requests in front of moto's app, configured through CONTROL_PATH."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._delays: dict[str, dict] = {}  # service -> {"seconds", "method"}
        self._bandwidth: dict[str, float] = {}  # service -> bytes/s
        self._counts: dict[str, int] = {}
        self._injected = 0
        self._log: list[dict] = []

    # Control.

    def _control(self, environ: dict, start_response: Callable) -> list[bytes]:
        method = environ["REQUEST_METHOD"]
        if method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(length) or b"{}")
            self._apply(body)
        with self._lock:
            state = {
                "requests": dict(self._counts),
                "injected": self._injected,
                "pending_failures": sum(r.remaining for r in self._rules),
                "delays": dict(self._delays),
                "bandwidth": dict(self._bandwidth),
                "log": list(self._log[-200:]),
            }
        out = json.dumps(state).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
        return [out]

    def _apply(self, body: dict) -> None:
        op = body.get("op")
        with self._lock:
            if op == "fail_next":
                self._rules.append(_Rule(body))
            elif op == "slow":
                service = body.get("service", "s3")
                if body.get("seconds"):
                    self._delays[service] = {"seconds": float(body["seconds"]), "method": (body.get("method") or "").upper() or None}
                else:
                    self._delays.pop(service, None)
            elif op == "bandwidth":
                service = body.get("service", "s3")
                if body.get("bytes_per_second"):
                    self._bandwidth[service] = float(body["bytes_per_second"])
                else:
                    self._bandwidth.pop(service, None)
            elif op == "clear":
                self._rules.clear()
                self._delays.clear()
                self._bandwidth.clear()
            elif op == "reset_stats":
                self._counts.clear()
                self._injected = 0
                self._log.clear()

    # Requests.

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == CONTROL_PATH:
            return self._control(environ, start_response)
        service = _service_of(environ)
        method = environ["REQUEST_METHOD"]
        with self._lock:
            key = f"{service} {method}"
            self._counts[key] = self._counts.get(key, 0) + 1
            rule = next((r for r in self._rules if r.matches(service, method, path)), None)
            if rule is not None:
                rule.remaining -= 1
                self._injected += 1
                self._rules = [r for r in self._rules if r.remaining > 0]
            delay = self._delays.get(service)
            rate = self._bandwidth.get(service)
            self._log.append({"service": service, "method": method, "path": path,
                              "injected": rule.code if rule else None})
            del self._log[:-1000]
        if delay and (delay["method"] is None or delay["method"] == method):
            time.sleep(delay["seconds"])
        if rule is not None:
            return self._fail(environ, start_response, service, rule)
        if rate:
            environ["wsgi.input"] = _Throttled(environ["wsgi.input"], rate)
            return self._throttle_out(self.app(environ, start_response), rate)
        return self.app(environ, start_response)

    @staticmethod
    def _throttle_out(body: Iterable[bytes], rate: float) -> Iterable[bytes]:
        chunk = max(1024, int(rate / 20))
        try:
            for piece in body:
                for i in range(0, len(piece), chunk):
                    part = piece[i:i + chunk]
                    time.sleep(len(part) / rate)
                    yield part
        finally:
            close = getattr(body, "close", None)
            if close:
                close()

    @staticmethod
    def _fail(environ: dict, start_response: Callable, service: str, rule: _Rule) -> list[bytes]:
        # Drain the request body so the connection stays usable for the client's retry.
        stream = environ.get("wsgi.input")
        chunked = bool(environ.get("wsgi.input_terminated"))  # werkzeug: chunked body, read to EOF
        length = int(environ.get("CONTENT_LENGTH") or 0)
        while stream is not None and (chunked or length > 0):
            data = stream.read(1 << 20 if chunked else min(length, 1 << 20))
            if not data:
                break
            length -= len(data)
        request_id = uuid.uuid4().hex[:16].upper()
        if service == "s3":
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{rule.error}</Code><Message>{rule.message}</Message>'
                    f"<RequestId>{request_id}</RequestId><HostId>hcpsim</HostId></Error>")
        else:
            kind = "Sender" if rule.code < 500 else "Receiver"
            body = (f'<?xml version="1.0"?>\n<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error>'
                    f"<Type>{kind}</Type><Code>{rule.error}</Code><Message>{rule.message}</Message></Error>"
                    f"<RequestId>{request_id}</RequestId></ErrorResponse>")
        out = body.encode() if environ["REQUEST_METHOD"] != "HEAD" else b""
        start_response(f"{rule.code} {_REASONS.get(rule.code, 'Error')}",
                       [("Content-Type", "application/xml"), ("Content-Length", str(len(out))),
                        ("x-amz-request-id", request_id)])
        return [out]


# ---------------------------------------------------------------------------------------------
# The server process.


def _serve(args: argparse.Namespace) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import ThreadedWSGIServer

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(args.cert, args.key)

    class Server(ThreadedWSGIServer):
        # Handshakes in the connection's thread, not in the accept loop (a stuck client stalls nobody).
        daemon_threads = True

        def get_request(self) -> tuple[socket.socket, Any]:
            sock, addr = self.socket.accept()
            return tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    class Handler(MotoRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 600  # an idle or stuck connection (no TLS handshake, no request) ends eventually

        def log_request(self, *a: Any, **kw: Any) -> None:
            pass

        def log_error(self, *a: Any) -> None:
            pass

    app = FaultMiddleware(DomainDispatcherApplication(create_backend_app))
    server = Server(args.host, args.port, app, handler=Handler)
    server.ssl_context = tls  # wsgi.url_scheme=https (the listening socket itself stays plain)
    port = server.server_address[1]
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()

    def watch_parent() -> None:
        # The parent holds our stdin open; EOF means it stopped us or died.
        try:
            while sys.stdin.buffer.read(1):
                pass
        finally:
            server.shutdown()

    threading.Thread(target=watch_parent, daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()


# ---------------------------------------------------------------------------------------------
# The parent side.


class FaultsClient:
    """Fault injection in a running AwsSim (requests go to the server's control path).

    `service` is "s3" (default) or "route53" ("*" for both); `method` an HTTP method or None for any;
    `path` a regular expression searched in the request path (e.g. the bucket or key).
    """

    def __init__(self, url: str, ca_file: Path) -> None:
        self._url = url + CONTROL_PATH
        self._tls = ssl.create_default_context(cafile=str(ca_file))

    def _call(self, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self._url, data=data, method="POST" if data else "GET",
                                         headers={"Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self._tls))
        with opener.open(request, timeout=10) as response:
            return json.loads(response.read())

    def fail_next(self, n: int = 1, code: int = 503, *, error: str | None = None, message: str | None = None,
                  method: str | None = None, service: str = "s3", path: str | None = None) -> None:
        """The next `n` matching requests answer `code` with AWS error `error` (default by code:
        500 InternalError, 503 SlowDown for S3 / ServiceUnavailable for Route53, 403 AccessDenied...)."""
        self._call({"op": "fail_next", "n": n, "code": code, "error": error, "message": message, "method": method,
                    "service": service, "path": path})

    def slow(self, seconds_per_request: float, *, method: str | None = None, service: str = "s3") -> None:
        """Every matching request waits `seconds_per_request` before it is served (0 turns it off)."""
        self._call({"op": "slow", "seconds": seconds_per_request, "method": method, "service": service})

    def bandwidth(self, bytes_per_second: float | None, *, service: str = "s3") -> None:
        """Cap each request's upload and download rate (None or 0 removes the cap)."""
        self._call({"op": "bandwidth", "bytes_per_second": bytes_per_second or 0, "service": service})

    def clear(self) -> None:
        """Remove every fault (pending failures, delays, bandwidth caps)."""
        self._call({"op": "clear"})

    def reset_stats(self) -> None:
        self._call({"op": "reset_stats"})

    def stats(self) -> dict:
        """{"requests": {"s3 PUT": n, ...}, "injected": n, "pending_failures": n, "log": [...last 200]}"""
        return self._call()


class AwsSim:
    """S3 + Route53 (moto) over HTTPS on 127.0.0.1, in a child process; see the module docstring."""

    def __init__(self, directory: Path, ca: CertificateAuthority, *, bucket: str = "hcp-backups",
                 external_dns_domain: str = "hcp.example.com", region: str = "us-east-1", port: int = 0) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca = ca
        self.bucket = bucket
        self.domain = external_dns_domain.rstrip(".")
        self.region = region
        self._requested_port = port
        self.port: int | None = None
        self.url: str | None = None
        self.zone_id: str | None = None
        self.faults: FaultsClient | None = None
        self._proc: subprocess.Popen | None = None
        self.env_file = self.directory / "aws.env"
        self.config_file = self.directory / "aws-config"
        self.credentials_file = self.directory / "aws-credentials"

    # Lifecycle.

    def start(self) -> AwsSim:
        if self._proc is not None:
            return self
        tls = self.ca.issue("aws-sim", hosts=["127.0.0.1", "localhost", "s3.localhost"], directory=self.directory / "pki",
                            file_stem="aws")
        package_root = str(Path(__file__).resolve().parent.parent)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
        env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(self.directory / "aws-server.log", "ab") as server_log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "hcpsim.aws", "serve", "--cert", str(tls.cert_path), "--key", str(tls.key_path),
                 "--port", str(self._requested_port)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=server_log,
                env=env, cwd=str(self.directory), start_new_session=True,
            )
        try:
            self.port = self._read_port(timeout=30)
            self.url = f"https://127.0.0.1:{self.port}"
            self.faults = FaultsClient(self.url, self.ca.cert_path)
            self._write_config()
            s3 = self.client("s3")
            s3.create_bucket(Bucket=self.bucket, **({} if self.region == "us-east-1" else
                                                   {"CreateBucketConfiguration": {"LocationConstraint": self.region}}))
            r53 = self.client("route53")
            zone = r53.create_hosted_zone(Name=self.domain + ".", CallerReference=str(uuid.uuid4()),
                                          HostedZoneConfig={"Comment": "hcpsim external DNS", "PrivateZone": False})
            self.zone_id = zone["HostedZone"]["Id"].rsplit("/", 1)[-1]
            self._write_env()
        except BaseException:
            self.stop()
            raise
        return self

    def _read_port(self, timeout: float) -> int:
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._proc.stdout], [], [], 0.1)
            if ready:
                line = self._proc.stdout.readline()
                if line.startswith(b"PORT "):
                    return int(line.split()[1])
                if not line:
                    break
            if self._proc.poll() is not None:
                break
        log_text = (self.directory / "aws-server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the AWS simulator did not start: {line!r}\n{log_text}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()  # the server shuts down on EOF
        except OSError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()

    close = stop

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> AwsSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Clients and configuration.

    def env(self) -> dict[str, str]:
        """The variables of aws.env (what a process needs to use the simulated AWS)."""
        assert self.url is not None, "start() first"
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ENDPOINT_URL_S3": self.url,
            "AWS_ENDPOINT_URL_ROUTE_53": self.url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_CA_BUNDLE": str(self.ca.cert_path),
            "AWS_CONFIG_FILE": str(self.config_file),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.credentials_file),
            "AWS_EC2_METADATA_DISABLED": "true",
            "HCP_BACKUP_BUCKET": self.bucket,
            "HCP_ROUTE53_ZONE_ID": self.zone_id or "",
            "HCP_EXTERNAL_DNS_DOMAIN": self.domain,
            "HCP_AWS_SIM_URL": self.url,
        }

    def _write_config(self) -> None:
        # Path-style addressing: 127.0.0.1 has no bucket subdomains (boto3 has no env var for it).
        self.config_file.write_text(
            f"[default]\nregion = {self.region}\n"
            f"s3 =\n    addressing_style = path\n    signature_version = s3v4\n"
        )
        self.credentials_file.write_text(
            f"[default]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET_ACCESS_KEY}\n")

    def _write_env(self) -> None:
        lines = ["# The simulated AWS (hcpsim): `set -a; . ./aws.env; set +a`"]
        lines += [f"{k}={_shell_quote(v)}" for k, v in self.env().items()]
        self.env_file.write_text("\n".join(lines) + "\n")

    def session(self) -> Any:
        import boto3

        return boto3.session.Session(aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY,
                                     region_name=self.region)

    def client(self, service: str, *, max_attempts: int | None = None, **config: Any) -> Any:
        """A boto3 client for `service` pointed at the simulator (independent of the process's env).
        `max_attempts`: total attempts per call (1 = no retry); other keyword arguments go to botocore's Config."""
        from botocore.config import Config

        assert self.url is not None, "start() first"
        options: dict[str, Any] = {"s3": {"addressing_style": "path"}, "signature_version": "s3v4"} if service == "s3" else {}
        if max_attempts is not None:
            options["retries"] = {"total_max_attempts": max_attempts, "mode": "standard"}
        options.update(config)
        return self.session().client(service, endpoint_url=self.url, verify=str(self.ca.cert_path), config=Config(**options))


def _shell_quote(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./:@%+,=-]*", value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hcpsim.aws")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve moto's S3/Route53 over HTTPS (the child process of AwsSim)")
    serve.add_argument("--cert", required=True)
    serve.add_argument("--key", required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "serve":
        _serve(args)


if __name__ == "__main__":
    main()
