"""push against moto's S3 in-process (mock_aws): what travels, what is compared, what is refused."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from stubforge.cli import cli
from stubforge.errors import StubforgeError
from stubforge.progress import EventLog
from stubforge.server import push as push_mod
from stubforge.server import pushplan
from stubforge.triton import stores

BUCKET = "models"
DEST = f"s3://{BUCKET}/prod/repo"
CONFIG = 'name: "{name}"\nbackend: "python"\n'


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_CONFIG_FILE": "/nonexistent",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def model(repo: Path, name: str, env: str | None = None) -> Path:
    directory = repo / name
    (directory / "1").mkdir(parents=True)
    (directory / "1" / "model.py").write_text("class TritonPythonModel:\n    pass\n")
    text = CONFIG.format(name=name)
    if env:
        text += f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{env}" }} }}\n'
    (directory / "config.pbtxt").write_text(text)
    return directory


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    m = model(root, "add_sub", env="$$TRITON_MODEL_DIRECTORY/../shared.tar.gz")
    (root / "shared.tar.gz").write_bytes(b"\x1f\x8b" + b"x" * 5000)
    # What stubforge and Python leave beside models, none of which may travel.
    (m / "config.pbtxt.bak").write_text("old")
    (m / "config.pbtxt.bak.1").write_text("older")
    (m / "triton_python_backend_stub.stubforge.json").write_text("{}")
    (root / "shared.tar.gz.stubforge.json").write_text("{}")
    (m / "1" / "__pycache__").mkdir()
    (m / "1" / "__pycache__" / "model.cpython-38.pyc").write_bytes(b"\0")
    (m / ".config.pbtxt.a1b2c3d4.tmp").write_text("half")
    return root


def keys(client: Any) -> dict[str, Any]:
    listed = client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {item["Key"]: item for item in listed}


def test_first_push_uploads_the_repository_and_nothing_else(aws: Any, repo: Path) -> None:
    events = EventLog()
    result = push_mod.push(repo, DEST, progress=events)
    assert sorted(keys(aws)) == [
        "prod/repo/add_sub/1/model.py",
        "prod/repo/add_sub/config.pbtxt",
        "prod/repo/shared.tar.gz",
    ]
    assert sorted(result.uploaded) == ["add_sub/1/model.py", "add_sub/config.pbtxt", "shared.tar.gz"]
    assert result.unchanged == 0 and result.bytes_uploaded == sum(
        (repo / r).stat().st_size for r in result.uploaded
    )
    assert sorted(result.skipped) == [
        "add_sub/.config.pbtxt.a1b2c3d4.tmp",
        "add_sub/1/__pycache__/",
        "add_sub/config.pbtxt.bak",
        "add_sub/config.pbtxt.bak.1",
        "add_sub/triton_python_backend_stub.stubforge.json",
        "shared.tar.gz.stubforge.json",
    ]
    assert events.steps().count("upload") == 3
    # The content hash travels as metadata, for objects whose ETag is not an MD5.
    head = aws.head_object(Bucket=BUCKET, Key="prod/repo/shared.tar.gz")
    assert (
        head["Metadata"][push_mod.SHA_METADATA]
        == hashlib.sha256((repo / "shared.tar.gz").read_bytes()).hexdigest()
    )


def test_second_push_uploads_nothing_then_only_what_changed(aws: Any, repo: Path) -> None:
    push_mod.push(repo, DEST)
    again = push_mod.push(repo, DEST)
    assert again.uploaded == [] and again.unchanged == 3 and again.bytes_uploaded == 0
    # Same size, other content: found by the hash, not the size (and never by time).
    model_py = repo / "add_sub" / "1" / "model.py"
    model_py.write_text(model_py.read_text().replace("pass", "PASS"))
    third = push_mod.push(repo, DEST)
    assert third.uploaded == ["add_sub/1/model.py"] and third.unchanged == 2
    body = aws.get_object(Bucket=BUCKET, Key="prod/repo/add_sub/1/model.py")["Body"].read()
    assert b"PASS" in body


def test_multipart_etag_compared_through_the_stored_hash(aws: Any, repo: Path) -> None:
    push_mod.push(repo, DEST)
    data = (repo / "shared.tar.gz").read_bytes()
    key = "prod/repo/shared.tar.gz"

    def multipart(metadata: dict[str, str]) -> None:
        upload = aws.create_multipart_upload(Bucket=BUCKET, Key=key, Metadata=metadata)
        part = aws.upload_part(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=data)
        aws.complete_multipart_upload(
            Bucket=BUCKET,
            Key=key,
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
        )

    multipart({push_mod.SHA_METADATA: hashlib.sha256(data).hexdigest()})
    assert "-" in keys(aws)[key]["ETag"]  # not an MD5 of the content
    assert push_mod.push(repo, DEST).uploaded == []
    multipart({})  # uploaded by another tool: no hash to compare, so it is sent again
    assert push_mod.push(repo, DEST).uploaded == ["shared.tar.gz"]


def test_dry_run_lists_and_uploads_nothing(aws: Any, repo: Path) -> None:
    result = push_mod.push(repo, DEST, dry_run=True)
    assert result.dry_run and len(result.uploaded) == 3 and keys(aws) == {}


def test_stale_objects_are_reported_not_deleted(aws: Any, repo: Path) -> None:
    aws.put_object(Bucket=BUCKET, Key="prod/repo/old_model/config.pbtxt", Body=b"x")
    aws.put_object(Bucket=BUCKET, Key="prod/repository-other/x", Body=b"x")  # a sibling prefix: not ours
    result = push_mod.push(repo, DEST)
    assert result.stale == ["prod/repo/old_model/config.pbtxt"]
    assert "prod/repo/old_model/config.pbtxt" in keys(aws)


def test_directory_env_is_refused_with_the_reason_and_the_fix(aws: Any, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    m = model(root, "dir_env", env="$$TRITON_MODEL_DIRECTORY/env")
    (m / "env" / "bin").mkdir(parents=True)
    (m / "env" / "bin" / "activate").write_text("")
    (m / "env" / "bin" / "python3").symlink_to("/bin/true")
    with pytest.raises(pushplan.PushRefused) as info:
        push_mod.push(root, DEST)
    message, hint = info.value.message, info.value.hint
    assert "dir_env" in message and "directory env (2 files)" in message
    assert "execute bits are lost" in message and "symlinks are copied" in message
    assert "No module named 'numpy'" in message and "145 s" in message
    assert "pack-env" in hint and ".tar.gz" in hint and "--allow-directory-env" in hint
    assert keys(aws) == {}  # nothing half-pushed
    allowed = push_mod.push(root, DEST, allow_directory_env=True)
    assert "dir_env/env/bin/python3" in allowed.uploaded
    assert any("--allow-directory-env" in w for w in allowed.warnings)


def test_per_model_stub_and_host_env_are_reported(aws: Any, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    host_env = tmp_path / "host.tar.gz"
    with tarfile.open(host_env, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("bin/activate"), io.BytesIO(b""))
    m = model(root, "m", env=str(host_env))
    (m / "triton_python_backend_stub").write_bytes(b"\x7fELF")
    result = push_mod.push(root, DEST)
    assert "m/triton_python_backend_stub" in result.uploaded
    assert any("execute bit" in w for w in result.warnings)
    assert any(str(host_env) in w and "not pushed" in w for w in result.warnings)


def test_names_the_server_cannot_read_with_an_endpoint_url(aws: Any, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    m = model(root, "m")
    (m / "env+1.tar.gz").write_bytes(b"z")
    plan = pushplan.plan(root)
    result = push_mod.PushResult("r", "d")
    push_mod._names_triton_can_read(plan.files, result)
    assert [w.split(":")[0] for w in result.warnings] == ["m/env+1.tar.gz"]


def test_missing_bucket(aws: Any, repo: Path) -> None:
    with pytest.raises(StubforgeError) as info:
        push_mod.push(repo, "s3://no-such-bucket/x")
    assert "'no-such-bucket' does not exist" in info.value.message
    assert "aws s3 mb s3://no-such-bucket" in info.value.hint


def test_no_credentials(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    with pytest.raises(StubforgeError) as info:
        push_mod.push(repo, "s3://127.0.0.1:9/models/x")
    assert "no AWS credentials" in info.value.message and "AWS_ACCESS_KEY_ID" in info.value.hint


def test_unreachable_endpoint(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StubforgeError) as info:
        push_mod.push(repo, f"s3://127.0.0.1:{port}/models/x")
    assert f"cannot reach the endpoint http://127.0.0.1:{port}" in info.value.message
    assert "--endpoint-url" in info.value.hint


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("http://models/x", "is not an s3:// URL"),
        ("s3://", "names no bucket"),
        ("s3://Models/x", "not a valid bucket name"),
        ("s3://127.0.0.1:9000/Bad_Bucket/x", "looks like HOST:PORT"),
    ],
)
def test_bad_urls(url: str, text: str) -> None:
    with pytest.raises(StubforgeError, match=text):
        stores.parse_s3(url)


def test_triton_urls() -> None:
    located = stores.parse_s3("s3://127.0.0.1:9000/models/prod//repo/")
    assert (located.bucket, located.prefix, located.endpoint) == (
        "models",
        "prod/repo",
        "http://127.0.0.1:9000",
    )
    assert located.triton_url == "s3://127.0.0.1:9000/models/prod/repo"
    given = stores.parse_s3("s3://models/p", endpoint_url="http://127.0.0.1:9000")
    assert given.triton_url == "s3://127.0.0.1:9000/models/p" and given.key("a/b") == "p/a/b"
    assert stores.parse_s3("s3://models").triton_url == "s3://models"
    with pytest.raises(StubforgeError, match="and --endpoint-url says"):
        stores.parse_s3("s3://127.0.0.1:9000/models/p", endpoint_url="http://other:1")


def test_cli_errors_without_traceback(repo: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["push", str(repo), "s3://Bad/x"])
    assert result.exit_code == 2 and "error:" in result.output and "hint:" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(cli, ["push", str(tmp_path / "missing"), DEST])
    assert result.exit_code == 2 and "no such directory" in result.output


def test_cli_push_and_dry_run(aws: Any, repo: Path) -> None:
    runner = CliRunner()
    dry = runner.invoke(cli, ["push", str(repo), DEST, "--dry-run", "-q"])
    assert dry.exit_code == 0, dry.output
    assert "would upload add_sub/config.pbtxt" in dry.output and "would upload 3 file(s)" in dry.output
    done = runner.invoke(cli, ["push", str(repo), DEST, "-q"])
    assert done.exit_code == 0 and "uploaded 3 file(s)" in done.output and "6 left out" in done.output
    again = runner.invoke(cli, ["push", str(repo), DEST, "-q"])
    assert "uploaded 0 file(s)" in again.output and "3 unchanged" in again.output


def test_a_failed_upload_stops_the_push_with_the_store_error(
    aws: Any, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    real_client = push_mod.s3mod.client

    def refusing_client(location: stores.S3Location) -> Any:
        client = real_client(location)
        upload = client.upload_file

        def upload_file(path: str, bucket: str, key: str, **kwargs: Any) -> None:
            if key.endswith("shared.tar.gz"):
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")
            upload(path, bucket, key, **kwargs)

        client.upload_file = upload_file
        return client

    monkeypatch.setattr(push_mod.s3mod, "client", refusing_client)
    with pytest.raises(StubforgeError) as info:
        push_mod.push(repo, DEST, jobs=1)
    assert "upload to s3://models/prod/repo" in info.value.message and "AccessDenied" in info.value.message
    assert "AWS_ACCESS_KEY_ID" in info.value.hint
    # Largest first and one at a time: nothing started after the failure.
    assert "prod/repo/shared.tar.gz" not in keys(aws)
