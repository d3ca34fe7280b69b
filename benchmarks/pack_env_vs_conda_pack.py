"""stubforge pack-env vs the plain conda-pack CLI on the same prefix, measured back to back in one run.

The prefix is a conda-shaped env around Python 3.8 + numpy<2 (see tests/condaenv.py). Prints pack times,
archive sizes, their ratios, and the time to extract stubforge's archive (what Triton does at every load).

    python benchmarks/pack_env_vs_conda_pack.py [--python 3.8] [--rounds 3]
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
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="stubforge-packbench-"))
    os.environ["STUBFORGE_CACHE"] = str(work / "cache")
    from stubforge.core import pythons
    from tests.condaenv import make_conda_prefix

    interp = pythons.resolve(args.python, require_buildable=True)
    prefix = make_conda_prefix(work / "conda", interp, ["numpy<2"])
    conda_pack_cli = shutil.which("conda-pack") or str(Path(sys.executable).parent / "conda-pack")
    ours, theirs, extract = [], [], []
    for i in range(args.rounds):
        their_out = work / f"cp{i}.tar.gz"
        started = time.monotonic()
        subprocess.run([conda_pack_cli, "-p", str(prefix), "-o", str(their_out), "-q"], check=True)
        theirs.append(time.monotonic() - started)

        our_out = work / f"sf{i}.tar.gz"
        started = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "stubforge",
                "pack-env",
                "--prefix",
                str(prefix),
                "-o",
                str(our_out),
                "-q",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        ours.append(time.monotonic() - started)

        target = work / f"x{i}"
        target.mkdir()
        started = time.monotonic()
        with tarfile.open(our_out) as tar:
            tar.extractall(target)
        extract.append(time.monotonic() - started)
        shutil.rmtree(target)
    their_size = (work / "cp0.tar.gz").stat().st_size
    our_size = (work / "sf0.tar.gz").stat().st_size
    t_ours, t_theirs = statistics.median(ours), statistics.median(theirs)
    print(f"prefix: Python {interp.version} + numpy<2 (conda-shaped), rounds: {args.rounds}")
    print(f"conda-pack CLI       {t_theirs:6.2f}s  {their_size / 1e6:6.1f} MB")
    print(
        f"stubforge pack-env   {t_ours:6.2f}s  {our_size / 1e6:6.1f} MB  (includes validation in a clean launch)"
    )
    print(f"ratio time {t_ours / t_theirs:.2f}x  size {our_size / their_size:.2f}x")
    print(f"extract stubforge archive (python tarfile): {statistics.median(extract):.2f}s")
    same = (work / "sf0.tar.gz").read_bytes() == (work / f"sf{args.rounds - 1}.tar.gz").read_bytes()
    print(f"stubforge archives byte-identical across rounds: {same}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
