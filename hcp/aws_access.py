"""How a runbook reaches S3: the standard AWS configuration (environment, profile, config file,
instance role) with optional overrides. Secrets never appear here: a parameter names a profile
or a credentials block, never a key."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AwsAccess", "S3_RETRIES"]

# botocore's "standard" retry mode retries throttling, 5xx and connection errors with backoff.
S3_RETRIES = {"max_attempts": 5, "mode": "standard"}


class AwsAccess(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    region: str | None = Field(default=None, description="default: the AWS configuration's region")
    profile: str | None = Field(default=None, description="a profile of the AWS config files")
    endpoint_url: str | None = Field(default=None, description="an S3-compatible endpoint (MinIO, ODF); "
                                     "default: AWS_ENDPOINT_URL(_S3) or AWS")
    credentials_block: str | None = Field(default=None, description="name of a prefect-aws AwsCredentials block")

    def session(self, base: Any | None = None) -> boto3.Session:
        """`base`: a boto3 Session from a credentials block, when the caller loaded one."""
        if base is not None:
            return base
        return boto3.Session(profile_name=self.profile, region_name=self.region)

    def s3_client(self, session: Any | None = None) -> Any:
        kwargs: dict[str, Any] = {"config": Config(retries=S3_RETRIES)}  # type: ignore[arg-type]
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        return self.session(session).client("s3", **kwargs)
