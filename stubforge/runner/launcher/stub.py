"""Start one stub process the way Triton does, talk to it over its region, watch its health
(docs/triton-behaviour.md, "The stub process and its probe" to "Health, failures and lifecycle").

Activation follows the release (`Release.activation`): Activation.BASH_SOURCE_ACTIVATE sources
`<env>/bin/activate` in bash and execs the stub (every argument quoted here, unlike upstream);
Activation.EXECV_WITH_VARIABLES sets VIRTUAL_ENV, PATH and LD_LIBRARY_PATH and execs directly.
On top of what any release does: a start-up timeout (a stub that dies or never answers is an error, never the
hang of releases with `hangs_on_dead_stub`) and an optional execute timeout.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import posix_ipc
import psutil

from stubforge.core import releases
from stubforge.core.releases import Activation
from stubforge.errors import StubforgeError
from stubforge.runner.ipc import layout
from stubforge.runner.ipc.region import Region
from stubforge.runner.status import TritonStatus

POLL_S = 0.05
UNHEALTHY_AFTER_S = 2.0  # no heartbeat for this long (it beats every 0.3 s): the stub is stopped or frozen


class StubError(StubforgeError):
    """The stub could not start, died, hung, or broke the protocol. `status`, when set, is what tritonserver
    answers for the same failure."""

    status: TritonStatus | None = None


class ModelError(StubforgeError):
    """The model raised, or its response carries an error: the Python error type, message and traceback, and
    `status`, what a Triton client receives for it (code and message as tritonserver sends them)."""

    def __init__(
        self,
        message: str,
        hint: str = "",
        *,
        details: str = "",
        error_type: str = "",
        status: TritonStatus | None = None,
    ) -> None:
        super().__init__(message, hint, details=details)
        self.error_type = error_type
        self.status = status or TritonStatus("INTERNAL", message)


@dataclass
class LaunchSpec:
    stub: Path
    model_path: Path
    python_lib: Path
    instance: str
    runtime_dir: str = "DEFAULT"
    env_dir: Path | None = None
    release: releases.Release = releases.DEFAULT  # whose launcher to imitate
    base_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    shm_prefix: str = "triton_python_backend_shm_region_"
    default_size: int = 1 << 20
    growth: int = 1 << 20

    @property
    def activation(self) -> Activation:
        return self.release.activation


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"exit status {code}"


def command_for(spec: LaunchSpec, argv: list[str]) -> tuple[list[str], dict[str, str]]:
    env = dict(spec.base_env)
    if spec.activation is Activation.BASH_SOURCE_ACTIVATE:
        quoted = " ".join(shlex.quote(a) for a in argv)
        if spec.env_dir is None:
            return ["bash", "-c", f"exec {quoted}"], env
        activate = shlex.quote(str(spec.env_dir / "bin" / "activate"))
        lib = shlex.quote(str(spec.env_dir / "lib"))
        script = f'source {activate} && exec env LD_LIBRARY_PATH={lib}:"$LD_LIBRARY_PATH" {quoted}'
        return ["bash", "-c", script], env
    if spec.env_dir is not None:
        env["VIRTUAL_ENV"] = str(spec.env_dir)
        env["PATH"] = os.pathsep.join(p for p in (str(spec.env_dir / "bin"), env.get("PATH", "")) if p)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(spec.env_dir / "lib"), env.get("LD_LIBRARY_PATH", "")) if p
        )
        env.pop("PYTHONHOME", None)
    return argv, env


def place(sizes: list[int], start: int = layout.CONTROL_SIZE) -> list[int]:
    """The offsets request() writes tensors of these sizes at."""
    offsets = []
    at = start
    for size in sizes:
        at = layout.align(at)
        offsets.append(at)
        at += size
    return offsets


class StubProcess:
    def __init__(self, spec: LaunchSpec, startup_timeout: float = 30.0) -> None:
        self.spec = spec
        self.region = Region(spec.shm_prefix + str(uuid.uuid4()), spec.default_size, spec.growth)
        self.log = tempfile.TemporaryFile(prefix="stubforge-stub-")  # noqa: SIM115 - closed in close()
        self.info: dict[str, Any] = {}
        self.exit_reason: str | None = None
        argv = [
            str(spec.stub),
            str(spec.model_path),
            self.region.name,
            str(spec.default_size),
            str(spec.growth),
            str(os.getpid()),
            str(spec.python_lib),
            "0",  # the control block's offset in the region
            spec.instance,
            spec.runtime_dir,
        ]
        command, env = command_for(spec, argv)
        try:
            # Its own session: Ctrl-C in the terminal reaches the parent, which then finalizes the model cleanly.
            self.process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            self.region.close()
            self.log.close()
            raise StubError(f"cannot start {spec.stub}: {exc.strerror}", hint="is it executable?") from exc
        try:
            deadline = time.monotonic() + startup_timeout
            self._wait_attached(deadline)
            # Both sides have the objects open: the names are no longer needed, and nothing can leak from now on.
            self.region.unlink()
            self.info = self._wait(max(0.0, deadline - time.monotonic()), "starting")
        except BaseException:
            self.kill()
            self.region.close()
            self.log.close()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self, limit: int = 4000) -> str:
        if self.log.closed:
            return ""
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-limit:]

    def _descendants(self) -> list[psutil.Process]:
        """What the model started, while the stub lives to say so (a child that left the process group with
        setsid is found only this way)."""
        if not self.alive():
            return []
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            return []

    def kill(self, strays: list[psutil.Process] | None = None) -> None:
        """The stub and everything the model started: its process group (the stub leads its own session, and
        a forked child stays in it) and the descendants seen while it lived."""
        strays = list(strays or []) + self._descendants()
        # While any member of the group lives its id cannot be reused, so this reaches only our processes.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        for stray in strays:
            with contextlib.suppress(psutil.Error):
                stray.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def _dead(self, doing: str) -> StubError:
        code = self.process.returncode
        self.exit_reason = describe_exit(code)
        return StubError(
            f"the stub for {self.spec.instance} ended with {self.exit_reason} while {doing}",
            hint=_hint_for(self.output(), self.spec),
            details=self.output().strip(),
        )

    def _wait_attached(self, deadline: float) -> None:
        """The stub's bare post once it has opened the region and both semaphores."""
        while True:
            try:
                self.region.to_parent.acquire(POLL_S)
                return
            except posix_ipc.BusyError:
                pass
            if not self.alive():
                raise self._dead("starting")
            if time.monotonic() > deadline:
                self.kill()
                self.exit_reason = "timeout"
                raise StubError(
                    f"the stub for {self.spec.instance} did not open its shared memory in time; it was killed",
                    hint="raise --startup-timeout if the machine is very slow",
                    details=self.output().strip(),
                )

    def _wait(self, timeout: float | None, doing: str) -> dict[str, Any]:
        self.await_answer(timeout, doing)
        return self.region.read_message()

    def await_answer(self, timeout: float | None, doing: str) -> None:
        """Wait for the stub's post; a stub that died, froze or overran `timeout` is an error (and killed)."""
        started = time.monotonic()
        try:
            self.region.to_parent.acquire(POLL_S)
            return
        except posix_ipc.BusyError:
            pass
        # Slow: watch the process, its heartbeat and the deadline between polls.
        deadline = None if timeout is None else started + timeout
        beat, beat_at = self.region.heartbeat(), time.monotonic()
        while True:
            try:
                self.region.to_parent.acquire(POLL_S)
                return
            except posix_ipc.BusyError:
                pass
            if not self.alive():
                raise self._dead(doing)
            now = time.monotonic()
            current = self.region.heartbeat()
            if current != beat:
                beat, beat_at = current, now
            elif beat and now - beat_at > UNHEALTHY_AFTER_S:
                self.kill()
                self.exit_reason = "unhealthy"
                raise StubError(
                    f"Stub process '{self.spec.instance}' is not healthy: no heartbeat for "
                    f"{UNHEALTHY_AFTER_S:.0f} s while {doing}; it was killed",
                    hint="the process was stopped or frozen (SIGSTOP, swapped out, a debugger)",
                )
            if deadline is not None and now > deadline:
                self.kill()
                self.exit_reason = "timeout"
                raise StubError(
                    f"the stub for {self.spec.instance} did not finish {doing} within {timeout:.0f} s; "
                    "it was killed",
                    hint="raise the timeout if the model is just slow (--startup-timeout / --execute-timeout)",
                    details=self.output().strip(),
                )

    def message_end(self) -> int:
        """The first byte after the stub's last message: where an answer to it may be written."""
        return self.region.message_end()

    def request(
        self,
        header: dict[str, Any],
        arrays: list[np.ndarray] | None = None,
        timeout: float | None = None,
        start: int = layout.CONTROL_SIZE,
    ) -> dict[str, Any]:
        """Send one message with its tensors (laid out from `start`, each aligned, in order; see place());
        return the stub's answer. Tensors are written once each."""
        if not self.alive() or self.exit_reason:
            raise StubError(
                f"the stub for {self.spec.instance} is not running ({self.exit_reason or 'exited'})",
                hint="load the model again",
            )
        at = start
        specs = []
        for array in arrays or []:
            at = layout.align(at)
            specs.append((at, array))
            at += array.nbytes
        self.region.ensure(at)
        for offset, array in specs:
            self.region.write_array(offset, array)
        # The stub writes its answer past the end of this message.
        self.region.write_message(header, at)
        self.region.to_stub.release()
        return self._wait(timeout, f"answering {header.get('op')}")

    def close(self, timeout: float = 10.0) -> None:
        """finalize (when the model is up), wait for the exit, then clean everything up."""
        strays = self._descendants()
        try:
            if self.alive() and not self.exit_reason:
                with contextlib.suppress(StubError):
                    self.request({"op": "finalize"}, timeout=timeout)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=timeout)
        finally:
            self.kill(strays)
            self.region.close()
            self.log.close()


