"""`stubforge verify`: load every model of a repository in a real tritonserver and send each one request.

Models load one at a time with explicit model control. Releases with `hangs_on_dead_stub` (r24.10, the one
nvidia-pytriton ships) wait forever for a stub that died before its first message (docs/triton-behaviour.md,
"Health, failures and lifecycle"); such a stub shows up as an unreaped child of the server, so a load with a dead stub
and no answer after a grace period is reported as that hang, the server is killed and restarted for the remaining
models. The release is the one the server reports (its version), not a --triton option. Which stub and env a
model gets is the resolver's answer (stubforge.triton.deployment).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from stubforge.core import cache, emulation, releases
from stubforge.core.targets import Target, as_target
from stubforge.envs import envarch
from stubforge.progress import QUIET, Progress
from stubforge.server import s3 as s3mod
from stubforge.server.verify import stubmodes, synthetic
from stubforge.server.verify import tritonserver as server_mod
from stubforge.server.verify.explain import (
    dead_stub_message,
    env_mismatch,
    excerpt_of,
    explain,
    model_stub,
    numpy_version,
    path_python,
    release_of,
    stub_pybind11,
)
from stubforge.server.verify.report import ModelReport, VerifyError, VerifyReport
from stubforge.triton import backends as backend_dirs
from stubforge.triton import deployment, stores, stubinfo

SMALL_OUTPUT = 16  # outputs of at most this many elements are reported with their values
DEAD_STUB_GRACE_S = 3.0  # r25.08+ notices a dead stub itself; give it time to answer before calling it a hang


def repository_models(repository: Path, names: tuple[str, ...] = ()) -> list[str]:
    if not repository.is_dir():
        raise VerifyError(f"{repository}: no such model repository", hint="pass the directory holding models")
    found = [p.name for p in deployment.list_models(repository)]
    return _chosen(
        found,
        names,
        f"{repository}",
        "(no <name>/config.pbtxt)",
        "pass the model repository, the directory whose subdirectories are models",
    )


def _store_models(location: stores.S3Location, names: tuple[str, ...]) -> list[str]:
    found = s3mod.model_names(s3mod.client(location), location)
    return _chosen(
        found,
        names,
        f"{location}",
        "(no <name>/config.pbtxt object under it)",
        "push the repository first (stubforge push REPO URL), or fix the bucket or prefix",
    )


def _chosen(found: list[str], names: tuple[str, ...], where: str, marker: str, empty_hint: str) -> list[str]:
    """`names` when each is a model `where` holds, else every model found; an error naming what is missing."""
    if names:
        missing = [n for n in names if n not in found]
        if missing:
            raise VerifyError(
                f"{', '.join(missing)}: not a model of {where} {marker}",
                hint="models there: " + (", ".join(found) or "none"),
            )
        return list(names)
    if not found:
        raise VerifyError(f"{where} holds no model {marker}", hint=empty_hint)
    return found


def _python_backends(backends: Path) -> list[str]:
    names = {backend_dirs.STOCK}
    if backends.is_dir():
        names.update(b.name for b in backend_dirs.list_backends(backends))
    return sorted(names)


def _server_env(install: server_mod.ServerInstall, extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra or {})
    if install.library_path:
        current = env.get("LD_LIBRARY_PATH", "")
        env["LD_LIBRARY_PATH"] = os.pathsep.join(install.library_path + ([current] if current else []))
    return env


def _prepare_backends(
    install: server_mod.ServerInstall, backends: Path | None, env: dict[str, str], scratch: Path
) -> Path:
    """The backend directory to serve from: --backends, the server's own, or (nvidia-pytriton, whose python/ has
    no stub) a scratch copy given the wheel's stub for the first python3 on PATH, as pytriton itself does."""
    if backends is not None:
        if not backends.is_dir():
            raise VerifyError(
                f"--backends {backends}: no such directory", hint="pass Triton's backend directory"
            )
        return backends
    own = install.backends
    if not own.is_dir():
        raise VerifyError(f"{own}: the server's backend directory does not exist", hint="pass --backends DIR")
    stubs = install.prebuilt_stubs
    if (own / backend_dirs.STOCK / cache.STUB_NAME).is_file() or stubs is None:
        return own
    copy = scratch / "backends"
    shutil.copytree(own, copy)
    _, minor = path_python(env)
    if minor and (stubs / minor / cache.STUB_NAME).is_file():
        shutil.copy2(stubs / minor / cache.STUB_NAME, copy / backend_dirs.STOCK / cache.STUB_NAME)
    return copy


