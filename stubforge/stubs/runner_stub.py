"""`stubforge build --flavor runner`: compile stubforge's own stub (stub_src/sfstub.c) for one interpreter.

One C file against the interpreter's headers and libpython: well under a second, no network, no upstream
sources. Cached and verified like an upstream stub (NEEDED libpython, the no-argument probe answer).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from stubforge import __version__
from stubforge.core import cache, elf, pythons, targets
from stubforge.errors import BuildError
from stubforge.stubs import cross, reproducible, sources
from stubforge.stubs import probe as verify
from stubforge.stubs.build import BuildResult

SOURCE = Path(__file__).resolve().parent.parent / "runner" / "stub_src" / "sfstub.c"
# -Wdate-time under -Werror: our own stub never compiles in a date (same source, same bytes).
FLAGS = ("-O2", "-Wall", "-Wextra", "-Werror", "-Wdate-time", "-std=gnu99")
LIBS = ("-lpthread", "-lrt")


def _compiler() -> str:
    for candidate in (os.environ.get("CC"), "cc", "gcc"):
        if candidate and shutil.which(candidate):
            return candidate
    raise BuildError(
        "no C compiler found (tried $CC, cc, gcc)",
        hint="install one: apt-get install gcc (the runner's stub is one C file)",
    )


def runner_key(interp: pythons.Interpreter, plan: cross.CrossBuild | None = None) -> str:
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS + LIBS).encode()).hexdigest()[:10]
    tag = "cp" + interp.minor.replace(".", "")
    if plan is None:
        return f"runner-{tag}-{platform.machine()}-{digest}"
    return f"runner-{tag}-{plan.target.arch}-{digest}-sysroot_{plan.identity()}"


def build_runner_stub(
    python: str | pythons.Interpreter, *, force: bool = False, target: targets.Target | None = None
) -> BuildResult:
    """The runner's stub for one Python: this machine's interpreter, or with a `target` naming a sysroot, the
    sysroot's Python compiled with the target's cross compiler."""
    started = time.monotonic()
    plan: cross.CrossBuild | None = None
    chosen = targets.as_target(target)
    if cross.needed(chosen):
        plan = cross.plan(chosen, python if isinstance(python, str) else python.minor, "c")
        interp = plan.interpreter
    else:
        interp = (
            python
            if isinstance(python, pythons.Interpreter)
            else pythons.resolve(python, require_buildable=True)
        )
        pythons.check_buildable(interp)
    key = runner_key(interp, plan)
    final_dir = cache.stubs_dir() / key
    with cache.locked(key):
        manifest_path = final_dir / cache.MANIFEST_NAME
        if not force and manifest_path.is_file() and (final_dir / cache.STUB_NAME).is_file():
            cached = cache.read_json(manifest_path)
            if cached.get("python", {}).get("executable") == interp.executable:
                return BuildResult(key, final_dir / cache.STUB_NAME, cached, True, time.monotonic() - started)
        with cache.staging_dir(final_dir) as staging:
            manifest = _compile(interp, staging / cache.STUB_NAME, key, plan)
            cache.write_json_atomic(staging / cache.MANIFEST_NAME, manifest)
    return BuildResult(key, final_dir / cache.STUB_NAME, manifest, False, time.monotonic() - started)


def _compile(
    interp: pythons.Interpreter, output: Path, key: str, plan: cross.CrossBuild | None = None
) -> dict[str, Any]:
    with contextlib.ExitStack() as scratch:
        return _compile_in(interp, output, key, plan, scratch)


def _compile_in(
    interp: pythons.Interpreter,
    output: Path,
    key: str,
    plan: cross.CrossBuild | None,
    scratch: contextlib.ExitStack,
) -> dict[str, Any]:
    assert interp.libpython
    compiler = plan.cc if plan is not None else _compiler()
    # The source's directory differs from one installation to the next; the binary names it stub_src/.
    maps = [m.flag() for m in reproducible.prefix_maps({"stub_src": SOURCE.parent})]
    target_flags: list[str] = []
    if plan is not None:
        link_dir = plan.prepare_link_dir(Path(scratch.enter_context(tempfile.TemporaryDirectory())))
        target_flags = [*plan.compile_flags(), *plan.link_flags(link_dir)]
    command = [
        compiler,
        *FLAGS,
        *maps,
        f"-I{interp.include_dir}",
        *target_flags,
        str(SOURCE),
        interp.libpython,  # by path: NEEDED gets the soname, and no RUNPATH is recorded (like Triton's stub)
        *LIBS,
        "-o",
        str(output),
    ]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env=reproducible.build_environment(os.environ),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(
            f"{compiler} could not compile {SOURCE.name}: {exc}", hint="check the compiler"
        ) from exc
    if proc.returncode != 0:
        raise BuildError(
            f"compiling the runner's stub for Python {interp.version} failed",
            hint="the details are the compiler's output; Python.h must come from the same interpreter",
            details=(proc.stderr or proc.stdout)[-3000:],
        )
    compile_s = time.monotonic() - t0
    label = f"the runner's stub for Python {interp.version}"
    if plan is not None:
        checked = verify.verify_for_target(output, interp, plan.target, plan.lib_dirs(), label=label)
    else:
        checked = verify.verify(output, interp, label=label)
    built_for = plan.target if plan is not None else targets.host_target()
    manifest: dict[str, Any] = {
        "schema": 1,
        "flavor": "runner",
        "key": key,
        "stubforge": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "arch": built_for.arch,
        "build_host": platform.machine(),
        # The runner's stub runs beside stubforge itself: this machine, or another one under emulation.
        "target": built_for.to_dict(),
        "gpu": False,
        "python": {
            "version": interp.version,
            "minor": interp.minor,
            "executable": interp.executable,
            "libpython": interp.libpython,
        },
        "source_sha256": cache.sha256_of(SOURCE),
        "inputs": _recorded_inputs(interp, compiler, maps),
        "build": {"compiler": compiler, "command": command, "mode": "runner"},
        "timings": {"compile_s": round(compile_s, 3)},
        "elf": elf.read(output).to_dict(),
        "probe": checked["probe"],
        "sha256": cache.sha256_of(output),
    }
    if plan is not None:
        manifest["cross"] = {**plan.to_dict(), "floors_checked": checked["floors_checked"]}
    return manifest


def _recorded_inputs(interp: pythons.Interpreter, compiler: str, maps: list[str]) -> dict[str, Any]:
    """What decides the runner stub's bytes, by digest and without installation paths (equal records, equal
    stubs; docs/build.md, Reproducible builds)."""
    flags = reproducible.normalized([*FLAGS, *maps, *LIBS], {"stub_src": SOURCE.parent})
    return {
        "source_sha256": cache.sha256_of(SOURCE),
        "python": {
            "version": interp.version,
            "executable": interp.executable,
            "headers_sha256": sources.tree_digest(Path(interp.include_dir)),
        },
        "compiler": {"path": shutil.which(compiler) or compiler, "version": _compiler_version(compiler)},
        "flags": flags,
        "flags_sha256": reproducible.digest_of(flags),
        "source_date_epoch": reproducible.build_environment(os.environ)["SOURCE_DATE_EPOCH"],
    }


def _compiler_version(compiler: str) -> str:
    """The first line of `cc --version`, e.g. 'cc (Debian 12.2.0-14+deb12u1) 12.2.0'."""
    try:
        proc = subprocess.run(
            [compiler, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = proc.stdout.splitlines()
    return lines[0].strip() if proc.returncode == 0 and lines else "unknown"


# The names of the first releases (`--flavor harness`), kept for callers that use them.
harness_key = runner_key
build_harness = build_runner_stub
