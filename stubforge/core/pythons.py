"""Find and describe CPython interpreters.

Discovery (where to look) is separate from description (what an interpreter is): every candidate is described
by running it once with a small probe, so shims, venvs and symlinks report what they really are.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stubforge.errors import PythonNotFound

# Runs inside the candidate interpreter, which may be as old as 3.6: no walrus, no importlib.metadata.
_PROBE = r"""
import json, os, sys
if sys.version_info[0] < 3:
    print(json.dumps({"version": "%d.%d.%d" % sys.version_info[:3], "implementation": "python2"}))
    sys.exit(0)
import sysconfig
cv = sysconfig.get_config_var
libdir = cv("LIBDIR") or ""
soname = cv("INSTSONAME") or cv("LDLIBRARY") or ""
include = sysconfig.get_paths().get("include") or ""
numpy = None
try:
    # Read numpy's version file rather than importing numpy: an import costs ~0.1 s per interpreter.
    import importlib.util, re
    spec = importlib.util.find_spec("numpy")
    if spec is not None and spec.submodule_search_locations:
        vfile = os.path.join(list(spec.submodule_search_locations)[0], "version.py")
        with open(vfile) as fh:
            m = re.search(r"^(?:full_)?version\s*(?::\s*str\s*)?=\s*['\"]([^'\"]+)", fh.read(), re.M)
        numpy = m.group(1) if m else None
except Exception:
    numpy = None
print(json.dumps({
    "version": "%d.%d.%d" % sys.version_info[:3],
    "implementation": sys.implementation.name,
    "executable": sys.executable,
    "prefix": sys.prefix,
    "base_prefix": getattr(sys, "base_prefix", sys.prefix),
    "shared": str(cv("Py_ENABLE_SHARED")) == "1",
    "libdir": libdir,
    "soname": soname,
    "include": include,
    "abiflags": getattr(sys, "abiflags", ""),
    "numpy": numpy,
    "purelib": sysconfig.get_paths().get("purelib") or "",
}))
"""

PROBE_TIMEOUT_S = 30.0
_CANDIDATE_NAME = re.compile(r"^python3(\.\d{1,2})?$")


@dataclass(frozen=True)
class Interpreter:
    """What one interpreter is, as the interpreter itself reports."""

    version: str
    executable: str  # the path it was found at (a venv's python stays the venv's)
    real_path: str  # symlinks resolved
    prefix: str
    base_prefix: str
    shared: bool  # built with Py_ENABLE_SHARED
    libpython: str | None  # absolute path of the shared libpython, when it exists
    include_dir: str
    has_headers: bool
    numpy: str | None
    source: str  # PATH, pyenv, uv, conda, explicit

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        major, minor, micro = (int(p) for p in self.version.split("."))
        return major, minor, micro

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def libpython_soname(self) -> str | None:
        return os.path.basename(self.libpython) if self.libpython else None

    @property
    def buildable(self) -> bool:
        """A stub can embed it: shared libpython and Python.h present."""
        return self.shared and self.libpython is not None and self.has_headers

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["buildable"] = self.buildable
        return data


def _stamp(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size, st.st_ino]


class _ProbeCache:
    """Probe results keyed by interpreter path, valid while neither the executable nor its site-packages
    directory changed; makes `--python 3.10` cost a few stat calls instead of one process per interpreter."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.entries: dict[str, dict[str, object]] = {}
        self.dirty = False
        try:
            from stubforge.core import cache

            self.path = cache.root() / "pythons.json"
            self.entries = cache.read_json(self.path) if self.path.is_file() else {}
        except Exception:  # a broken or unwritable cache must never break discovery
            self.path, self.entries = None, {}

    def get(self, path: Path) -> dict[str, object] | None:
        entry = self.entries.get(str(path))
        if not isinstance(entry, dict):
            return None
        info = entry.get("info")
        if not isinstance(info, dict):
            return None
        if entry.get("exe") != _stamp(os.path.realpath(path)):
            return None
        if entry.get("purelib") != _stamp(str(info.get("purelib") or "")):
            return None
        return info

    def put(self, path: Path, info: dict[str, object]) -> None:
        self.entries[str(path)] = {
            "exe": _stamp(os.path.realpath(path)),
            "purelib": _stamp(str(info.get("purelib") or "")),
            "info": info,
        }
        self.dirty = True

    def save(self) -> None:
        if not (self.dirty and self.path):
            return
        try:
            from stubforge.core import cache

            cache.write_json_atomic(self.path, self.entries)
        except OSError:
            pass


