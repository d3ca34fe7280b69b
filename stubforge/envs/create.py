"""Create a self-contained execution environment from a shared-library CPython (docs/triton-behaviour.md:
"EXECUTION_ENV_PATH and extraction").

The result is a relocatable copy of the interpreter's prefix: bin/python3 (run path rewritten to
$ORIGIN/../lib), lib/libpythonX.Y.so.1.0, the stdlib without tests/idle/tkinter/ensurepip, and an empty
site-packages into which pip installs the requested packages, run by the env's own interpreter with user and
system site-packages shut out.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sysconfig
from collections.abc import Sequence
from pathlib import Path

from stubforge.core import elf, pythons
from stubforge.envs import activate
from stubforge.errors import EnvError
from stubforge.progress import QUIET, Progress

PIP_TIMEOUT_S = 1800.0
# Parts of the stdlib a model server never uses; together ~60% of a pyenv stdlib.
_STDLIB_SKIP = {
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "site-packages",
    "__phello__",
}
_STDLIB_SKIP_PREFIX = ("config-",)  # the static libpython and its Makefile


def stdlib_dir(interp: pythons.Interpreter) -> Path:
    return Path(interp.base_prefix) / "lib" / f"python{interp.minor}"


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed there
        shutil.copy2(src, dst)


def copy_interpreter(interp: pythons.Interpreter, dest: Path, *, transient: bool = False) -> None:
    """Lay out bin/, lib/libpython and the stdlib of interp under dest (which must exist and be empty).

    transient: dest is only read and then packed into an archive (which leaves bytecode out): the stdlib is
    hard-linked where the file system allows instead of copied, and its __pycache__ left out. A directory env
    gets copies: it outlives the interpreter's files."""
    pythons.check_shared(interp)  # a shared libpython is what Triton's stub loads from <env>/lib
    assert interp.libpython is not None
    bin_dir = dest / "bin"
    lib_dir = dest / "lib"
    bin_dir.mkdir()
    lib_dir.mkdir()

    exe_name = f"python{interp.minor}"
    shutil.copy2(interp.real_path, bin_dir / exe_name)
    # pyenv and python.org builds link libpython through an absolute RUNPATH; point it into the env.
    elf.shorten_runpath(bin_dir / exe_name, "$ORIGIN/../lib")
    for alias in ("python3", "python"):
        (bin_dir / alias).symlink_to(exe_name)

    libpython = Path(interp.libpython)
    shutil.copy2(libpython, lib_dir / libpython.name)
    short = libpython.name.split(".so")[0] + ".so"  # libpython3.8.so -> libpython3.8.so.1.0
    if short != libpython.name:
        (lib_dir / short).symlink_to(libpython.name)

    source = stdlib_dir(interp)
    if not (source / "os.py").is_file():
        raise EnvError(f"{source}: no stdlib there (no os.py)", hint="pass a complete CPython installation")
    target = lib_dir / source.name

    def ignore(directory: str, names: list[str]) -> set[str]:
        skip = {"__pycache__"} & set(names) if transient else set()
        if Path(directory) == source:
            return skip | {n for n in names if n in _STDLIB_SKIP or n.startswith(_STDLIB_SKIP_PREFIX)}
        return skip | {n for n in names if n in ("test", "tests") and Path(directory).name == "lib2to3"}

    copy = _link_or_copy if transient else shutil.copy2
    shutil.copytree(source, target, symlinks=True, ignore=ignore, copy_function=copy)
    (target / "site-packages").mkdir()
    activate.write(dest)


def copy_site_packages(source: Path, env_dir: Path, interp: pythons.Interpreter) -> None:
    """A venv's installed packages, without what only makes sense at the venv's own path."""
    target = env_dir / "lib" / f"python{interp.minor}" / "site-packages"
    shutil.copytree(
        source,
        target,
        symlinks=True,
        dirs_exist_ok=True,
        # Editable installs and .pth hooks of venv tools point back at the build machine.
        ignore=shutil.ignore_patterns(
            "__editable__*", "_virtualenv.pth", "_virtualenv.py", "distutils-precedence.pth"
        ),
    )


