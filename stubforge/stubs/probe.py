"""Prove a freshly built stub is what it claims before it is cached (docs/triton-behaviour.md: "The stub
process and its probe")."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from stubforge.core import elf
from stubforge.core.emulation import INSTALL_HINT, emulation_for, unavailable_reason
from stubforge.core.pythons import Interpreter
from stubforge.core.sysroot import inside
from stubforge.core.targets import Target
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
        return _run_probe([str(stub)], env)
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


def _run_probe(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The no-argument probe: `command` is the stub, or the emulator's command line running it."""
    try:
        return subprocess.run(
            command,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BuildError(
            f"{command[-1]} did not answer the no-argument probe within {PROBE_TIMEOUT_S:.0f} s",
            hint="Triton's stub prints its usage and exits at once; this binary hangs without arguments: it is "
            "not a triton_python_backend_stub, or it waits for something (run it by hand to see)",
        ) from None


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


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def verify_for_target(
    stub: Path,
    interpreter: Interpreter,
    target: Target,
    lib_dirs: tuple[Path, ...],
    label: str | None = None,
) -> dict[str, object]:
    """A stub built for another machine: ELF machine of the target, NEEDED its libpython, a glibc (and
    libstdc++) floor the sysroot meets; then the no-argument probe under emulation when this machine has it
    (the result says when it was skipped and why)."""
    name = label or str(stub)
    info = elf.read(stub)
    if info.machine != target.elf_machine:
        raise BuildError(
            f"{name} is built for {info.arch or info.machine}, not {target.arch}",
            hint="the compiler is not a cross compiler for the target; see the build log",
        )
    soname = interpreter.libpython_soname
    if soname not in info.needed:
        linked = [n for n in info.needed if n.startswith("libpython")]
        raise BuildError(
            f"{name} links {', '.join(linked) or 'no libpython'}, not {soname} of the sysroot's Python "
            f"{interpreter.version}",
            hint="CMake picked another libpython; see the build log",
        )
    floors = _floor_check(info, target, lib_dirs, name)
    emulation = emulation_for(target.arch)
    if emulation is None:
        result: dict[str, object] = {"skipped": unavailable_reason(target.arch)}
    else:
        env = emulation.environment(dict(os.environ), target.sysroot, lib_dirs)
        try:
            proc = _run_probe(emulation.command([str(stub)]), env)
        except OSError as exc:
            raise BuildError(
                f"{name} cannot be run under emulation ({exc.strerror})", hint=INSTALL_HINT
            ) from exc
        if proc.returncode != 1 or PROBE_MESSAGE not in proc.stderr:
            raise ProbeFailed(
                proc.returncode,
                f"{name} answered the no-argument probe under {emulation.how} emulation with exit "
                f"{proc.returncode} instead of exit 1 and {PROBE_MESSAGE!r}",
                hint="exit 127 means the loader could not find a library in the sysroot (see details)",
                details=(proc.stderr or proc.stdout).strip()[-2000:],
            )
        result = {"exit": proc.returncode, "stderr": proc.stderr.strip(), "emulation": emulation.how}
    return {"elf": info.to_dict(), "probe": result, "floors_checked": floors}


def _floor_check(info: elf.ElfInfo, target: Target, lib_dirs: tuple[Path, ...], name: str) -> dict[str, str]:
    """The stub's GLIBC_/GLIBCXX_ needs against what the sysroot's libc and libstdc++ define."""
    checked: dict[str, str] = {}
    available: dict[str, str | None] = {"GLIBC": f"GLIBC_{target.libc}" if target.libc else None}
    for directory in lib_dirs:
        candidate = directory / "libstdc++.so.6"
        if candidate.exists() and "GLIBCXX" not in checked:
            real = inside(target.sysroot, candidate) if target.sysroot else candidate.resolve()
            available["GLIBCXX"] = elf.defined_versions(real, "GLIBCXX")
            break
    for family, have in available.items():
        need = info.floors.get(family)
        if not need or not have:
            continue
        need_v, have_v = need.split("_", 1)[1], have.split("_", 1)[1]
        checked[family] = f"needs {need_v}, sysroot has {have_v}"
        if _version_key(need_v) > _version_key(have_v):
            raise BuildError(
                f"{name} needs {need}, but the sysroot {target.sysroot} has only {have}: it would not start on "
                "the target",
                hint="build with a cross compiler whose C library is not newer than the board's, or on the board",
            )
    return checked
