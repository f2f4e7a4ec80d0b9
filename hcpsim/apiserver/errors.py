"""Kubernetes API errors as the real kube-apiserver returns them: metav1.Status objects.

Every failure the simulated API server reports goes through ApiError, so clients (the official
Python client, kubectl) see the same code, reason and details a real cluster sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FieldError:
    """One invalid field, as a StatusCause of a 422 Invalid response.

    `type` is the Kubernetes field.ErrorType reason, e.g. FieldValueInvalid, FieldValueRequired,
    FieldValueNotSupported, FieldValueTooLong, FieldValueTooMany, FieldValueForbidden,
    FieldValueDuplicate, FieldValueTypeInvalid.
    `field` is the dotted path the real server prints, e.g. `spec.etcd.managed.storage.restoreSnapshotURL`
    or `spec.containers[0].name`.
    """

    type: str
    field: str
    message: str
    value: Any = None
    has_value: bool = False

    def summary(self) -> str:
        # The real server prints `<field>: <Type text>: <value>: <detail>` (see field.Error.Error()).
        kind = _ERROR_TYPE_TEXT.get(self.type, "Invalid value")
        if self.has_value:
            return f"{self.field}: {kind}: {_render_value(self.value)}: {self.message}"
        return f"{self.field}: {kind}: {self.message}" if self.message else f"{self.field}: {kind}"

    def cause(self) -> dict[str, str]:
        return {"reason": self.type, "message": self.summary().split(": ", 1)[-1], "field": self.field}


_ERROR_TYPE_TEXT = {
    "FieldValueInvalid": "Invalid value",
    "FieldValueRequired": "Required value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
    "FieldValueForbidden": "Forbidden",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueTypeInvalid": "Invalid value",
    "FieldValueNotFound": "Not found",
}


def _render_value(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return "\"object\"" if isinstance(value, dict) else "\"array\""
    return str(value)


@dataclass
class ApiError(Exception):
    code: int
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def status(self) -> dict[str, Any]:
        # StatusDetails fields are omitempty: the core group ("") is left out, as the real server does.
        details = {k: v for k, v in self.details.items() if not (k == "group" and v == "")}
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if details:
            body["details"] = details
        return body

    # Constructors for the errors the real server produces, with its message wording.

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        return cls(400, "BadRequest", message)

    @classmethod
    def unauthorized(cls) -> ApiError:
        return cls(401, "Unauthorized", "Unauthorized")

    @classmethod
    def forbidden(cls, message: str) -> ApiError:
        return cls(403, "Forbidden", message)

    @classmethod
    def not_found(cls, group: str, plural: str, name: str) -> ApiError:
        resource = f"{plural}.{group}" if group else plural
        return cls(
            404,
            "NotFound",
            f'{resource} "{name}" not found',
            {"name": name, "group": group, "kind": plural},
        )

    @classmethod
    def path_not_found(cls) -> ApiError:
        return cls(404, "NotFound", "the server could not find the requested resource")

    @classmethod
    def method_not_allowed(cls, method: str) -> ApiError:
        return cls(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource ({method})")

    @classmethod
    def already_exists(cls, group: str, plural: str, name: str) -> ApiError:
        resource = f"{plural}.{group}" if group else plural
        return cls(
            409,
            "AlreadyExists",
            f'{resource} "{name}" already exists',
            {"name": name, "group": group, "kind": plural},
        )

    @classmethod
    def conflict(cls, group: str, plural: str, name: str, why: str) -> ApiError:
        resource = f"{plural}.{group}" if group else plural
        return cls(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {resource} "{name}": {why}',
            {"name": name, "group": group, "kind": plural},
        )

    @classmethod
    def gone(cls, message: str) -> ApiError:
        return cls(410, "Expired", message)

    @classmethod
    def unsupported_media_type(cls, content_type: str) -> ApiError:
        return cls(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type!r})")

    @classmethod
    def too_large(cls, limit: int) -> ApiError:
        return cls(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")

    @classmethod
    def invalid(cls, kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
        qualified = f"{kind}.{group}" if group else kind
        summary = ", ".join(e.summary() for e in errors)
        if len(errors) > 1:
            summary = "[" + summary + "]"
        return cls(
            422,
            "Invalid",
            f'{qualified} "{name}" is invalid: {summary}',
            {"name": name, "group": group, "kind": kind, "causes": [e.cause() for e in errors]},
        )

    @classmethod
    def unprocessable(cls, message: str) -> ApiError:
        return cls(422, "Invalid", message)

    @classmethod
    def internal(cls, message: str) -> ApiError:
        return cls(500, "InternalError", f"Internal error occurred: {message}")

    @classmethod
    def service_unavailable(cls, message: str) -> ApiError:
        return cls(503, "ServiceUnavailable", message)

    @classmethod
    def timeout(cls, message: str) -> ApiError:
        return cls(504, "Timeout", message)
