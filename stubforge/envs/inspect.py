"""Prove an env works the way Triton will start it, before anything is written where the user looks."""

from __future__ import annotations

import json
import marshal
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from stubforge.core import elf
from stubforge.envs.create import EnvError, launcher_env

PROBE_TIMEOUT_S = 120.0

# Runs inside the env's python, which may be 3.6: no walrus, no f-string "=".
_PROBE = r"""
import json, os, sys, importlib
wanted = json.loads(sys.argv[1])
bytecode = {}  # source path -> its .pyc relative to the env
pycs = {}  # .pyc relative to the env -> its bytes, marshalled into wanted["bytecode_file"] at the end
if wanted.get("bytecode_file") and sys.version_info >= (3, 7):
    import marshal, _imp
    import importlib.machinery, importlib.util
    env_prefix = os.path.realpath(sys.prefix) + os.sep
    real_dirs = {}
    def env_relative(path):
        # Through the directory's real path (no link in a member's path: a secure extraction refuses those),
        # with the file's own name (Python names the .pyc after the name it imported).
        folder, name = os.path.split(path)
        real = real_dirs.get(folder)
        if real is None:
            real = real_dirs[folder] = os.path.realpath(folder) + os.sep
        return real[len(env_prefix):] + name if real.startswith(env_prefix) else None
    def keep_bytecode(path, rel, source, code):
        pyc = importlib.util.cache_from_source(rel)
        # Hash-based and checked (PEP 552): valid whatever the files' mtimes, still refused after an edit.
        # Marshal format 2 has no back-references: format 3+ marks an object for reuse when its refcount
        # is above one, which varies from run to run (same load speed, 0.4 % larger once gzipped).
        pycs[pyc] = (importlib.util.MAGIC_NUMBER + (3).to_bytes(4, "little")
                     + importlib.util.source_hash(source) + marshal.dumps(code, 2))
        bytecode[path] = pyc
    original_source_to_code = importlib.machinery.SourceFileLoader.source_to_code
    def source_to_code(self, data, path, *, _optimize=-1):
        rel = env_relative(path) if path not in bytecode else None
        if rel is None:
            return original_source_to_code(self, data, path, _optimize=_optimize)
        # Compiled once, under the path relative to the env, so the bytes do not depend on where it is.
        code = compile(data, rel, "exec", dont_inherit=True, optimize=_optimize)
        keep_bytecode(path, rel, data, code)
        _imp._fix_co_filename(code, path)  # what the import system does for code loaded from a .pyc
        return code
    importlib.machinery.SourceFileLoader.source_to_code = source_to_code
result = {"version": "%d.%d.%d" % sys.version_info[:3], "prefix": sys.prefix, "path": sys.path,
          "executable": sys.executable, "imports": {}, "dists": {}}
for name in wanted["imports"]:
    try:
        module = importlib.import_module(name)
        result["imports"][name] = getattr(module, "__version__", "") or "ok"
    except Exception as exc:
        result["imports"][name] = "ERROR: %s: %s" % (type(exc).__name__, exc)
import re
def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()
tops = {}
def top_levels(text, files):
    # A distribution's top-level modules: top_level.txt, else derived from the files it installed.
    names = [t.strip() for t in (text or "").split() if t.strip()]
    if not names:
        for f in files:
            parts = str(f).split("/")
            if parts[0].endswith((".dist-info", ".egg-info", ".data")) or parts[0] in ("..", "__pycache__"):
                continue
            if len(parts) > 1 and parts[1] == "__init__.py":
                names.append(parts[0])
            elif len(parts) == 1 and parts[0].endswith(".py"):
                names.append(parts[0][:-3])
    return sorted(set(names))
try:
    from importlib import metadata
    for dist in metadata.distributions():
        name = canonical(dist.metadata["Name"])
        result["dists"][name] = dist.version
        tops[name] = top_levels(dist.read_text("top_level.txt"), dist.files or [])
except ImportError:
    # Python < 3.8 has no importlib.metadata (and an env need not have setuptools' pkg_resources): the
    # .dist-info and .egg-info directories on sys.path, the first of a name winning as for imports.
    def read_text(path):
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read()
        except (OSError, ValueError):
            return ""
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        for child in sorted(os.listdir(entry)):
            folder = os.path.join(entry, child)
            if not child.endswith((".dist-info", ".egg-info")) or not os.path.isdir(folder):
                continue
            fields = {}
            head = read_text(os.path.join(folder, "METADATA" if child.endswith(".dist-info") else "PKG-INFO"))
            for line in head.splitlines():
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields.setdefault(key.strip().lower(), value.strip())
            if not fields.get("name") or canonical(fields["name"]) in result["dists"]:
                continue
            name = canonical(fields["name"])
            result["dists"][name] = fields.get("version", "")
            record = [row.split(",")[0] for row in read_text(os.path.join(folder, "RECORD")).splitlines()]
            tops[name] = top_levels(read_text(os.path.join(folder, "top_level.txt")), record)
# Import every top-level module of the requested packages, as the model will.
result["package_imports"] = {}
for name in wanted.get("dists", []):
    for module_name in tops.get(name, []):
        if module_name.startswith("_"):
            continue
        try:
            importlib.import_module(module_name)
            result["package_imports"][module_name] = "ok"
        except Exception as exc:
            result["package_imports"][module_name] = "ERROR: %s: %s" % (type(exc).__name__, exc)
with open("/proc/self/maps") as fh:
    result["maps"] = sorted({line.split()[-1] for line in fh if "/" in line.split()[-1]})
if wanted.get("bytecode_file") and sys.version_info >= (3, 7):
    # Modules imported before the hook (site, os, encodings, json...) or from a .pyc already in the env.
    for module in sorted(list(sys.modules.values()), key=lambda m: str(getattr(m, "__file__", ""))):
        path = getattr(module, "__file__", None) or ""
        rel = env_relative(path) if path.endswith(".py") and path not in bytecode else None
        if rel is not None:
            with open(path, "rb") as fh:
                data = fh.read()
            keep_bytecode(path, rel, data, compile(data, rel, "exec", dont_inherit=True))
    with open(wanted["bytecode_file"], "wb") as fh:
        marshal.dump(pycs, fh, 2)  # one file: writing each .pyc to disk cost a tenth of a second
    result["bytecode"] = sorted(pycs)
print(json.dumps(result))
"""


