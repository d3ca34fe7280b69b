"""Rules on the model's execution environment: env-path, env, env-archive, env-activate, env-hooks, env-python,
env-python3, python-mismatch, numpy, numpy2, glibcxx.

What Triton does with an env: docs/triton-behaviour.md, "EXECUTION_ENV_PATH and extraction". Archives are read
for their member list and a few small members; nothing is extracted.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from stubforge.core import elf, releases
from stubforge.envs import archive as archive_rules
from stubforge.server.check.report import ERROR, WARN, ModelCheck
from stubforge.triton import deployment
from stubforge.triton.envinfo import EnvContents
from stubforge.triton.stubinfo import StubInfo


def env_path_error(check: ModelCheck, env: deployment.EnvInfo) -> None:
    """env-path: the resolver could not turn EXECUTION_ENV_PATH into a usable path."""
    if env.error is not None:
        check.add(ERROR, "env-path", env.error.message, env.error.hint or "fix EXECUTION_ENV_PATH")


def env_contents(
    check: ModelCheck, info: deployment.EnvInfo, stub_info: StubInfo | None, release: releases.Release
) -> None:
    """Every rule on what the env holds (sets check.env_python)."""
    env_path = info.path
    stub = stub_info.path if stub_info else None
    env = info.contents
    if env_path is None:
        return
    if env is None:
        check.add(
            ERROR,
            "env",
            f"{env_path}: archive_read_open_filename() failed. ({info.read_error or 'a truncated archive'})",
            "Triton reads only tar and tar.gz: repack it (stubforge pack-env -o NAME.tar.gz)",
        )
        return
    unsafe = None if env.is_dir else _unsafe_member(env)
    if unsafe:
        # stubforge run refuses exactly this archive; the release decides what Triton does with it.
        check.add(ERROR, "env-archive", unsafe, archive_rules.unsafe_hint(release))
    _activation(check, env, env_path, release)
    check.env_python = info.python
    if check.env_python is None:
        check.add(
            ERROR,
            "env-python",
            f"{env_path} has no lib/libpythonX.Y.so.1.0: the stub cannot start in it",
            "pack it with stubforge pack-env --stub STUB (it copies the interpreter's libpython)",
        )
    elif check.stub_python and check.env_python != check.stub_python:
        check.add(
            ERROR,
            "python-mismatch",
            f"the stub embeds Python {check.stub_python}, the env carries Python "
            f"{check.env_python}: the stub exits before its first message "
            f"({release.dead_stub_outcome(at_load=True)})",
            f"pack the env for the stub: stubforge pack-env --stub {stub} --model {check.path}",
        )
    minor = check.env_python or check.stub_python
    if minor:
        _numpy_rules(check, env, env_path, minor, stub_info, release)
    if stub is not None and env.has("lib/libstdc++.so.6"):
        _glibcxx(check, env, stub)


def _activation(check: ModelCheck, env: EnvContents, env_path: Path, release: releases.Release) -> None:
    """env-activate, env-python3, env-hooks: what starting the stub in the env needs from it."""
    if not env.has("bin/activate"):
        check.add(
            ERROR,
            "env-activate",
            f'{env_path} has no bin/activate: Triton fails with "Path <env>/bin/activate does not exist"',
            "pack the env with stubforge pack-env or conda-pack (a venv archive will not do)",
        )
    if not env.has("bin/python3"):
        # docs/triton-behaviour.md, "How the embedded interpreter finds its environment": the stub's libpython
        # takes sys.prefix from the first python3 on PATH; the env's bin/ is first only if it has one.
        check.add(
            ERROR,
            "env-python3",
            f"{env_path} has no bin/python3: the stub takes its Python's prefix from the first python3 on the "
            "server's PATH, another Python's, so the env's packages are never seen (\"No module named ...\")",
            "pack the env with stubforge pack-env (it keeps bin/python3), or add bin/python3 of the stub's "
            "Python to it",
        )
    hooks = env.under("etc/conda/activate.d/")
    if hooks:
        check.add(
            WARN,
            "env-hooks",
            hooks_message(env_path, len(hooks), release),
            "set what they set in the server's environment instead",
        )


def _numpy_rules(
    check: ModelCheck,
    env: EnvContents,
    env_path: Path,
    minor: str,
    stub_info: StubInfo | None,
    release: releases.Release,
) -> None:
    numpy = _numpy(env, minor)
    if numpy is None:
        check.add(
            ERROR,
            "numpy",
            f"{env_path} has no numpy: the stub fails with \"No module named 'numpy'\"",
            "add numpy to the env"
            + ("" if release.allows_numpy2 else f" (numpy<2 for Triton {release.branch}'s stubs)"),
        )
    elif isinstance(numpy, str) and not releases.older(numpy, "2"):
        pybind11 = (stub_info.pybind11 if stub_info else None) or release.pybind11
        if releases.numpy2_breaks(numpy, pybind11):
            check.add(
                ERROR,
                "numpy2",
                f"numpy {numpy} with a stub built against pybind11 {pybind11}: tensors cross "
                'wrong ("output tensor shape does not match size of output" or silent garbage)',
                "pack the env with numpy<2, or build the stub with --pybind11 2.12.0",
            )


def hooks_message(env_path: Path, count: int, release: releases.Release) -> str:
    if release.activation.sources_activate:
        skipped = releases.first_release(lambda r: not r.activation.sources_activate)
        return (
            f"{env_path} has conda activate.d hooks ({count}): Triton {release.branch} runs them, but from "
            f"{skipped} on bin/activate is never sourced and they will not run"
        )
    return (
        f"{env_path} has conda activate.d hooks ({count}): Triton {release.branch} does not source "
        "bin/activate, so they will not run"
    )


def _unsafe_member(contents: EnvContents) -> str | None:
    """The first archive member the runner (and r26.06+) refuses to extract, worded; None when all are safe."""
    # The same rules extraction applies: the runner refuses exactly what is flagged here.
    finding = archive_rules.audit(contents.member_list)
    if finding is None:
        return None
    return f"{contents.path}: unsafe member {finding.member!r}: {finding.reason}"


def _numpy(contents: EnvContents, minor: str) -> str | bool | None:
    """numpy's version from its dist-info; True when numpy is there without one; None when absent. Debian's
    and Ubuntu's Python (an env from a Jetson or Armbian sysroot) read dist-packages, not site-packages."""
    found: str | bool | None = None
    for site in (
        f"lib/python{minor}/site-packages/",
        "lib/python3/dist-packages/",
        f"lib/python{minor}/dist-packages/",
    ):
        for name in contents.under(site):
            match = re.fullmatch(re.escape(site) + r"numpy-([^/]+)\.dist-info/METADATA", name)
            if match:
                return match.group(1)
        found = found or (True if contents.has(site + "numpy/__init__.py") else None)
    return found


def _glibcxx(check: ModelCheck, env: EnvContents, stub: Path) -> None:
    needed = elf.read(stub).floors.get("GLIBCXX")
    data = env.read("lib/libstdc++.so.6")
    if not needed or data is None:
        return
    with tempfile.NamedTemporaryFile(suffix=".so") as fh:
        fh.write(data)
        fh.flush()
        provided = elf.defined_versions(Path(fh.name), "GLIBCXX")
    if provided and releases.older(provided, needed):
        check.add(
            ERROR,
            "glibcxx",
            f"the env's lib/libstdc++.so.6 provides up to {provided}, the stub needs {needed}: "
            f'the stub fails with "{needed}\' not found"',
            "install a newer libstdcxx-ng in the env, or remove its libstdc++ so the system's is used",
        )
