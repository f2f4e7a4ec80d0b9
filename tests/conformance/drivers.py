"""Two independent clients behind one small interface, so each scenario runs through the official
Python client (its dynamic client, which discovers resources like kubectl does) and through kubectl.

Errors are normalised to DriverError(code, reason, message): the client's ApiException carries the
Status object; kubectl prints `Error from server (<Reason>): <message>`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError


@dataclass(frozen=True)
class Res:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.split("/")[0] if "/" in self.api_version else ""

    @property
    def version(self) -> str:
        return self.api_version.split("/")[-1]

    @property
    def kubectl_name(self) -> str:
        """Fully qualified for kubectl: plural.version.group (core: plural)."""
        return f"{self.plural}.{self.version}.{self.group}" if self.group else self.plural


RES = {r.kind: r for r in [
    Res("v1", "Namespace", "namespaces", False),
    Res("v1", "ConfigMap", "configmaps"),
    Res("v1", "Secret", "secrets"),
    Res("v1", "Service", "services"),
    Res("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    Res("v1", "Pod", "pods"),
    Res("apps/v1", "Deployment", "deployments"),
    Res("apps/v1", "StatefulSet", "statefulsets"),
    Res("coordination.k8s.io/v1", "Lease", "leases"),
    Res("rbac.authorization.k8s.io/v1", "Role", "roles"),
    Res("hypershift.openshift.io/v1beta1", "HostedCluster", "hostedclusters"),
    Res("hypershift.openshift.io/v1beta1", "NodePool", "nodepools"),
    Res("cluster.x-k8s.io/v1beta2", "Cluster", "clusters"),
    Res("cluster.x-k8s.io/v1beta2", "Machine", "machines"),
    Res("conformance.hcpsim.io/v1", "Widget", "widgets"),
    Res("conformance.hcpsim.io/v1", "Gadget", "gadgets", False),
]}


def res_of(obj: dict) -> Res:
    return RES[obj["kind"]]


class DriverError(Exception):
    def __init__(self, code: int | None, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message


_REASON_CODES = {"NotFound": 404, "AlreadyExists": 409, "Conflict": 409, "Invalid": 422, "BadRequest": 400,
                 "Forbidden": 403, "Unauthorized": 401, "Gone": 410, "Expired": 410, "UnsupportedMediaType": 415,
                 "MethodNotAllowed": 405}

MEDIA = {"merge": "application/merge-patch+json", "json": "application/json-patch+json",
         "strategic": "application/strategic-merge-patch+json"}


class ClientDriver:
    name = "client"

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self._dyn: DynamicClient | None = None

    @property
    def dyn(self) -> DynamicClient:
        if self._dyn is None:
            self._dyn = DynamicClient(self.api_client)
        return self._dyn

    def _resource(self, res: Res):
        try:
            return self.dyn.resources.get(api_version=res.api_version, kind=res.kind)
        except Exception:
            # A CRD created after discovery was cached: rediscover once.
            self.dyn.resources.invalidate_cache()
            return self.dyn.resources.get(api_version=res.api_version, kind=res.kind)

    def _call(self, fn, *args: Any, **kw: Any) -> Any:
        try:
            out = fn(*args, **kw)
        except DynamicApiError as e:
            body = json.loads(e.body) if e.body else {}
            raise DriverError(e.status, body.get("reason", ""), body.get("message", "")) from None
        return out.to_dict() if hasattr(out, "to_dict") else out

    def create(self, obj: dict) -> dict:
        res = res_of(obj)
        ns = obj["metadata"].get("namespace") if res.namespaced else None
        return self._call(self._resource(res).create, body=obj, namespace=ns)

    def get(self, res: Res, name: str, namespace: str | None = None) -> dict:
        return self._call(self._resource(res).get, name=name, namespace=namespace)

    def exists(self, res: Res, name: str, namespace: str | None = None) -> bool:
        try:
            self.get(res, name, namespace)
            return True
        except DriverError as e:
            if e.code == 404:
                return False
            raise

    def list_names(self, res: Res, namespace: str | None = None, label_selector: str | None = None,
                   field_selector: str | None = None) -> list[str]:
        kw: dict[str, Any] = {"namespace": namespace}
        if label_selector:
            kw["label_selector"] = label_selector
        if field_selector:
            kw["field_selector"] = field_selector
        out = self._call(self._resource(res).get, **kw)
        return sorted(i["metadata"]["name"] for i in out["items"])

    def replace(self, obj: dict) -> dict:
        res = res_of(obj)
        ns = obj["metadata"].get("namespace") if res.namespaced else None
        return self._call(self._resource(res).replace, body=obj, namespace=ns)

    def patch(self, res: Res, name: str, namespace: str | None, body: Any, patch_type: str = "merge") -> dict:
        return self._call(self._resource(res).patch, body=body, name=name, namespace=namespace,
                          content_type=MEDIA[patch_type])

    def delete(self, res: Res, name: str, namespace: str | None = None) -> None:
        self._call(self._resource(res).delete, name=name, namespace=namespace)


# kubectl's default: it reads /openapi/v3 and asks the server for fieldValidation=Strict.
VALIDATE = "--validate=strict"


class KubectlDriver:
    name = "kubectl"

    def __init__(self, kubectl) -> None:
        self.k = kubectl

    def _run(self, *args: str, input: str | None = None) -> str:
        result = self.k.run(*args, input=input, check=False)
        if result.returncode != 0:
            raise _kubectl_error(result.stderr.decode())
        return result.stdout.decode()

    @staticmethod
    def _ns(namespace: str | None) -> list[str]:
        return ["-n", namespace] if namespace else []

    def create(self, obj: dict) -> dict:
        return json.loads(self._run("create", VALIDATE, "-f", "-", "-o", "json", input=json.dumps(obj)))

    def get(self, res: Res, name: str, namespace: str | None = None) -> dict:
        return json.loads(self._run("get", res.kubectl_name, name, *self._ns(namespace), "-o", "json"))

    def exists(self, res: Res, name: str, namespace: str | None = None) -> bool:
        out = self._run("get", res.kubectl_name, name, *self._ns(namespace), "--ignore-not-found", "-o", "name")
        return bool(out.strip())

    def list_names(self, res: Res, namespace: str | None = None, label_selector: str | None = None,
                   field_selector: str | None = None) -> list[str]:
        args = ["get", res.kubectl_name, "-o", "json"]
        args += self._ns(namespace) if namespace else (["-A"] if res.namespaced else [])
        if label_selector:
            args += ["-l", label_selector]
        if field_selector:
            args += ["--field-selector", field_selector]
        return sorted(i["metadata"]["name"] for i in json.loads(self._run(*args))["items"])

    def replace(self, obj: dict) -> dict:
        return json.loads(self._run("replace", VALIDATE, "-f", "-", "-o", "json", input=json.dumps(obj)))

    def patch(self, res: Res, name: str, namespace: str | None, body: Any, patch_type: str = "merge") -> dict:
        return json.loads(self._run("patch", res.kubectl_name, name, *self._ns(namespace), "--type", patch_type,
                                    "-p", json.dumps(body), "-o", "json"))

    def delete(self, res: Res, name: str, namespace: str | None = None) -> None:
        self._run("delete", res.kubectl_name, name, *self._ns(namespace), "--timeout=20s")


_SERVER_ERROR = re.compile(r"Error from server(?: \((\w+)\))?: (.*)", re.S)


def _kubectl_error(stderr: str) -> DriverError:
    # kubectl prints 422 Invalid as `The <Kind> "<name>" is invalid: <causes>` (no "Error from server").
    invalid = re.search(r'The (\S+) "([^"]*)" is invalid: (.*)', stderr, re.S)
    if invalid:
        return DriverError(422, "Invalid", invalid.group(0).strip())
    if "The request is invalid:" in stderr:  # a 422 Status without details
        return DriverError(422, "Invalid", stderr.strip())
    m = _SERVER_ERROR.search(stderr)
    if not m:
        return DriverError(None, "", stderr.strip())
    reason = m.group(1) or ""
    message = m.group(2).strip()
    return DriverError(_REASON_CODES.get(reason), reason, message)