def verify(
    repository: Path | stores.S3Location,
    install: server_mod.ServerInstall,
    *,
    backends: Path | None = None,
    models: tuple[str, ...] = (),
    load_timeout: float = 120.0,
    request_timeout: float = 60.0,
    log_path: Path | None = None,
    extra_env: dict[str, str] | None = None,
    target: Target | None = None,
    progress: Progress = QUIET,
) -> VerifyReport:
    """Load every model (or `models`) of `repository` in the server of `install`, one request each. `target`:
    the machine the server is built for (None: this one); another architecture runs under emulation, with every
    timeout scaled for it, and a model whose env is of another architecture is reported without being loaded.

    `repository` is a directory or an s3:// location the server reads directly: it gets the AWS credentials
    this process resolves, and its copies of the models go to a private directory of this run (the store's
    mount variable), removed with it (docs/triton-behaviour.md, "Repositories in object stores (s3)")."""
    machine = as_target(target)
    runs = emulation.require(machine, f"the {machine.arch} tritonserver {install.binary}")
    load_timeout *= runs.timeout_factor
    request_timeout *= runs.timeout_factor
    location: stores.S3Location | None = None
    local: Path | None = None
    if isinstance(repository, stores.S3Location):
        location = repository
        names = _store_models(location, models)
        served: Path | str = location.triton_url
    else:
        local = served = repository.resolve()
        names = repository_models(local, models)
    # The server runs with the repository as its working directory: a relative --backends would move.
    backends = backends.resolve() if backends is not None else None
    started = time.monotonic()
    env = _server_env(install, extra_env)
    if location is not None:
        env.update(s3mod.server_credentials())
    with tempfile.TemporaryDirectory(prefix="stubforge-verify-") as scratch_name:
        scratch = Path(scratch_name)
        copies = scratch / "store-copies"
        if location is not None and stores.S3.mount_variable:
            copies.mkdir()
            env[stores.S3.mount_variable] = str(copies)
        served_backends = _prepare_backends(install, backends, env, scratch)
        backends_note = str(served_backends)
        # A scratch copy (--pytriton) disappears after the run: hints name the directory the user has.
        shown_backends = install.backends if served_backends.is_relative_to(scratch) else served_backends
        if served_backends.is_relative_to(scratch):
            backends_note = f"{install.backends} + the wheel's stub for the first python3 on PATH"
        log = log_path or (
            cache.root() / "logs" / f"verify-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
        )
        log.parent.mkdir(parents=True, exist_ok=True)
        reports: dict[str, ModelReport] = {}
        cleaned: list[str] = []
        modes = stubmodes.StubModes(
            local, names, None if served_backends.is_relative_to(scratch) else served_backends
        )
        server_version = None
        starts = 0
        pending = list(names)
        try:
            while pending:
                starts += 1
                progress.step("start", f"tritonserver ({len(pending)} model(s) to load)")
                server = server_mod.RunningServer(
                    install,
                    served,
                    served_backends,
                    log,
                    env,
                    _python_backends(served_backends),
                    cwd=local or scratch,
                )
                verified_here: list[str] = []
                finished = False
                try:
                    server.wait_live(60.0 * runs.timeout_factor)
                    server_version = server_version or _server_version(server)
                    while pending:
                        name = pending.pop(0)
                        progress.step("load", name if runs.native else f"{name} ({runs.describe()})")
                        wrong_env = (
                            _env_of_other_arch(local / name, served_backends, machine.arch)
                            if local is not None
                            else None
                        )
                        if wrong_env is not None:
                            reports[name] = wrong_env
                            progress.step("failed", name)
                            continue
                        report = _verify_model(
                            server,
                            name,
                            served_backends,
                            shown_backends,
                            load_timeout,
                            request_timeout,
                            server_version,
                        )
                        reports[name] = report
                        verified_here.append(name)
                        progress.step("ok" if report.ok else "failed", name)
                        if report.hung or not server.alive():
                            break
                    finished = True
                finally:
                    hung = any(r.hung for r in reports.values())
                    progress.step("stop", "tritonserver")
                    if finished and server.alive() and all(reports[n].ok for n in verified_here):
                        # Every model answered: nothing more to learn from the server, so it is killed rather than
                        # stopped (a clean stop waits about a second per stub finalizing). What it leaves is
                        # removed below: its regions, the env dirs its stubs ran from, its process group.
                        server.remember_envs()
                        server.stop(grace=0.0)
                    else:
                        # A failed load may leave an extracted env no stub names: let the server remove its own.
                        # A server hanging on a dead stub ignores SIGINT: no point waiting for a clean stop then.
                        if not hung and server.alive():
                            _unload_all(server)
                        server.stop(grace=1.0 if hung or not server.alive() else 15.0)
                    cleaned += server.cleanup()
                    cleaned += _remove_copies(copies)
        finally:
            # Even when interrupted: the user's stubs keep the modes they had.
            modes.restore(reports)
    return VerifyReport(
        repository=str(local or location),
        server=str(install.binary),
        server_version=server_version,
        backends=backends_note,
        log=str(log),
        models=[reports[n] for n in names if n in reports],
        seconds=round(time.monotonic() - started, 2),
        server_starts=starts,
        cleaned=cleaned,
        path_python=" ".join(p for p in path_python(env) if p) or None,
        arch=machine.arch,
        emulation=runs.describe(),
    )


