"""`stubforge check`: the known pitfalls of a model repository, found from its files alone.

What Triton does with the files: docs/triton-behaviour.md. Which stub, env and Python serve a model is the
resolver's answer (stubforge.triton.deployment); this module words findings from it.
Nothing is started and nothing is extracted: archives are read for their member list and a few small members.
Each finding names the model, what Triton would do, and a one-line fix.
"""

from __future__ import annotations

import ast
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stubforge.core import cache, elf, releases
from stubforge.core.targets import Target
from stubforge.envs import archive as archive_rules
from stubforge.errors import StubforgeError
from stubforge.triton import deployment, libpython
from stubforge.triton.config import read_config, schema
from stubforge.triton.envinfo import EnvContents
from stubforge.triton.stubinfo import StubInfo

ERROR, WARN = "ERROR", "WARN"
HEAVY_MODULES = {"torch", "tensorflow", "transformers", "jax", "onnxruntime", "tensorrt", "cv2", "vllm"}
DEFAULT_SHM = 1 << 20


@dataclass
class Finding:
    level: str
    check: str
    message: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


@dataclass
class ModelCheck:
    name: str
    path: str
    findings: list[Finding] = field(default_factory=list)
    stub: str | None = None
    stub_python: str | None = None
    env: str | None = None
    env_python: str | None = None
    backend: str | None = None

    def add(self, level: str, check: str, message: str, fix: str) -> None:
        self.findings.append(Finding(level, check, message, fix))

    @property
    def status(self) -> str:
        levels = {f.level for f in self.findings}
        return ERROR if ERROR in levels else WARN if WARN in levels else "OK"

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "findings"}
        data["status"] = self.status
        data["findings"] = [f.to_dict() for f in self.findings]
        return data


@dataclass
class CheckReport:
    target: str
    triton: str
    models: list[ModelCheck]
    repository: list[Finding]

    @property
    def errors(self) -> int:
        return sum(f.level == ERROR for m in self.models for f in m.findings) + sum(
            f.level == ERROR for f in self.repository
        )

    @property
    def warnings(self) -> int:
        return sum(f.level == WARN for m in self.models for f in m.findings) + sum(
            f.level == WARN for f in self.repository
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "triton": self.triton,
            "errors": self.errors,
            "warnings": self.warnings,
            "models": [m.to_dict() for m in self.models],
            "repository": [f.to_dict() for f in self.repository],
        }


def _unsafe_member(contents: EnvContents) -> str | None:
    """The first archive member the runner (and r26.06+) refuses to extract, worded; None when all are safe."""
    # The same rules extraction applies: the runner refuses exactly what is flagged here.
    finding = archive_rules.audit(contents.member_list)
    if finding is None:
        return None
    return f"{contents.path}: unsafe member {finding.member!r}: {finding.reason}"


def _numpy(contents: EnvContents, minor: str) -> str | bool | None:
    """numpy's version from its dist-info; True when numpy is there without one; None when absent."""
    site = f"lib/python{minor}/site-packages/"
    for name in contents.under(site):
        match = re.fullmatch(re.escape(site) + r"numpy-([^/]+)\.dist-info/METADATA", name)
        if match:
            return match.group(1)
    return True if contents.has(site + "numpy/__init__.py") else None


