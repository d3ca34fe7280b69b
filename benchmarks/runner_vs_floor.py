"""stubforge run's round trips against the physical floor measured in the same run, and against real Triton.

Floors: a raw two-process ping-pong over two POSIX semaphores (Python on both sides, posix_ipc; each round trip
timed as each request is, the two in alternating chunks), and one memcpy of the payload (numpy copyto). The
runner: runner.load() of an identity model in a Python 3.10 directory env, then infer() of 4 floats and of
64 MB in / 64 MB out. With --pytriton-site (a site-packages
holding nvidia-pytriton 0.7.0), the same model in the real tritonserver over gRPC, and its load time.

    python benchmarks/runner_vs_floor.py [--pytriton-site DIR] [--rounds 2000] [--runs 5]

Prints times and ratios measured in this one run; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import posix_ipc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import stubforge.runner.api as runner  # noqa: E402
from stubforge.envs import packenv  # noqa: E402

IDENTITY = textwrap.dedent(
    """
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def execute(self, requests):
            return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", r.inputs()[0].as_numpy())])
                    for r in requests]
    """
)
CONFIG = """name: "identity"
backend: "python"
input [ { name: "IN" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""
CHUNKS = 10
PONG = """
import sys, posix_ipc
a, b, n = posix_ipc.Semaphore(sys.argv[1]), posix_ipc.Semaphore(sys.argv[2]), int(sys.argv[3])
for _ in range(n):
    a.acquire(); b.release()
"""


class PingPong:
    """The floor's partner process: it answers each release of one semaphore with a release of the other."""

    def __init__(self, rounds: int) -> None:
        tag = f"/sfbench_{os.getpid()}"
        self.ping = posix_ipc.Semaphore(tag + "_a", posix_ipc.O_CREX)
        self.pong = posix_ipc.Semaphore(tag + "_b", posix_ipc.O_CREX)
        self.child = subprocess.Popen([sys.executable, "-c", PONG, tag + "_a", tag + "_b", str(rounds + 100)])
        for _ in range(100):  # warm-up
            self.round_trip()

    def round_trip(self) -> None:
        self.ping.release()
        self.pong.acquire()

    def close(self) -> None:
        self.child.wait(timeout=30)
        for sem in (self.ping, self.pong):
            sem.unlink()
            sem.close()


def timed(fn, count: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Each call's time: floor and runner are timed the same way, one call at a time."""
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def memcpy(nbytes: int) -> float:
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    return min(times)


def model_repo(root: Path, env: Path) -> Path:
    model = root / "identity"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(IDENTITY)
    (model / "config.pbtxt").write_text(
        CONFIG + f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{env}" }} }}\n'
    )
    return model


def median_time(fn, rounds: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def real_triton(site: Path, repo: Path, small: np.ndarray, big: np.ndarray) -> dict[str, float]:
    import tritonclient.grpc as grpcclient

    from stubforge.server.verify import tritonserver as server_mod

    install = server_mod.from_binary(site / "pytriton" / "tritonserver" / "bin" / "tritonserver")
    backends = Path(tempfile.mkdtemp(prefix="sfbench-backends-"))
    import shutil

    shutil.copytree(install.backends, backends, dirs_exist_ok=True)
    stub = site / "pytriton" / "tritonserver" / "python_backend_stubs" / "3.10" / "triton_python_backend_stub"
    shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
    (repo / "identity" / "triton_python_backend_stub").write_bytes(stub.read_bytes())
    os.chmod(repo / "identity" / "triton_python_backend_stub", 0o755)
    env = dict(os.environ, LD_LIBRARY_PATH=str(site / "nvidia_pytriton.libs"))
    server = server_mod.RunningServer(install, repo, backends, repo / "server.log", env, ["python"])
    try:
        server.wait_live(60)
        opts = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        client = grpcclient.InferenceServerClient(server.grpc_url, channel_args=opts)
        t0 = time.perf_counter()
        client.load_model("identity")
        load = time.perf_counter() - t0

        def call(array: np.ndarray) -> None:
            tensor = grpcclient.InferInput("IN", list(array.shape), "FP32")
            tensor.set_data_from_numpy(array)
            client.infer("identity", [tensor]).as_numpy("OUT")

        for _ in range(50):
            call(small)
        return {
            "load": load,
            "small": median_time(lambda: call(small), 500),
            "big": median_time(lambda: call(big), 5),
        }
    finally:
        server.stop()
        server.cleanup()
        shutil.rmtree(backends, ignore_errors=True)
        (repo / "identity" / "triton_python_backend_stub").unlink(missing_ok=True)


def spread(values: list[float], scale: float, unit: str) -> str:
    low, mid, high = min(values) * scale, statistics.median(values) * scale, max(values) * scale
    return f"{low:8.2f} / {mid:8.2f} / {high:8.2f} {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pytriton-site", type=Path, help="site-packages holding nvidia-pytriton 0.7.0")
    parser.add_argument(
        "--rounds", type=int, default=2000, help="small requests per run (their median counts)"
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per placement (min/median/max over them)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sfbench-run-"))
    os.environ.setdefault("STUBFORGE_CACHE", str(work / "cache"))
    env = work / "env310"
    print("packing a Python 3.10 directory env ...", flush=True)
    packenv.pack_env(packenv.PackOptions(python="3.10", directory=env, prune=True))
    repo = work / "repo"
    model_repo(repo, env)
    small = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    big = np.arange(16 << 20, dtype=np.float32)  # 64 MB

    # Wake-up latency depends on where the two processes run (same core: a context switch; two cores: an idle
    # CPU waking up), and it dominates small round trips: measure floor and runner under the same placement,
    # alternating, run after run.
    everywhere = os.sched_getaffinity(0)
    results = {}
    for placement, cpus in (("one core", {min(everywhere)}), ("free", everywhere)):
        os.sched_setaffinity(0, cpus)  # inherited by the ping-pong child and by the stub
        runs: dict[str, list[float]] = {
            k: [] for k in ("floor", "floor_median", "small", "copy", "big", "load")
        }
        for _ in range(args.runs):
            runs["copy"].append(memcpy(big.nbytes))
            t0 = time.perf_counter()
            model = runner.load(repo / "identity")
            runs["load"].append(time.perf_counter() - t0)
            floor = PingPong(args.rounds)
            try:
                for _ in range(100):
                    model.infer({"IN": small})
                # Floor and runner in alternating chunks: a burst of noise from the host falls on both.
                floor_times: list[float] = []
                runner_times: list[float] = []
                for _ in range(CHUNKS):
                    floor_times += timed(floor.round_trip, args.rounds // CHUNKS)
                    runner_times += timed(lambda: model.infer({"IN": small}), args.rounds // CHUNKS)  # noqa: B023
                # The floor as issue 16 measured it (the mean round trip of a batch) and, stricter, the median
                # round trip; the runner's round trip is the median request.
                runs["floor"].append(statistics.fmean(floor_times))
                runs["floor_median"].append(statistics.median(floor_times))
                runs["small"].append(statistics.median(runner_times))
                assert np.array_equal(model.infer({"IN": big})["OUT"], big)
                runs["big"].append(median_time(lambda: model.infer({"IN": big}), 7))  # noqa: B023
            finally:
                floor.close()
                model.close()
        results[placement] = runs
        med = {k: statistics.median(v) for k, v in runs.items()}
        print(f"[{placement}] {args.runs} runs, min / median / max of the runs")
        print(f"  floor: semaphore ping-pong, mean       {spread(runs['floor'], 1e6, 'us')}")
        print(f"  floor: semaphore ping-pong, median     {spread(runs['floor_median'], 1e6, 'us')}")
        print(f"  runner: small round trip (4 x FP32)    {spread(runs['small'], 1e6, 'us')}")
        for floor_key, label in (("floor", "mean"), ("floor_median", "median")):
            ratios = [s / f for s, f in zip(runs["small"], runs[floor_key])]
            print(
                f"    = {med['small'] / med[floor_key]:.2f}x the floor's {label} (ratio of medians; per run "
                f"{min(ratios):.2f} / {statistics.median(ratios):.2f} / {max(ratios):.2f})"
            )
        print(f"  floor: one memcpy of 64 MB             {spread(runs['copy'], 1e3, 'ms')}")
        print(f"  runner: 64 MB in + 64 MB out           {spread(runs['big'], 1e3, 'ms')}")
        ratios = [b / c for b, c in zip(runs["big"], runs["copy"])]
        print(
            f"    = {med['big'] / med['copy']:.2f}x one memcpy (ratio of medians; per run "
            f"{min(ratios):.2f} / {statistics.median(ratios):.2f} / {max(ratios):.2f})"
        )
        print(f"  runner: load to ready                  {spread(runs['load'], 1, 's')}")
    os.sched_setaffinity(0, everywhere)
    free = {k: statistics.median(v) for k, v in results["free"].items()}
    if args.pytriton_site:
        real = real_triton(args.pytriton_site, repo, small, big)
        print(
            f"tritonserver gRPC: small round trip  {real['small'] * 1e6:8.1f} us"
            f"  runner/triton {free['small'] / real['small']:.2f}"
        )
        print(
            f"tritonserver gRPC: 64 MB in + out    {real['big'] * 1e3:8.2f} ms"
            f"  runner/triton {free['big'] / real['big']:.2f}"
        )
        load_ratio = free["load"] / real["load"]
        print(f"tritonserver: load_model of it       {real['load']:8.2f} s  runner/triton {load_ratio:.2f}")


if __name__ == "__main__":
    main()