def _remove_copies(copies: Path) -> list[str]:
    """The model copies a killed server left in this run's mount directory (a clean stop removes its own)."""
    removed = []
    if copies.is_dir():
        for entry in sorted(copies.iterdir()):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(str(entry))
    return removed


def _env_of_other_arch(model_dir: Path, backends: Path, arch: str) -> ModelReport | None:
    """A failed report, without loading, for a model whose env is built for another architecture than the
    server's (the server would fail with a loader message that does not say so)."""
    try:
        env = deployment.resolve(model_dir, backends=backends).env
    except Exception:
        return None  # an unreadable config: the server's own error says more
    if env is None or env.path is None:
        return None
    env_arch = envarch.env_arch(env.path)
    if env_arch is None or env_arch == arch:
        return None
    report = ModelReport(model_dir.name)
    report.error = f"its env {env.path} is built for {env_arch}, but the server runs {arch}; not loaded"
    report.hint = (
        f"pack the env for {arch}: stubforge pack-env --arch {arch} --sysroot DIR --python X.Y ... "
        f"(or verify with --arch {env_arch})"
    )
    return report


def _client(server: server_mod.RunningServer) -> Any:
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(server.grpc_url)


UNLOAD_WAIT_S = 15.0
_GONE = ("UNAVAILABLE",)


def _unload_all(server: server_mod.RunningServer) -> None:
    """Unload every model and wait until each is gone, so the server's own shutdown finds no live model at its
    first count instead of polling once a second while stubs finalize (docs/triton-behaviour.md: "Health,
    failures and lifecycle"). Best effort: whatever fails here, stop() still stops the server."""
    try:
        client = _client(server)
        loaded = [
            m["name"]
            for m in client.get_model_repository_index(as_json=True).get("models", [])
            if m.get("state") not in _GONE and m.get("state")
        ]
        for name in loaded:
            client.unload_model(name)
        deadline = time.monotonic() + UNLOAD_WAIT_S
        while loaded and time.monotonic() < deadline and server.alive():
            index = client.get_model_repository_index(as_json=True).get("models", [])
            states = {m["name"]: m.get("state") for m in index}
            loaded = [n for n in loaded if states.get(n) not in _GONE]
            if loaded:
                time.sleep(0.02)
    except Exception:  # the server is stopped below whatever happened here
        return


def _server_version(server: server_mod.RunningServer) -> str | None:
    try:
        return str(_client(server).get_server_metadata(as_json=True).get("version"))
    except Exception:
        return None


def _verify_model(
    server: server_mod.RunningServer,
    name: str,
    backends: Path,
    shown_backends: Path,
    load_timeout: float,
    request_timeout: float,
    server_version: str | None,
) -> ModelReport:
    report = ModelReport(name)
    offset = server.log_offset()
    t0 = time.monotonic()
    outcome, report.hung = _load(server, name, load_timeout, release_of(server_version))
    elapsed = time.monotonic() - t0
    if outcome is not None:
        report.error = outcome
        report.load_seconds = round(elapsed, 2)
        excerpt = server.log_since(offset)
        report.log_excerpt = excerpt_of(excerpt)
        local = server.local_repository
        model_dir = local / name if local is not None else None  # an object store's model: no local files
        report.hint = (env_mismatch(model_dir, backends) if model_dir else None) or explain(
            excerpt,
            stub=model_stub(model_dir, backends) if model_dir else None,
            model=model_dir,
            env=server.env,
            # A scratch copy (--pytriton) disappears after the run: name the directory the user has.
            backends=server.install.backends
            if backends.name == "backends" and "stubforge-verify-" in str(backends)
            else backends,
        )
        return report
    report.loaded = True
    report.load_seconds = round(elapsed, 2)
    client = _client(server)
    config = client.get_model_config(name, as_json=True).get("config", {})
    report.backend = config.get("backend") or config.get("platform")
    stubs = [s for s in server.stubs() if _serves(s, name, server)]
    if stubs:
        stub = stubs[0]
        report.stub = stub.exe
        report.libpython = stub.libpython
        if stub.libpython:
            report.python = stubinfo.libpython_minor(Path(stub.libpython).name)
        report.numpy = numpy_version(stub.numpy)
        pybind11 = stub_pybind11(stub.exe, server_version)
        if report.numpy and pybind11 and releases.numpy2_breaks(report.numpy, pybind11):
            report.error = (
                f"numpy {report.numpy} runs in a stub built with pybind11 {pybind11}: tensors cross the "
                "boundary wrong (empty or garbage outputs, no error from Triton)"
            )
            report.hint = (
                "pack the env with numpy<2 (stubforge pack-env --stub STUB does this), or build the stub with "
                "stubforge build --pybind11 2.12.0"
            )
    _request(client, name, config, request_timeout, report)
    if report.response_ok is False or report.error:
        excerpt = server.log_since(offset)
        report.log_excerpt = excerpt_of(excerpt)
        report.hint = report.hint or explain(excerpt)
    return report


