"""An s3:// repository served by a real tritonserver (Triton 2.51) from moto's S3 server on 127.0.0.1
(docs/triton-behaviour.md, "Repositories in object stores (s3)").

One repository, pushed with `stubforge push`: a model with a per-model 3.8 stub and its tar.gz env inside the
model directory, and a model with a per-model 3.10 stub whose env is shared beside the models
(`$$TRITON_MODEL_DIRECTORY/../py310.tar.gz`, fetched by the server itself). `verify s3://...` loads both with
the right Python and leaves nothing in /tmp; a client gets correct answers; an unchanged repository pushes
nothing; a directory env is refused by push and flagged by `check --for s3`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from stubforge.server.verify import tritonserver as server_mod
from tests.e2e.conftest import World, by_name, write_model
from tests.e2e.test_real_server import CLIENT

pytestmark = pytest.mark.e2e

BUCKET = "models"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
MODELS = ("m38_stub_env", "m310_shared_env")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint(world: World) -> Iterator[str]:
    """moto's S3 server on a free port of 127.0.0.1, with an empty bucket."""
    port = _free_port()
    log = open(world.root / "moto.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert server.poll() is None, (world.root / "moto.log").read_text()
                assert time.monotonic() < deadline, "moto_server did not listen within 60 s"
                time.sleep(0.2)
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **_boto_keys()).create_bucket(
            Bucket=BUCKET
        )
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _boto_keys() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }


def _env(world: World, **extra: str) -> dict[str, str]:
    return world.env(**CREDENTIALS, **extra)


@pytest.fixture(scope="module")
def repository(world: World) -> Path:
    """Set up with stubforge commands only, as a user would."""
    repo = world.root / "s3repo"
    for minor in ("3.8", "3.10"):
        world.stubforge("stubs", "import", str(world.wheel_stub(minor)), "--triton", "24.10")
    m38 = write_model(repo, "m38_stub_env")
    world.stubforge("pack-env", "--python", "3.8", "--model", str(m38), "-q")
    world.stubforge("install", "model", str(m38), "--python", "3.8")
    m310 = write_model(repo, "m310_shared_env")
    world.stubforge("pack-env", "--python", "3.10", "-o", str(repo / "py310.tar.gz"), "-q")
    world.stubforge("param", str(m310), str(repo / "py310.tar.gz"), "--write")
    world.stubforge("install", "model", str(m310), "--python", "3.10")
    assert "$$TRITON_MODEL_DIRECTORY/../py310.tar.gz" in (m310 / "config.pbtxt").read_text()
    assert (m310 / "config.pbtxt.bak").is_file()  # left behind locally, never pushed
    return repo


@pytest.fixture(scope="module")
def pushed(world: World, s3_endpoint: str, repository: Path) -> dict[str, object]:
    url = f"s3://{s3_endpoint}/{BUCKET}/prod/repo"
    started = time.monotonic()
    first = json.loads(world.stubforge("push", str(repository), url, "--json", env=_env(world)).stdout)
    return {"url": url, "first": first, "seconds": time.monotonic() - started}


def test_push_uploads_the_repository_once(world: World, pushed: dict[str, object], repository: Path) -> None:
    first = pushed["first"]
    assert isinstance(first, dict)
    assert sorted(first["uploaded"]) == [
        "m310_shared_env/1/model.py",
        "m310_shared_env/config.pbtxt",
        "m310_shared_env/triton_python_backend_stub",
        "m38_stub_env/1/model.py",
        "m38_stub_env/config.pbtxt",
        "m38_stub_env/env.tar.gz",
        "m38_stub_env/triton_python_backend_stub",
        "py310.tar.gz",
    ]
    assert any(s.endswith(".bak") for s in first["skipped"])
    assert any(s.endswith(".stubforge.json") for s in first["skipped"])
    started = time.monotonic()
    again = json.loads(
        world.stubforge("push", str(repository), str(pushed["url"]), "--json", env=_env(world)).stdout
    )
    second = time.monotonic() - started
    assert again["uploaded"] == [] and again["unchanged"] == 8 and again["bytes_uploaded"] == 0
    print(
        f"\npush (first): {pushed['seconds']:.1f} s, {first['bytes_uploaded'] / 1e6:.1f} MB; unchanged: {second:.1f} s"
    )