def _model_code(check: ModelCheck, model_file: Path) -> None:
    try:
        tree = ast.parse(model_file.read_text(errors="replace"), str(model_file))
    except SyntaxError as exc:
        check.add(ERROR, "model-file", f"{model_file}:{exc.lineno}: {exc.msg}", "fix the Python syntax error")
        return
    model_class = next(
        (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TritonPythonModel"), None
    )
    if model_class is None:
        check.add(
            ERROR,
            "model-file",
            f"{model_file} defines no class TritonPythonModel",
            "the Python backend loads the class of that exact name",
        )
    elif not any(
        isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "execute"
        for n in model_class.body
    ):
        check.add(
            ERROR,
            "model-file",
            f"{model_file}: TritonPythonModel has no execute method",
            "define execute(self, requests) returning one InferenceResponse per request",
        )
    heavy = sorted(
        {
            alias.name.split(".")[0]
            for node in tree.body
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
            if alias.name.split(".")[0] in HEAVY_MODULES
        }
    )
    if heavy:
        check.add(
            WARN,
            "heavy-import",
            f"{model_file.name} imports {', '.join(heavy)} at module top level: every stub "
            "(the auto-complete one too) pays for it before initialize",
            "import inside initialize() (or pass --disable-auto-complete-config to tritonserver)",
        )


def _backend(check: ModelCheck, resolved: deployment.Deployment, backends: Path | None) -> None:
    backend, directory = resolved.backend, resolved.backend_dir
    if resolved.backend_kind is deployment.BackendKind.MISSING:
        check.add(
            ERROR,
            "backend",
            f"backend '{backend}' is not in {backends}: Triton fails with \"unable to find "
            f"backend library for backend '{backend}'\"",
            f"stubforge install backend --backends {backends} --python X.Y --name {backend}",
        )
    elif resolved.backend_kind is deployment.BackendKind.INCOMPLETE:
        assert directory is not None
        lib = (directory / "libtriton_python.so").is_file()
        check.add(
            ERROR,
            "backend",
            f"{directory} has no model.py"
            + (
                " (a renamed libtriton_python.so alone fails with \"No module named 'model'\")" if lib else ""
            ),
            f"recreate it: stubforge install backend --backends {backends} --python X.Y --name {backend} --force",
        )


def _stub_checks(check: ModelCheck, info: StubInfo) -> None:
    stub = info.path
    mode = stat.S_IMODE(stub.stat().st_mode)
    if mode == 0o100:
        # Left on disk by whichever server ran it: only releases that probe the stub do this.
        no_probe = releases.first_release(lambda r: not r.activation.probes_stub)
        check.add(
            WARN,
            "stub-mode",
            f"{stub} has mode 0100: left by a Triton release before {no_probe} after the stub failed its "
            "no-argument probe",
            "find why the probe failed (stubforge stubs import, or run it with no arguments), then chmod 755",
        )
    elif not mode & 0o111:
        check.add(ERROR, "stub-mode", f"{stub} is not executable (mode {mode:04o})", f"chmod 755 {stub}")
    if info.elf_error:
        check.add(ERROR, "stub", info.elf_error, "use a triton_python_backend_stub")
        return
    check.stub_python = info.python
    if check.stub_python is None:
        check.add(ERROR, "stub", f"{stub} links no libpython", "use a triton_python_backend_stub")


def _env_checks(
    check: ModelCheck, info: deployment.EnvInfo, stub_info: StubInfo | None, release: releases.Release
) -> None:
    env_path = info.path
    stub = stub_info.path if stub_info else None
    env = info.contents
    if env_path is None:
        return
    if env is None:
        check.add(
            ERROR,
            "env",
            f"{env_path}: archive_read_open_filename() failed. ({info.read_error or 'a truncated archive'})",
            "Triton reads only tar and tar.gz: repack it (stubforge pack-env -o NAME.tar.gz)",
        )
        return
    unsafe = None if env.is_dir else _unsafe_member(env)
    if unsafe:
        # stubforge run refuses exactly this archive; the release decides what Triton does with it.
        check.add(ERROR, "env-archive", unsafe, archive_rules.unsafe_hint(release))
    if not env.has("bin/activate"):
        check.add(
            ERROR,
            "env-activate",
            f'{env_path} has no bin/activate: Triton fails with "Path <env>/bin/activate does not exist"',
            "pack the env with stubforge pack-env or conda-pack (a venv archive will not do)",
        )
    hooks = env.under("etc/conda/activate.d/")
    if hooks:
        check.add(
            WARN,
            "env-hooks",
            _hooks_message(env_path, len(hooks), release),
            "set what they set in the server's environment instead",
        )
    check.env_python = info.python
    if check.env_python is None:
        check.add(
            ERROR,
            "env-python",
            f"{env_path} has no lib/libpythonX.Y.so.1.0: the stub cannot start in it",
            "pack it with stubforge pack-env --stub STUB (it copies the interpreter's libpython)",
        )
    elif check.stub_python and check.env_python != check.stub_python:
        check.add(
            ERROR,
            "python-mismatch",
            f"the stub embeds Python {check.stub_python}, the env carries Python "
            f"{check.env_python}: the stub exits before its first message "
            f"({release.dead_stub_outcome(at_load=True)})",
            f"pack the env for the stub: stubforge pack-env --stub {stub} --model {check.path}",
        )
    minor = check.env_python or check.stub_python
    if minor:
        numpy = _numpy(env, minor)
        if numpy is None:
            check.add(
                ERROR,
                "numpy",
                f"{env_path} has no numpy: the stub fails with \"No module named 'numpy'\"",
                "add numpy to the env"
                + ("" if release.allows_numpy2 else f" (numpy<2 for Triton {release.branch}'s stubs)"),
            )
        elif isinstance(numpy, str) and not releases.older(numpy, "2"):
            pybind11 = (stub_info.pybind11 if stub_info else None) or release.pybind11
            if releases.numpy2_breaks(numpy, pybind11):
                check.add(
                    ERROR,
                    "numpy2",
                    f"numpy {numpy} with a stub built against pybind11 {pybind11}: tensors cross "
                    'wrong ("output tensor shape does not match size of output" or silent garbage)',
                    "pack the env with numpy<2, or build the stub with --pybind11 2.12.0",
                )
    if stub is not None and env.has("lib/libstdc++.so.6"):
        _glibcxx(check, env, stub)


def _glibcxx(check: ModelCheck, env: EnvContents, stub: Path) -> None:
    needed = elf.read(stub).floors.get("GLIBCXX")
    data = env.read("lib/libstdc++.so.6")
    if not needed or data is None:
        return
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".so") as fh:
        fh.write(data)
        fh.flush()
        provided = elf.defined_versions(Path(fh.name), "GLIBCXX")
    if provided and releases.older(provided, needed):
        check.add(
            ERROR,
            "glibcxx",
            f"the env's lib/libstdc++.so.6 provides up to {provided}, the stub needs {needed}: "
            f'the stub fails with "{needed}\' not found"',
            "install a newer libstdcxx-ng in the env, or remove its libstdc++ so the system's is used",
        )


