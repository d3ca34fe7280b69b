"""--backend-config values: every bad one is a clear error (exit 2, JSON under --json), never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stubforge.runner import backend_config
from stubforge.runner.backend_config import BackendConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"shm-default-byte-size": str(2**64)}, "larger than"),
        ({"shm-growth-byte-size": str(2**64)}, "larger than"),
        ({"shm-default-byte-size": "1k"}, "not a number of bytes"),
        ({"shm-default-byte-size": "1000"}, "below the minimum 1048576"),
        ({"shm-growth-byte-size": "0"}, "below the minimum 1"),
        ({"shm-region-prefix-name": "p" * 300}, "300 characters long"),
        ({"shm-region-prefix-name": "a/b"}, "not usable"),
        ({"shm-region-prefix-name": ""}, "not usable"),
        ({"": "1"}, "empty key"),
    ],
)
def test_bad_values_are_named(config: dict[str, str], words: str) -> None:
    with pytest.raises(BackendConfigError, match=words) as caught:
        backend_config.shm_settings(config)
    assert caught.value.hint and caught.value.exit_code == 2


def test_good_values_and_defaults() -> None:
    assert backend_config.shm_settings(None) == backend_config.ShmSettings()
    settings = backend_config.shm_settings(
        {"shm-default-byte-size": "2097152", "shm-growth-byte-size": "65536", "shm-region-prefix-name": "x_"}
    )
    assert (settings.prefix, settings.default_size, settings.growth) == ("x_", 2097152, 65536)
    longest = "p" * backend_config.MAX_PREFIX_LENGTH
    assert backend_config.shm_settings({"shm-region-prefix-name": longest}).prefix == longest


@pytest.mark.parametrize(
    "item",
    [
        f"shm-default-byte-size={2**64}",
        f"shm-growth-byte-size={2**64}",
        "shm-region-prefix-name=" + "p" * 300,
        "=1",
    ],
)
def test_the_cli_exits_2_with_json(item: str, tmp_path: Path) -> None:
    model = tmp_path / "m"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(
        "class TritonPythonModel:\n    def execute(self, requests):\n        return []\n"
    )
    (model / "config.pbtxt").write_text('name: "m"\nbackend: "python"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "stubforge", "run", str(model), "--backend-config", item, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=str(ROOT),
        env=dict(os.environ),
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert "--backend-config" in report["error"] and report["hint"]
