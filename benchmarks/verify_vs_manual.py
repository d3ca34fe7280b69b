"""Empty model repository → verified, answering server: stubforge vs the manual docs/triton-behaviour.md: "A
real server to test against" steps, alternating rounds (A, B, A, B, ...).

The model is add/sub (FP32 INPUT0/INPUT1 dims [-1] → OUTPUT0=a+b, OUTPUT1=a-b) on Python 3.10 + numpy<2, served
by nvidia-pytriton 0.7.0's tritonserver (r24.10) while the default python3 on PATH is something else.
(A) `python -m stubforge` subprocesses: stubs import, pack-env --model, install model, verify --json.
(B) what a user scripts by hand, no stubforge code: copy the server, per-model stub, venv + pip numpy<2 as a
directory env, config param, start, poll ready, one HTTP/JSON request with checked values, SIGINT.

    python benchmarks/verify_vs_manual.py [--pytriton-site DIR] [--python310 PATH] [--rounds 3]

Discovered while making (B) work (part of the manual cost):
- the wheel's files may lose their exec bits (an unzipped wheel): chmod +x tritonserver and both stubs;
- Triton r24.10 still wants a stub in backends/python although the model ships its own;
- `python3.10` on PATH can be a pyenv shim that refuses to run (not the global version): use the real binary;
- a venv has no libpython and the stub has no RUNPATH: copy libpython3.10.so.1.0 into <env>/lib, which Triton
  puts on LD_LIBRARY_PATH (without it the stub exits 127 and r24.10 hangs forever: hence the ready timeout);
- the venv's bin/activate puts <env>/bin first on PATH, so its python3 (pyvenv.cfg) picks stdlib + numpy<2;
- its own shm-region-prefix-name, so this run's /dev/shm regions can be removed without touching others'.
(A) packs a relocatable tar.gz env (extracted at load) and (B) a host-bound directory env (no extraction).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MODEL = "add_sub"
MODEL_PY = """import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            outputs = [pb_utils.Tensor("OUTPUT0", (a + b).astype(np.float32)),
                       pb_utils.Tensor("OUTPUT1", (a - b).astype(np.float32))]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
"""
CONFIG = f"""name: "{MODEL}"
backend: "python"
input [
  {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }},
  {{ name: "INPUT1" data_type: TYPE_FP32 dims: [ -1 ] }}
]
output [
  {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }},
  {{ name: "OUTPUT1" data_type: TYPE_FP32 dims: [ -1 ] }}
]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
"""
ENV_PARAM = (
    'parameters: { key: "EXECUTION_ENV_PATH" value: { string_value: "$$TRITON_MODEL_DIRECTORY/env" } }\n'
)
STUB = "triton_python_backend_stub"


class Steps(dict[str, float]):  # step name → seconds
    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self[name] = time.monotonic() - started


def write_model(model: Path, extra_config: str = "") -> None:
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(MODEL_PY)
    (model / "config.pbtxt").write_text(CONFIG + extra_config)


def copy_exec(src: Path, dst: Path) -> None:
    shutil.copyfile(src, dst)
    dst.chmod(0o755)


def run_a(site: Path, work: Path) -> Steps:
    server = site / "pytriton" / "tritonserver"
    env = {**os.environ, "STUBFORGE_CACHE": str(work / "cache")}

    def forge(*args: str, check: bool = True) -> str:
        cmd = [sys.executable, "-m", "stubforge", *args]
        return subprocess.run(cmd, check=check, env=env, stdout=subprocess.PIPE, text=True).stdout

    repo, steps = work / "repo", Steps()
    model = repo / MODEL
    with steps("stubs import"):
        forge("stubs", "import", str(server / "python_backend_stubs/3.10" / STUB), "--triton", "24.10")
    with steps("model files"):
        write_model(model)
    with steps("pack-env"):
        forge("pack-env", "--python", "3.10", "--model", str(model), "-q")
    with steps("install model"):
        forge("install", "model", str(model), "--python", "3.10")
    with steps("backends copy"):
        backends = work / "backends"
        shutil.copytree(server / "backends", backends)
        copy_exec(server / "python_backend_stubs/3.8" / STUB, backends / "python" / STUB)
    with steps("verify"):
        out = forge("verify", str(repo), "--tritonserver", str(server / "bin/tritonserver"),
                    "--backends", str(backends), "--json", check=False)  # fmt: skip
    report = json.loads(out)
    if not report["ok"]:
        raise SystemExit(f"(A) stubforge verify failed:\n{json.dumps(report, indent=2)}")
    return steps


def free_ports(count: int) -> list[int]:
    socks = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def stop(proc: subprocess.Popen[bytes]) -> bool:
    """SIGINT, SIGKILL after 10 s; True when the server had to be killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    forced = proc.poll() is None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the server and any stub left in its session
    proc.wait()
    return forced


