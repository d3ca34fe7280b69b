"""The .pyi users' editors read must describe the runner's triton_python_backend_utils exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[2] / "stubforge" / "runner" / "runtime"


def test_stub_matches_the_module() -> None:
    env = dict(os.environ, MYPYPATH=str(RUNTIME), PYTHONPATH=str(RUNTIME))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "triton_python_backend_utils",
            "--mypy-config-file",
            os.devnull,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=str(RUNTIME.parent.parent),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
