"""The CLI as a user runs it: real processes, exit codes, messages, JSON, locks and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stubforge.core import pythons
from tests.conftest import FIXTURE_SOURCES

pytestmark = pytest.mark.slow


def stubforge(*args: str, env_cache: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, STUBFORGE_CACHE=str(env_cache))
    return subprocess.run(
        [sys.executable, "-m", "stubforge", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_error_has_message_hint_and_no_traceback(cache_root: Path) -> None:
    proc = stubforge("build", "--python", "3.8", env_cache=cache_root)
    assert proc.returncode == 2
    assert "error: python_backend for r24.10 is not in the source cache" in proc.stderr
    assert "hint: run `stubforge sources fetch --triton 24.10`" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_python_lists_found(cache_root: Path) -> None:
    proc = stubforge("build", "--python", "3.99", env_cache=cache_root)
    assert proc.returncode == 2
    assert "error: no Python 3.99 found" in proc.stderr
    assert "found:" in proc.stderr and "3.8." in proc.stderr


def test_bad_release(cache_root: Path) -> None:
    proc = stubforge("sources", "list", "--json", env_cache=cache_root)
    assert proc.returncode == 0 and json.loads(proc.stdout)["releases"] == []
    proc = stubforge("build", "--python", "3.8", "--triton", "main", env_cache=cache_root)
    assert proc.returncode == 2 and "is not a Triton release" in proc.stderr


def test_json_error(cache_root: Path) -> None:
    proc = stubforge("build", "--python", "3.8", "--json", env_cache=cache_root)
    assert proc.returncode == 2
    data = json.loads(proc.stdout)
    assert data["kind"] == "SourcesError" and data["hint"]


def test_pythons_json_lists_real_interpreters(cache_root: Path) -> None:
    proc = stubforge("pythons", "--json", env_cache=cache_root)
    assert proc.returncode == 0
    found = json.loads(proc.stdout)
    minors = {".".join(i["version"].split(".")[:2]) for i in found}
    assert {"3.8", "3.10"} <= minors
    for item in found:
        assert "shims" not in Path(item["executable"]).parts
        assert item["real_path"] == os.path.realpath(item["real_path"])


def test_import_list_build_stubs_round_trip(cache_root: Path) -> None:
    proc = stubforge(
        "sources", "import", "--triton", "r24.10", "--from", str(FIXTURE_SOURCES), env_cache=cache_root
    )
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(stubforge("sources", "list", "--json", env_cache=cache_root).stdout)
    assert listing["releases"][0]["release"] == "r24.10" and listing["releases"][0]["complete"]
    assert listing["libraries"]["pybind11"] == ["2.10.0", "2.12.0"]

    proc = stubforge("build", "--python", "cp38", "--triton", "2.51.0", env_cache=cache_root)
    assert proc.returncode == 0, proc.stderr
    assert "configure" in proc.stderr and "verify" in proc.stderr  # progress lines
    assert "built (unity)" in proc.stdout

    proc = stubforge("build", "--python", "3.8", "--json", env_cache=cache_root)
    result = json.loads(proc.stdout)[0]
    assert result["cache_hit"] is True
    assert Path(result["stub"]).is_file()

    stubs = json.loads(stubforge("stubs", "--json", env_cache=cache_root).stdout)
    assert [s["python"]["minor"] for s in stubs] == ["3.8"]


def test_concurrent_builds_of_one_key_wait_on_the_lock(imported: Path) -> None:
    env = dict(os.environ, STUBFORGE_CACHE=str(imported))
    cmd = [sys.executable, "-m", "stubforge", "build", "--python", "3.8", "--json"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    hits = sorted(json.loads(o[0])[0]["cache_hit"] for o in outs)
    assert hits == [False, True]  # one built, the other waited and found the artifact


def test_interrupted_build_leaves_nothing(imported: Path) -> None:
    env = dict(os.environ, STUBFORGE_CACHE=str(imported))
    proc = subprocess.Popen(
        [sys.executable, "-m", "stubforge", "build", "--python", "3.10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        if "configure" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; nothing was cached" in err
    assert "Traceback" not in err
    assert not any((imported / "stubs").glob("*")) if (imported / "stubs").exists() else True
    assert list((imported / "builds").iterdir()) == []
    # No cmake or compiler keeps running after the interrupt.
    time.sleep(0.5)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(imported / "builds") not in ps


def test_unbuildable_interpreter_path(cache_root: Path, tmp_path: Path) -> None:
    script = tmp_path / "python3"
    script.write_text("#!/bin/sh\nexit 1\n")
    script.chmod(0o755)
    proc = stubforge("build", "--python", str(script), env_cache=cache_root)
    assert proc.returncode == 2
    assert f"error: {script}: not a working Python" in proc.stderr


def test_pythons_lists_explicit_path(cache_root: Path) -> None:
    py = pythons.resolve("3.8")
    proc = stubforge("pythons", "--python", py.executable, env_cache=cache_root)
    assert proc.returncode == 0 and py.version in proc.stdout


def test_missing_system_library_gets_the_apt_line(imported: Path) -> None:
    # Hide the system's include and library dirs from CMake's find_* calls: exactly what a machine
    # without zlib1g-dev looks like to python_backend's find_package(ZLIB REQUIRED).
    hide = "-DCMAKE_IGNORE_PATH=/usr/include;/usr/lib/x86_64-linux-gnu;/usr/lib/aarch64-linux-gnu;/usr/lib"
    proc = stubforge("build", "--python", "3.8", "--cmake-arg", hide, env_cache=imported)
    assert proc.returncode == 3, proc.stderr
    assert "error: cmake could not configure python_backend r24.10 for Python 3.8" in proc.stderr
    assert "Could NOT find ZLIB" in proc.stderr  # the log tail
    assert "hint: install the missing build dependency: apt-get install -y zlib1g-dev" in proc.stderr
    assert "(full log: " in proc.stderr
    assert json.loads(stubforge("stubs", "--json", env_cache=imported).stdout) == []


def test_lock_waiter_is_told_and_proceeds(cache_root: Path, tmp_path: Path) -> None:
    from stubforge.core import cache

    marker = tmp_path / "holder-done"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, pathlib; from stubforge.core import cache\n"
            "with cache.locked('k'):\n"
            "    print('held', flush=True); time.sleep(1.0); pathlib.Path(sys.argv[1]).touch()",
            str(marker),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, STUBFORGE_CACHE=str(cache_root)),
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    waited: list[bool] = []
    with cache.locked("k", on_wait=lambda: waited.append(True)):
        # We only get here once the holder finished its work inside the lock.
        assert marker.exists()
    holder.wait(timeout=30)
    assert waited == [True]
    assert holder.returncode == 0
