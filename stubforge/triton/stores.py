"""Where a repository lives (local, s3, gcs, azure) and what that changes for Triton, as data; and Triton's s3://
URL grammar.

A cloud repository is not read in place: the server copies each model directory to a fresh local directory
(`<mount dir>/folderXXXXXX`, directories 0700, files 0644) and loads that copy, so execute bits, symlinks and
empty directories do not survive; an EXECUTION_ENV_PATH that climbs out of the model directory with `..` is
fetched separately, for backend "python" only (docs/triton-behaviour.md, "Repositories in object stores
(s3)"). S3 was run against a real server; GCS and Azure go through the same copy in the server's code and are untested
here (`tested` says so in every finding).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stubforge.errors import StubforgeError


@dataclass(frozen=True)
class Store:
    name: str  # the --for value
    scheme: str  # how a repository path starts ("" for a local directory)
    copies_model_dir: bool  # the server loads a local copy, not the files themselves
    mount_variable: str | None  # where the copies go instead of /tmp
    tested: bool  # run against a real server (else: read in the server's code only)

    @property
    def untested_note(self) -> str:
        return (
            "" if self.tested else f" (read in the server's code; not run against a real {self.name} store)"
        )


LOCAL = Store("local", "", False, None, True)
S3 = Store("s3", "s3://", True, "TRITON_AWS_MOUNT_DIRECTORY", True)
GCS = Store("gcs", "gs://", True, "TRITON_GCS_MOUNT_DIRECTORY", False)
AZURE = Store("azure", "as://", True, "TRITON_AZURE_MOUNT_DIRECTORY", False)
STORES: dict[str, Store] = {s.name: s for s in (LOCAL, S3, GCS, AZURE)}

# Only models of this backend get a `..` env fetched by the server (its core checks the backend name).
PARENT_ENV_BACKEND = "python"


def get(name: str) -> Store:
    store = STORES.get(name)
    if store is None:
        raise StubforgeError(
            f"--for {name}: not a repository kind stubforge knows", hint=f"use one of {', '.join(STORES)}"
        )
    return store


# Triton's own pattern for s3 paths with an endpoint (its S3 filesystem): [http(s)://]host:port/bucket/object.
# Object names outside [0-9a-zA-Z._-] (per path component) do not match it, and the server then takes
# "host:port" for the bucket name.
_ENDPOINT_PATH = re.compile(
    r"s3://(http://|https://|)([0-9a-zA-Z\-.]+):([0-9]+)/([0-9a-z.\-]+)((?:/[0-9a-zA-Z.\-_]+)*)"
)
_OBJECT_COMPONENT = re.compile(r"[0-9a-zA-Z.\-_]+")
_BUCKET = re.compile(r"[0-9a-z][0-9a-z.\-]{1,61}[0-9a-z]")


@dataclass(frozen=True)
class S3Location:
    """An s3:// repository: the bucket, the key prefix (no leading or trailing '/'), and an endpoint when the URL
    names one (Triton's `s3://[http(s)://]HOST:PORT/BUCKET/PREFIX`)."""

    bucket: str
    prefix: str
    endpoint: str | None = None  # http://host:port or https://host:port

    @property
    def triton_url(self) -> str:
        """The --model-repository value the server understands."""
        where = self.endpoint.replace("http://", "", 1) if self.endpoint else ""
        if where and self.endpoint and self.endpoint.startswith("https://"):
            where = self.endpoint
        head = f"s3://{where}/" if where else "s3://"
        return f"{head}{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def __str__(self) -> str:
        return self.triton_url


def is_s3(text: str) -> bool:
    return text.startswith("s3://")


def parse_s3(url: str, *, endpoint_url: str | None = None) -> S3Location:
    """`s3://BUCKET/PREFIX` (endpoint from `endpoint_url` or the AWS configuration) or Triton's
    `s3://[http(s)://]HOST:PORT/BUCKET/PREFIX`. Raises StubforgeError naming the URL."""
    hint = (
        "write s3://BUCKET/PREFIX (with --endpoint-url for a non-AWS store) or s3://HOST:PORT/BUCKET/PREFIX"
    )
    if not is_s3(url):
        raise StubforgeError(f"{url!r} is not an s3:// URL", hint=hint)
    url = _clean(url)
    match = _ENDPOINT_PATH.fullmatch(url)
    if match:
        scheme, host, port, bucket, rest = match.groups()
        endpoint = f"{scheme or 'http://'}{host}:{port}"
        if endpoint_url and endpoint_url.rstrip("/") != endpoint:
            raise StubforgeError(
                f"{url} names the endpoint {endpoint} and --endpoint-url says {endpoint_url}",
                hint="give the endpoint once: in the URL (as Triton reads it) or with --endpoint-url",
            )
        return S3Location(bucket, rest.strip("/"), endpoint)
    body = url[len("s3://") :]
    if not body:
        raise StubforgeError(f"{url!r} names no bucket", hint=hint)
    bucket, _, prefix = body.partition("/")
    if re.fullmatch(r"[^/]+:[0-9]+", bucket):
        raise StubforgeError(
            f"{url!r}: {bucket} looks like HOST:PORT, but the rest is not BUCKET/PREFIX as Triton reads it "
            "(bucket: lowercase letters, digits, '.', '-'; object names: letters, digits, '.', '-', '_')",
            hint=hint,
        )
    if not _BUCKET.fullmatch(bucket):
        raise StubforgeError(
            f"{url!r}: {bucket!r} is not a valid bucket name (3-63 lowercase letters, digits, '.', '-')",
            hint=hint,
        )
    return S3Location(bucket, prefix, endpoint_url.rstrip("/") if endpoint_url else None)


def _clean(url: str) -> str:
    """What the server does first: keep s3:// and an http(s):// after it, collapse repeated '/', trim '/'."""
    rest = url[len("s3://") :]
    scheme = next((s for s in ("https://", "http://") if rest.startswith(s)), "")
    body = "/".join(part for part in rest[len(scheme) :].split("/") if part)
    return f"s3://{scheme}{body}"


def triton_safe_name(relative: str) -> bool:
    """Whether every component of an object's path matches Triton's s3 pattern (matters with an endpoint in the
    URL: a non-matching name makes the server mistake HOST:PORT for the bucket)."""
    return all(_OBJECT_COMPONENT.fullmatch(part) for part in relative.split("/") if part)