def _hooks_message(env_path: Path, count: int, release: releases.Release) -> str:
    if release.activation.sources_activate:
        skipped = releases.first_release(lambda r: not r.activation.sources_activate)
        return (
            f"{env_path} has conda activate.d hooks ({count}): Triton {release.branch} runs them, but from "
            f"{skipped} on bin/activate is never sourced and they will not run"
        )
    return (
        f"{env_path} has conda activate.d hooks ({count}): Triton {release.branch} does not source "
        "bin/activate, so they will not run"
    )


def _paths(check: ModelCheck, paths: list[Path], release: releases.Release) -> None:
    for path in paths:
        bad = release.name_rules.offending(str(path))
        if bad:
            check.add(
                WARN,
                "path-chars",
                f"{path} contains {' '.join(repr(c) for c in bad)}: Triton {release.branch} "
                f"{release.name_rules.effect}",
                "rename it to letters, digits, '-', '_', '.' and '/'",
            )
            return


def _path_python(check: ModelCheck) -> None:
    """A model without an env runs in the first python3 on the server's PATH: this host's (docs/triton-behaviour.md,
    "How the embedded interpreter finds its environment")."""
    import shutil
    import subprocess

    python = shutil.which("python3")
    if not python or not check.stub_python:
        return
    probe = (
        "import sys, importlib.util as u\n"
        "print('%d.%d' % sys.version_info[:2], 1 if u.find_spec('numpy') else 0)"
    )
    try:
        out = subprocess.run(
            [python, "-c", probe], capture_output=True, text=True, timeout=30, check=False, cwd="/"
        ).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return
    if len(out) != 2:
        return
    version, has_numpy = out[0], out[1] == "1"
    if version != check.stub_python:
        check.add(
            WARN,
            "path-python",
            f"no env: the stub (Python {check.stub_python}) will use the first python3 on the "
            f"server's PATH; here that is {python} (Python {version}): \"No module named 'encodings'\" or "
            "'numpy'",
            f"give the model an env (stubforge pack-env --python {check.stub_python} --model "
            f"{check.path}), or put a Python {check.stub_python} first on the server's PATH",
        )
    elif not has_numpy:
        check.add(
            WARN,
            "path-python",
            f"no env: the stub will import numpy from {python}, which has none: \"No module named 'numpy'\"",
            f"pip install 'numpy<2' for {python}, or give the model an env",
        )


