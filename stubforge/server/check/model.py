"""One model's rules, in the order Triton meets their subjects: config, code, backend, stub, env, paths, store,
host."""

from __future__ import annotations

from pathlib import Path

from stubforge.core import releases
from stubforge.errors import StubforgeError
from stubforge.server.check import arch as arch_rules
from stubforge.server.check import env as env_rules
from stubforge.server.check import gpu as gpu_rules
from stubforge.server.check import host, model_code, paths, store
from stubforge.server.check import stub as stub_rules
from stubforge.server.check.report import ERROR, ModelCheck
from stubforge.triton import arch as arch_mod
from stubforge.triton import deployment, stores


def check_model(
    model_dir: Path,
    release: releases.Release,
    backends: Path | None,
    where: stores.Store = stores.LOCAL,
    server_arch: tuple[str, str] | None = None,
    library_path: tuple[str, ...] = (),
) -> ModelCheck:
    """`server_arch`: the deployment's architecture and where that came from (triton.arch.deployment_arch);
    `library_path`: what the server's LD_LIBRARY_PATH holds besides this process's, when known."""
    check = ModelCheck(name=model_dir.name, path=str(model_dir))
    try:
        resolved = deployment.resolve(model_dir, triton=release.branch, backends=backends)
    except StubforgeError as exc:
        check.add(ERROR, "config", exc.message, exc.hint or "fix config.pbtxt")
        return check
    check.backend = resolved.backend
    if not resolved.python_family:
        return check  # not a Python model (an ensemble or another platform): nothing of ours to check
    model_code.model_file(check, model_dir, resolved.model_file)
    stub_rules.backend(check, resolved, backends)
    stub = resolved.stub
    if stub is not None:
        check.stub = str(stub.path)
        stub_rules.stub_file(check, stub)
    env = resolved.env
    if env is not None:
        env_rules.env_path_error(check, env)
    env_path = env.path if env is not None else None
    if env is not None and env_path is not None:
        check.env = str(env_path)
        env_rules.env_contents(check, env, stub, release)
    env_is_dir = env_path is not None and env_path.is_dir()
    paths.path_chars(
        check,
        release,
        model_dir,
        env_dir=env_path if env_is_dir else None,
        env_archive=None if env_is_dir else env_path,
    )
    store.store_rules(check, resolved, where)
    arch_rules.pieces(check, resolved, server_arch or arch_mod.deployment_arch(None, backends))
    if stub is not None:
        stub_rules.libpython_reach(check, resolved, stub, release)
        gpu_rules.gpu_rules(check, resolved, backends, release, library_path)
    else:
        stub_rules.no_stub(check, model_dir, backends)
    if env_path is None:
        host.user_site(check, check.stub_python)
        host.path_python(check)
    return check
