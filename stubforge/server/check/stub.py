"""Rules on the backend and the stub that will run: backend, stub, stub-mode, libpython."""

from __future__ import annotations

import stat
from pathlib import Path

from stubforge.core import cache, releases
from stubforge.server.check.report import ERROR, WARN, ModelCheck
from stubforge.triton import deployment, libpython
from stubforge.triton.stubinfo import StubInfo


def backend(check: ModelCheck, resolved: deployment.Deployment, backends: Path | None) -> None:
    name, directory = resolved.backend, resolved.backend_dir
    if resolved.backend_kind is deployment.BackendKind.MISSING:
        check.add(
            ERROR,
            "backend",
            f"backend '{name}' is not in {backends}: Triton fails with \"unable to find "
            f"backend library for backend '{name}'\"",
            f"stubforge install backend --backends {backends} --python X.Y --name {name}",
        )
    elif resolved.backend_kind is deployment.BackendKind.INCOMPLETE:
        assert directory is not None
        lib = (directory / "libtriton_python.so").is_file()
        check.add(
            ERROR,
            "backend",
            f"{directory} has no model.py"
            + (
                " (a renamed libtriton_python.so alone fails with \"No module named 'model'\")" if lib else ""
            ),
            f"recreate it: stubforge install backend --backends {backends} --python X.Y --name {name} --force",
        )


def stub_file(check: ModelCheck, info: StubInfo) -> None:
    """stub-mode and stub: the stub's permissions and the libpython it links (sets check.stub_python)."""
    stub = info.path
    mode = stat.S_IMODE(stub.stat().st_mode)
    if mode == 0o100:
        # Left on disk by whichever server ran it: only releases that probe the stub do this.
        no_probe = releases.first_release(lambda r: not r.activation.probes_stub)
        check.add(
            WARN,
            "stub-mode",
            f"{stub} has mode 0100: left by a Triton release before {no_probe} after the stub failed its "
            "no-argument probe",
            "find why the probe failed (stubforge stubs import, or run it with no arguments), then chmod 755",
        )
    elif not mode & 0o111:
        check.add(ERROR, "stub-mode", f"{stub} is not executable (mode {mode:04o})", f"chmod 755 {stub}")
    if info.elf_error:
        check.add(ERROR, "stub", info.elf_error, "use a triton_python_backend_stub")
        return
    check.stub_python = info.python
    if check.stub_python is None:
        check.add(ERROR, "stub", f"{stub} links no libpython", "use a triton_python_backend_stub")


def no_stub(check: ModelCheck, model_dir: Path, backends: Path | None) -> None:
    """No per-model stub and none in the backend directories the resolver looked at."""
    if backends is None:
        check.add(
            WARN,
            "stub",
            "no per-model stub; which stub runs depends on the backend directory",
            "pass --backends DIR so the backend's stub and Python are checked too",
        )
    else:
        check.add(
            ERROR,
            "stub",
            f"no {cache.STUB_NAME} in {model_dir} or the backend dirs",
            "Triton requires one in backends/python even when models ship their own",
        )


def libpython_reach(
    check: ModelCheck, resolved: deployment.Deployment, stub: StubInfo, release: releases.Release
) -> None:
    """libpython: the stub's libpython must come from its RUNPATH, the env or the system's library cache."""
    reach = libpython.reachability(resolved)
    # An unusable EXECUTION_ENV_PATH, a stub without libpython and a stub and env of different Pythons are
    # findings of their own; this one is for a stub that cannot find an existing libpython.
    env_path = resolved.env.path if resolved.env is not None else None
    mismatch = env_path is not None and check.env_python and check.env_python != check.stub_python
    if (
        reach is not None
        and reach.where in (libpython.Where.NOT_IN_ENV, libpython.Where.NOWHERE)
        and not mismatch
    ):
        check.add(
            ERROR,
            "libpython",
            _unreachable(reach, release),
            "give the model an env of the stub's Python: "
            f"stubforge pack-env --stub {stub.path} --model {check.path}",
        )


def _unreachable(reach: libpython.Reachability, release: releases.Release) -> str:
    outcome = release.dead_stub_outcome(at_load=True)
    if reach.where is libpython.Where.NOT_IN_ENV:
        return (
            f"the env {reach.env} has no lib/{reach.soname}: the stub will not start and {outcome}; "
            "pack the env with the stub's Python (stubforge pack-env --stub)"
        )
    return (
        f"nothing provides {reach.soname} to the server (no RUNPATH, no EXECUTION_ENV_PATH, not in the system's "
        f"library cache): the stub will not start and {outcome}; give the model an env "
        "(stubforge pack-env --model) or put that libpython on the server's LD_LIBRARY_PATH"
    )