@dataclass
class EnvReport:
    version: str
    prefix: str
    packages: dict[str, str]
    numpy: str | None
    libpython: str
    glibcxx_in_env: str | None
    warnings: list[str] = field(default_factory=list)
    # The .pyc files (relative to the env) in validate's bytecode_file: what the launch imported.
    bytecode: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "python": self.version,
            "prefix": self.prefix,
            "packages": self.packages,
            "numpy": self.numpy,
            "libpython": self.libpython,
            "glibcxx_in_env": self.glibcxx_in_env,
            "warnings": self.warnings,
        }


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> list[str]:
    """'numpy<2', 'Pillow[extra]>=9' -> ['numpy', 'pillow']; options and URLs are skipped."""
    names = []
    for req in requirements:
        req = req.strip()
        if " @ " in req or req.split("@")[0].strip().isidentifier():
            req = req.split("@", 1)[0].strip()  # PEP 508 direct reference: "name @ file:///..."
        if not req or req.startswith(("-", "#", "/", ".")) or "://" in req:
            continue
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
        if match:
            names.append(_canonical(match.group(0)))
    return names


def run_probe(
    env_dir: Path,
    imports: list[str],
    activate_with_bash: bool = False,
    dists: list[str] | None = None,
    timeout_factor: float = 1.0,
    bytecode_file: Path | None = None,
) -> dict[str, object]:
    """Start the env's python exactly as the launcher would and report what it sees; `dists` are
    distributions whose top-level modules are imported too. With `bytecode_file` (Python 3.7+), every module
    the launch imported from the env is compiled to a hash-checked .pyc, the same bytes wherever the env lies;
    the file receives them as a marshalled dict (.pyc path relative to the env: bytes; see read_bytecode), and
    "bytecode" lists their paths."""
    python = env_dir / "bin" / "python3"
    if not python.exists():
        raise EnvError(f"{env_dir}: no bin/python3", hint="the env is incomplete; create it again")
    wanted: dict[str, object] = {"imports": imports, "dists": dists or []}
    if bytecode_file is not None:
        wanted["bytecode_file"] = str(bytecode_file)
    payload = json.dumps(wanted)
    clean = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    # Looking must not change what is looked at: no __pycache__ written into a pruned env.
    clean["PYTHONDONTWRITEBYTECODE"] = "1"
    # The env is judged on its own: this machine's ~/.local site-packages is not the server's.
    clean["PYTHONNOUSERSITE"] = "1"
    # A fixed string hash: set constants are marshalled in iteration order, and the bytecode must not vary.
    clean["PYTHONHASHSEED"] = "0"
    if activate_with_bash:
        # Activation.BASH_SOURCE_ACTIVATE (up to r25.07):
        # bash -c "source <env>/bin/activate && exec env LD_LIBRARY_PATH=<env>/lib:... <stub>"
        script = f'source "{env_dir}/bin/activate" && exec python3 -c "$0" "$1"'
        args = ["bash", "-c", script, _PROBE, payload]
        env = clean
    else:
        args = [str(python), "-c", _PROBE, payload]
        env = launcher_env(env_dir, clean)
    timeout = PROBE_TIMEOUT_S * timeout_factor  # emulated envs (another architecture) start far slower
    try:
        # cwd /: the current directory (a project with an .egg-info) is not on the probed sys.path.
        proc = subprocess.run(
            args, capture_output=True, text=True, env=env, timeout=timeout, check=False, cwd="/"
        )
    except subprocess.TimeoutExpired as exc:
        raise EnvError(f"{python} did not answer within {timeout:.0f} s", hint="check the env") from exc
    if proc.returncode != 0:
        raise EnvError(
            f"{python} does not start the way Triton starts it (exit {proc.returncode})",
            hint="the env is broken; create it again (an 'encodings' error means the stdlib is missing)",
            details=proc.stderr.strip()[-2000:],
        )
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(data, dict)
    return data