def _serves(stub: server_mod.StubProcess, name: str, server: server_mod.RunningServer) -> bool:
    """Whether a stub runs model `name`. From an object store the model file lies in the server's copy
    (folderXXXXXX), so the instance name Triton gives (<model>_<group>_<index>) tells instead."""
    if server.local_repository is not None:
        return stub.model == name
    return re.fullmatch(re.escape(name) + r"_\d+_\d+", stub.instance) is not None


def _load(
    server: server_mod.RunningServer, name: str, timeout: float, release: releases.Release | None = None
) -> tuple[str | None, bool]:
    """(None, False) when loaded; else (why not, whether it hung). Never blocks much longer than `timeout`.
    `release`: the server's, for the words of the dead-stub message (None: not known)."""
    result: dict[str, BaseException | None] = {}

    def load() -> None:
        try:
            _client(server).load_model(name)
            result["error"] = None
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    dead_since: float | None = None
    while thread.is_alive():
        thread.join(0.1)
        if not thread.is_alive():
            break
        if not server.alive():
            return f"tritonserver exited (code {server.process.returncode}) while loading {name}", False
        now = time.monotonic()
        if not server.dead_stubs():
            dead_since = None
        else:
            dead_since = dead_since or now
            if now - dead_since > DEAD_STUB_GRACE_S:
                return dead_stub_message(name, release), True
        if now > deadline:
            return f"{name} did not load within {timeout:.0f} s; the server was killed", True
    error = result.get("error")
    if error is None:
        return None, False
    message = getattr(error, "message", None)
    return f"load failed: {message() if callable(message) else error}", False


def _request(client: Any, name: str, config: dict[str, Any], timeout: float, report: ModelReport) -> None:
    import tritonclient.grpc as grpcclient

    try:
        inputs = synthetic.inputs_for(config)
    except synthetic.UnsupportedInput as exc:
        report.warnings.append(f"no request sent: {exc}")
        return
    if (config.get("model_transaction_policy") or {}).get("decoupled"):
        report.warnings.append("no request sent: decoupled models answer over a stream (not yet verified)")
        return
    tensors = []
    for item in inputs:
        tensor = grpcclient.InferInput(item.name, list(item.data.shape), item.datatype)
        tensor.set_data_from_numpy(item.data)
        tensors.append(tensor)
    sequence = (
        {"sequence_id": 1, "sequence_start": True, "sequence_end": True}
        if "sequence_batching" in config
        else {}
    )
    try:
        result = client.infer(name, tensors, client_timeout=timeout, **sequence)
    except Exception as exc:
        message = getattr(exc, "message", None)
        report.response_ok = False
        report.error = f"request failed: {message() if callable(message) else exc}"
        return
    response = result.get_response(as_json=True)
    for output in response.get("outputs", []):
        shape = [int(d) for d in output.get("shape", [])]
        report.outputs[output["name"]] = [output.get("datatype"), shape]
        if shape and int(np.prod(shape)) <= SMALL_OUTPUT:
            try:
                array = result.as_numpy(output["name"])
            except ValueError as exc:  # the response's data does not fill the shape it declares
                report.warnings.append(f"output {output['name']} cannot be read as {shape}: {exc}")
                array = None
            if array is not None:
                report.values[output["name"]] = [
                    v.decode("utf-8", "replace") if isinstance(v, bytes) else v.item() for v in array.flat
                ]
        if shape and int(np.prod(shape)) == 0 and all(item.data.size for item in inputs):
            report.warnings.append(f"output {output['name']} came back empty (shape {shape})")
    report.response_ok = True
