"""The S3 client a task uses: the standard AWS configuration, or a prefect-aws credentials block."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from hcp.aws_access import AwsAccess

__all__ = ["s3_client"]


@lru_cache(maxsize=16)
def s3_client(aws: AwsAccess) -> Any:
    """One client per access (clients are thread-safe; building one parses botocore's models, which
    holds the GIL long enough to slow concurrent backups down)."""
    session = None
    if aws.credentials_block:
        try:
            from prefect_aws import AwsCredentials  # optional: only deployments that keep keys in a block need it
        except ImportError:
            raise RuntimeError(f"credentials block {aws.credentials_block!r} needs prefect-aws: "
                               "`pip install prefect-aws`, or use the standard AWS configuration") from None
        session = AwsCredentials.load(aws.credentials_block).get_boto3_session()
    return aws.s3_client(session)
