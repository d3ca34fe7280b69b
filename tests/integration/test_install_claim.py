"""install model / install backend claim their output atomically: of two installs at once exactly one wins,
the other fails naming the existing file, and nothing is half-written or silently replaced (issue 12, item 4).

A real interpreter binary stands in for a stub: install only needs an ELF file that links a libpython."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from stubforge.core import cache, pythons
from stubforge.errors import StubforgeError
from stubforge.server import install


@pytest.fixture
def two_stubs(tmp_path: Path, py38: pythons.Interpreter) -> tuple[Path, Path]:
    first = tmp_path / "a" / cache.STUB_NAME
    second = tmp_path / "b" / cache.STUB_NAME
    for stub, extra in ((first, b""), (second, b"\0other build")):
        stub.parent.mkdir()
        stub.write_bytes(Path(py38.real_path).read_bytes() + extra)
        stub.chmod(0o755)
    return first, second


@pytest.fixture
def model(tmp_path: Path) -> Path:
    directory = tmp_path / "repo" / "m"
    (directory / "1").mkdir(parents=True)
    (directory / "config.pbtxt").write_text('name: "m"\nbackend: "python"\n')
    return directory


def _race(work: Callable[[Path], object], stubs: tuple[Path, Path]) -> tuple[list[Path], list[BaseException]]:
    """Run `work(stub)` for both stubs in two threads; the stubs that won and the errors of the others."""
    won: list[Path] = []
    errors: list[BaseException] = []

    def run(stub: Path) -> None:
        try:
            work(stub)
            won.append(stub)
        except BaseException as exc:  # handed to the assertions
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(stub,)) for stub in stubs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return won, errors


def test_two_model_installs_after_both_checked_the_name(
    cache_root: Path, model: Path, two_stubs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both installs copy their stub only after seeing no stub in the model: the claim decides, not the check.
    both_copied = threading.Barrier(2, timeout=30)
    real_copyfile = shutil.copyfile

    def copy_then_wait(src: object, dst: object) -> object:
        result = real_copyfile(src, dst)  # type: ignore[arg-type]
        both_copied.wait()
        return result

    monkeypatch.setattr(install.shutil, "copyfile", copy_then_wait)
    # The per-model lock would serialise the two threads before the race; what it cannot cover (another cache,
    # another user) is what the claim is for.
    monkeypatch.setattr(install.cache, "locked", lambda name: _no_lock())
    won, errors = _race(lambda stub: install.install_model_stub(model, python=None, stub=stub), two_stubs)
    assert len(won) == 1 and len(errors) == 1, (won, errors)
    assert isinstance(errors[0], StubforgeError) and "already exists" in errors[0].message
    dest = model / cache.STUB_NAME
    assert dest.read_bytes() == won[0].read_bytes()
    sidecar = json.loads((model / (cache.STUB_NAME + install.SIDECAR)).read_text())
    assert sidecar["sha256"] == cache.sha256_of(dest)
    assert sorted(p.name for p in model.iterdir()) == [
        "1",
        "config.pbtxt",
        cache.STUB_NAME,
        cache.STUB_NAME + install.SIDECAR,
    ]


def test_two_model_install_processes(model: Path, two_stubs: tuple[Path, Path], tmp_path: Path) -> None:
    # Separate caches, so no shared lock: only the claim keeps one install from replacing the other.
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "stubforge", "install", "model", str(model), "--stub", str(stub)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, STUBFORGE_CACHE=str(tmp_path / f"cache{index}")),
        )
        for index, stub in enumerate(two_stubs)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert sorted(p.returncode for p in procs) == [0, 2], results
    winner = next(stub for stub, p in zip(two_stubs, procs) if p.returncode == 0)
    loser_err = next(err for p, (_, err) in zip(procs, results) if p.returncode != 0)
    assert "already exists" in loser_err or "already holds a different stub" in loser_err, loser_err
    assert "Traceback" not in loser_err
    assert (model / cache.STUB_NAME).read_bytes() == winner.read_bytes()
    sidecar = json.loads((model / (cache.STUB_NAME + install.SIDECAR)).read_text())
    assert sidecar["sha256"] == cache.sha256_of(winner)
    assert not [p for p in model.iterdir() if p.name.startswith(".")]


def test_two_backend_installs_after_both_checked_the_name(
    cache_root: Path, tmp_path: Path, two_stubs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    backends = tmp_path / "backends"
    (backends / "python").mkdir(parents=True)
    (backends / "python" / install.UTILS).write_text("# stock utils\n")
    dest = backends / "python_3_8"
    # Both installs have staged their whole directory and seen no backend of that name before either claims it.
    both_checked = threading.Barrier(2, timeout=30)
    waited = threading.local()
    real_exists = Path.exists

    def exists_then_wait(path: Path, *args: object, **kwargs: object) -> bool:
        found = real_exists(path, *args, **kwargs)  # type: ignore[arg-type]
        if path == dest and not getattr(waited, "done", False):
            waited.done = True
            both_checked.wait()
        return found

    monkeypatch.setattr(Path, "exists", exists_then_wait)
    won, errors = _race(
        lambda stub: install.install_backend(backends, python=None, stub=stub, name="python_3_8"), two_stubs
    )
    assert len(won) == 1 and len(errors) == 1, (won, errors)
    assert isinstance(errors[0], StubforgeError) and "already exists" in errors[0].message
    assert (dest / cache.STUB_NAME).read_bytes() == won[0].read_bytes()
    sidecar = json.loads((dest / install.BACKEND_SIDECAR).read_text())
    assert sidecar["stub_sha256"] == cache.sha256_of(won[0])
    assert sorted(p.name for p in backends.iterdir()) == ["python", "python_3_8"]


class _no_lock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
