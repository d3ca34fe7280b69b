"""Triton's own load-to-ready of one model for three forms of the same env, interleaved in one server run.

One conda-shaped prefix (Python 3.8 + numpy<2, tests/condaenv.py) becomes (1) stubforge's archive
(`pack-env --prefix -o`), (2) stubforge's directory env (`pack-env --prefix --dir`) and (3) the conda-pack CLI's
archive. Three copies of an identity model point EXECUTION_ENV_PATH at them and run the wheel's 3.8 stub. The
real tritonserver of nvidia-pytriton 0.7.0 (r24.10) loads and unloads them in turn, each round in another order;
an archive's mtime is bumped before each load, so Triton extracts it again as at every server start
(docs/triton-behaviour.md: "EXECUTION_ENV_PATH and extraction").

    python benchmarks/env_load_in_triton.py --pytriton-site DIR [--rounds 5]

Prints min/median/max of load_model (gRPC, returns when the model is ready) per form and the ratios of the
medians to conda-pack's archive; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IDENTITY = textwrap.dedent(
    """
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def execute(self, requests):
            return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", r.inputs()[0].as_numpy())])
                    for r in requests]
    """
)
CONFIG = """name: "{name}"
backend: "python"
input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ -1 ] }} ]
output [ {{ name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{env}" }} }}
"""
STUB = "triton_python_backend_stub"


def stubforge(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "stubforge", *args, "-q"], check=True, stdout=subprocess.DEVNULL)


def model(repo: Path, name: str, env: Path, stub: Path) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "1" / "model.py").write_text(IDENTITY)
    (repo / name / "config.pbtxt").write_text(CONFIG.format(name=name, env=env))
    shutil.copyfile(stub, repo / name / STUB)
    os.chmod(repo / name / STUB, 0o755)


def describe(times: list[float]) -> str:
    return f"min {min(times):5.2f}s  median {statistics.median(times):5.2f}s  max {max(times):5.2f}s"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pytriton-site", type=Path, required=True, help="holds pytriton/ (0.7.0)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="stubforge-envload-"))
    os.environ["STUBFORGE_CACHE"] = str(work / "cache")
    import tritonclient.grpc as grpcclient

    from stubforge.core import pythons
    from stubforge.server.verify import tritonserver as server_mod
    from tests.condaenv import make_conda_prefix

    site = args.pytriton_site.resolve()
    server_root = site / "pytriton" / "tritonserver"
    stub = server_root / "python_backend_stubs" / "3.8" / STUB
    interp = pythons.resolve("3.8", require_shared=True)
    print("making the conda-shaped prefix and the three envs ...", flush=True)
    prefix = make_conda_prefix(work / "conda", interp, ["numpy<2"])
    envs = work / "envs"
    envs.mkdir()
    forms = {
        "stubforge archive": envs / "sf.tar.gz",
        "stubforge directory": envs / "sfdir",
        "conda-pack archive": envs / "cp.tar.gz",
    }
    stubforge("pack-env", "--prefix", str(prefix), "-o", str(forms["stubforge archive"]))
    stubforge("pack-env", "--prefix", str(prefix), "--dir", str(forms["stubforge directory"]))
    conda_pack = shutil.which("conda-pack") or str(Path(sys.executable).parent / "conda-pack")
    subprocess.run([conda_pack, "-p", str(prefix), "-o", str(forms["conda-pack archive"]), "-q"], check=True)
    names = {form: f"m{i}" for i, form in enumerate(forms)}
    repo = work / "repo"
    for form, env in forms.items():
        model(repo, names[form], env, stub)
    for form in ("stubforge archive", "conda-pack archive"):
        print(f"{form}: {forms[form].stat().st_size / 1e6:.1f} MB")

    backends = work / "backends"
    shutil.copytree(server_root / "backends", backends)
    shutil.copyfile(stub, backends / "python" / STUB)
    os.chmod(backends / "python" / STUB, 0o755)
    install = server_mod.from_binary(server_root / "bin" / "tritonserver")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LD_LIBRARY_PATH": os.pathsep.join(install.library_path),
    }
    server = server_mod.RunningServer(install, repo, backends, work / "server.log", env, ["python"])
    times: dict[str, list[float]] = {form: [] for form in forms}
    try:
        server.wait_live(120)
        client = grpcclient.InferenceServerClient(server.grpc_url)
        order = list(forms)
        for round_ in range(args.rounds):
            for form in order[round_ % 3 :] + order[: round_ % 3]:
                path = forms[form]
                if path.is_file():  # a new mtime: Triton extracts it again, as at a server start
                    stamp = time.time() + round_
                    os.utime(path, (stamp, stamp))
                started = time.perf_counter()
                client.load_model(names[form])
                times[form].append(time.perf_counter() - started)
                client.unload_model(names[form])
                while client.is_model_ready(names[form]):
                    time.sleep(0.05)
    finally:
        server.stop()
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(times["conda-pack archive"])
    print(f"Triton load_model to ready, {args.rounds} rounds, loads: {os.getloadavg()[0]:.1f} (1-min load)")
    for form, measured in times.items():
        ratio = statistics.median(measured) / base
        print(f"  {form:20s} {describe(measured)}  = {ratio:.2f}x conda-pack's archive")


if __name__ == "__main__":
    main()