def request(port: int, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as err:
        return err.code, {}
    except OSError:  # not listening yet (URLError is an OSError)
        return 0, {}


def run_b(site: Path, python310: str, work: Path, timeout: float) -> Steps:
    src, root, steps = site / "pytriton" / "tritonserver", work / "triton", Steps()
    model = work / "repo" / MODEL
    env_dir = model / "env"
    with steps("copy server"):
        for part in ("bin", "backends", "caches"):
            shutil.copytree(src / part, root / part)
        (root / "bin/tritonserver").chmod(0o755)
        copy_exec(src / "python_backend_stubs/3.8" / STUB, root / "backends/python" / STUB)
    with steps("model files"):
        write_model(model, ENV_PARAM)
        copy_exec(src / "python_backend_stubs/3.10" / STUB, model / STUB)
    clean = {**os.environ, "PYTHONNOUSERSITE": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    with steps("venv"):
        subprocess.run([python310, "-m", "venv", str(env_dir)], check=True, env=clean)
    with steps("pip numpy<2"):
        subprocess.run([str(env_dir / "bin/pip"), "install", "-q", "numpy<2"], check=True, env=clean)
    with steps("libpython"):
        code = "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"
        libdir = subprocess.run([python310, "-c", code], check=True, capture_output=True, text=True).stdout
        shutil.copy2(Path(libdir.strip()) / "libpython3.10.so.1.0", env_dir / "lib")
    http, grpc, metrics = free_ports(3)
    prefix = f"vvm_{os.getpid()}_"
    args = [str(root / "bin/tritonserver"), f"--model-repository={work / 'repo'}",
            f"--backend-directory={root / 'backends'}", f"--cache-directory={root / 'caches'}",
            "--http-address=127.0.0.1", f"--http-port={http}", "--grpc-address=127.0.0.1",
            f"--grpc-port={grpc}", "--metrics-address=127.0.0.1", f"--metrics-port={metrics}",
            "--allow-gpu-metrics=false", f"--backend-config=python,shm-region-prefix-name={prefix}"]  # fmt: skip
    server_env = {**os.environ, "LD_LIBRARY_PATH": str(site / "nvidia_pytriton.libs")}
    log = open(work / "server.log", "wb")  # noqa: SIM115 - closed below
    envs_before = set(glob.glob("/tmp/python_env_*"))
    proc: subprocess.Popen[bytes] | None = None
    forced = False
    try:
        with steps("server ready"):
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=server_env,
                                    stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
            deadline = time.monotonic() + timeout
            while request(http, f"/v2/models/{MODEL}/ready")[0] != 200:
                if proc.poll() is not None or time.monotonic() > deadline:
                    lines = (work / "server.log").read_text(errors="replace").splitlines()
                    errors = "\n".join([x for x in lines if x[:1] == "E" or "error" in x.lower()][-12:])
                    raise SystemExit(f"(B) server exited or not ready in {timeout:.0f}s:\n{errors}")
                time.sleep(0.05)
        with steps("infer"):
            a, b = [1.0, 2.0, 3.5, -4.0], [0.5, 2.0, 1.0, 1.0]
            spec = {"shape": [4], "datatype": "FP32"}
            inputs = [{"name": f"INPUT{i}", "data": d, **spec} for i, d in enumerate((a, b))]
            status, reply = request(http, f"/v2/models/{MODEL}/infer", {"inputs": inputs})
            got = {o["name"]: o["data"] for o in reply.get("outputs", [])}
            want = {"OUTPUT0": [x + y for x, y in zip(a, b)], "OUTPUT1": [x - y for x, y in zip(a, b)]}
            if status != 200 or got != want:
                raise SystemExit(f"(B) wrong answer: HTTP {status}, {got} != {want}")
        with steps("stop"):
            forced = stop(proc)
    finally:
        if proc is not None:
            forced = stop(proc) or forced
        log.close()
        for region in Path("/dev/shm").glob(f"{prefix}*"):
            region.unlink(missing_ok=True)
        # r24.10 makes a /tmp/python_env_* dir even for a directory env and removes it only at a clean
        # shutdown; after a kill it stays, empty (rmdir never deletes another server's extracted env).
        for path in set(glob.glob("/tmp/python_env_*")) - envs_before if forced else ():
            with contextlib.suppress(OSError):
                os.rmdir(path)
    return steps


def find_python310() -> str:
    pyenv = glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10"))
    found = [shutil.which("python3.10") or "", *sorted(pyenv)]
    for candidate in found:
        if candidate and subprocess.run([candidate, "-c", ""], capture_output=True).returncode == 0:
            return candidate
    raise SystemExit("no working python3.10 found: pass --python310")


def make_site(work: Path) -> Path:
    venv = work / "pytriton-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin/pip"), "install", "-q", "--no-deps", "nvidia-pytriton==0.7.0"]
    subprocess.run(pip, check=True)
    return next(venv.glob("lib/python*/site-packages"))


