"""The hint for a stub that cannot start names the real cause."""

from __future__ import annotations

from pathlib import Path

from stubforge.runner.launcher.stub import LaunchSpec, _hint_for

NO_NUMPY = "Traceback (most recent call last):\nModuleNotFoundError: No module named 'numpy'\n"


def _spec(env: Path | None) -> LaunchSpec:
    return LaunchSpec(
        stub=Path("/s"),
        model_path=Path("/m/1/model.py"),
        python_lib=Path("/r"),
        instance="m_0_0",
        env_dir=env,
    )


def test_an_env_without_bin_python3_is_named_not_numpy(tmp_path: Path) -> None:
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "activate").write_text("")
    hint = _hint_for(NO_NUMPY, _spec(env))
    assert "has no bin/python3" in hint and "add numpy" not in hint
    (env / "bin" / "python3").write_text("")
    assert "add numpy" in _hint_for(NO_NUMPY, _spec(env))
    assert "add numpy" in _hint_for(NO_NUMPY, _spec(None))
