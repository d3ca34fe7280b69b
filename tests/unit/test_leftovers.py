"""Leftovers: runner extractions of killed runs are reclaimed; Triton's copies are removed only when unused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from stubforge.core import leftovers
from stubforge.runner.launcher.envmanager import EnvironmentManager
from tests.unit.test_envmanager import GOOD, make_archive


def _dead_owner(directory: Path) -> Path:
    directory.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(proc.pid).create_time()
    proc.wait()
    (directory / leftovers.OWNER_FILE).write_text(json.dumps({"pid": proc.pid, "started": started}))
    (directory / "1" / "bin").mkdir(parents=True)
    (directory / "1" / "bin" / "python3").write_bytes(b"x" * 1000)
    return directory


def test_a_killed_runs_extraction_is_reclaimed_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    orphan = _dead_owner(tmp_path / "stubforge_env_dead01")
    alive = tmp_path / "stubforge_env_live01"
    alive.mkdir()
    leftovers.write_owner(alive)  # this very process: alive
    foreign = tmp_path / "stubforge_env_noowner"
    foreign.mkdir()  # no owner file: not ours to judge
    manager = EnvironmentManager()
    try:
        extracted = manager.resolve(make_archive(tmp_path / "env.tar.gz", GOOD))
        assert not orphan.exists() and alive.exists() and foreign.exists()
        assert leftovers.owner_alive(extracted.parent) is True
    finally:
        manager.close()


def test_a_sigkilled_run_leaves_a_directory_the_next_one_removes(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "env.tar.gz", GOOD)
    code = (
        "import sys, tempfile; tempfile.tempdir = sys.argv[2]\n"
        "from pathlib import Path\n"
        "from stubforge.runner.launcher.envmanager import EnvironmentManager\n"
        "print(EnvironmentManager().resolve(Path(sys.argv[1])), flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    work = tmp_path / "tmp"
    work.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(archive), str(work)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    assert proc.stdout is not None
    extracted = Path(proc.stdout.readline().strip())
    proc.kill()
    proc.wait(timeout=30)
    assert extracted.exists()  # SIGKILL: nothing could clean up
    found = leftovers.clean(dry_run=True, triton=False, tmp=work)
    assert [f.path for f in found] == [str(extracted.parent)] and found[0].size > 0
    assert extracted.exists()  # a dry run removes nothing
    assert leftovers.clean(triton=False, tmp=work) == found and not extracted.parent.exists()


def test_triton_leftovers_only_when_unused(tmp_path: Path) -> None:
    unused_env = tmp_path / "python_env_AbC123"
    (unused_env / "0" / "bin").mkdir(parents=True)
    (unused_env / "0" / "bin" / "activate").write_text("")
    used_env = tmp_path / "python_env_Zz9999"
    (used_env / "0" / "bin").mkdir(parents=True)
    (used_env / "0" / "bin" / "activate").write_text("")
    copy = tmp_path / "folderQwErTy"
    copy.mkdir()
    (copy / "config.pbtxt").write_text('name: "m"\n')
    not_triton = tmp_path / "folder_mine"
    not_triton.mkdir()
    (not_triton / "config.pbtxt").write_text("")
    other = tmp_path / "python_env_userdir"  # not Triton's template
    other.mkdir()
    # A process running from the used env (as a live server's stub does).
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=str(used_env / "0"))
    try:
        time.sleep(0.2)
        found = {Path(f.path): f.kind for f in leftovers.triton_leftovers(tmp_path)}
    finally:
        holder.kill()
        holder.wait()
    assert found == {unused_env: "triton-env", copy: "triton-model-copy"}


def test_clean_cli_removes_orphans_and_says_what(tmp_path: Path) -> None:
    orphan = _dead_owner(tmp_path / "stubforge_env_dead02")
    env = dict(os.environ, TMPDIR=str(tmp_path))
    root = str(Path(__file__).resolve().parents[2])
    listed = subprocess.run(
        [sys.executable, "-m", "stubforge", "clean", "--dry-run", "--no-triton"],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=120,
        check=True,
    )
    assert f"would remove {orphan}" in listed.stdout and orphan.exists()
    done = subprocess.run(
        [sys.executable, "-m", "stubforge", "clean", "--no-triton", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=120,
        check=True,
    )
    assert [f["path"] for f in json.loads(done.stdout)["removed"]] == [str(orphan)] and not orphan.exists()
