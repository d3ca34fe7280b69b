"""A stand-in for `micromamba create -y -p PREFIX python=X.Y PKG...` (conda channels are unreachable here).

Same command line, same result shape: a conda environment at PREFIX (tests/condaenv.py) holding the requested
Python and a conda-meta record per requested package. Installed on PATH as `micromamba` by the tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stubforge.core import pythons
from tests.condaenv import make_conda_prefix


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "create" or "-p" not in argv:
        print(f"fake micromamba: unsupported arguments {argv}", file=sys.stderr)
        return 2
    prefix = Path(argv[argv.index("-p") + 1])
    specs = [a for a in argv[argv.index("-p") + 2 :] if not a.startswith("-")]
    python = next((s.split("=", 1)[1] for s in specs if s.startswith("python=")), None)
    if python is None:
        print("fake micromamba: python=X.Y is required", file=sys.stderr)
        return 2
    unknown = [s for s in specs if s.startswith("no-such-")]
    if unknown:  # how a real solver fails
        print(f"error    libmamba Could not solve for environment specs\n    nothing provides {unknown[0]}")
        return 1
    others = tuple(s for s in specs if not s.startswith("python="))
    make_conda_prefix(prefix.parent / f"{prefix.name}-pkgs", pythons.resolve(python), [], prefix, others)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
