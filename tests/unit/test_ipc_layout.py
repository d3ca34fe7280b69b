"""The region layout is written down three times (Python parent, C stub, stub-side Python): they must agree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from stubforge.runner.ipc import layout
from stubforge.stubs import runner_stub

ROOT = Path(__file__).resolve().parents[2]


def _c_defines() -> dict[str, str]:
    text = runner_stub.SOURCE.read_text()
    return dict(re.findall(r"^#define (\w+) (\S+)", text, re.M))


def _runtime_constants() -> dict[str, object]:
    tree = ast.parse((ROOT / "stubforge" / "runner" / "runtime" / "_stubforge_loop.py").read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found


def test_c_stub_agrees() -> None:
    defines = _c_defines()
    assert defines["MAGIC"] == f'"{layout.MAGIC.decode()}"'
    assert int(defines["OFF_SIZE"]) == layout.OFF_SIZE
    assert int(defines["OFF_HEARTBEAT"]) == layout.OFF_HEARTBEAT
    assert int(defines["HEARTBEAT_MS"]) / 1000 == layout.HEARTBEAT_S
    assert int(defines["OFF_MSG_OFFSET"]) == layout.OFF_MSG_OFFSET
    assert int(defines["OFF_MSG_LENGTH"]) == layout.OFF_MSG_LENGTH
    assert int(defines["ALIGN"]) == layout.ALIGN
    assert '"%s_p2s"' in runner_stub.SOURCE.read_text()
    assert layout.semaphore_names("r") == ("r_p2s", "r_s2p")


def test_stub_runtime_agrees() -> None:
    constants = _runtime_constants()
    assert constants["MAGIC"] == layout.MAGIC
    assert constants["OFF_SIZE"] == layout.OFF_SIZE
    assert constants["OFF_MSG_OFFSET"] == layout.OFF_MSG_OFFSET
    assert constants["OFF_MSG_LENGTH"] == layout.OFF_MSG_LENGTH
    assert constants["ALIGN"] == layout.ALIGN
    assert constants["MARSHAL_VERSION"] == layout.MARSHAL_VERSION
    # Both sides read size, heartbeat, message offset and length in one struct call: the fields are adjacent.
    assert layout.OFF_HEARTBEAT == layout.OFF_SIZE + 8
    assert layout.OFF_MSG_OFFSET == layout.OFF_HEARTBEAT + 8
    assert layout.OFF_MSG_LENGTH == layout.OFF_MSG_OFFSET + 8


def test_growth_follows_triton() -> None:
    mib = 1 << 20
    assert layout.grown_size(mib, mib, mib) == mib
    assert layout.grown_size(mib, mib + 1, mib) == 2 * mib
    assert layout.grown_size(mib, 5 * mib + 7, 2 * mib) == mib + 2 * mib * 3


def test_stub_side_files_compile_on_the_oldest_python() -> None:
    """The runtime runs inside the model's env, which may be Python 3.6."""
    import subprocess

    from tests.conftest import interpreter

    py36 = interpreter("3.6")
    files = [str(p) for p in (ROOT / "stubforge" / "runner" / "runtime").glob("*.py")]
    check = "import sys\nfor f in sys.argv[1:]: compile(open(f).read(), f, 'exec')"
    proc = subprocess.run(
        [py36.executable, "-c", check, *files], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
