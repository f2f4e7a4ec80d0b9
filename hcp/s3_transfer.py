"""Streamed S3 transfers: upload an iterable of byte chunks with bounded memory, download as chunks.

`upload_stream` reads the source in order (computing the SHA-256 of exactly the bytes it sends)
while up to `concurrency` parts upload at once, so reading the source overlaps the uploads; it holds
at most `concurrency + 2` parts in memory (those uploading, the one being filled, and one the hasher
may still hold: usually one of those uploading), and leaves nothing behind on failure: a multipart upload is
aborted whatever the error (the source iterator raising, e.g. a cut exec stream, included). Objects
smaller than one part go up as a single PutObject. A part that fails is retried a few times with the
same bytes (on top of whatever retries the boto3 client does itself).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger("hcp.s3_transfer")

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PARTS = 10_000

SSE = Literal["AES256", "aws:kms"]


class S3TransferError(RuntimeError):
    """An upload or download failed; names the bucket and key (and the part)."""


@dataclass(frozen=True)
class UploadResult:
    bucket: str
    key: str
    size: int
    sha256: str
    etag: str
    parts: int  # 0: a single PutObject

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def _sse_args(sse: SSE | None, kms_key_id: str | None) -> dict[str, str]:
    if sse is None:
        if kms_key_id:
            raise ValueError("kms_key_id needs sse='aws:kms'")
        return {}
    if sse not in ("AES256", "aws:kms"):
        raise ValueError(f"sse must be 'AES256', 'aws:kms' or None, not {sse!r}")
    args = {"ServerSideEncryption": sse}
    if kms_key_id:
        if sse != "aws:kms":
            raise ValueError("kms_key_id needs sse='aws:kms'")
        args["SSEKMSKeyId"] = kms_key_id
    return args


def upload_stream(s3_client: Any, bucket: str, key: str, chunks: Iterable[bytes], *, part_size: int = 8 * MiB,
                  sse: SSE | None = None, kms_key_id: str | None = None, content_type: str = "application/octet-stream",
                  metadata: dict[str, str] | None = None, part_attempts: int = 4, retry_delay: float = 0.5,
                  concurrency: int = 4) -> UploadResult:
    """Upload the concatenation of `chunks` to s3://bucket/key; see the module docstring. The
    source is closed at the end if it has close() (a generator over an exec stream: its connection)."""
    source = iter(chunks)
    try:
        return _upload(s3_client, bucket, key, source, part_size=part_size, sse=sse, kms_key_id=kms_key_id,
                       content_type=content_type, metadata=metadata, part_attempts=part_attempts,
                       retry_delay=retry_delay, concurrency=concurrency)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def _upload(s3_client: Any, bucket: str, key: str, source: Iterator[bytes], *, part_size: int, sse: SSE | None,
            kms_key_id: str | None, content_type: str, metadata: dict[str, str] | None, part_attempts: int,
            retry_delay: float, concurrency: int) -> UploadResult:
    if part_size < MIN_PART_SIZE:
        raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum part size)")
    if part_attempts < 1:
        raise ValueError("part_attempts must be at least 1")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    extra: dict[str, Any] = {"ContentType": content_type, **_sse_args(sse, kms_key_id)}
    if metadata:
        extra["Metadata"] = dict(metadata)
    digest = hashlib.sha256()
    size = 0
    carry = b""          # the rest of a chunk that straddled the previous part's end
    exhausted = False

    def fill() -> bytearray:
        """The next part's bytes (part_size of them; fewer only at the end of the source), in a
        buffer of its own: earlier parts may still be uploading."""
        nonlocal carry, exhausted, size
        buf = bytearray()
        if carry:
            buf.extend(carry[:part_size])
            carry = carry[part_size:]
        while len(buf) < part_size and not exhausted:
            try:
                chunk = next(source)
            except StopIteration:
                exhausted = True
                break
            if not chunk:
                continue
            size += len(chunk)
            room = part_size - len(buf)
            if len(chunk) <= room:
                buf.extend(chunk)
            else:
                view = memoryview(chunk)
                buf.extend(view[:room])
                carry = bytes(view[room:])
        return buf

    def more() -> bool:
        return not exhausted or bool(carry)

    first = fill()
    if not more():
        digest.update(first)
        response = _with_retries(lambda: s3_client.put_object(Bucket=bucket, Key=key, Body=bytes(first), **extra),
                                 part_attempts, retry_delay, f"PutObject s3://{bucket}/{key}")
        return UploadResult(bucket, key, size, digest.hexdigest(), response["ETag"].strip('"'), 0)

    upload_id = s3_client.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    etags: dict[int, str] = {}

    def send(number: int, part_body: bytearray) -> None:
        # The part's CRC32 goes in a header, so S3 still checks what it received, while the body goes
        # out as it is, in one write: left to compute it, botocore would send the body aws-chunked
        # with a trailer, 128 KiB at a time through Python, copying and re-slicing each 1 MiB chunk
        # while holding the interpreter lock that the thread reading the source needs.
        crc32 = base64.b64encode(zlib.crc32(part_body).to_bytes(4, "big")).decode()

        def attempt() -> Any:
            return s3_client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                         Body=part_body, ChecksumCRC32=crc32, **_sse_part_args(sse, kms_key_id))
        response = _with_retries(attempt, part_attempts, retry_delay, f"UploadPart {number} of s3://{bucket}/{key}")
        etags[number] = response["ETag"]
        log.debug("s3://%s/%s: part %d (%d bytes) uploaded", bucket, key, number, len(part_body))

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="s3-part")
    # The SHA-256 is taken a part at a time, in order, by a thread of its own: the thread reading the
    # source (an exec stream: thousands of small TLS reads) is the pipeline's bottleneck, and each
    # update would make it give up the interpreter lock and wait to get it back.
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-sha256")
    hashed: Future[None] | None = None
    in_flight: set[Future[None]] = set()
    try:
        body: bytearray | None = first
        del first  # held by `body` (and then the sender) only
        number = 0
        while body:
            number += 1
            if number > MAX_PARTS:
                raise S3TransferError(f"s3://{bucket}/{key}: more than {MAX_PARTS} parts; raise part_size")
            in_flight.add(pool.submit(send, number, body))
            if hashed is not None:
                hashed.result()  # at most one part waits for the hasher: the memory bound holds
            hashed = hasher.submit(digest.update, body)
            if len(in_flight) >= concurrency:  # bound memory: wait for a slot before reading more
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()  # the first failure stops the upload
            body = None  # the part is the sender's now: let it go when sent
            body = fill() if more() else None
        for future in in_flight:
            future.result()
        in_flight = set()
        hasher.shutdown(wait=True)
        parts = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
        response = s3_client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                                       MultipartUpload={"Parts": parts})
    except BaseException:
        for future in in_flight:
            future.cancel()
        pool.shutdown(wait=True)  # no part may land after the abort
        _abort(s3_client, bucket, key, upload_id)
        raise
    finally:
        pool.shutdown(wait=True)
        hasher.shutdown(wait=True)
    return UploadResult(bucket, key, size, digest.hexdigest(), response["ETag"].strip('"'), len(parts))


def _sse_part_args(sse: SSE | None, kms_key_id: str | None) -> dict[str, str]:
    # UploadPart takes no SSE-S3/KMS arguments (they are set on CreateMultipartUpload); SSE-C would go here.
    return {}


def _with_retries(call: Any, attempts: int, delay: float, what: str) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    for attempt in range(1, attempts + 1):
        try:
            return call()
        except (ClientError, BotoCoreError) as e:
            if attempt == attempts or not _retryable(e):
                raise S3TransferError(f"{what} failed after {attempt} attempt(s): {e}") from e
            log.warning("%s failed (attempt %d of %d), retrying: %s", what, attempt, attempts, e)
            time.sleep(delay * attempt)
    raise AssertionError("unreachable")


def _retryable(e: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(e, ClientError):
        return True  # connection errors, timeouts, incomplete reads
    code = str(e.response.get("Error", {}).get("Code", ""))
    status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return status >= 500 or status == 429 or code in {"SlowDown", "RequestTimeout", "InternalError",
                                                      "ServiceUnavailable", "Throttling", "RequestTimeTooSkewed"}


def _abort(s3_client: Any, bucket: str, key: str, upload_id: str) -> None:
    for attempt in range(3):
        try:
            s3_client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            log.info("s3://%s/%s: multipart upload %s aborted", bucket, key, upload_id)
            return
        except Exception as e:  # keep the original error; say that parts may remain
            if attempt == 2:
                log.error("s3://%s/%s: could not abort multipart upload %s (parts may remain until a lifecycle "
                          "rule removes them): %s", bucket, key, upload_id, e)
            else:
                time.sleep(0.2 * (attempt + 1))


def download_stream(s3_client: Any, bucket: str, key: str, *, chunk_bytes: int = 1 * MiB) -> Iterator[bytes]:
    """The object's bytes in chunks of at most `chunk_bytes`, read as they arrive."""
    from botocore.exceptions import ClientError

    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as e:
        raise S3TransferError(f"GetObject s3://{bucket}/{key}: {e}") from e
    try:
        yield from body.iter_chunks(chunk_size=chunk_bytes)
    finally:
        body.close()


def sha256_of_object(s3_client: Any, bucket: str, key: str, *, chunk_bytes: int = 1 * MiB) -> str:
    """SHA-256 (hex) of the object's content, read streamed."""
    digest = hashlib.sha256()
    for chunk in download_stream(s3_client, bucket, key, chunk_bytes=chunk_bytes):
        digest.update(chunk)
    return digest.hexdigest()
