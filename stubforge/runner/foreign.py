"""Models whose env is for another architecture (an aarch64 env packed for a Jetson): the runner starts a stub of
that architecture, which runs under emulation (qemu-user through binfmt_misc), with timeouts scaled for it.

The stub is the runner's own (stub_src/sfstub.c) built for the env's architecture against its Python; the
runtime Python files and the shared-memory protocol are the same on both sides (named POSIX semaphores and a
little-endian 64-bit layout on x86_64 and aarch64 alike).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stubforge.core import elf, emulation
from stubforge.core.targets import host_target
from stubforge.envs import envarch
from stubforge.errors import RunnerError, StubforgeError


@dataclass(frozen=True)
class ForeignStub:
    stub: Path
    arch: str
    emulation: emulation.Emulation

    @property
    def timeout_factor(self) -> float:
        return self.emulation.timeout_factor


def _stub_arch(stub: Path) -> str:
    if not stub.is_file():
        raise RunnerError(
            f"--runner-stub {stub}: no such file", hint="pass the runner stub built for the env"
        )
    try:
        info = elf.read(stub)
    except StubforgeError as exc:
        raise RunnerError(f"--runner-stub {stub} is not an ELF program", hint="pass a runner stub") from exc
    return info.arch or info.machine


def plan(
    model: str, env_dir: Path | None, env_path: Path | None, runner_stub: Path | None
) -> ForeignStub | None:
    """The stub to launch when it is not the runner's own for this machine; None for the usual case. Raises
    RunnerError when the env's and the stub's architectures disagree, and EmulationError when the stub's
    architecture cannot run here."""
    host = host_target().arch
    env_arch = envarch.env_arch(env_dir) if env_dir is not None else None
    if runner_stub is None:
        if env_arch is None or env_arch == host:
            return None
        raise RunnerError(
            f"the env {env_path} of {model} is built for {env_arch}; this machine is {host}, so the runner needs "
            f"its stub built for {env_arch}",
            hint=f"build it with `stubforge build --flavor runner --arch {env_arch} --sysroot DIR` and pass it "
            "with --runner-stub PATH (it runs under emulation)",
        )
    stub_arch = _stub_arch(runner_stub)
    if env_arch is not None and env_arch != stub_arch:
        raise RunnerError(
            f"--runner-stub {runner_stub} is built for {stub_arch}, but the env {env_path} of {model} is for "
            f"{env_arch}",
            hint=f"pass the runner stub built for {env_arch}",
        )
    if env_dir is None and stub_arch != host:
        raise RunnerError(
            f"--runner-stub {runner_stub} is built for {stub_arch}, but {model} has no env: without one it "
            f"would run in this {host} machine's Python",
            hint=f"give the model an env packed for {stub_arch} (stubforge pack-env --arch {stub_arch} --sysroot "
            "DIR --model MODEL_DIR)",
        )
    runs = emulation.require(stub_arch, f"the {stub_arch} runner stub {runner_stub}")
    return ForeignStub(runner_stub, stub_arch, runs)
