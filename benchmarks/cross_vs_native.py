"""A cross build for aarch64 vs the same native build of the stub, measured back to back in one run.

Both are full `build --force` runs of the same sources and Python minor (configure, compile, verify, store): the
native one against this machine's interpreter, the cross one with aarch64-linux-gnu-g++ against a sysroot's
Python, verified by the probe under qemu. Prints min/median/max of each and the ratio of the medians; the goal is
<= 1.3x (the cross compiler itself is as fast as the native one; the extra cost is the toolchain's checks and the
probe under emulation).

    python benchmarks/cross_vs_native.py [--python 3.11] [--sysroot DIR] [--sources DIR] [--rounds 3]

Without --sysroot one is made with `sysroot create` (downloads Debian's arm64 packages once, not timed). DIR is
laid out as `stubforge sources import` expects (default: the bundled fixture project).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURE = HERE.parent / "tests" / "fixtures" / "upstream"


def _summary(times: list[float]) -> str:
    return f"min {min(times):6.2f}s  median {statistics.median(times):6.2f}s  max {max(times):6.2f}s"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--python", default="3.11")
    parser.add_argument("--sysroot", type=Path)
    parser.add_argument("--sources", type=Path, default=FIXTURE)
    parser.add_argument("--triton", default="24.10")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    cache_dir = tempfile.mkdtemp(prefix="stubforge-bench-")
    os.environ["STUBFORGE_CACHE"] = cache_dir
    from stubforge.core import debian_sysroot, pythons
    from stubforge.core.targets import Target
    from stubforge.stubs import build as stub
    from stubforge.stubs import sources

    try:
        sources.import_sources(args.triton, args.sources)
        sysroot = args.sysroot
        if sysroot is None:
            sysroot = Path(cache_dir) / "sysroot"
            debian_sysroot.create(sysroot, "aarch64", args.python)
        target = Target.parse("aarch64", sysroot)
        found = [i for i in pythons.discover() if i.minor == args.python and i.buildable]
        if not found:
            raise SystemExit(
                f"no Python {args.python} with a shared libpython and headers for the native build"
            )
        interp = ([i for i in found if "/.pyenv/" in i.executable] or found)[0]
        native_times, cross_times = [], []
        for _ in range(args.rounds):
            started = time.monotonic()
            stub.build_one(interp, stub.BuildOptions(triton=args.triton, force=True))
            native_times.append(time.monotonic() - started)
            started = time.monotonic()
            result = stub.build_one(
                args.python, stub.BuildOptions(triton=args.triton, force=True, target=target)
            )
            cross_times.append(time.monotonic() - started)
        probe = result.manifest["probe"]
        print(f"sources: {args.sources}  python: {args.python}  rounds: {args.rounds}  sysroot: {sysroot}")
        print(f"native  ({interp.version}, {stub.platform.machine()}): {_summary(native_times)}")
        print(f"cross   (aarch64, probe {probe.get('emulation') or 'skipped'}): {_summary(cross_times)}")
        ratio = statistics.median(cross_times) / statistics.median(native_times)
        print(f"ratio cross/native (medians): {ratio:.2f}x  (goal <= 1.3x)")
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
