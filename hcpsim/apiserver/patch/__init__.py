"""PATCH bodies as kube-apiserver applies them: JSON patch (RFC 6902), JSON merge patch
(RFC 7386) and strategic merge patch (built-in kinds only).

All functions return a new dict and leave `original` untouched; failures raise ApiError with the
code, reason and message the real server sends (see each module for the upstream source).
"""

from hcpsim.apiserver.patch.json_patches import (
    GENERIC_422_MESSAGE,
    MAX_JSON_PATCH_OPERATIONS,
    apply_json_patch,
    apply_merge_patch,
    json_patch_failure_reason,
)
from hcpsim.apiserver.patch.strategic import apply_strategic_merge_patch, supports_strategic_merge

__all__ = [
    "GENERIC_422_MESSAGE",
    "MAX_JSON_PATCH_OPERATIONS",
    "apply_json_patch",
    "apply_merge_patch",
    "apply_strategic_merge_patch",
    "json_patch_failure_reason",
    "supports_strategic_merge",
]
