"""The simulated AWS (hcpsim.aws): S3 + Route53 over HTTPS from the world's CA, aws.env usable by a
plain boto3 in a clean environment, fault injection, clean stop."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from botocore.exceptions import ClientError

from hcpsim.aws import AwsSim
from hcpsim.pki import CertificateAuthority


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsSim]:
    base = tmp_path_factory.mktemp("aws")
    ca = CertificateAuthority(base / "pki")
    with AwsSim(base / "aws", ca, external_dns_domain="hcp.example.com") as sim:
        yield sim


@pytest.fixture(autouse=True)
def no_faults(aws: AwsSim) -> Iterator[None]:
    aws.faults.clear()
    yield
    aws.faults.clear()


def _parse_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value.strip("'")
    return out


def test_bucket_and_public_zone_exist(aws: AwsSim) -> None:
    s3 = aws.client("s3")
    assert "hcp-backups" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    r53 = aws.client("route53")
    zone = r53.get_hosted_zone(Id=aws.zone_id)["HostedZone"]
    assert zone["Name"] == "hcp.example.com."
    assert zone["Config"]["PrivateZone"] is False
    env = _parse_env(aws.env_file)
    assert env["HCP_ROUTE53_ZONE_ID"] == aws.zone_id
    assert env["HCP_BACKUP_BUCKET"] == "hcp-backups"
    assert env["HCP_EXTERNAL_DNS_DOMAIN"] == "hcp.example.com"
    assert env["AWS_ENDPOINT_URL"].startswith("https://127.0.0.1:")
    assert Path(env["AWS_CA_BUNDLE"]).read_bytes() == aws.ca.cert_pem


CLIENT_SCRIPT = textwrap.dedent("""
    import hashlib, json, os, ssl, sys, urllib.request
    import boto3
    from boto3.s3.transfer import TransferConfig

    work = sys.argv[1]
    bucket = os.environ["HCP_BACKUP_BUCKET"]
    s3 = boto3.client("s3")  # nothing but the environment
    src = os.path.join(work, "snapshot.db")
    data = os.urandom(1 << 20) * 11  # 11 MiB: three 5 MiB parts
    open(src, "wb").write(data)
    cfg = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
    s3.upload_file(src, bucket, "backups/snapshot.db", Config=cfg)
    head = s3.head_object(Bucket=bucket, Key="backups/snapshot.db")
    dst = os.path.join(work, "restored.db")
    s3.download_file(bucket, "backups/snapshot.db", dst)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "backups/snapshot.db"}, ExpiresIn=600)
    ctx = ssl.create_default_context(cafile=os.environ["AWS_CA_BUNDLE"])
    fetched = urllib.request.urlopen(url, context=ctx, timeout=30).read()
    r53 = boto3.client("route53")
    zone = r53.get_hosted_zone(Id=os.environ["HCP_ROUTE53_ZONE_ID"])["HostedZone"]
    print(json.dumps({
        "etag": head["ETag"], "length": head["ContentLength"],
        "downloaded_ok": open(dst, "rb").read() == data,
        "presigned_ok": fetched == data, "url": url, "zone": zone["Name"],
        "endpoint": s3.meta.endpoint_url,
    }))
""")


def test_plain_boto3_with_only_aws_env(aws: AwsSim, tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    # `env -i`, then the shell sources aws.env the way a runbook would.
    command = f"set -a; . {aws.env_file}; set +a; exec {sys.executable} {script} {tmp_path}"
    result = subprocess.run(["env", "-i", f"HOME={tmp_path}", "bash", "-c", command],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["length"] == 11 << 20
    assert out["etag"].strip('"').endswith("-3"), out["etag"]  # a multipart upload's ETag
    assert out["downloaded_ok"]
    assert out["presigned_ok"]
    assert out["url"].startswith(f"https://127.0.0.1:{aws.port}/hcp-backups/backups/snapshot.db?"), out["url"]
    assert out["zone"] == "hcp.example.com."
    assert out["endpoint"] == aws.url


def test_fail_next_put(aws: AwsSim) -> None:
    s3 = aws.client("s3", max_attempts=1)
    aws.faults.fail_next(1, code=503, method="PUT")
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=aws.bucket, Key="f/one", Body=b"1")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert info.value.response["Error"]["Code"] == "SlowDown"
    s3.put_object(Bucket=aws.bucket, Key="f/one", Body=b"1")  # only the next one failed
    assert aws.faults.stats()["injected"] == 1


def test_fail_specific_code_method_and_path(aws: AwsSim) -> None:
    s3 = aws.client("s3", max_attempts=1)
    s3.put_object(Bucket=aws.bucket, Key="f/two", Body=b"2")
    aws.faults.fail_next(2, code=500, error="InternalError", method="GET", path=r"/f/two$")
    s3.head_bucket(Bucket=aws.bucket)  # HEAD: not matched
    for _ in range(2):
        with pytest.raises(ClientError) as info:
            s3.get_object(Bucket=aws.bucket, Key="f/two")
        assert info.value.response["Error"]["Code"] == "InternalError"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert s3.get_object(Bucket=aws.bucket, Key="f/two")["Body"].read() == b"2"


def test_retries_absorb_a_failure(aws: AwsSim) -> None:
    s3 = aws.client("s3", max_attempts=3)
    aws.faults.fail_next(1, code=503, method="PUT")
    s3.put_object(Bucket=aws.bucket, Key="f/three", Body=b"3")
    assert aws.faults.stats()["pending_failures"] == 0


def test_route53_fault(aws: AwsSim) -> None:
    r53 = aws.client("route53", max_attempts=1)
    aws.faults.fail_next(1, code=400, error="Throttling", service="route53")
    with pytest.raises(ClientError) as info:
        r53.list_resource_record_sets(HostedZoneId=aws.zone_id)
    assert info.value.response["Error"]["Code"] == "Throttling"
    r53.list_resource_record_sets(HostedZoneId=aws.zone_id)


def test_slow_requests(aws: AwsSim) -> None:
    s3 = aws.client("s3", max_attempts=1)
    aws.faults.slow(0.4)
    start = time.monotonic()
    s3.head_bucket(Bucket=aws.bucket)
    assert time.monotonic() - start >= 0.4
    aws.faults.slow(0)
    start = time.monotonic()
    s3.head_bucket(Bucket=aws.bucket)
    assert time.monotonic() - start < 0.4


def test_bandwidth_cap(aws: AwsSim) -> None:
    s3 = aws.client("s3", max_attempts=1)
    body = os.urandom(400_000)
    aws.faults.bandwidth(1_000_000)
    start = time.monotonic()
    s3.put_object(Bucket=aws.bucket, Key="f/slow", Body=body)
    assert s3.get_object(Bucket=aws.bucket, Key="f/slow")["Body"].read() == body
    assert time.monotonic() - start >= 0.7  # 0.4 s up + 0.4 s down
    aws.faults.bandwidth(None)


def test_stop_closes_port_and_leaves_no_thread(tmp_path: Path) -> None:
    threads = threading.active_count()
    ca = CertificateAuthority(tmp_path / "pki")
    sim = AwsSim(tmp_path / "aws", ca, bucket="other-bucket").start()
    port = sim.port
    sim.client("s3").put_object(Bucket="other-bucket", Key="k", Body=b"v")
    proc = sim._proc
    sim.stop()
    assert proc is not None and proc.poll() is not None
    assert not sim.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert threading.active_count() == threads
    sim.stop()  # idempotent