def _user_site(check: ModelCheck, minor: str | None) -> None:
    if not minor:
        return
    site = Path.home() / ".local" / "lib" / f"python{minor}" / "site-packages"
    if site.is_dir() and any(site.iterdir()) and not os.environ.get("PYTHONNOUSERSITE"):
        check.add(
            WARN,
            "user-site",
            f"{site} exists: the stub's Python {minor} also imports from it, on this host only",
            "start tritonserver with PYTHONNOUSERSITE=1",
        )


def _tensor_bytes(spec: dict[str, Any], max_batch: int) -> int | None:
    dims = [int(d) for d in spec.get("dims", [])]
    if any(d < 0 for d in dims):
        return None
    size = {
        "TYPE_FP64": 8,
        "TYPE_INT64": 8,
        "TYPE_UINT64": 8,
        "TYPE_FP16": 2,
        "TYPE_BF16": 2,
        "TYPE_INT16": 2,
        "TYPE_UINT16": 2,
        "TYPE_INT8": 1,
        "TYPE_UINT8": 1,
        "TYPE_BOOL": 1,
    }.get(spec.get("data_type", ""), 4)
    total = size * max(1, max_batch)
    for d in dims:
        total *= d
    return total


def check_model(model_dir: Path, release: releases.Release, backends: Path | None) -> ModelCheck:
    check = ModelCheck(name=model_dir.name, path=str(model_dir))
    try:
        resolved = deployment.resolve(model_dir, triton=release.branch, backends=backends)
    except StubforgeError as exc:
        check.add(ERROR, "config", exc.message, exc.hint or "fix config.pbtxt")
        return check
    check.backend = resolved.backend
    if not resolved.python_family:
        return check  # not a Python model (an ensemble or another platform): nothing of ours to check
    model_file = resolved.model_file
    if model_file is None:
        check.add(
            ERROR, "model-file", f"{model_dir} has no version directory", "put model.py into <model>/1/"
        )
    elif not model_file.is_file():
        check.add(
            ERROR, "model-file", f"{model_file} does not exist", "the model's code must be at that path"
        )
    else:
        _model_code(check, model_file)
    _backend(check, resolved, backends)
    stub = resolved.stub
    if stub is not None:
        check.stub = str(stub.path)
        _stub_checks(check, stub)
    env = resolved.env
    if env is not None and env.error is not None:
        check.add(ERROR, "env-path", env.error.message, env.error.hint or "fix EXECUTION_ENV_PATH")
    env_path = env.path if env is not None else None
    paths = [model_dir]
    if env is not None and env_path is not None:
        check.env = str(env_path)
        paths.append(env_path)
        _env_checks(check, env, stub, release)
    _paths(check, paths, release)
    if stub is not None:
        reach = libpython.reachability(resolved)
        # An unusable EXECUTION_ENV_PATH, a stub without libpython and a stub and env of different Pythons are
        # findings of their own; the libpython finding is for a stub that cannot find an existing libpython.
        mismatch = env_path is not None and check.env_python and check.env_python != check.stub_python
        if (
            reach is not None
            and reach.where in (libpython.Where.NOT_IN_ENV, libpython.Where.NOWHERE)
            and not mismatch
        ):
            check.add(
                ERROR,
                "libpython",
                _unreachable(reach, release),
                "give the model an env of the stub's Python: "
                f"stubforge pack-env --stub {stub.path} --model {model_dir}",
            )
    elif backends is None:
        check.add(
            WARN,
            "stub",
            "no per-model stub; which stub runs depends on the backend directory",
            "pass --backends DIR so the backend's stub and Python are checked too",
        )
    else:
        check.add(
            ERROR,
            "stub",
            f"no {cache.STUB_NAME} in {model_dir} or the backend dirs",
            "Triton requires one in backends/python even when models ship their own",
        )
    if env_path is None:
        _user_site(check, check.stub_python)
        _path_python(check)
    return check


