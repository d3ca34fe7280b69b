"""`stubforge verify`: load every model of a repository in a real tritonserver and send each one request.

Models load one at a time with explicit model control. r24.10 waits forever for a stub that died before its first
message (TRITON_FACTS §5); such a stub shows up as an unreaped child of the server, so a load with a dead stub and
no answer after a grace period is reported as that hang, the server is killed and restarted for the remaining
models.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stubforge.core import cache, releases
from stubforge.errors import StubforgeError
from stubforge.server.verify import synthetic
from stubforge.server.verify import tritonserver as server_mod
from stubforge.triton import backends as backend_dirs
from stubforge.triton import envpath
from stubforge.triton.config import read_config

DEAD_STUB_GRACE_S = 3.0  # r25.08+ notices a dead stub itself; give it time to answer before calling it a hang
LOG_EXCERPT_LINES = 25


class VerifyError(StubforgeError):
    """The repository or the options cannot be verified at all (not: a model failed)."""


@dataclass
class ModelReport:
    name: str
    backend: str | None = None
    loaded: bool = False
    load_seconds: float | None = None
    response_ok: bool | None = None  # None: no request sent
    python: str | None = None  # X.Y of the libpython mapped into the running stub
    libpython: str | None = None
    numpy: str | None = None
    stub: str | None = None
    outputs: dict[str, list[Any]] = field(default_factory=dict)  # name -> [datatype, shape]
    error: str | None = None
    hung: bool = False  # the load never returned; the server had to be killed
    hint: str | None = None
    warnings: list[str] = field(default_factory=list)
    log_excerpt: str | None = None

    @property
    def ok(self) -> bool:
        return self.loaded and self.response_ok is not False and self.error is None


@dataclass
class VerifyReport:
    repository: str
    server: str
    server_version: str | None
    backends: str
    log: str
    models: list[ModelReport]
    seconds: float
    server_starts: int
    cleaned: list[str]
    path_python: str | None  # the first python3 on the server's PATH, and its X.Y

    @property
    def ok(self) -> bool:
        return bool(self.models) and all(m.ok for m in self.models)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        for model, report in zip(data["models"], self.models):
            model["ok"] = report.ok
        return data


def repository_models(repository: Path, names: tuple[str, ...] = ()) -> list[str]:
    if not repository.is_dir():
        raise VerifyError(f"{repository}: no such model repository", hint="pass the directory holding models")
    found = sorted(p.name for p in repository.iterdir() if p.is_dir() and (p / "config.pbtxt").is_file())
    if names:
        missing = [n for n in names if n not in found]
        if missing:
            raise VerifyError(
                f"{', '.join(missing)}: not a model of {repository} (no <name>/config.pbtxt)",
                hint="models there: " + (", ".join(found) or "none"),
            )
        return list(names)
    if not found:
        raise VerifyError(
            f"{repository} holds no model (no <name>/config.pbtxt)",
            hint="pass the model repository, the directory whose subdirectories are models",
        )
    return found


# Server log text → what to do. Order matters: the first match wins.
_EXPLANATIONS: list[tuple[str, str]] = [
    (
        r"error while loading shared libraries: (libpython(\d+\.\d+)m?\.so[\d.]*)",
        "the stub cannot find {0}: give the model an env of Python {1} (stubforge pack-env --python {1} "
        "--model {model}), or put the directory holding {0} on the server's LD_LIBRARY_PATH{where}",
    ),
    (
        r"Fatal Python error|No module named 'encodings'|init_fs_encoding",
        "the stub's Python could not start in this env: the env was packed for another Python version than "
        "the stub embeds; pack it with stubforge pack-env --stub {stub} --model {model}",
    ),
    (
        r"No module named 'numpy'",
        "numpy is not importable where the stub runs (the model's env, or without one the first python3 on "
        "the server's PATH) and the stub needs it: install numpy<2 there, or give the model an env "
        "(stubforge pack-env --model {model})",
    ),
    (
        r"numpy.core.multiarray failed to import|compiled using NumPy 1\.x cannot be run in\s+NumPy 2",
        "numpy 2 in the env of a stub built against pybind11 < 2.12: pack the env with numpy<2 or build the "
        "stub with --pybind11 2.12.0",
    ),
    (
        r"unexpected directory name '([^']+)' for model '([^']+)'",
        "the config.pbtxt in {0}/ names the model {1}: the name must equal the directory name",
    ),
    (
        r"Path (\S+)/bin/activate does not exist",
        "the env {0} has no bin/activate: it was not made by stubforge pack-env or conda-pack, or its "
        "extracted copy in /tmp was deleted while the server ran (a /tmp cleaner); repack it with "
        "stubforge pack-env --model {model}",
    ),
    (
        r"Stub process .* is not healthy",
        "the stub stopped answering (killed, or out of memory); see the log excerpt",
    ),
    (
        r"unable to find backend library for backend '([^']+)'",
        "there is no backend {0} in {backends}; a Python-based one is made with "
        "stubforge install backend --backends {backends} --python X.Y --name {0}",
    ),
]


_LOG_PREFIX = re.compile(r"^[IWE]\d{4} ")
_CONFIG_TEXT = re.compile(r"^\s*([A-Za-z_]+\s*[:{]|[}\]]|$)")


def excerpt_of(text: str, lines: int = LOG_EXCERPT_LINES) -> str:
    """Warnings, errors and whatever the stub printed; not the verbose info lines nor config dumps."""
    kept = [
        line
        for line in text.splitlines()
        if (line.startswith(("E", "W")) and _LOG_PREFIX.match(line))
        or (not _LOG_PREFIX.match(line) and not _CONFIG_TEXT.match(line))
    ]
    return "\n".join(kept[-lines:])


def explain(
    text: str,
    *,
    stub: Path | None = None,
    model: Path | None = None,
    env: dict[str, str] | None = None,
    backends: Path | None = None,
) -> str | None:
    for pattern, hint in _EXPLANATIONS:
        match = re.search(pattern, text)
        if match:
            groups = [g for g in match.groups() if g]
            where = ""
            if "{where}" in hint and env is not None:
                libdir = _path_python_libdir(env)
                if libdir and (Path(libdir) / groups[0]).exists():
                    where = f" (the first python3 on PATH has it in {libdir})"
            return hint.format(
                *groups,
                stub=stub or "STUB",
                model=model or "MODEL_DIR",
                where=where,
                backends=backends or "BACKENDS_DIR",
            )
    return None


def model_stub(model_dir: Path, backends: Path) -> Path | None:
    """The stub Triton starts for a model: its own, its Python-based backend's, or the stock backend's."""
    try:
        backend = read_config(model_dir).backend or backend_dirs.STOCK
    except StubforgeError:
        return None
    candidates = [
        model_dir / cache.STUB_NAME,
        backends / backend / cache.STUB_NAME,
        backends / backend_dirs.STOCK / cache.STUB_NAME,
    ]
    return next((c for c in candidates if c.is_file()), None)


def env_mismatch(model_dir: Path, backends: Path) -> str | None:
    """The stub a model will start and the env it gets, when their Pythons differ: a stub that cannot start."""
    stub = model_stub(model_dir, backends)
    if stub is None:
        return None
    info = read_config(model_dir)
    backend = info.backend or backend_dirs.STOCK
    value = info.parameters.get(envpath.EXECUTION_ENV_PATH)
    env: Path | None = None
    if value:
        try:
            env = envpath.validate_env_path(model_dir, value)
        except StubforgeError:
            return None
    elif (backends / backend / backend_dirs.DEFAULT_ENV).is_file():
        env = backends / backend / backend_dirs.DEFAULT_ENV
    if env is None:
        return None
    stub_minor, env_minor = backend_dirs.stub_python(stub), backend_dirs.env_python(env)
    if stub_minor and env_minor and stub_minor != env_minor:
        return (
            f"the stub {stub} embeds Python {stub_minor}, but the env {env} carries Python {env_minor}: "
            f"pack the env for that stub (stubforge pack-env --stub {stub} --model {model_dir})"
        )
    return None


def _numpy_version(numpy_dir: str | None) -> str | None:
    """From the dist-info beside the numpy package the stub mapped, else its version.py."""
    if not numpy_dir:
        return None
    for meta in sorted(Path(numpy_dir).parent.glob("numpy-*.*-info")):
        match = re.match(r"numpy-([^-]+)\.(?:dist|egg)-info$", meta.name)
        if match:
            return match.group(1)
    try:
        text = (Path(numpy_dir) / "version.py").read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"^(?:full_)?version\s*(?::\s*str\s*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
    return match.group(1) if match else None


def _stub_pybind11(stub: str | None, server_version: str | None) -> str | None:
    """The pybind11 a stub was built with: its stubforge manifest, else the release's pin."""
    if stub:
        _, pybind11 = backend_dirs.manifest_release(backend_dirs.stub_manifest(Path(stub)))
        if pybind11:
            return pybind11
    if server_version:
        try:
            return releases.get(server_version).pybind11
        except StubforgeError:
            return None
    return None


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


