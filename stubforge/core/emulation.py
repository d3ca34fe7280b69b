"""Whether binaries of another architecture run on this machine, through qemu-user registered with binfmt_misc
(docs/triton-behaviour.md: "aarch64: emulation and cross-compilation").

Emulation is transparent once registered: the kernel hands every aarch64 ELF file to qemu-aarch64, including
those a tritonserver starts itself (its stubs), so nothing is prefixed with qemu. What is checked here is only
that the registration exists and points at an interpreter that exists; a clear error says what to install or
mount when it does not.

STUBFORGE_BINFMT_DIR replaces /proc/sys/fs/binfmt_misc (tests point it at an empty directory to see the error a
machine without qemu-user-static gets).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from stubforge.core.targets import Target, host_target
from stubforge.errors import StubforgeError

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
# Emulated code runs 5-20x slower; a Python start with numpy takes seconds. Every wait is scaled by this.
TIMEOUT_FACTOR = 8.0


class EmulationError(StubforgeError):
    """Binaries of the target architecture cannot run here."""


INSTALL_HINT = "apt-get install qemu-user-static binfmt-support"


@dataclass(frozen=True)
class Emulation:
    arch: str
    native: bool  # the host's own architecture: nothing to emulate
    available: bool  # the kernel runs the arch's files itself (native, or binfmt_misc): also their children
    interpreter: str | None = None  # qemu-<arch>(-static) as binfmt_misc names it
    reason: str = ""  # why it is not available
    hint: str = ""
    prefix: tuple[str, ...] = ()  # without binfmt_misc: (qemu-<arch>-static,) runs one file explicitly

    @property
    def timeout_factor(self) -> float:
        return 1.0 if self.native else TIMEOUT_FACTOR

    @property
    def how(self) -> str:
        """ "native", "binfmt" (transparent), "qemu" (only by calling qemu with the file) or "none"."""
        if self.native:
            return "native"
        if self.available:
            return "binfmt"
        return "qemu" if self.prefix else "none"

    def command(self, argv: list[str]) -> list[str]:
        """argv as it runs here: unchanged, or behind qemu when binfmt_misc does not run it."""
        return [*self.prefix, *argv] if not self.available else list(argv)

    def environment(
        self, base: dict[str, str], sysroot: Path | None, lib_dirs: tuple[Path, ...] = ()
    ) -> dict[str, str]:
        """`base` plus what lets the target's loader find the sysroot's libraries (QEMU_LD_PREFIX: qemu looks up
        the target's loader and libraries in the sysroot first)."""
        env = dict(base)
        if not self.native and sysroot is not None:
            env["QEMU_LD_PREFIX"] = str(sysroot)
        if lib_dirs:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(
                p for p in (*(str(d) for d in lib_dirs), base.get("LD_LIBRARY_PATH", "")) if p
            )
        return env

    def require(self, what: str) -> None:
        """Raise EmulationError naming `what` (e.g. 'the aarch64 tritonserver') unless it can run."""
        if not self.available:
            raise EmulationError(
                f"cannot run {what} on this {host_target().arch} machine: {self.reason}", hint=self.hint
            )

    def describe(self) -> str:
        if self.native:
            return "native"
        return f"emulated by {self.interpreter}" if self.available else f"not runnable ({self.reason})"


def binfmt_dir() -> Path:
    override = os.environ.get("STUBFORGE_BINFMT_DIR")
    return Path(override) if override else BINFMT_DIR


_QEMU_NAMES = {"aarch64": "qemu-aarch64", "x86_64": "qemu-x86_64"}
_INSTALL_HINT = (
    "apt-get install qemu-user-static binfmt-support (as root; it registers qemu-{arch} with binfmt_misc)"
)


def probe(target: Target | str) -> Emulation:
    """Whether `target`'s binaries run here: natively, or through a registered, enabled qemu-user."""
    arch = target.arch if isinstance(target, Target) else target
    if arch == host_target().arch:
        return Emulation(arch, native=True, available=True)
    name = _QEMU_NAMES.get(arch, f"qemu-{arch}")
    install = _INSTALL_HINT.format(arch=arch)
    directory = binfmt_dir()
    if not (directory / "status").is_file():
        return Emulation(
            arch,
            native=False,
            available=False,
            reason=f"binfmt_misc is not mounted at {directory}",
            hint=f"as root: mount -t binfmt_misc binfmt_misc {directory} && update-binfmts --enable {name}; "
            "this needs qemu-user-static and binfmt-support (apt-get install qemu-user-static binfmt-support)",
        )
    if directory.joinpath("status").read_text().strip() != "enabled":
        return Emulation(
            arch,
            native=False,
            available=False,
            reason=f"binfmt_misc is disabled ({directory}/status)",
            hint=f"as root: echo 1 > {directory}/status",
        )
    entry = directory / name
    if not entry.is_file():
        return Emulation(
            arch,
            native=False,
            available=False,
            reason=f"no {name} is registered with binfmt_misc ({entry} does not exist)",
            hint=install + f"; if it is installed: update-binfmts --enable {name}",
        )
    fields = _entry_fields(entry)
    interpreter = fields.get("interpreter")
    if fields.get("state") != "enabled":
        return Emulation(
            arch,
            native=False,
            available=False,
            interpreter=interpreter,
            reason=f"{name} is registered but disabled",
            hint=f"as root: update-binfmts --enable {name}",
        )
    if not interpreter or not os.path.exists(interpreter):
        return Emulation(
            arch,
            native=False,
            available=False,
            interpreter=interpreter,
            reason=f"{name} is registered with {interpreter or 'no interpreter'}, which does not exist",
            hint=install,
        )
    return Emulation(arch, native=False, available=True, interpreter=os.path.realpath(interpreter))


def _entry_fields(entry: Path) -> dict[str, str]:
    """A binfmt_misc entry: a first line 'enabled'/'disabled', then 'key value' lines."""
    fields: dict[str, str] = {}
    lines = entry.read_text(errors="replace").splitlines()
    if lines:
        fields["state"] = lines[0].strip()
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        fields.setdefault(key.strip(), value.strip())
    return fields


def emulation_for(arch: str) -> Emulation | None:
    """How to run one `arch` file here: natively, through binfmt_misc, or by calling qemu (enough for a single
    program such as a stub's probe, not for a server that starts stubs itself); None when nothing can."""
    found = probe(arch)
    if found.available:
        return found
    for name in (f"qemu-{arch}-static", f"qemu-{arch}"):
        qemu = shutil.which(name)
        if qemu:
            return Emulation(arch, native=False, available=False, interpreter=qemu, prefix=(qemu,))
    return None


def unavailable_reason(arch: str) -> str:
    found = probe(arch)
    return f"no emulation for {arch} on this {host_target().arch} machine ({found.reason}): {found.hint}"


def require(target: Target | str, what: str) -> Emulation:
    """probe() that raises EmulationError when `what` cannot run."""
    found = probe(target)
    found.require(what)
    return found
