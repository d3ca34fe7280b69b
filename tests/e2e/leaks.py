"""What a verify run left behind, counted so that another run on the same machine is never taken for a leak:
/dev/shm regions of verify processes that are gone, new /tmp/python_env_* dirs, and servers or stubs of this
test tree still running."""

from __future__ import annotations

from pathlib import Path

import psutil

from stubforge.core import leftovers
from stubforge.server.verify import tritonserver as server_mod


def env_dirs() -> set[str]:
    """The env extraction dirs on the machine now (take this before the run)."""
    return {lo.path for lo in leftovers.triton_leftovers()}


def _owner_alive(region: str) -> bool:
    """verify names its regions stubforge_<pid of the verify process>_<token>_...: is that process running?"""
    pid = region.split("_")[1]
    return pid.isdigit() and psutil.pid_exists(int(pid))


def left_by_run(before_envs: set[str], root: Path) -> tuple[list[str], list[str], list[int]]:
    """A run's /dev/shm regions, new /tmp/python_env_* dirs, and servers or stubs of the tree under `root`.

    Counted only when no running process owns them, so a server of another run on the machine (its region
    prefix starts with the pid of its live verify process; its env dirs are in use) is not taken for a leak."""
    shm = sorted(
        p.name
        for p in server_mod.SHM_DIR.iterdir()
        if p.name.startswith("stubforge_") and not _owner_alive(p.name)
    )
    procs, foreign_server = [], False
    for proc in psutil.process_iter(["name", "cmdline"]):
        name = proc.info.get("name") or ""
        mine = str(root) in " ".join(proc.info.get("cmdline") or [])
        if mine and name.startswith(("tritonserver", "triton_python_b")):
            procs.append(proc.pid)
        foreign_server = foreign_server or (not mine and name.startswith("tritonserver"))
    # An empty env dir is named nowhere, so with another server up verify leaves it (empty and harmless):
    # it may be that server's start-up dir.
    envs = sorted(
        path for path in env_dirs() - before_envs if not (foreign_server and not any(Path(path).iterdir()))
    )
    return shm, envs, procs