def test_verify_s3_repository_on_the_right_pythons(world: World, pushed: dict[str, object]) -> None:
    # /tmp is shared with other runs: count only what this one made. Its own temporary files go to a private
    # TMPDIR; the server's env extractions (always /tmp/python_env_*, TMPDIR ignored) are named in its log.
    private_tmp = world.root / "verify-tmp"
    private_tmp.mkdir(exist_ok=True)
    before_folders = {n for n in os.listdir("/tmp") if n.startswith("folder")}
    started = time.monotonic()
    proc = world.stubforge(
        "verify",
        str(pushed["url"]),
        "--pytriton",
        "--json",
        check=False,
        env=_env(world, TMPDIR=str(private_tmp)),
    )
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    models = by_name(report)
    assert report["ok"] and sorted(models) == sorted(MODELS), json.dumps(report, indent=1)
    for name, minor in (("m38_stub_env", "3.8"), ("m310_shared_env", "3.10")):
        m = models[name]
        assert m["loaded"] and m["response_ok"] and m["python"] == minor, m
        # Both envs were extracted from archives the server downloaded (the shared one fetched by itself).
        assert "/tmp/python_env_" in m["libpython"], m
    # Nothing of this run stays: model copies went to the run's own mount directory (no /tmp/folder*), which
    # was removed with its scratch directory, and the env extractions the server logged are gone.
    assert {n for n in os.listdir("/tmp") if n.startswith("folder")} <= before_folders
    assert list(private_tmp.iterdir()) == []
    extracted = set(re.findall(r"/tmp/python_env_\w{6}", Path(report["log"]).read_text()))
    assert extracted and not [p for p in extracted if os.path.exists(p)]
    assert "TRITON_AWS_MOUNT_DIRECTORY" not in proc.stderr
    print(f"\nverify s3://: {seconds:.1f} s; push + verify: {seconds + float(pushed['seconds']):.1f} s")


def test_client_gets_correct_answers_from_the_s3_repository(world: World, pushed: dict[str, object]) -> None:
    install = server_mod.from_binary(world.server_root / "bin" / "tritonserver")
    # The server wants a stub in backends/python even when every model brings its own.
    backends = world.root / "s3backends"
    if not backends.is_dir():
        shutil.copytree(world.server_root / "backends", backends)
        shutil.copy2(world.wheel_stub("3.8"), backends / "python" / "triton_python_backend_stub")
    mount = world.root / "s3-copies"
    mount.mkdir(exist_ok=True)
    env = _env(world, TRITON_AWS_MOUNT_DIRECTORY=str(mount))
    server = server_mod.RunningServer(
        install,
        str(pushed["url"]),
        backends,
        world.root / "s3-client-run.log",
        env,
        ["python"],
        cwd=world.root,
    )
    try:
        server.wait_live(60)
        proc = subprocess.run(
            [str(world.python), "-c", CLIENT, f"127.0.0.1:{server.http_port}", *MODELS],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr + server.log_since(0)[-3000:]
        copies = sorted(p.name for p in mount.iterdir())
    finally:
        server.stop()
        server.cleanup()
    answers = json.loads(proc.stdout)
    for name, minor in (("m38_stub_env", "3.8"), ("m310_shared_env", "3.10")):
        assert answers[name]["sum_ok"] and answers[name]["diff_ok"], answers
        assert answers[name]["runtime"].startswith(f"{minor} numpy 1."), answers
    # The server honoured TRITON_AWS_MOUNT_DIRECTORY: one copy per model plus the fetched shared env.
    assert len(copies) == 3 and all(c.startswith("folder") for c in copies), copies
    assert list(mount.iterdir()) == []  # a clean stop removes them
    shutil.rmtree(mount)


def test_directory_env_refused_by_push_and_flagged_by_check(world: World, s3_endpoint: str) -> None:
    repo = world.root / "s3dirrepo"
    m = write_model(repo, "dir_env", parameters={"EXECUTION_ENV_PATH": "$$TRITON_MODEL_DIRECTORY/env"})
    (m / "env" / "bin").mkdir(parents=True)
    (m / "env" / "bin" / "activate").write_text("export PATH=...\n")
    (m / "env" / "bin" / "python3").symlink_to(sys.executable)
    proc = world.stubforge(
        "push", str(repo), f"s3://{s3_endpoint}/{BUCKET}/dir", check=False, env=_env(world)
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "refusing to push a directory env" in proc.stderr and "No module named 'numpy'" in proc.stderr
    assert "hint:" in proc.stderr and "pack-env" in proc.stderr
    listed = boto3.client("s3", endpoint_url=f"http://{s3_endpoint}", region_name="us-east-1", **_boto_keys())
    assert "Contents" not in listed.list_objects_v2(Bucket=BUCKET, Prefix="dir/")
    local = world.stubforge("check", str(repo), "--json", check=False)
    assert not [f for f in json.loads(local.stdout)["models"][0]["findings"] if f["check"] == "store-env-dir"]
    s3 = world.stubforge("check", str(repo), "--for", "s3", "--json", check=False)
    found = {f["check"]: f for f in json.loads(s3.stdout)["models"][0]["findings"]}
    assert s3.returncode == 1 and found["store-env-dir"]["level"] == "ERROR"
