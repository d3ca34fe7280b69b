"""Rule arch: a stub, env or backend library built for another architecture than the server's."""

from __future__ import annotations

from stubforge.core.targets import host_target
from stubforge.server.check.report import ERROR, ModelCheck
from stubforge.triton import arch as arch_mod
from stubforge.triton import deployment


def pieces(check: ModelCheck, resolved: deployment.Deployment, server: tuple[str, str]) -> None:
    """Each piece Triton will load for this model, against the deployment's architecture (`server`: the arch
    and where that answer came from)."""
    server_arch, source = server
    found: list[tuple[str, str, str | None]] = []
    if resolved.stub is not None:
        found.append(("stub", str(resolved.stub.path), arch_mod.file_arch(resolved.stub.path)))
    if resolved.backend_dir is not None and resolved.backend != deployment.STOCK:
        library = resolved.backend_dir / arch_mod.LIBRARY
        if library.is_file():
            found.append(("backend library", str(library), arch_mod.file_arch(library)))
    env = resolved.env
    if env is not None and env.path is not None and env.contents is not None:
        found.append(("env", str(env.path), arch_mod.env_arch(env.contents)))
    for kind, path, its_arch in found:
        if its_arch is not None and its_arch != server_arch:
            check.add(
                ERROR,
                "arch",
                f"the {kind} {path} is for {its_arch}, the server is {server_arch} ({source}): "
                f"Triton cannot run it (Exec format error)",
                _fix(kind, server_arch),
            )


def _fix(kind: str, server_arch: str) -> str:
    if kind == "env":
        return f"pack the env for {server_arch}: stubforge pack-env --arch {server_arch} ..."
    if kind == "backend library":
        return (
            "copy libtriton_python.so from this server's backends/python (stubforge install backend --force)"
        )
    return f"build the stub for {server_arch} ({build_command(server_arch)}) and install it with --force"


def build_command(server_arch: str) -> str:
    """How to build a stub for that machine from this one."""
    if server_arch == host_target().arch:
        return "stubforge build --python X.Y"
    return f"stubforge build --python X.Y --arch {server_arch} --sysroot DIR"