def _probe_path_python(env: dict[str, str]) -> tuple[str | None, str | None, str | None]:
    """(path, X.Y, libdir) of the first python3 on the server's PATH: a model without an env runs in it."""
    python = shutil.which("python3", path=env.get("PATH"))
    if not python:
        return None, None, None
    code = "import sys, sysconfig; print('%d.%d' % sys.version_info[:2], sysconfig.get_config_var('LIBDIR') or '')"
    try:
        out = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=30, check=False, env=env, cwd="/"
        ).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return python, None, None
    return python, (out[0] if out else None), (out[1] if len(out) > 1 else None)


def _path_python_libdir(env: dict[str, str]) -> str | None:
    return _probe_path_python(env)[2]


def _path_python(env: dict[str, str]) -> tuple[str | None, str | None]:
    path, minor, _ = _probe_path_python(env)
    return path, minor


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
    _, minor = _path_python(env)
    if minor and (stubs / minor / cache.STUB_NAME).is_file():
        shutil.copy2(stubs / minor / cache.STUB_NAME, copy / backend_dirs.STOCK / cache.STUB_NAME)
    return copy


def verify(
    repository: Path,
    install: server_mod.ServerInstall,
    *,
    backends: Path | None = None,
    models: tuple[str, ...] = (),
    load_timeout: float = 120.0,
    request_timeout: float = 60.0,
    log_path: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> VerifyReport:
    repository = repository.resolve()
    # The server runs with the repository as its working directory: a relative --backends would move.
    backends = backends.resolve() if backends is not None else None
    names = repository_models(repository, models)
    started = time.monotonic()
    env = _server_env(install, extra_env)
    with tempfile.TemporaryDirectory(prefix="stubforge-verify-") as scratch_name:
        scratch = Path(scratch_name)
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
        server_version = None
        starts = 0
        pending = list(names)
        while pending:
            starts += 1
            server = server_mod.RunningServer(
                install, repository, served_backends, log, env, _python_backends(served_backends)
            )
            try:
                server.wait_live(60.0)
                server_version = server_version or _server_version(server)
                while pending:
                    name = pending.pop(0)
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
                    if report.hung or not server.alive():
                        break
            finally:
                # r24.10 ignores SIGINT while a load hangs: no point waiting for a clean stop then.
                hung = any(r.hung for r in reports.values())
                server.stop(grace=1.0 if hung or not server.alive() else 15.0)
                cleaned += server.cleanup()
    return VerifyReport(
        repository=str(repository),
        server=str(install.binary),
        server_version=server_version,
        backends=backends_note,
        log=str(log),
        models=[reports[n] for n in names if n in reports],
        seconds=round(time.monotonic() - started, 2),
        server_starts=starts,
        cleaned=cleaned,
        path_python=" ".join(p for p in _path_python(env) if p) or None,
    )


def _client(server: server_mod.RunningServer) -> Any:
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(server.grpc_url)


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
    outcome, report.hung = _load(server, name, load_timeout)
    elapsed = time.monotonic() - t0
    if outcome is not None:
        report.error = outcome
        report.load_seconds = round(elapsed, 2)
        excerpt = server.log_since(offset)
        report.log_excerpt = excerpt_of(excerpt)
        model_dir = server.repository / name
        report.hint = env_mismatch(model_dir, backends) or explain(
            excerpt,
            stub=model_stub(model_dir, backends),
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
    stubs = [s for s in server.stubs() if s.model == name]
    if stubs:
        stub = stubs[0]
        report.stub = stub.exe
        report.libpython = stub.libpython
        if stub.libpython:
            match = re.match(r"libpython(\d+\.\d+)", Path(stub.libpython).name)
            report.python = match.group(1) if match else None
        report.numpy = _numpy_version(stub.numpy)
        pybind11 = _stub_pybind11(stub.exe, server_version)
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


def _load(server: server_mod.RunningServer, name: str, timeout: float) -> tuple[str | None, bool]:
    """(None, False) when loaded; else (why not, whether it hung). Never blocks much longer than `timeout`."""
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
                return (
                    f"the stub of {name} exited before it started the model and the server waits for it "
                    "forever (the r24.10 hang); the server was killed",
                    True,
                )
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
        if shape and int(np.prod(shape)) == 0 and all(item.data.size for item in inputs):
            report.warnings.append(f"output {output['name']} came back empty (shape {shape})")
    report.response_ok = True
