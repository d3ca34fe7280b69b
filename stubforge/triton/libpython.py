"""Where the server will find a deployment's libpython, as data: install warns and check reports from it.

The dynamic loader looks in the stub's RUNPATH, then LD_LIBRARY_PATH (to which Triton prepends `<env>/lib` when
the model has an env), then the system's library cache. A stub whose libpython is found nowhere exits before its
first message (docs/triton-behaviour.md, "Health, failures and lifecycle": r24.10 then waits for it forever).
"""

from __future__ import annotations

import enum
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stubforge.triton.deployment import Deployment


class Where(enum.Enum):
    RUNPATH = "the stub's RUNPATH"
    ENV = "the model's env"
    LD_LIBRARY_PATH = "LD_LIBRARY_PATH"
    SYSTEM = "the system's library cache"
    # Not found:
    NOT_LINKED = "the stub links no libpython"
    ENV_UNUSABLE = "EXECUTION_ENV_PATH is not usable"
    NOT_IN_ENV = "the env has no lib/<libpython>"
    NOWHERE = "nothing provides it"


FOUND = {Where.RUNPATH, Where.ENV, Where.LD_LIBRARY_PATH, Where.SYSTEM}


@dataclass(frozen=True)
class Reachability:
    where: Where
    stub: Path
    soname: str | None  # libpython3.8.so.1.0
    directory: Path | None = None  # the RUNPATH or LD_LIBRARY_PATH entry, or the env, that provides it
    env: Path | None = None  # the env consulted, when the model has one

    @property
    def found(self) -> bool:
        return self.where in FOUND


def reachability(deployment: Deployment) -> Reachability | None:
    """None when there is no stub to ask about, or it is not a readable ELF file (a problem of its own).

    A backend's default env counts like EXECUTION_ENV_PATH: Triton applies it the same way."""
    stub = deployment.stub
    if stub is None or stub.elf_error:
        return None
    soname = stub.libpython
    if soname is None:
        return Reachability(Where.NOT_LINKED, stub.path, None)
    for directory in stub.runpath:
        if (Path(directory) / soname).exists():
            return Reachability(Where.RUNPATH, stub.path, soname, Path(directory))
    env = deployment.env
    if env is not None:
        if env.path is None:
            return Reachability(Where.ENV_UNUSABLE, stub.path, soname)
        contents = env.contents
        if contents is not None and contents.has(f"lib/{soname}"):
            return Reachability(Where.ENV, stub.path, soname, env.path, env.path)
        return Reachability(Where.NOT_IN_ENV, stub.path, soname, None, env.path)
    for entry in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if entry and (Path(entry) / soname).exists():
            return Reachability(Where.LD_LIBRARY_PATH, stub.path, soname, Path(entry))
    if soname in _system_libraries():
        return Reachability(Where.SYSTEM, stub.path, soname)
    return Reachability(Where.NOWHERE, stub.path, soname)


def system_libraries() -> set[str]:
    """Sonames in the system's library cache (ldconfig -p)."""
    return _system_libraries()


def _system_libraries() -> set[str]:
    try:
        out = subprocess.run(
            ["ldconfig", "-p"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {line.split()[0] for line in out.splitlines()[1:] if line.strip()}