def _hint_for(output: str, spec: LaunchSpec) -> str:
    if "error while loading shared libraries" in output and "libpython" in output:
        return (
            "libpython was not found: give the model an env of the stub's Python (stubforge pack-env --model), "
            "or run with --python X.Y"
        )
    if (
        "No module named" in output
        and spec.env_dir is not None
        and not (spec.env_dir / "bin" / "python3").exists()
    ):
        return (
            f"the env {spec.env_dir} has no bin/python3: the stub takes its Python's prefix from the first "
            "python3 on PATH, which is then another Python's, so the env's packages are not seen. Pack the env "
            "with stubforge pack-env (it keeps bin/python3), or add bin/python3 of the stub's Python to it"
        )
    if "No module named 'numpy'" in output:
        numpy = "numpy" if spec.release.allows_numpy2 else f"numpy<2 for Triton {spec.release.branch}'s stubs"
        return (
            f"the stub's Python has no numpy: add numpy ({numpy}) to the model's env, or to the "
            "interpreter when the model has no env"
        )
    if "encodings" in output or "Fatal Python error" in output:
        return "the env's standard library is of another Python than the stub: pack the env for this Python"
    if not output.strip():
        return "the stub printed nothing before it ended; a crash in an extension module is the usual cause"
    return "the stub's own output is shown above"