def _unreachable(reach: libpython.Reachability, release: releases.Release) -> str:
    outcome = release.dead_stub_outcome(at_load=True)
    if reach.where is libpython.Where.NOT_IN_ENV:
        return (
            f"the env {reach.env} has no lib/{reach.soname}: the stub will not start and {outcome}; "
            "pack the env with the stub's Python (stubforge pack-env --stub)"
        )
    return (
        f"nothing provides {reach.soname} to the server (no RUNPATH, no EXECUTION_ENV_PATH, not in the system's "
        f"library cache): the stub will not start and {outcome}; give the model an env "
        "(stubforge pack-env --model) or put that libpython on the server's LD_LIBRARY_PATH"
    )


def check(
    repository: Path,
    *,
    triton: releases.Release | str = releases.DEFAULT_TRITON,
    backends: Path | None = None,
    target: Target | None = None,
) -> CheckReport:
    """Check a model repository (or one model's directory) for `triton`'s pitfalls. `target`: the machine it
    will run on (None: this one); carried for the aarch64 checks to come."""
    release = releases.as_release(triton)
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
    models = [check_model(d, release, backends) for d in model_dirs]
    return CheckReport(str(repository), release.branch, models, _repository_checks(models, release))


def _repository_checks(models: list[ModelCheck], release: releases.Release) -> list[Finding]:
    findings = []
    archives = {m.backend for m in models if m.env and not Path(m.env).is_dir()}
    if len(archives) > 1 and release.parallel_extraction_race:
        findings.append(
            Finding(
                WARN,
                "parallel-envs",
                f"tarball envs on {len(archives)} python-family backends "
                f"({', '.join(sorted(a or '?' for a in archives))}): Triton {release.branch} extracts them "
                "in parallel and they corrupt each other",
                "start tritonserver with --model-load-thread-count=1, or use directory envs",
            )
        )
    try:
        shm = os.statvfs("/dev/shm")
        free = shm.f_bavail * shm.f_frsize
    except OSError:
        return findings
    need = 0
    for model in models:
        try:
            info = read_config(Path(model.path))
        except StubforgeError:
            continue
        config = info.message
        instances = sum(max(1, g.count) for g in config.instance_group) or 1
        specs = [
            {"dims": list(t.dims), "data_type": _type_name(t.data_type)}
            for t in [*config.input, *config.output]
        ]
        largest = max((b for b in (_tensor_bytes(s, config.max_batch_size) for s in specs) if b), default=0)
        # The auto-complete stub and each instance get a region of the default size, grown for big tensors.
        need += (instances + 1) * max(DEFAULT_SHM, 2 * largest)
    if need > free:
        findings.append(
            Finding(
                WARN,
                "shm",
                f"the models need about {need >> 20} MiB of /dev/shm (one region per instance, grown "
                f'for the largest declared tensors), {free >> 20} MiB is free: "Unable to initialize shared '
                'memory key" at load',
                "give the container more (docker run --shm-size=1g)",
            )
        )
    return findings


def _type_name(number: int) -> str:
    """TYPE_FP32 from 11, with the same generated schema triton/config.py loads (no tritonclient[grpc] needed)."""
    descriptor = schema().model_config.DESCRIPTOR
    enum = descriptor.fields_by_name["input"].message_type.fields_by_name["data_type"].enum_type
    return str(enum.values_by_number[number].name)
