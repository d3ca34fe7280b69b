"""`stubforge check`: the known pitfalls of a model repository, found from its files alone.

What Triton does with the files: docs/triton-behaviour.md. Which stub, env and Python serve a model is the
resolver's answer (stubforge.triton.deployment); the rules word findings from it. Nothing is started and nothing
is extracted: archives are read for their member list and a few small members. Each finding names the model,
what Triton would do, and a one-line fix; its `check` is the id of the rule that made it (rules.RULES, listed in
docs/check.md).

Rules by topic: model_code (the model's files), stub (backend and stub), env (the execution environment), paths
(characters the launcher cannot take), store (an object-store repository), host (this machine, for env-less
models), repository (across models).
"""

from __future__ import annotations

from pathlib import Path

from stubforge.core import releases
from stubforge.core.targets import Target
from stubforge.errors import StubforgeError
from stubforge.server.check.model import check_model
from stubforge.server.check.report import ERROR, WARN, CheckReport, Finding, ModelCheck
from stubforge.server.check.repository import repository_findings
from stubforge.server.check.rules import RULES, Rule
from stubforge.triton import arch, deployment, stores

__all__ = ["ERROR", "RULES", "WARN", "CheckReport", "Finding", "ModelCheck", "Rule", "check", "check_model"]


def check(
    repository: Path,
    *,
    triton: releases.Release | str = releases.DEFAULT_TRITON,
    backends: Path | None = None,
    target: Target | None = None,
    store: stores.Store | str = stores.LOCAL,
    library_path: tuple[str, ...] = (),
) -> CheckReport:
    """Check a model repository (or one model's directory) for `triton`'s pitfalls. `target`: the machine it
    will run on (None: the one the backends' libtriton_python.so is for, else this one); a stub, env or backend
    library of another architecture is an `arch` finding. `store`: where the server will read it from ("local",
    "s3", "gcs", "azure"): an object store adds its own rules (server/check/store.py). `library_path`: directories
    the server's LD_LIBRARY_PATH holds besides this process's (verify passes those of the server it starts)."""
    release = releases.as_release(triton)
    where = stores.get(store) if isinstance(store, str) else store
    if not repository.is_dir():
        raise StubforgeError(
            f"{repository}: no such directory", hint="pass a model repository or a model directory"
        )
    if (repository / deployment.CONFIG_NAME).is_file():
        model_dirs = [repository]
    else:
        model_dirs = deployment.list_models(repository)
        if not model_dirs:
            raise StubforgeError(
                f"{repository} holds no model (no config.pbtxt in it or its subdirectories)",
                hint="pass the model repository or one model's directory",
            )
    server_arch = arch.deployment_arch(target, backends)
    models = [check_model(d, release, backends, where, server_arch, library_path) for d in model_dirs]
    return CheckReport(
        str(repository), release.branch, models, repository_findings(models, release), store=where.name
    )
