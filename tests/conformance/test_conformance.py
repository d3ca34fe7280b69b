"""Triton's own Python models (STUBFORGE_CONFORMANCE_MODELS) in the runner and in tritonserver 2.51: a table and
a score of same / different / unsupported, with every difference. Opt-in: marker `conformance`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stubforge.runner import api as runner
from stubforge.server.verify import tritonserver as server_mod
from tests.conformance import suite
from tests.e2e.conftest import World

pytestmark = [pytest.mark.conformance, pytest.mark.e2e]


def test_triton_models_answer_the_same(
    world: World, triton_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tritonclient.grpc as grpcclient

    monkeypatch.setenv("STUBFORGE_CACHE", str(world.cache))
    env = world.root / "conformance-env38"
    if not env.exists():
        world.stubforge("pack-env", "--python", "3.8", "--dir", str(env), "-q")
    cases = suite.collect(triton_models)
    repo = tmp_path / "repo"
    suite.layout(cases, repo)
    for config in repo.glob("*/config.pbtxt"):
        with config.open("a") as fh:
            fh.write(f'\nparameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{env}" }} }}\n')
    backends = tmp_path / "backends"
    shutil.copytree(world.server_root / "backends", backends)
    shutil.copy2(world.wheel_stub("3.8"), backends / "python" / "triton_python_backend_stub")

    rows: list[suite.Row] = []
    runnable = [c for c in cases if not c.reason]
    rows += [suite.Row(c.name, "unsupported", c.reason) for c in cases if c.reason]
    triton: dict[str, object] = {}
    install = server_mod.from_binary(world.server_root / "bin" / "tritonserver")
    server = server_mod.RunningServer(
        install, repo, backends, tmp_path / "server.log", world.env(), ["python"]
    )
    try:
        server.wait_live(60)
        client = grpcclient.InferenceServerClient(server.grpc_url)
        for case in runnable:
            try:
                client.load_model(case.name)
            except Exception as exc:
                triton[case.name] = ("load", str(exc.message()) if hasattr(exc, "message") else str(exc))
                continue
            triton[case.name] = suite.from_triton(client, grpcclient, case, suite.inputs(case.config))
    finally:
        server.stop()
        server.cleanup()
    for case in runnable:
        try:
            with runner.load(repo / case.name, execute_timeout=60) as model:
                ours = suite.from_runner(model, suite.inputs(case.config))
        except Exception as exc:
            status = getattr(exc, "status", None)
            ours = ("load", status.message if status is not None else str(exc))
        theirs = triton[case.name]
        if (
            isinstance(theirs, tuple)
            and theirs[0] == "load"
            and isinstance(ours, tuple)
            and ours[0] == "load"
        ):
            # the load API's text ends in the version's state; both sides failed to load
            verdict = (
                "same"
                if theirs[1].endswith(ours[1].split("Internal: ")[-1].rstrip(";\n")) or theirs[1] == ours[1]
                else "different"
            )
        else:
            verdict = "same" if suite.same(ours, theirs) else "different"
        detail = "" if verdict == "same" else f"runner {ours!r} | triton {theirs!r}"
        rows.append(suite.Row(case.name, verdict, detail))
    rows.sort(key=lambda r: (r.verdict != "different", r.verdict, r.name))
    print("\n" + suite.table(rows))
    assert any(r.verdict == "same" for r in rows), "nothing ran the same: the suite itself is broken"
