"""Prove a freshly built stub is what it claims before it is cached (docs/triton-behaviour.md: "The stub
process and its probe")."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from stubforge.core import elf
from stubforge.core.pythons import Interpreter
from stubforge.errors import BuildError

PROBE_MESSAGE = "Expected 9 arguments, found 1 arguments."
PROBE_TIMEOUT_S = 60.0
_MACHINES = {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64", "arm64": "EM_AARCH64", "ppc64le": "EM_PPC64"}


def probe(
    stub: Path, interpreter: Interpreter, library_path: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run the stub with no arguments, as the bash launcher does before every start (`Activation.probes_stub`:
    up to r25.07)."""
    env = dict(os.environ)
    dirs = list(library_path)
    if interpreter.libpython:
        dirs.append(os.path.dirname(interpreter.libpython))
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (*dirs, env.get("LD_LIBRARY_PATH", "")) if p)
    try:
        return _run_probe(stub, env)
    except OSError as exc:
        raise BuildError(
            f"{stub} cannot be run ({exc.strerror})",
            hint="it must be an executable file (chmod 755) for this machine's architecture",
        ) from exc


class ProbeFailed(BuildError):
    """The stub did not answer the no-argument probe as Triton's stub does; `exit_status` says how it ended."""

    def __init__(self, exit_status: int, message: str, hint: str = "", *, details: str = "") -> None:
        super().__init__(message, hint, details=details)
        self.exit_status = exit_status


def _run_probe(stub: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(stub)],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=PROBE_TIMEOUT_S,
        env=env,
        check=False,
    )


def verify(
    stub: Path, interpreter: Interpreter, label: str | None = None, library_path: tuple[str, ...] = ()
) -> dict[str, object]:
    """Raise BuildError unless the stub links this interpreter's libpython and answers the probe.

    label names the stub in messages when its path is a scratch file that will be gone by then."""
    name = label or str(stub)
    info = elf.read(stub)
    expected_machine = _MACHINES.get(platform.machine())
    if expected_machine and info.machine != expected_machine:
        raise BuildError(
            f"{name} is built for {info.machine}, this machine is {platform.machine()}",
            hint="build natively on the target machine",
        )
    soname = interpreter.libpython_soname
    linked = [n for n in info.needed if n.startswith("libpython")]
    if soname not in info.needed:
        raise BuildError(
            f"{name} links {', '.join(linked) or 'no libpython'}, not {soname} of Python {interpreter.version}",
            hint="CMake picked another interpreter; pass the interpreter's path with --python",
        )
    proc = probe(stub, interpreter, library_path)
    if proc.returncode != 1 or PROBE_MESSAGE not in proc.stderr:
        raise ProbeFailed(
            proc.returncode,
            f"{name} answered the no-argument probe with exit {proc.returncode} "
            f"instead of exit 1 and {PROBE_MESSAGE!r}",
            hint="exit 127 means the loader could not find a library (see details); Triton would chmod "
            "such a stub to 0100 and fail",
            details=(proc.stderr or proc.stdout).strip()[-2000:],
        )
    return {"elf": info.to_dict(), "probe": {"exit": proc.returncode, "stderr": proc.stderr.strip()}}
