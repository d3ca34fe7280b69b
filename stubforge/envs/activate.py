"""bin/activate for an execution environment.

r24.10 sources it with bash before exec'ing the stub; r25.08+ never runs it and sets VIRTUAL_ENV, PATH and
LD_LIBRARY_PATH itself (docs/triton-behaviour.md: "EXECUTION_ENV_PATH and extraction"). So the script only
repeats what r25.08 does, finds the env from its
own location (the env is extracted to a random /tmp/python_env_XXXXXX/N), and nothing else depends on it.
"""

from __future__ import annotations

import os
from pathlib import Path

ACTIVATE = r"""# Written by stubforge. Sourced by Triton r24.10 and older; r25.08+ sets the same variables itself.
# Relocatable: the env directory is found from this file's own path.
if [ -n "${BASH_SOURCE-}" ]; then
    _sf_env="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
else
    _sf_env="$(cd "$(dirname "$0")/.." && pwd)"
fi
export VIRTUAL_ENV="$_sf_env"
export PATH="$_sf_env/bin${PATH:+:$PATH}"
export LD_LIBRARY_PATH="$_sf_env/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset PYTHONHOME
unset _sf_env
"""


def write(env_dir: Path) -> Path:
    path = env_dir / "bin" / "activate"
    path.write_text(ACTIVATE)
    os.chmod(path, 0o644)
    return path
