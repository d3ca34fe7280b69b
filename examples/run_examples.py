"""Run the example models (examples/fidelity) in stubforge's runner, in two envs, and print what ran where.

    python3 examples/run_examples.py WORKDIR ENV38 ENV310

WORKDIR receives a copy of the repository per env (EXECUTION_ENV_PATH set with `stubforge param`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import stubforge.runner.api as runner

EXAMPLES = Path(__file__).resolve().parent / "fidelity"


def repository(work: Path, env: Path) -> Path:
    repo = work / f"repo-{env.name}"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(EXAMPLES, repo)
    for model in sorted(p for p in repo.iterdir() if (p / "config.pbtxt").is_file()):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "stubforge",
                "param",
                str(model),
                str(env),
                "--write",
                "--allow-host-path",
                "--no-backup",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    return repo


def main() -> None:
    work, envs = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    a = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    b = np.array([0.5, 0.5, 0.5], dtype=np.float32)
    for env in envs:
        with runner.Repository(repository(work, env)) as repo:
            runs = {
                "add_sub": lambda m: m.infer({"INPUT0": a, "INPUT1": b})["OUTPUT0"].tolist(),
                "bls_sync": lambda m: m.infer({"INPUT0": a, "INPUT1": b})["SUM"].tolist(),
                "square": lambda m: [
                    r["OUT"].tolist() for r in m.infer({"IN": np.array([3], dtype=np.int32)})
                ],
                "auto_complete": lambda m: m.infer(
                    {"TEXT": np.array([[b"stubforge"]], dtype=object), "SCALE": np.ones((1, 2))}
                )["UPPER"].tolist(),
            }
            for name, run in runs.items():
                model = repo.model(name)
                result = run(model)
                info = model.info
                print(
                    f"{name:<14} Python {info['python']:<8} numpy {info['numpy']:<7} pid {info['pid']:<7} "
                    f"env {env.name:<8} -> {result}"
                )


if __name__ == "__main__":
    main()
