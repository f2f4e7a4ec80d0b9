"""The S3 client a task uses: the standard AWS configuration, or a prefect-aws credentials block."""

from __future__ import annotations

import threading
from typing import Any

from hcp.aws_access import AwsAccess

__all__ = ["s3_client", "route53_client"]


_SESSIONS: dict[AwsAccess, Any] = {}
_SESSIONS_LOCK = threading.Lock()


def s3_client(aws: AwsAccess) -> Any:
    """A new client per call, from one session per access: the session keeps botocore's parsed
    models (building them holds the GIL long enough to slow concurrent backups down), while each
    client brings a fresh retry quota (a long-lived client whose quota an S3 outage drained would
    stop retrying in later runs). Sessions are not thread-safe: clients are made under a lock."""
    with _SESSIONS_LOCK:
        return aws.s3_client(_session(aws))


def route53_client(aws: AwsAccess) -> Any:
    """Route53 through the same session (its endpoint from the standard configuration: AWS, or
    AWS_ENDPOINT_URL_ROUTE_53 for a stand-in)."""
    with _SESSIONS_LOCK:
        return _session(aws).client("route53")


def _session(aws: AwsAccess) -> Any:
    """Under _SESSIONS_LOCK."""
    session = _SESSIONS.get(aws)
    if session is None:
        session = _SESSIONS[aws] = aws.session(_block_session(aws))
    return session


def _block_session(aws: AwsAccess) -> Any:
    if not aws.credentials_block:
        return None
    try:
        from prefect_aws import AwsCredentials  # optional: only deployments that keep keys in a block need it
    except ImportError:
        raise RuntimeError(f"credentials block {aws.credentials_block!r} needs prefect-aws: "
                           "`pip install prefect-aws`, or use the standard AWS configuration") from None
    return AwsCredentials.load(aws.credentials_block).get_boto3_session()