def describe(
    executable: str | os.PathLike[str], source: str = "explicit", probe_cache: _ProbeCache | None = None
) -> Interpreter:
    """Run the interpreter once and describe it. Raises PythonNotFound when it is not a usable Python."""
    path = Path(executable)
    if not path.exists():
        raise PythonNotFound(f"{path}: no such file", hint="pass the path of a python3 executable")
    if path.is_dir() or not os.access(path, os.X_OK):
        raise PythonNotFound(f"{path}: not an executable file", hint="pass the path of a python3 executable")
    info = probe_cache.get(path) if probe_cache else None
    if info is None:
        info = _probe(path)
        if probe_cache:
            probe_cache.put(path, info)
    return _from_probe(path, source, info)


def _probe(path: Path) -> dict[str, Any]:
    try:
        # -E: a user's PYTHONPATH/PYTHONHOME must not change what the interpreter reports about itself.
        proc = subprocess.run(
            [str(path), "-E", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PythonNotFound(f"{path}: could not run it ({exc})", hint="pass a working python3") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PythonNotFound(f"{path}: not a working Python ({tail[0]})", hint="pass a working python3")
    try:
        info = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise PythonNotFound(f"{path}: unexpected probe output", hint="pass a CPython 3 interpreter") from exc
    if not isinstance(info, dict):
        raise PythonNotFound(f"{path}: unexpected probe output", hint="pass a CPython 3 interpreter")
    return info


def _from_probe(path: Path, source: str, info: dict[str, Any]) -> Interpreter:
    if info["implementation"] == "python2":
        raise PythonNotFound(
            f"{path} is Python {info['version']}, which Triton's stub does not support",
            hint="use CPython 3.6 or newer",
        )
    if info["implementation"] != "cpython":
        raise PythonNotFound(
            f"{path}: {info['implementation']} is not CPython", hint="Triton's stub embeds CPython"
        )
    libpython = None
    if info["shared"] and info["soname"]:
        candidate = Path(info["libdir"]) / info["soname"]
        if candidate.exists():
            libpython = str(candidate)
    include = info["include"]
    return Interpreter(
        version=info["version"],
        executable=str(path if path.is_absolute() else path.absolute()),
        real_path=os.path.realpath(path),
        prefix=info["prefix"],
        base_prefix=info["base_prefix"],
        shared=bool(info["shared"]),
        libpython=libpython,
        include_dir=include,
        has_headers=bool(include) and (Path(include) / "Python.h").exists(),
        numpy=info["numpy"],
        source=source,
    )


def _is_shim(path: Path) -> bool:
    # pyenv/asdf shims are scripts that pick an interpreter at run time: never report one as a Python.
    return "shims" in path.parts


def _path_candidates(path_env: str) -> Iterator[Path]:
    for entry in path_env.split(os.pathsep):
        directory = Path(entry or ".")
        if not directory.is_dir():
            continue
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if _CANDIDATE_NAME.match(name):
                yield directory / name


def _bin_pythons(prefixes: Iterable[Path]) -> Iterator[Path]:
    for prefix in prefixes:
        for name in ("python3", "python"):
            exe = prefix / "bin" / name
            if exe.exists():
                yield exe
                break


def _pyenv_candidates(env: dict[str, str]) -> Iterator[Path]:
    root = Path(env.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    if root.is_dir():
        yield from _bin_pythons(sorted(p for p in root.iterdir() if p.is_dir()))


def _uv_candidates(env: dict[str, str]) -> Iterator[Path]:
    data_home = Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    root = Path(env.get("UV_PYTHON_INSTALL_DIR") or data_home / "uv" / "python")
    if root.is_dir():
        yield from _bin_pythons(sorted(p for p in root.iterdir() if p.is_dir()))


def _conda_candidates(env: dict[str, str]) -> Iterator[Path]:
    prefixes: list[Path] = []
    if env.get("CONDA_PREFIX"):
        prefixes.append(Path(env["CONDA_PREFIX"]))
    listing = Path.home() / ".conda" / "environments.txt"
    if listing.is_file():
        prefixes.extend(Path(line.strip()) for line in listing.read_text().splitlines() if line.strip())
    bases = [Path.home() / n for n in ("miniconda3", "anaconda3", "miniforge3", "mambaforge")]
    bases.append(Path("/opt/conda"))
    for base in bases:
        if base.is_dir():
            prefixes.append(base)
            envs = base / "envs"
            if envs.is_dir():
                prefixes.extend(sorted(p for p in envs.iterdir() if p.is_dir()))
    yield from _bin_pythons(prefixes)


def candidates(env: dict[str, str] | None = None) -> list[tuple[Path, str]]:
    """Every place an interpreter may live, with where it was found; shims are skipped."""
    env = dict(os.environ) if env is None else env
    found: list[tuple[Path, str]] = []
    seen: set[tuple[str, str]] = set()
    sources = (
        ("PATH", _path_candidates(env.get("PATH", ""))),
        ("pyenv", _pyenv_candidates(env)),
        ("uv", _uv_candidates(env)),
        ("conda", _conda_candidates(env)),
    )
    for source, paths in sources:
        for path in paths:
            if _is_shim(path):
                continue
            # A venv's python links to its base interpreter but is another environment: key on the
            # directory too, so only aliases within one bin/ (python3 -> python3.10) collapse.
            key = (os.path.realpath(path.parent), os.path.realpath(path))
            if key in seen:
                continue
            seen.add(key)
            found.append((path, source))
    return found


def discover(env: dict[str, str] | None = None, extra: Iterable[str] = ()) -> list[Interpreter]:
    """Describe every interpreter found, plus any explicit paths; one entry per distinct interpreter."""
    items = [(Path(p), "explicit") for p in extra] + candidates(env)
    probe_cache = _ProbeCache()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda item: _describe_or_none(item[0], item[1], probe_cache), items))
    probe_cache.save()
    unique: dict[tuple[str, str], Interpreter] = {}
    for interp in results:
        if interp is None:
            continue
        # A venv and its base share a real path but not a prefix: they are different environments.
        unique.setdefault((interp.real_path, interp.prefix), interp)
    return sorted(unique.values(), key=lambda i: (i.version_tuple, i.executable))


def _describe_or_none(path: Path, source: str, probe_cache: _ProbeCache) -> Interpreter | None:
    try:
        return describe(path, source, probe_cache)
    except PythonNotFound:
        return None


# Implementation names that mean CPython in a --python value ("cp310", "cpython3.10", "python3.10", "py3.10").
_CPYTHON_NAMES = {None, "cp", "cpython", "python", "py"}


def parse_version_spec(spec: str) -> tuple[int, int, int | None] | None:
    """'3.10', '3.10.13', 'cp310', 'cpython3.10', 'py310' → (3, 10, micro|None); None when spec is not a
    CPython 3.X version.

    The grammar is virtualenv's and tox's (`-p`), parsed by python-discovery, the library virtualenv's discovery
    became, so a --python value means here what it means there. stubforge narrows it: a stub embeds one CPython
    3.X, so the minor version is required, other implementations, free-threaded builds (3.13t), 32-bit (-32)
    and version ranges (>=3.10) are not versions here, and cp tags are never dotted (PEP 425: cp310)."""
    from python_discovery import PythonSpec  # ~20 ms to import: only when a version is asked for

    text = spec.strip()
    parsed = PythonSpec.from_string_spec(text)
    implementation = parsed.implementation.lower() if parsed.implementation else None
    if implementation not in _CPYTHON_NAMES or parsed.path is not None:
        return None
    if parsed.major != 3 or parsed.minor is None or parsed.free_threaded:
        return None
    if parsed.architecture not in (None, 64):
        return None
    if implementation == "cp" and "." in text:
        return None
    return parsed.major, parsed.minor, parsed.micro


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or spec.startswith(".") or Path(spec).exists()


def resolve(
    spec: str,
    *,
    require_buildable: bool = False,
    require_shared: bool = False,
    env: dict[str, str] | None = None,
) -> Interpreter:
    """Turn a --python value (version, cp tag or path) into exactly one interpreter.

    require_buildable: shared libpython and Python.h (to compile a stub); require_shared: a shared libpython
    only (to copy into an env)."""
    check = check_buildable if require_buildable else check_shared if require_shared else None
    if _looks_like_path(spec):
        interp = describe(Path(spec).expanduser(), "explicit")
        if check is not None:
            check(interp)
        return interp
    wanted = parse_version_spec(spec)
    if wanted is None:
        raise PythonNotFound(
            f"--python {spec!r} is neither a version nor a path",
            hint="use a version such as 3.10 or 3.10.13, a tag such as cp310, or an interpreter path",
        )
    found = discover(env)
    matches = [i for i in found if _matches(i, wanted)]
    if check is not None:
        usable = [i for i in matches if (i.buildable if require_buildable else i.libpython is not None)]
        if not usable and matches:
            check(matches[0])
        matches = usable
    matches = _without_venvs_of_others(matches)
    if len(matches) == 1:
        return matches[0]
    listing = _listing(found)
    if not matches:
        raise PythonNotFound(
            f"no Python {spec} found",
            hint="install it (e.g. `pyenv install "
            f"{'.'.join(str(p) for p in wanted if p is not None)}` with "
            "PYTHON_CONFIGURE_OPTS=--enable-shared) or pass its path with --python /path/to/python3",
            details=listing,
        )
    raise PythonNotFound(
        f"--python {spec} is ambiguous: {len(matches)} interpreters match",
        hint=f"pass a full version (e.g. {matches[0].version}) or the interpreter's path",
        details=_listing(matches),
    )


def _without_venvs_of_others(matches: list[Interpreter]) -> list[Interpreter]:
    """A venv of an interpreter that also matched is the same Python (same libpython, same stdlib): an active
    venv on PATH must not make `--python 3.8` ambiguous. Only the base is used; --venv packs a venv."""
    prefixes = {os.path.realpath(i.prefix) for i in matches}
    return [
        i
        for i in matches
        if os.path.realpath(i.prefix) == os.path.realpath(i.base_prefix)
        or os.path.realpath(i.base_prefix) not in prefixes
    ]


def _matches(interp: Interpreter, wanted: tuple[int, int, int | None]) -> bool:
    major, minor, micro = interp.version_tuple
    return (major, minor) == wanted[:2] and (wanted[2] is None or micro == wanted[2])


def _listing(interps: Iterable[Interpreter]) -> str:
    lines = [f"  {i.version:<9} {i.executable}  ({i.source})" for i in interps]
    return "found:\n" + "\n".join(lines) if lines else "found: no interpreters at all"


def check_shared(interp: Interpreter) -> None:
    if not interp.shared or interp.libpython is None:
        raise PythonNotFound(
            f"{interp.executable} (Python {interp.version}) has no shared libpython",
            hint="Triton's stub embeds libpython: use an interpreter built with --enable-shared "
            "(pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install "
            f"{interp.version}; conda and Debian's python3.X are shared)",
        )


def check_buildable(interp: Interpreter) -> None:
    check_shared(interp)
    if not interp.has_headers:
        raise PythonNotFound(
            f"{interp.executable} (Python {interp.version}) has no Python.h in {interp.include_dir}",
            hint=f"install the headers (Debian: apt-get install python{interp.minor}-dev)",
        )