def validate(
    env_dir: Path,
    *,
    expected_python: str | None,
    requirements: list[str],
    numpy2_ok: bool,
    numpy2_reason: str = "",
    stub_glibcxx: str | None = None,
    timeout_factor: float = 1.0,
    bytecode_file: Path | None = None,
) -> EnvReport:
    """Raise EnvError unless the env is what Triton needs; warnings for what may still bite. `bytecode_file`:
    see run_probe (the report lists the .pyc files)."""
    minor_libs = sorted((env_dir / "lib").glob("libpython3*.so.1.0"))
    if not minor_libs:
        raise EnvError(
            f"{env_dir}/lib has no libpython3.X.so.1.0",
            hint="the stub loads libpython from <env>/lib: create the env from a shared-library CPython",
        )
    if not (env_dir / "bin" / "activate").is_file():
        raise EnvError(
            f"{env_dir}/bin/activate is missing",
            hint="every Triton release refuses an env without it, even those that never run it",
        )
    wanted = requirement_names(requirements)
    data = run_probe(
        env_dir, ["numpy"], dists=wanted, timeout_factor=timeout_factor, bytecode_file=bytecode_file
    )
    version = str(data["version"])
    if expected_python and not (version == expected_python or version.startswith(expected_python + ".")):
        raise EnvError(
            f"the env's Python is {version}, not {expected_python}",
            hint="create the env with the same Python version as the stub (--python)",
        )
    prefix = os.path.realpath(str(data["prefix"]))
    if not prefix.startswith(os.path.realpath(env_dir)):
        raise EnvError(
            f"the env's python reports sys.prefix {prefix}, outside the env",
            hint="a pyvenv.cfg or PYTHONHOME points elsewhere; recreate the env",
        )
    paths = data["path"]
    assert isinstance(paths, list)  # the probe prints sys.path as a JSON list
    leaks = [p for p in paths if p and os.path.isabs(p) and not os.path.realpath(p).startswith(prefix)]
    if leaks:
        raise EnvError(
            f"the env imports from outside itself: {', '.join(leaks)}",
            hint="a .pth file or sitecustomize in the env adds these paths; remove it and pack again",
        )
    imports = data["imports"]
    assert isinstance(imports, dict)
    numpy_version = imports.get("numpy")
    if not numpy_version or str(numpy_version).startswith("ERROR"):
        raise EnvError(
            f"numpy does not import in the env ({numpy_version or 'not installed'})",
            hint="triton_python_backend_utils imports numpy: add numpy to the env (requirements, spec, or "
            "`conda install numpy` / `pip install numpy` in the environment you pack)",
        )
    dists = data["dists"]
    assert isinstance(dists, dict)
    missing = [name for name in wanted if name not in {_canonical(k) for k in dists}]
    if missing:
        raise EnvError(
            f"requested packages are not installed in the env: {', '.join(missing)}",
            hint="check the pip output in the log",
        )
    imported = data.get("package_imports") or {}
    assert isinstance(imported, dict)
    failed = {m: str(r) for m, r in imported.items() if str(r).startswith("ERROR")}
    if failed:
        raise EnvError(
            "requested packages are installed but do not import in the env: "
            + "; ".join(f"{m}: {r[len('ERROR: ') :]}" for m, r in sorted(failed.items())),
            hint="a missing system library or a wheel for another platform; check what the package needs",
        )
    if (
        str(numpy_version).split(".")[0].isdigit()
        and int(str(numpy_version).split(".")[0]) >= 2
        and not numpy2_ok
    ):
        raise EnvError(
            f"the env has numpy {numpy_version}, but {numpy2_reason}: every request would fail with "
            "'output tensor shape does not match size of output'",
            hint="pin numpy<2 in the requirements, or build the stub with --pybind11 2.12.0 and pass --stub",
        )
    report = EnvReport(
        version=version,
        prefix=prefix,
        packages={_canonical(k): str(v) for k, v in sorted(dists.items())},
        numpy=str(numpy_version),
        libpython=str(minor_libs[0].relative_to(env_dir)),
        glibcxx_in_env=_env_glibcxx(env_dir),
        bytecode=[str(p) for p in _as_list(data.get("bytecode"))],
    )
    mapped = data.get("maps", [])
    assert isinstance(mapped, list)  # the probe prints /proc/self/maps paths as a JSON list
    maps = [m for m in mapped if "libpython" in m]
    outside = [m for m in maps if not os.path.realpath(m).startswith(os.path.realpath(env_dir))]
    if outside:
        raise EnvError(
            f"the env's python loaded {', '.join(outside)} from outside the env",
            hint="the interpreter's run path points elsewhere; recreate the env",
        )
    if stub_glibcxx and report.glibcxx_in_env and _ver(report.glibcxx_in_env) < _ver(stub_glibcxx):
        report.warnings.append(
            f"the env's lib/libstdc++.so.6 provides up to {report.glibcxx_in_env}, the stub needs {stub_glibcxx}: "
            "the stub will fail with 'GLIBCXX_... not found'; install a newer libstdcxx-ng in the env or remove "
            "its libstdc++ so the system one is used"
        )
    return report


def read_bytecode(bytecode_file: Path) -> dict[str, bytes]:
    """What run_probe's launch left in `bytecode_file` (empty when it wrote none: Python 3.6)."""
    if not bytecode_file.is_file():
        return {}
    with open(bytecode_file, "rb") as fh:
        found = marshal.load(fh)
    if not isinstance(found, dict):
        raise EnvError(f"{bytecode_file}: not the bytecode the env's launch writes", hint="a bug: report it")
    return {str(name): bytes(data) for name, data in found.items()}


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def _ver(symbol: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", symbol))


def _env_glibcxx(env_dir: Path) -> str | None:
    """Highest GLIBCXX version the env's own libstdc++ defines (it shadows the system's), if it has one."""
    libs = sorted((env_dir / "lib").glob("libstdc++.so.6*"))
    if not libs:
        return None
    return elf.defined_versions(libs[0], "GLIBCXX")
