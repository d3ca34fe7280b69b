"""`stubforge push`: upload a model repository to s3:// the way the server will read it, sending only what changed.

What changed is decided by content, never by time: a file is uploaded when no object has its key, when the
sizes differ, or when the contents differ. Contents are compared through the object's ETag when it is a plain
MD5 (32 hex digits: a single-part upload without SSE-KMS), which the one listing request per 1,000 objects
already returns; otherwise (multipart uploads, whose ETag is an MD5 of part MD5s, and KMS-encrypted objects)
through the SHA-256 that push stores in the object's metadata (`x-amz-meta-stubforge-sha256`), at one HEAD
request per such object. An object without either is uploaded again. Uploads run in a thread pool (boto3's
clients are thread-safe); a failed upload stops the push with its error after the running ones finish.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stubforge.progress import QUIET, Progress
from stubforge.server import s3 as s3mod
from stubforge.server.pushplan import LocalFile, plan
from stubforge.triton import stores

SHA_METADATA = "stubforge-sha256"  # x-amz-meta-stubforge-sha256
_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_JOBS = 8


@dataclass
class PushResult:
    repository: str
    destination: str
    uploaded: list[str] = field(default_factory=list)  # relative paths (would be, with dry_run)
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # objects under the prefix the repository does not have
    warnings: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    dry_run: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def push(
    repository: Path,
    destination: str,
    *,
    endpoint_url: str | None = None,
    dry_run: bool = False,
    allow_directory_env: bool = False,
    jobs: int = DEFAULT_JOBS,
    progress: Progress = QUIET,
) -> PushResult:
    """Upload the files of `repository` that differ from the objects under `destination` (s3://BUCKET/PREFIX or
    s3://HOST:PORT/BUCKET/PREFIX). With dry_run, only say which."""
    started = time.monotonic()
    location = stores.parse_s3(destination, endpoint_url=endpoint_url)
    local = plan(repository, allow_directory_env=allow_directory_env)
    result = PushResult(
        str(repository),
        location.triton_url,
        skipped=local.skipped,
        warnings=list(local.warnings),
        dry_run=dry_run,
    )
    if location.endpoint:  # the server is given HOST:PORT in the URL and matches names with its pattern
        _names_triton_can_read(local.files, result)
    client = s3mod.client(location)
    progress.step("list", location.triton_url)
    remote = {obj.key: obj for obj in s3mod.list_objects(client, location)}
    progress.step("compare", f"{len(local.files)} file(s) with {len(remote)} object(s)")
    changed = [f for f in local.files if _differs(client, location, f, remote.get(location.key(f.relative)))]
    keys = {location.key(f.relative) for f in local.files}
    result.stale = sorted(k for k in remote if k not in keys)
    result.unchanged = len(local.files) - len(changed)
    result.uploaded = [f.relative for f in changed]
    result.bytes_uploaded = sum(f.size for f in changed)
    if not dry_run and changed:
        _upload_all(client, location, changed, jobs, progress)
    result.seconds = round(time.monotonic() - started, 2)
    return result


def _names_triton_can_read(files: list[LocalFile], result: PushResult) -> None:
    for item in files:
        if not stores.triton_safe_name(item.relative):
            result.warnings.append(
                f"{item.relative}: with HOST:PORT in the repository URL the server reads only object names of "
                "letters, digits, '.', '-' and '_'; rename it"
            )


def _differs(
    client: Any, location: stores.S3Location, item: LocalFile, remote: s3mod.RemoteObject | None
) -> bool:
    if remote is None or remote.size != item.size:
        return True
    if _PLAIN_MD5.match(remote.etag):
        return remote.etag != item.digest("md5")
    try:
        head = client.head_object(Bucket=location.bucket, Key=remote.key)
    except Exception as exc:
        raise s3mod.translate(exc, location, "read") from exc
    stored = head.get("Metadata", {}).get(SHA_METADATA)
    return stored is None or stored != item.digest("sha256")


def _upload_all(
    client: Any, location: stores.S3Location, files: list[LocalFile], jobs: int, progress: Progress
) -> None:
    total = sum(f.size for f in files)
    done = {"files": 0, "bytes": 0}
    lock = threading.Lock()

    def upload(item: LocalFile) -> None:
        sha = item.digest("sha256")
        try:
            client.upload_file(
                str(item.path),
                location.bucket,
                location.key(item.relative),
                ExtraArgs={"Metadata": {SHA_METADATA: sha}},
            )
        except Exception as exc:
            raise s3mod.translate(exc, location, "upload to") from exc
        with lock:
            done["files"] += 1
            done["bytes"] += item.size
            progress.step(
                "upload",
                f"[{done['files']}/{len(files)}, {done['bytes'] / 1e6:.1f}/{total / 1e6:.1f} MB] {item.relative}",
            )

    # Largest first: the long uploads start early and the pool ends together.
    ordered = sorted(files, key=lambda f: -f.size)
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        futures = [pool.submit(upload, item) for item in ordered]
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in finished:
            error = future.exception()
            if error is not None:
                raise error
    finally:
        # On a failure or Ctrl-C no new upload starts; the running ones finish (an object is whole or absent).
        pool.shutdown(wait=True, cancel_futures=True)
