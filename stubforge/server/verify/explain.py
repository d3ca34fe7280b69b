"""What a failed load means: the server log line -> the cause and the fix, the log excerpt worth showing,
the stub/env mismatch, the server's release and the first python3 on its PATH."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from stubforge.core import releases
from stubforge.errors import StubforgeError
from stubforge.triton import deployment, stubinfo

DEAD_STUB_GRACE_S = 3.0  # r25.08+ notices a dead stub itself; give it time to answer before calling it a hang
LOG_EXCERPT_LINES = 25


LOG_EXCERPT_LINES = 25


# Server log text → what to do. Order matters: the first match wins.
_EXPLANATIONS: list[tuple[str, str]] = [
    (
        r"error while loading shared libraries: (libpython(\d+\.\d+)m?\.so[\d.]*)",
        "the stub cannot find {0}: give the model an env of Python {1} (stubforge pack-env --python {1} "
        "--model {model}), or put the directory holding {0} on the server's LD_LIBRARY_PATH{where}",
    ),
    (
        r"error while loading shared libraries: (libcudart\.so\.(\d+))",
        "the GPU stub cannot find {0} (CUDA {1}'s runtime; a server's own renamed copy does not count): put the "
        "directory holding it on the server's LD_LIBRARY_PATH (a CUDA {1} toolkit's lib64), copy it into the "
        "model env's lib/, or build the stub against the server's CUDA (stubforge build --gpu --cuda PATH)",
    ),
    (
        r"Fatal Python error|No module named 'encodings'|init_fs_encoding",
        "the stub's Python could not start in this env: the env was packed for another Python version than "
        "the stub embeds; pack it with stubforge pack-env --stub {stub} --model {model}",
    ),
    (
        r"No module named 'numpy'",
        "numpy is not importable where the stub runs (the model's env, or without one the first python3 on "
        "the server's PATH) and the stub needs it: install numpy<2 there, or give the model an env "
        "(stubforge pack-env --model {model})",
    ),
    (
        r"numpy.core.multiarray failed to import|compiled using NumPy 1\.x cannot be run in\s+NumPy 2",
        "numpy 2 in the env of a stub built against pybind11 < 2.12: pack the env with numpy<2 or build the "
        "stub with --pybind11 2.12.0",
    ),
    (
        r"unexpected directory name '([^']+)' for model '([^']+)'",
        "the config.pbtxt in {0}/ names the model {1}: the name must equal the directory name",
    ),
    (
        r"Path (\S+)/bin/activate does not exist",
        "the env {0} has no bin/activate: it was not made by stubforge pack-env or conda-pack, or its "
        "extracted copy in /tmp was deleted while the server ran (a /tmp cleaner); repack it with "
        "stubforge pack-env --model {model}",
    ),
    (
        r"Failed to get the canonical path for \S*/folder\w+/\.\./(\S+?)\.(?:;|\"|\s|$)",
        "the env {0} lies beside the model in an object store, and the server fetches such an env only for "
        'backend "python": put it inside the model directory ($$TRITON_MODEL_DIRECTORY/env.tar.gz), or give '
        "the backend a default env (stubforge install backend --env)",
    ),
    (
        r"Failed to give execute permission to triton_python_backend_stub in (\S+)",
        "the model's copy is read-only and its stub {0} lost the execute bit on the way (object stores keep no "
        "modes): bake the stub into the image as a python_3_X backend (stubforge install backend) instead",
    ),
    (
        r"Stub process .* is not healthy",
        "the stub stopped answering (killed, or out of memory); see the log excerpt",
    ),
    (
        r"unable to find backend library for backend '([^']+)'",
        "there is no backend {0} in {backends}; a Python-based one is made with "
        "stubforge install backend --backends {backends} --python X.Y --name {0}",
    ),
]


_LOG_PREFIX = re.compile(r"^[IWE]\d{4} ")


_CONFIG_TEXT = re.compile(r"^\s*([A-Za-z_]+\s*[:{]|[}\]]|$)")


def excerpt_of(text: str, lines: int = LOG_EXCERPT_LINES) -> str:
    """Warnings, errors and whatever the stub printed; not the verbose info lines nor config dumps."""
    kept = [
        line
        for line in text.splitlines()
        if (line.startswith(("E", "W")) and _LOG_PREFIX.match(line))
        or (not _LOG_PREFIX.match(line) and not _CONFIG_TEXT.match(line))
    ]
    return "\n".join(kept[-lines:])


def explain(
    text: str,
    *,
    stub: Path | None = None,
    model: Path | None = None,
    env: dict[str, str] | None = None,
    backends: Path | None = None,
) -> str | None:
    for pattern, hint in _EXPLANATIONS:
        match = re.search(pattern, text)
        if match:
            groups = [g for g in match.groups() if g]
            where = ""
            if "{where}" in hint and env is not None:
                libdir = path_python_libdir(env)
                if libdir and (Path(libdir) / groups[0]).exists():
                    where = f" (the first python3 on PATH has it in {libdir})"
            return hint.format(
                *groups,
                stub=stub or "STUB",
                model=model or "MODEL_DIR",
                where=where,
                backends=backends or "BACKENDS_DIR",
            )
    return None


def model_stub(model_dir: Path, backends: Path) -> Path | None:
    """The stub Triton starts for a model: its own, its Python-based backend's, or the stock backend's."""
    try:
        stub = deployment.resolve(model_dir, backends=backends).stub
    except StubforgeError:
        return None
    return stub.path if stub is not None else None


def env_mismatch(model_dir: Path, backends: Path) -> str | None:
    """The stub a model will start and the env it gets, when their Pythons differ: a stub that cannot start."""
    try:
        resolved = deployment.resolve(model_dir, backends=backends)
    except StubforgeError:
        return None
    stub, env = resolved.stub, resolved.env
    if deployment.Problem.PYTHON_MISMATCH not in resolved.problems or stub is None or env is None:
        return None
    return (
        f"the stub {stub.path} embeds Python {stub.python}, but the env {env.path} carries Python {env.python}: "
        f"pack the env for that stub (stubforge pack-env --stub {stub.path} --model {model_dir})"
    )


def numpy_version(numpy_dir: str | None) -> str | None:
    """From the dist-info beside the numpy package the stub mapped, else its version.py."""
    if not numpy_dir:
        return None
    for meta in sorted(Path(numpy_dir).parent.glob("numpy-*.*-info")):
        match = re.match(r"numpy-([^-]+)\.(?:dist|egg)-info$", meta.name)
        if match:
            return match.group(1)
    try:
        text = (Path(numpy_dir) / "version.py").read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"^(?:full_)?version\s*(?::\s*str\s*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
    return match.group(1) if match else None


def stub_pybind11(stub: str | None, server_version: str | None) -> str | None:
    """The pybind11 a stub was built with: its stubforge manifest, else the release's pin."""
    if stub:
        pybind11 = stubinfo.ManifestFacts.of(stubinfo.read_manifest(Path(stub))).pybind11
        if pybind11:
            return pybind11
    release = release_of(server_version)
    return release.pybind11 if release else None


