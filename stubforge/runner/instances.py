"""The instances of one model: the launch plan Triton follows for them, and the pool of their stub processes.

The plan is what every instance shares: the python backend's shared-memory settings, the environment activated
the way the release does it, and the stub's process environment. Each instance of every instance_group then runs
in a stub process of its own, named as Triton names it; the pool lends a free one to each execute().
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stubforge.core import pythons, releases
from stubforge.errors import RunnerError
from stubforge.runner import backend_config
from stubforge.runner.launcher import envmanager
from stubforge.runner.launcher.stub import LaunchSpec, StubProcess

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
# The python backend's --backend-config shm-* settings, validated (runner/backend_config.py).
ShmSettings = backend_config.ShmSettings
shm_settings = backend_config.shm_settings


def instance_names(config: dict[str, Any]) -> list[str]:
    """Triton's instance names, <model>_<group>_<n>, one per instance of every instance_group."""
    name = config.get("name", "")
    groups = config.get("instance_group") or [{"count": 1}]
    names = []
    for index, group in enumerate(groups):
        if group.get("kind") == "KIND_GPU":
            raise RunnerError(
                f"{name}: instance_group {index} is KIND_GPU; the runner has CPU instances only",
                hint="use KIND_CPU (or KIND_AUTO) for tests with the runner",
            )
        group_name = group.get("name") or f"{name}_{index}"
        names += [f"{group_name}_{n}" for n in range(max(1, int(group.get("count", 1) or 1)))]
    return names


def launch_spec(
    *,
    stub: Path,
    model_path: Path,
    runtime_dir: str,
    env_path: Path | None,
    interpreter: pythons.Interpreter | None,
    release: releases.Release,
    shm: ShmSettings,
) -> LaunchSpec:
    """How every instance's stub starts: the env (extracted once and shared) or, without one, `interpreter`."""
    env_dir = envmanager.shared().resolve(env_path, release) if env_path else None
    base_env = dict(os.environ)
    base_env.setdefault("PYTHONUNBUFFERED", "1")  # the model's print() reaches output() as it happens
    if env_dir is None:
        # No env: stand in for a server whose first python3 is this interpreter.
        assert interpreter is not None and interpreter.libpython
        base_env["PATH"] = os.pathsep.join(
            p for p in (os.path.dirname(interpreter.executable), base_env.get("PATH", "")) if p
        )
        base_env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (os.path.dirname(interpreter.libpython), base_env.get("LD_LIBRARY_PATH", "")) if p
        )
    return LaunchSpec(
        stub=stub,
        model_path=model_path,
        python_lib=RUNTIME_DIR,
        instance="",
        runtime_dir=runtime_dir,
        env_dir=env_dir,
        release=release,
        base_env=base_env,
        shm_prefix=shm.prefix,
        default_size=shm.default_size,
        growth=shm.growth,
    )


class InstancePool:
    """The stub processes of one model's instances; each execute() borrows a free one.

    A stub joins the pool when it starts (so close() stops it whatever happens next) and is lent out only
    once it is ready (initialized).
    """

    def __init__(self) -> None:
        self.stubs: list[StubProcess] = []
        self._free: queue.Queue[StubProcess] = queue.Queue()
        self.single = threading.Lock()  # the only instance's, when there is one (borrow() and the lane)

    def start(self, spec: LaunchSpec, instance: str, startup_timeout: float) -> StubProcess:
        stub = StubProcess(dataclasses.replace(spec, instance=instance), startup_timeout)
        self.stubs.append(stub)
        return stub

    def ready(self, stub: StubProcess) -> None:
        self._free.put(stub)

    @contextlib.contextmanager
    def borrow(self) -> Iterator[StubProcess]:
        """A free instance for one execute; concurrent callers run on different instances."""
        if not self.stubs:
            raise RunnerError("the model is closed", hint="load it again")
        if len(self.stubs) == 1:  # the common case: a lock is a fraction of a queue's cost per request
            with self.single:
                yield self.stubs[0]
            return
        stub = self._free.get()
        try:
            yield stub
        finally:
            self._free.put(stub)

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.stubs]

    def output(self) -> str:
        """What the instances printed (stdout and stderr), as Triton would log it."""
        return "".join(stub.output(limit=1 << 20) for stub in self.stubs)

    def close(self) -> None:
        stubs, self.stubs = self.stubs, []
        for stub in stubs:
            stub.close()
