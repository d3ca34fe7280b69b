"""The one boto3 client of push and verify: credentials from the standard AWS chain, the endpoint, short timeouts,
and botocore's failures turned into errors with a hint.

boto3 is the `s3` extra (`pip install 'stubforge[s3]'`): 34 MB installed and about 0.9 s to import, which only
push and an s3:// verify need. It is imported here, on use, and its absence is an error with the install line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stubforge.errors import StubforgeError
from stubforge.triton.stores import S3Location

if TYPE_CHECKING:
    from collections.abc import Iterator

CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60
CREDENTIALS_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_DEFAULT_REGION), or AWS_PROFILE with "
    "~/.aws/credentials, as for the aws command line"
)


class ObjectStoreError(StubforgeError):
    """The object store cannot be reached, refuses us, or lacks the bucket."""


@dataclass(frozen=True)
class RemoteObject:
    key: str
    size: int
    etag: str  # without quotes; a multipart or SSE-KMS ETag is not the content's MD5


def _boto3() -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise ObjectStoreError(
            "s3:// repositories need boto3, which is not installed",
            hint="pip install 'stubforge[s3]' (or pip install boto3)",
        ) from exc
    return boto3


def client(location: S3Location) -> Any:
    """An S3 client for `location`'s endpoint (AWS itself when it names none), path-style addressing as Triton
    uses, credentials from the standard chain (environment, AWS_PROFILE, ~/.aws, instance roles)."""
    boto3 = _boto3()
    from botocore.config import Config

    config = Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"max_attempts": 2, "mode": "standard"},
        s3={"addressing_style": "path"},
        max_pool_connections=32,
    )
    session = boto3.session.Session()
    region = session.region_name or "us-east-1"
    return session.client("s3", endpoint_url=location.endpoint, region_name=region, config=config)


def server_credentials() -> dict[str, str]:
    """The AWS_* variables a tritonserver needs to read the store with the credentials this process has.

    The server reads only AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN/AWS_DEFAULT_REGION or
    AWS_PROFILE; resolving the chain here makes ~/.aws profiles and other sources work for it too."""
    boto3 = _boto3()
    session = boto3.session.Session()
    found = session.get_credentials()
    if found is None:
        raise ObjectStoreError("no AWS credentials found for the s3:// repository", hint=CREDENTIALS_HINT)
    frozen = found.get_frozen_credentials()
    env = {
        "AWS_ACCESS_KEY_ID": frozen.access_key,
        "AWS_SECRET_ACCESS_KEY": frozen.secret_key,
        "AWS_DEFAULT_REGION": session.region_name or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    }
    if frozen.token:
        env["AWS_SESSION_TOKEN"] = frozen.token
    return env


def translate(exc: BaseException, location: S3Location, action: str) -> StubforgeError:
    """botocore's exception as an ObjectStoreError naming the store and what to do."""
    from botocore import exceptions as bx

    where = location.endpoint or "AWS S3"
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return ObjectStoreError(f"{action} {location}: no AWS credentials found", hint=CREDENTIALS_HINT)
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ConnectionClosedError)):
        return ObjectStoreError(
            f"{action} {location}: cannot reach the endpoint {where}",
            hint="check that the store is running and the endpoint (--endpoint-url, or HOST:PORT in the URL) "
            "is right",
        )
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in ("NoSuchBucket", "404") and action.startswith("list"):
            return ObjectStoreError(
                f"{action} {location}: the bucket {location.bucket!r} does not exist at {where}",
                hint=f"create it first (aws s3 mb s3://{location.bucket}) or fix the bucket name",
            )
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "ExpiredToken"):
            return ObjectStoreError(
                f"{action} {location}: the store refused the credentials ({code}: {error.get('Message', '')})",
                hint=CREDENTIALS_HINT,
            )
        return ObjectStoreError(f"{action} {location}: {code}: {error.get('Message', exc)}")
    if isinstance(exc, bx.BotoCoreError):
        return ObjectStoreError(f"{action} {location}: {exc}")
    raise exc


def list_objects(s3: Any, location: S3Location) -> Iterator[RemoteObject]:
    """Every object under the prefix (as a directory: PREFIX/...)."""
    prefix = f"{location.prefix}/" if location.prefix else ""
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield RemoteObject(item["Key"], int(item["Size"]), str(item.get("ETag", "")).strip('"'))
    except Exception as exc:
        raise translate(exc, location, "list") from exc


def model_names(s3: Any, location: S3Location) -> list[str]:
    """The models of an s3:// repository: the prefixes directly under it that hold a config.pbtxt."""
    names = set()
    for item in list_objects(s3, location):
        relative = item.key[len(location.prefix) + 1 :] if location.prefix else item.key
        parts = relative.split("/")
        if len(parts) == 2 and parts[1] == "config.pbtxt":
            names.add(parts[0])
    return sorted(names)