def release_of(server_version: str | None) -> releases.Release | None:
    """The release of a running server from the version it reports (2.51.0 → r24.10); None when unknown."""
    if not server_version:
        return None
    try:
        return releases.as_release(server_version)
    except StubforgeError:
        return None


def probe_path_python(env: dict[str, str]) -> tuple[str | None, str | None, str | None]:
    """(path, X.Y, libdir) of the first python3 on the server's PATH: a model without an env runs in it."""
    python = shutil.which("python3", path=env.get("PATH"))
    if not python:
        return None, None, None
    code = "import sys, sysconfig; print('%d.%d' % sys.version_info[:2], sysconfig.get_config_var('LIBDIR') or '')"
    try:
        out = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=30, check=False, env=env, cwd="/"
        ).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return python, None, None
    return python, (out[0] if out else None), (out[1] if len(out) > 1 else None)


def path_python_libdir(env: dict[str, str]) -> str | None:
    return probe_path_python(env)[2]


def path_python(env: dict[str, str]) -> tuple[str | None, str | None]:
    path, minor, _ = probe_path_python(env)
    return path, minor


def dead_stub_message(name: str, release: releases.Release | None) -> str:
    """What a load that waits on a dead stub means on the server's release."""
    dead = f"the stub of {name} exited before it started the model and the server"
    if release is None:
        since = releases.first_release(lambda r: not r.hangs_on_dead_stub)
        return (
            f"{dead} did not report it within {DEAD_STUB_GRACE_S:.0f} s (Triton releases before {since} wait "
            "forever); the server was killed"
        )
    if release.hangs_on_dead_stub:
        return f"{dead} waits for it forever (the Triton {release.branch} hang); the server was killed"
    return (
        f"{dead} did not report it within {DEAD_STUB_GRACE_S:.0f} s (Triton {release.branch} gives up on a "
        "dead stub itself, later); the server was killed"
    )
