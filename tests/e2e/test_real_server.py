"""install + pack-env + verify against a real tritonserver (Triton 2.51, r24.10, from nvidia-pytriton).

One repository holds the four ways a Python model can get its Python: a per-model stub with a tar.gz env, a
python_3_8 backend with a default env, a python_3_10 backend with a directory env, and the stock backend. A
second repository holds the failures users meet: a stub whose libpython nothing provides, an env of another
Python than the stub, and numpy 2 under an r24.10 stub.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from stubforge.server.verify import tritonserver as server_mod
from tests.e2e import leaks
from tests.e2e.conftest import World, by_name, write_model

pytestmark = pytest.mark.e2e

CLIENT = r"""
import json, sys, urllib.request
import numpy as np
import tritonclient.http as httpclient

url, names = sys.argv[1], sys.argv[2:]
client = httpclient.InferenceServerClient(url)
out = {}
a = np.array([1.5, 2.0, -3.0, 4.25], dtype=np.float32)
b = np.array([10.0, 20.0, 30.0, 0.5], dtype=np.float32)
for name in names:
    client.load_model(name)
    inputs = [httpclient.InferInput("INPUT0", [4], "FP32"), httpclient.InferInput("INPUT1", [4], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = client.infer(name, inputs)
    out[name] = {
        "sum_ok": bool(np.array_equal(result.as_numpy("OUTPUT0"), a + b)),
        "diff_ok": bool(np.array_equal(result.as_numpy("OUTPUT1"), a - b)),
        "runtime": result.as_numpy("RUNTIME")[0].decode(),
    }
print(json.dumps(out))
"""

GOOD = ("m38_stub_env", "m38_backend", "m310_dir_env", "stock")


@pytest.fixture(scope="module")
def deployment(world: World) -> dict[str, Path]:
    """Everything set up with stubforge commands only, as a user would."""
    root = world.root
    backends = root / "backends"
    shutil.copytree(world.server_root / "backends", backends)
    # What nvidia-pytriton itself does: the stock backend gets the stub of the python3 on PATH (3.8 here).
    shutil.copy2(world.wheel_stub("3.8"), backends / "python" / "triton_python_backend_stub")
    for minor in ("3.8", "3.10"):
        world.stubforge("stubs", "import", str(world.wheel_stub(minor)), "--triton", "24.10")

    repo = root / "repo"
    write_model(repo, "m38_stub_env")
    write_model(repo, "m38_backend", backend="python_3_8")
    write_model(repo, "m310_dir_env", backend="python_3_10")
    write_model(repo, "stock")
    world.stubforge("pack-env", "--python", "3.8", "--model", str(repo / "m38_stub_env"), "-q")
    world.stubforge("install", "model", str(repo / "m38_stub_env"), "--python", "3.8")
    env38 = repo / "m38_stub_env" / "env.tar.gz"
    world.stubforge("install", "backend", "--backends", str(backends), "--python", "3.8", "--env", str(env38))
    world.stubforge(
        "pack-env",
        "--python",
        "3.10",
        "--dir",
        str(repo / "m310_dir_env" / "env"),
        "--model",
        str(repo / "m310_dir_env"),
        "-q",
    )
    world.stubforge("install", "backend", "--backends", str(backends), "--python", "3.10")

    broken = root / "broken"
    write_model(broken, "no_libpython")
    world.stubforge("install", "model", str(broken / "no_libpython"), "--python", "3.8")
    write_model(broken, "wrong_python", backend="python_3_10")
    shutil.copy2(env38, broken / "wrong_python" / "env38.tar.gz")
    world.stubforge(
        "param", str(broken / "wrong_python"), str(broken / "wrong_python" / "env38.tar.gz"), "--write"
    )
    write_model(broken, "numpy2", backend="python_3_10")
    # Packed for r24.11 (pybind11 2.12, numpy 2 allowed) but served by r24.10's stub: the mistake to catch.
    world.stubforge(
        "pack-env",
        "--python",
        "3.10",
        "--triton",
        "24.11",
        "--dir",
        str(broken / "numpy2" / "env"),
        "--model",
        str(broken / "numpy2"),
        "numpy>=2",
        "-q",
    )
    # Served by the python_3_8 backend's default env: fine without any libpython on LD_LIBRARY_PATH.
    write_model(broken, "fine", backend="python_3_8")
    return {"backends": backends, "repo": repo, "broken": broken}


def _verify(
    world: World, repo: Path, backends: Path, *extra: str, ld_library_path: str
) -> tuple[int, dict[str, Any]]:
    proc = world.stubforge(
        "verify",
        str(repo),
        "--pytriton",
        "--backends",
        str(backends),
        "--json",
        *extra,
        check=False,
        timeout=600,
        env=world.env(LD_LIBRARY_PATH=ld_library_path),
    )
    assert proc.returncode in (0, 1) and proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_list_backends_reads_python_release_and_default_env(
    world: World, deployment: dict[str, Path]
) -> None:
    out = json.loads(world.stubforge("list", "--backends", str(deployment["backends"]), "--json").stdout)
    found = {b["name"]: b for b in out}
    assert set(found) == {"python", "python_3_8", "python_3_10"}
    assert (found["python"]["kind"], found["python"]["python"]) == ("stock", "3.8")
    assert found["python_3_8"]["kind"] == "python-based"
    assert (found["python_3_8"]["python"], found["python_3_8"]["triton"]) == ("3.8", "r24.10")
    assert found["python_3_8"]["default_env_python"] == "3.8"
    assert (found["python_3_10"]["python"], found["python_3_10"]["default_env"]) == ("3.10", None)
    assert all(not b["problems"] for b in out)


def _stub_modes(*roots: Path) -> dict[Path, int]:
    return {p: p.stat().st_mode for root in roots for p in root.rglob("triton_python_backend_stub")}


def test_verify_four_deployments_in_one_server(world: World, deployment: dict[str, Path]) -> None:
    before = leaks.env_dirs()
    modes = _stub_modes(deployment["repo"], deployment["backends"])
    # The stock backend's stub has no env: its libpython must be on LD_LIBRARY_PATH
    # (docs/triton-behaviour.md: "A real server to test against").
    rc, report = _verify(
        world, deployment["repo"], deployment["backends"], ld_library_path=world.ld_with_python38
    )
    models = by_name(report)
    assert rc == 0 and report["ok"], json.dumps(report, indent=1)
    assert report["server_version"] == "2.51.0" and report["server_starts"] == 1
    assert sorted(models) == sorted(GOOD)
    expected_python = {"m38_stub_env": "3.8", "m38_backend": "3.8", "m310_dir_env": "3.10", "stock": "3.8"}
    for name, minor in expected_python.items():
        m = models[name]
        assert m["loaded"] and m["response_ok"] and m["python"] == minor, m
        assert m["numpy"] and int(m["numpy"].split(".")[0]) == 1, m
        assert m["outputs"]["OUTPUT0"] == ["FP32", [1]] and m["outputs"]["RUNTIME"][0] == "BYTES"
    # Each ran the libpython of its own env: extracted archives live in /tmp/python_env_*, directory envs in place.
    assert "/tmp/python_env_" in models["m38_stub_env"]["libpython"]
    assert "/tmp/python_env_" in models["m38_backend"]["libpython"]
    assert models["m310_dir_env"]["libpython"].startswith(str(deployment["repo"] / "m310_dir_env" / "env"))
    assert models["stock"]["libpython"].startswith(world.python38_libdir)
    assert leaks.left_by_run(before, world.root) == ([], [], [])
    assert _stub_modes(deployment["repo"], deployment["backends"]) == modes  # whatever the server's probe did
    # Every model answered, so verify killed the server instead of stopping it (no shutdown count of live
    # models in its log), and still left nothing: the extracted envs its stubs ran from were removed above.
    log = Path(report["log"]).read_text()
    assert "successfully loaded 'm38_stub_env'" in log and "live models" not in log
    assert len([p for p in report["cleaned"] if p.startswith("/tmp/python_env_")]) >= 2, report["cleaned"]


def test_every_model_answers_through_tritonclient(world: World, deployment: dict[str, Path]) -> None:
    before = leaks.env_dirs()
    install = server_mod.from_binary(world.server_root / "bin" / "tritonserver")
    env = world.env(LD_LIBRARY_PATH=world.ld_with_python38)
    server = server_mod.RunningServer(
        install,
        deployment["repo"],
        deployment["backends"],
        world.root / "client-run.log",
        env,
        ["python", "python_3_8", "python_3_10"],
    )
    try:
        server.wait_live(60)
        proc = subprocess.run(
            [str(world.python), "-c", CLIENT, f"127.0.0.1:{server.http_port}", *GOOD],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            check=False,
        )
    finally:
        server.stop()
        server.cleanup()
    assert proc.returncode == 0, proc.stderr + (world.root / "client-run.log").read_text()[-3000:]
    results = json.loads(proc.stdout)
    for name in GOOD:
        assert results[name]["sum_ok"] and results[name]["diff_ok"], results[name]
    assert results["m38_stub_env"]["runtime"].startswith("3.8 numpy 1.")
    assert results["m38_backend"]["runtime"].startswith("3.8 numpy 1.")
    assert results["m310_dir_env"]["runtime"].startswith("3.10 numpy 1.")
    assert results["stock"]["runtime"].startswith("3.8 numpy 1.")
    assert leaks.left_by_run(before, world.root) == ([], [], [])


def test_failures_are_reported_and_nothing_hangs_or_leaks(world: World, deployment: dict[str, Path]) -> None:
    before = leaks.env_dirs()
    rc, report = _verify(
        world,
        deployment["broken"],
        deployment["backends"],
        "--load-timeout",
        "90",
        ld_library_path=str(world.libs),
    )
    models = by_name(report)
    assert rc == 1 and not report["ok"]
    assert models["fine"]["loaded"] and models["fine"]["response_ok"] and models["fine"]["error"] is None

    missing = models["no_libpython"]
    assert not missing["loaded"] and missing["hung"], missing
    assert "libpython3.8.so.1.0" in missing["hint"] and "libpython3.8.so.1.0" in missing["log_excerpt"]

    wrong = models["wrong_python"]
    assert not wrong["loaded"] and wrong["hung"], wrong
    assert "Python 3.8" in wrong["hint"] and "3.10" in wrong["hint"], wrong["hint"]

    numpy2 = models["numpy2"]
    assert numpy2["loaded"] and numpy2["python"] == "3.10", numpy2
    assert numpy2["numpy"].startswith("2.") and "pybind11 2.10.0" in numpy2["error"], numpy2
    assert "numpy<2" in numpy2["hint"]
    # fine, no_libpython (hang: killed), numpy2, wrong_python (hang): two server starts.
    assert report["server_starts"] == 2
    assert leaks.left_by_run(before, world.root) == ([], [], [])


def test_a_server_copied_out_of_the_wheel_gets_the_libs_hint(world: World, tmp_path: Path) -> None:
    tree = tmp_path / "copied"
    (tree / "bin").mkdir(parents=True)
    shutil.copy2(world.server_root / "bin" / "tritonserver", tree / "bin" / "tritonserver")
    (tree / "backends").symlink_to(world.server_root / "backends")  # only the bundled libraries are missing
    repo = tmp_path / "repo"
    (repo / "m" / "1").mkdir(parents=True)
    (repo / "m" / "config.pbtxt").write_text('name: "m"\nbackend: "python"\n')
    (repo / "m" / "1" / "model.py").write_text("class TritonPythonModel:\n    pass\n")
    env = world.env()
    env.pop("LD_LIBRARY_PATH")
    proc = world.stubforge("verify", str(repo), "--tritonserver", str(tree), check=False, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "exited with code 127" in proc.stderr and "nvidia_pytriton.libs" in proc.stderr
    assert "Traceback" not in proc.stderr