def launcher_env(env_dir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The variables Triton r25.08+ sets before starting the stub (activate is not sourced there)."""
    env = {k: v for k, v in (base or {}).items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env["VIRTUAL_ENV"] = str(env_dir)
    env["PATH"] = os.pathsep.join(p for p in (str(env_dir / "bin"), env.get("PATH", "/usr/bin:/bin")) if p)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(env_dir / "lib"), env.get("LD_LIBRARY_PATH")) if p
    )
    return env


def _pip_environment() -> dict[str, str]:
    """A clean environment for pip: index and proxy settings pass, anything that adds packages does not."""
    keep = {"HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR"}
    env = {
        k: v
        for k, v in os.environ.items()
        if k in keep or k.startswith("PIP_") or k.lower().endswith("_proxy")
    }
    env.pop("PIP_USER", None)
    env.pop("PIP_TARGET", None)
    env.pop("PIP_PREFIX", None)
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def base_pip(interp: pythons.Interpreter) -> Path:
    """The base interpreter's own pip package (wherever it imports it from, e.g. Debian's dist-packages):
    version-compatible with that Python by construction."""
    proc = subprocess.run(
        [interp.executable, "-E", "-c", "import os, pip; print(os.path.dirname(pip.__file__))"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    pip_dir = Path(proc.stdout.strip()) if proc.returncode == 0 else None
    if pip_dir is None or not (pip_dir / "__main__.py").is_file():
        raise EnvError(
            f"{interp.executable} has no pip",
            hint=f"install it once: {interp.executable} -m ensurepip (Debian/Ubuntu: apt-get install python3-pip)",
        )
    return pip_dir


def pip_install(
    env_dir: Path,
    interp: pythons.Interpreter,
    requirements: Sequence[str],
    requirement_files: Sequence[Path],
    pip_args: Sequence[str],
    log: Path,
    progress: Progress = QUIET,
    *,
    compile_bytecode: bool = True,
) -> None:
    """Install into the env with the env's own interpreter running the base interpreter's pip.
    compile_bytecode=False: no .pyc written (an archive leaves them out; compiling numpy's 1,000 modules is
    most of what pip spends after the download)."""
    if not requirements and not requirement_files:
        return
    pip_dir = base_pip(interp)
    args = [str(env_dir / "bin" / "python3"), str(pip_dir), "install", "--no-warn-script-location"]
    if not compile_bytecode:
        args.append("--no-compile")
    for req_file in requirement_files:
        args += ["-r", str(req_file)]
    args += [*pip_args, *requirements]
    shown = " ".join(a for a in args[4:] if a != "--no-compile")
    progress.step("pip install", shown)
    env = launcher_env(env_dir, _pip_environment())
    run_logged(
        args,
        log,
        f"pip could not install {shown} for Python {interp.version}",
        hint="check the package names and versions for this Python; the pip output is above "
        f"(full log: {log})",
        env=env,
    )
    relocate_scripts(env_dir)


def run_logged(
    args: list[str], log: Path, failure: str, hint: str = "", env: dict[str, str] | None = None
) -> None:
    """Run a tool (pip, micromamba) with its output appended to log; EnvError with the log's tail on failure."""
    with open(log, "a") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        try:
            proc = subprocess.run(
                args, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=PIP_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise EnvError(f"{failure}: no result within {PIP_TIMEOUT_S:.0f} s", hint=f"see {log}") from exc
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise EnvError(failure, hint=hint or f"see the output above (full log: {log})", details=tail)


def relocate_scripts(env_dir: Path) -> None:
    """pip writes console scripts with `#!<env>/bin/python3`, the env's build-time path; Triton extracts it
    elsewhere. `#!/usr/bin/env python3` finds the env's python, which the launcher puts first on PATH. The
    dist-info RECORDs get the new hashes, so they stay true (and two packs of one env stay identical)."""
    prefix = f"#!{env_dir.absolute()}/bin/python".encode()  # pip writes the absolute path
    rewritten: dict[str, str] = {}
    for script in sorted((env_dir / "bin").iterdir()):
        if script.is_symlink() or not script.is_file():
            continue
        with open(script, "rb") as fh:
            if fh.read(len(prefix)) != prefix:
                continue
            rest = fh.read().split(b"\n", 1)
        data = b"#!/usr/bin/env python3\n" + (rest[1] if len(rest) > 1 else b"")
        script.write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rewritten[script.name] = f"sha256={digest},{len(data)}"
    if rewritten:
        for record in env_dir.glob("lib/python*/site-packages/*.dist-info/RECORD"):
            _update_record(record, rewritten)


def _update_record(record: Path, rewritten: dict[str, str]) -> None:
    lines = record.read_text().splitlines(keepends=True)
    changed = False
    for index, line in enumerate(lines):
        path = line.split(",", 1)[0]
        name = path.rsplit("/", 1)[-1]
        if name in rewritten and path.split("/")[-2:-1] == ["bin"]:
            lines[index] = f"{path},{rewritten[name]}\n"
            changed = True
    if changed:
        record.write_text("".join(lines))


def host_python_paths() -> list[str]:
    """Install locations of the interpreter running stubforge: nothing from them may appear in an env."""
    paths = sysconfig.get_paths()
    return sorted({os.path.realpath(paths[k]) for k in ("stdlib", "purelib", "platlib") if k in paths})