def show(label: str, steps: Steps) -> float:
    total = sum(steps.values())
    print(f"{label}  total {total:6.2f}s")
    for name, seconds in steps.items():
        print(f"    {name:<14} {seconds:6.2f}s")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pytriton-site", type=Path, help="holds pytriton/ and nvidia_pytriton.libs/")
    parser.add_argument("--python310", help="the Python 3.10 interpreter (B); default: found")
    parser.add_argument("--timeout", type=float, default=120.0, help="(B) seconds to wait for ready")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of A then B")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="stubforge-vvm-"))
    totals: dict[str, list[float]] = {"A": [], "B": []}
    try:
        site = args.pytriton_site.resolve() if args.pytriton_site else make_site(work)
        python310 = args.python310 or find_python310()
        print(f"server: {site / 'pytriton/tritonserver/bin/tritonserver'}  python 3.10: {python310}")
        for round_ in range(args.rounds):
            a = run_a(site, work / f"a{round_}")
            b = run_b(site, python310, work / f"b{round_}", args.timeout)
            print(f"round {round_ + 1}/{args.rounds}")
            totals["A"].append(show("(A) stubforge (tar.gz env)", a))
            totals["B"].append(show("(B) manual (directory env)", b))
            for side in ("a", "b"):
                shutil.rmtree(work / f"{side}{round_}", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for side, label in (("A", "stubforge"), ("B", "manual")):
        times = totals[side]
        print(
            f"({side}) {label:<10} min / median / max  {min(times):6.2f} / {statistics.median(times):6.2f} / "
            f"{max(times):6.2f} s"
        )
    ratio = statistics.median(totals["A"]) / statistics.median(totals["B"])
    print(
        f"ratio of medians A/B {ratio:.2f}x  ({args.rounds} rounds; pip may hit the local pip cache after the first)"
    )


if __name__ == "__main__":
    main()
