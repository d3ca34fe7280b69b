"""aarch64 envs on an x86_64 machine (docs/aarch64.md), one run:

(1) pack time: `pack-env --arch aarch64 --sysroot DIR --python 3.11 --dir` (the sysroot's Python, aarch64 numpy
    wheel, validation under qemu) vs `pack-env --python 3.11 --dir` (a host interpreter, x86_64 wheel, native
    validation); pip's wheel cache is warm for both (one unmeasured pack of each first).
(2) model load-to-ready in the runner: the same add/sub model with the aarch64 env in the runner's aarch64 stub
    under emulation vs the x86_64 env in the runner's own stub; directory envs, so no extraction is timed. Also the
    first and the median of 20 later requests.

    python benchmarks/aarch64_env.py [--sysroot DIR] [--repeat 3]

Needs qemu-user-static + binfmt-support, gcc-aarch64-linux-gnu and a sysroot (made as tests/aarch64.py does when
--sysroot and STUBFORGE_TEST_SYSROOT are not given).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stubforge.core import pythons  # noqa: E402
from stubforge.runner import api as runner_api  # noqa: E402
from tests import aarch64  # noqa: E402

MODEL_PY = """import platform
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", (a + b).astype(np.float32)),
                pb_utils.Tensor("MACHINE", np.array([platform.machine().encode()], dtype=np.object_))]))
        return out
"""
CONFIG = """name: "{name}"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }, { name: "INPUT1" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }, { name: "MACHINE" data_type: TYPE_STRING dims: [ 1 ] } ]
parameters: { key: "EXECUTION_ENV_PATH" value: { string_value: "$$TRITON_MODEL_DIRECTORY/env" } }
"""


def _stats(values: list[float]) -> str:
    return f"min {min(values):7.2f}  median {statistics.median(values):7.2f}  max {max(values):7.2f}"


def _host_python311() -> str:
    """A shared-library CPython 3.11 of this machine, by path (several 3.11 installs make "3.11" ambiguous)."""
    found = [i for i in pythons.discover() if i.minor == "3.11" and i.libpython]
    if not found:
        raise SystemExit("no shared-library CPython 3.11 on this machine (pyenv install 3.11)")
    # Not a distribution's /usr/bin/python3: Debian's is EXTERNALLY-MANAGED and reads dist-packages.
    found.sort(key=lambda i: not i.executable.startswith(("/root/.pyenv", os.path.expanduser("~/.pyenv"))))
    return found[0].executable


def _pack(args: list[str], out: Path) -> float:
    t0 = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "stubforge",
            "pack-env",
            "-q",
            "--force",
            "--dir",
            str(out),
            *args,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.monotonic() - t0


def _model(repo: Path, name: str, env_args: list[str]) -> Path:
    model = repo / name
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(MODEL_PY)
    (model / "config.pbtxt").write_text(CONFIG.replace("{name}", name))
    _pack(env_args, model / "env")
    return model


def _load(model: Path, stub: Path | None) -> tuple[float, float, float, str]:
    a = np.arange(4, dtype=np.float32)
    with runner_api.load(model, runner_stub=stub) as loaded:
        load_s = loaded.timings.load_s
        t0 = time.monotonic()
        out = loaded.infer({"INPUT0": a, "INPUT1": a})
        first = time.monotonic() - t0
        for _ in range(20):
            loaded.infer({"INPUT0": a, "INPUT1": a})
        later = statistics.median(loaded.timings.requests[-20:])
    return load_s, first, later, out["MACHINE"][0].decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sysroot", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sf-bench-a64-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ.setdefault("STUBFORGE_CACHE", str(tmp / "cache"))
        sysroot = options.sysroot or aarch64.sysroot(tmp / "sysroot", tmp / "cache")
        stub = aarch64.runner_stub(sysroot, tmp / "sfstub-aarch64", tmp / "cache")
        cross = ["--arch", "aarch64", "--sysroot", str(sysroot), "--python", "3.11"]
        host = ["--python", _host_python311()]

        # (1) pack time, alternating, after one warm-up of each (pip's cache, the page cache).
        _pack(cross, tmp / "warm-a64")
        _pack(host, tmp / "warm-x86")
        a64_s: list[float] = []
        x86_s: list[float] = []
        for _ in range(options.repeat):
            a64_s.append(_pack(cross, tmp / "env-a64"))
            x86_s.append(_pack(host, tmp / "env-x86"))
        print(f"pack-env aarch64 (emulated validation), s: {_stats(a64_s)}")
        print(f"pack-env x86_64 (native), s:               {_stats(x86_s)}")
        print(f"ratio aarch64/x86_64 (medians): {statistics.median(a64_s) / statistics.median(x86_s):.2f}x")

        # (2) load-to-ready in the runner, emulated vs native.
        repo = tmp / "repo"
        emulated = _model(repo, "a64", cross)
        native = _model(repo, "x86", host)
        rows: dict[str, list[tuple[float, float, float, str]]] = {"a64": [], "x86": []}
        for _ in range(options.repeat):
            rows["a64"].append(_load(emulated, stub))
            rows["x86"].append(_load(native, None))
        for key, label in (("a64", "aarch64 under emulation"), ("x86", "x86_64 native")):
            loads = [r[0] for r in rows[key]]
            firsts = [r[1] * 1000 for r in rows[key]]
            later = [r[2] * 1000 for r in rows[key]]
            print(
                f"{label:<24} ({rows[key][0][3]}): load-to-ready s {_stats(loads)}; first request ms "
                f"{_stats(firsts)}; later requests (median of 20) ms {_stats(later)}"
            )
        ratio_load = statistics.median(r[0] for r in rows["a64"]) / statistics.median(
            r[0] for r in rows["x86"]
        )
        ratio_req = statistics.median(r[2] for r in rows["a64"]) / statistics.median(
            r[2] for r in rows["x86"]
        )
        print(
            f"ratio emulated/native (medians): load-to-ready {ratio_load:.1f}x, later requests {ratio_req:.1f}x"
        )


if __name__ == "__main__":
    main()
