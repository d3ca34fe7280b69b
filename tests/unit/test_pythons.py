from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from stubforge.core import pythons
from stubforge.errors import PythonNotFound
from tests.conftest import interpreter


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("3.10", (3, 10, None)),
        ("3.10.13", (3, 10, 13)),
        ("cp310", (3, 10, None)),
        ("cp38", (3, 8, None)),
        ("python3.8", (3, 8, None)),
        ("310", (3, 10, None)),
        ("3", None),
        ("banana", None),
        ("cp3.10", None),
        # virtualenv's and tox's forms (python-discovery's grammar), narrowed to one CPython 3.X
        ("cpython3.10", (3, 10, None)),
        ("CPython3.8.18", (3, 8, 18)),
        ("py310", (3, 10, None)),
        ("3.10-64", (3, 10, None)),
        ("pypy3.10", None),
        ("3.13t", None),
        ("3.10-32", None),
        (">=3.10", None),
        ("2.7", None),
    ],
)
def test_parse_version_spec(spec: str, expected: tuple[int, int, int | None] | None) -> None:
    assert pythons.parse_version_spec(spec) == expected


def test_describe_reports_real_interpreter_facts() -> None:
    py38 = interpreter("3.8")
    info = pythons.describe(py38.executable)
    assert info.minor == "3.8"
    assert info.shared and info.libpython and info.libpython.endswith("libpython3.8.so.1.0")
    assert Path(info.libpython).is_file()
    assert info.has_headers and (Path(info.include_dir) / "Python.h").is_file()
    assert info.buildable


def test_resolve_accepts_version_tag_and_path() -> None:
    by_version = pythons.resolve("3.8", require_buildable=True)
    by_tag = pythons.resolve("cp38", require_buildable=True)
    by_full = pythons.resolve(by_version.version, require_buildable=True)
    by_path = pythons.resolve(by_version.executable)
    assert by_version.real_path == by_tag.real_path == by_full.real_path == by_path.real_path
    assert by_path.source == "explicit"


def test_shims_are_never_reported(tmp_path: Path) -> None:
    shims = tmp_path / "shims"
    shims.mkdir()
    real = interpreter("3.10")
    (shims / "python3").symlink_to(real.executable)
    found = pythons.candidates(
        {"PATH": str(shims), "PYENV_ROOT": str(tmp_path / "none"), "HOME": str(tmp_path)}
    )
    assert found == []


def test_missing_version_lists_what_was_found() -> None:
    with pytest.raises(PythonNotFound) as info:
        pythons.resolve("3.99")
    assert "no Python 3.99 found" in info.value.message
    assert "3.8." in info.value.details  # the listing names real interpreters
    assert "--python" in info.value.hint


def test_a_venv_on_path_is_its_base_not_an_ambiguity(tmp_path: Path) -> None:
    base = interpreter("3.8")
    venv = tmp_path / "venv"
    subprocess.run([base.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    env = dict(os.environ, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert str(venv / "bin" / "python3") in [i.executable for i in pythons.discover(env)]
    resolved = pythons.resolve("3.8", env=env)
    assert os.path.realpath(resolved.prefix) == os.path.realpath(base.prefix)


def test_two_installs_of_one_version_are_ambiguous() -> None:
    bases = {}
    for i in pythons.discover():
        if os.path.realpath(i.prefix) == os.path.realpath(i.base_prefix):
            bases.setdefault(i.minor, []).append(i)
    twice = sorted(m for m, found in bases.items() if len({f.prefix for f in found}) > 1)
    if not twice:
        pytest.skip("needs two installs of one X.Y (here: Debian's and pyenv's 3.11)")
    with pytest.raises(PythonNotFound) as info:
        pythons.resolve(twice[0])
    assert "ambiguous" in info.value.message
    assert all(f.executable in info.value.details for f in bases[twice[0]])


def test_not_a_python_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PythonNotFound, match="no such file"):
        pythons.resolve(str(tmp_path / "python9"))
    script = tmp_path / "fake"
    script.write_text("#!/bin/sh\necho nope >&2\nexit 3\n")
    script.chmod(0o755)
    with pytest.raises(PythonNotFound, match="not a working Python"):
        pythons.resolve(str(script))


def test_interpreter_without_shared_libpython_is_refused() -> None:
    real = interpreter("3.8")
    static = pythons.Interpreter(**{**real.__dict__, "shared": False, "libpython": None})
    with pytest.raises(PythonNotFound) as info:
        pythons.check_buildable(static)
    assert "no shared libpython" in info.value.message
    assert "--enable-shared" in info.value.hint


def test_python2_is_named_unsupported() -> None:
    candidates = sorted(Path(os.path.expanduser("~/.pyenv/versions")).glob("2.*/bin/python"))
    if not candidates:
        pytest.skip("no Python 2 on this machine")
    with pytest.raises(PythonNotFound, match="which Triton's stub does not support"):
        pythons.resolve(str(candidates[0]))
