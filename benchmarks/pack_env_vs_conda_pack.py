"""stubforge pack-env vs the plain conda-pack CLI on the same prefix, measured back to back in one run.

The prefix is a conda-shaped env around Python 3.8 + numpy<2 (see tests/condaenv.py). Each round runs both
CLIs back to back, alternating which goes first. Prints min/median/max of the pack times, the archive sizes,
the ratios of the medians, and the time to extract each archive with Python's tarfile.

    python benchmarks/pack_env_vs_conda_pack.py [--python 3.8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--python", default="3.8")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="stubforge-packbench-"))
    os.environ["STUBFORGE_CACHE"] = str(work / "cache")
    from stubforge.core import pythons
    from tests.condaenv import make_conda_prefix

    interp = pythons.resolve(args.python, require_buildable=True)
    prefix = make_conda_prefix(work / "conda", interp, ["numpy<2"])
    conda_pack_cli = shutil.which("conda-pack") or str(Path(sys.executable).parent / "conda-pack")
    ours: list[float] = []
    theirs: list[float] = []
    extract: dict[str, list[float]] = {"stubforge": [], "conda-pack": []}

    def conda_pack(out: Path) -> None:
        started = time.monotonic()
        subprocess.run([conda_pack_cli, "-p", str(prefix), "-o", str(out), "-q"], check=True)
        theirs.append(time.monotonic() - started)

    def stubforge(out: Path) -> None:
        started = time.monotonic()
        cmd = [sys.executable, "-m", "stubforge", "pack-env", "--prefix", str(prefix), "-o", str(out), "-q"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        ours.append(time.monotonic() - started)

    for i in range(args.rounds):
        their_out, our_out = work / f"cp{i}.tar.gz", work / f"sf{i}.tar.gz"
        if i % 2:
            stubforge(our_out)
            conda_pack(their_out)
        else:
            conda_pack(their_out)
            stubforge(our_out)
        for name, archive in (("stubforge", our_out), ("conda-pack", their_out)):
            target = work / f"x{i}"
            target.mkdir()
            started = time.monotonic()
            with tarfile.open(archive) as tar:
                tar.extractall(target)
            extract[name].append(time.monotonic() - started)
            shutil.rmtree(target)
    their_size = (work / "cp0.tar.gz").stat().st_size
    our_size = (work / "sf0.tar.gz").stat().st_size
    t_ours, t_theirs = statistics.median(ours), statistics.median(theirs)
    print(f"prefix: Python {interp.version} + numpy<2 (conda-shaped), rounds: {args.rounds}")
    print(f"conda-pack CLI       {spread(theirs)}  {their_size / 1e6:6.1f} MB")
    print(
        f"stubforge pack-env   {spread(ours)}  {our_size / 1e6:6.1f} MB  (prunes, validates in a clean launch)"
    )
    print(f"ratio of medians: time {t_ours / t_theirs:.2f}x  size {our_size / their_size:.2f}x")
    for name, times in extract.items():
        print(f"extract {name} archive (python tarfile): {spread(times)}")
    same = (work / "sf0.tar.gz").read_bytes() == (work / f"sf{args.rounds - 1}.tar.gz").read_bytes()
    print(f"stubforge archives byte-identical across rounds: {same}")
    print(f"1-min load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    shutil.rmtree(work, ignore_errors=True)


def spread(times: list[float]) -> str:
    return f"min {min(times):6.2f}s  median {statistics.median(times):6.2f}s  max {max(times):6.2f}s"


if __name__ == "__main__":
    main()
