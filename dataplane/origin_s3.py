"""An s3://bucket/key origin, read with boto3.

Credentials come from boto3's standard chain (environment, shared files, instance roles) on
the source node's host; CastRay never sees or records them. `OriginPolicy.s3_endpoint`
points boto3 at an S3-compatible store instead of AWS; the operator sets it, so its address
is not subject to the checks on URLs that users give.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from dataplane.contract import OriginPolicy
from dataplane.origin_url import BLOCK, Dropped, Meta, OriginError, OriginUrl

MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
DENIED = {"403", "AccessDenied", "Forbidden"}
CHANGED = {"412", "PreconditionFailed"}


class S3Source:
    def __init__(self, origin: OriginUrl, policy: OriginPolicy) -> None:
        self.bucket = origin.host
        self.key = origin.path
        self.url = f"s3://{self.bucket}/{self.key}"
        config = Config(
            connect_timeout=policy.timeout,
            read_timeout=policy.timeout,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        if boto3.Session().get_credentials() is None:
            # No credentials anywhere in the chain: read public buckets anonymously.
            config = config.merge(Config(signature_version=UNSIGNED))
        self.client: Any = boto3.client("s3", endpoint_url=policy.s3_endpoint or None, config=config)

    def keys(self) -> list[tuple[str, int]]:
        """A prefix's objects (key, size), every page of the listing."""
        found: list[tuple[str, int]] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.key):
                found.extend((str(o["Key"]), int(o["Size"])) for o in page.get("Contents", ()))
        except (ClientError, BotoCoreError) as exc:
            raise self._reason(exc) from None
        return found

    def _reason(self, exc: Exception) -> OriginError:
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in MISSING or status in MISSING:
                return OriginError(f"{self.url} does not exist (404)")
            if code in DENIED or status in DENIED:
                return OriginError(f"access to {self.url} was denied (403)")
            if code in CHANGED or status in CHANGED:
                return OriginError(f"{self.url} changed during the fetch")
            return OriginError(f"S3 refused {self.url}: {code or status}")
        return OriginError(f"cannot reach S3 for {self.url}: {exc}")

    def probe(self) -> Meta:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key)
        except (ClientError, BotoCoreError) as exc:
            raise self._reason(exc) from None
        modified = head.get("LastModified")
        return Meta(
            size=int(head["ContentLength"]),
            etag=str(head.get("ETag", "")),
            last_modified=modified.isoformat() if modified else "",
        )

    def read(self, offset: int, meta: Meta) -> Iterator[bytes]:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        if meta.etag:
            args["IfMatch"] = meta.etag  # a changed object is refused (412), never mixed in
        if offset:
            args["Range"] = f"bytes={offset}-"
        try:
            body = self.client.get_object(**args)["Body"]
        except (ClientError, BotoCoreError) as exc:
            raise self._reason(exc) from None
        try:
            yield from body.iter_chunks(BLOCK)
        except BotoCoreError as exc:
            raise Dropped(str(exc)) from None
        finally:
            body.close()
