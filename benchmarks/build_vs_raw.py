"""stubforge build vs a raw `cmake --build` of the same stub target, measured back to back in one run.

The raw baseline is what users type by hand: the same offline -D overrides and interpreter, Unix Makefiles,
no unity build, `cmake --build --target triton-python-backend-stub -j N`. stubforge's number is a full
`build --force` (configure, compile, verify, store). Prints ratios; the goal is <= 0.5x on real sources.

    python benchmarks/build_vs_raw.py --python 3.8 --python 3.12 [--sources DIR] [--rounds 1]

DIR is laid out as `stubforge sources import` expects (default: the bundled fixture, which is too small
to show the unity gain; use real r24.10 sources for the numbers that matter).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURE = HERE.parent / "tests" / "fixtures" / "upstream"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--python", action="append", required=True)
    parser.add_argument("--sources", type=Path, default=FIXTURE)
    parser.add_argument("--triton", default="24.10")
    parser.add_argument("--pybind11", action="append", default=[], help="per --python, '-' for the pin")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    cache_dir = tempfile.mkdtemp(prefix="stubforge-bench-")
    os.environ["STUBFORGE_CACHE"] = cache_dir
    from stubforge.core import pythons
    from stubforge.stubs import build as stub
    from stubforge.stubs import sources, upstream

    sources.import_sources(args.triton, args.sources)
    jobs = os.cpu_count() or 2
    print(f"sources: {args.sources}  jobs: {jobs}  rounds: {args.rounds}")
    for index, spec in enumerate(args.python):
        pyb = args.pybind11[index] if index < len(args.pybind11) and args.pybind11[index] != "-" else None
        interp = pythons.resolve(spec, require_buildable=True)
        srcs = sources.resolve(args.triton, pybind11=pyb)
        raw_times, forge_times = [], []
        for _ in range(args.rounds):
            build_dir = Path(tempfile.mkdtemp(prefix="raw-", dir=cache_dir))
            plan = upstream.Plan(
                sources=srcs,
                interpreter=interp,
                build_dir=build_dir,
                gpu=False,
                unity=False,
                jobs=jobs,
                cmake=upstream.find_cmake(srcs.pins.cmake_minimum),
                ninja=None,
                log_path=Path(cache_dir) / "raw.log",
            )
            started = time.monotonic()
            upstream.configure_and_build(plan)
            raw_times.append(time.monotonic() - started)
            shutil.rmtree(build_dir)

            started = time.monotonic()
            result = stub.build_one(interp, stub.BuildOptions(triton=args.triton, pybind11=pyb, force=True))
            forge_times.append(time.monotonic() - started)
        mode = result.manifest["build"]["mode"]
        hits = []
        for _ in range(5):
            started = time.monotonic()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "stubforge",
                    "build",
                    "--python",
                    interp.executable,
                    "--triton",
                    args.triton,
                    *(["--pybind11", pyb] if pyb else []),
                    "--quiet",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            hits.append(time.monotonic() - started)
        raw, forge = statistics.median(raw_times), statistics.median(forge_times)
        print(
            f"python {interp.version}: raw cmake --build {raw:6.1f}s  stubforge build ({mode}) {forge:6.1f}s  "
            f"ratio {forge / raw:.2f}x  cache hit (whole CLI process) {min(hits):.2f}s"
        )
    shutil.rmtree(cache_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
