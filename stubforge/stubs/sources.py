"""The seven inputs of one Triton release: fetch them, import them, list them, hand them to a build.

Triton repositories (python_backend, common, core, backend) are stored per release; pybind11, dlpack and
googletest per version (several releases share them, and --pybind11 picks another cached one); boost as the
genuine tarball (hash-verified) or as a reference to a header tree (Debian's libboost-dev, PyPI boost-headers,
any directory), which is never copied.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stubforge.core import cache, fsutil, releases
from stubforge.errors import SourcesError
from stubforge.progress import QUIET, Progress
from stubforge.stubs import pins as pins_mod

TRITON_REPOS = ("python_backend", "common", "core", "backend")
TRITON_ORG = "https://github.com/triton-inference-server"
PYBIND11_REPO = "https://github.com/pybind/pybind11"
DLPACK_REPO = "https://github.com/dmlc/dlpack"
GOOGLETEST_REPO = "https://github.com/google/googletest"
SYSTEM_GOOGLETEST = Path("/usr/src/googletest")
SYSTEM_BOOST_INCLUDE = Path("/usr/include")
GIT_TIMEOUT_S = 900.0
# The boost archive `sources fetch --mirror` would otherwise name, for scripts and CI images.
BOOST_MIRROR_ENV = "STUBFORGE_BOOST_MIRROR"
# Hosts python_backend pinned that no longer serve boost: r23.12 and earlier pin boost's former JFrog download,
# r24.01 and later archives.boost.io. The tarball is the same file there, and its sha256 is checked either way.
RETIRED_BOOST_HOSTS = ("https://boostorg.jfrog.io/artifactory/main/release/",)


@dataclass
class Input:
    """One stored input and where it came from."""

    kind: str  # python_backend, common, core, backend, pybind11, dlpack, googletest, boost
    version: str  # release branch for Triton repos, library version otherwise
    path: str
    form: str = "tree"  # tree | tarball | headers
    commit: str | None = None
    origin: str = ""
    sha256: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class SourceSet:
    """Everything one build needs, resolved to paths."""

    release: releases.Release
    python_backend: Input
    common: Input
    core: Input
    backend: Input
    pybind11: Input
    dlpack: Input
    googletest: Input
    boost: Input
    pins: pins_mod.Pins
    warnings: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        """Digest of every input's content (boost by version and tarball hash): equal fingerprints mean a
        cached stub was built from exactly these sources, whatever paths or re-imports happened since."""
        digest = hashlib.sha256()
        for item in self.inputs():
            digest.update(f"{item.kind}\0{item.version}\0{item.form}\0{item.sha256 or ''}\0".encode())
            if item.form == "tree":
                digest.update(tree_digest(Path(item.path)).encode())
        return digest.hexdigest()

    def inputs(self) -> list[Input]:
        return [
            self.python_backend,
            self.common,
            self.core,
            self.backend,
            self.pybind11,
            self.dlpack,
            self.googletest,
            self.boost,
        ]


def input_digest(item: Input) -> str:
    """sha256 of what one input contributes to a build: a tree's files, a tarball's bytes, a header tree's boost/."""
    if item.form == "tarball":
        return item.sha256 or cache.sha256_of(Path(item.path))
    if item.form == "headers":
        return tree_digest(Path(item.path) / "boost")
    return tree_digest(Path(item.path))


def tree_digest(root: Path) -> str:
    """sha256 over the relative paths and contents of a source tree (.git excluded); ~50 ms for r24.10."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            digest.update(os.path.relpath(path, root).encode() + b"\0")
            if os.path.islink(path):
                digest.update(os.readlink(path).encode())
                continue
            with open(path, "rb") as fh:
                digest.update(fh.read())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- versions


def _define(path: Path, name: str) -> str | None:
    try:
        match = re.search(rf"^\s*#\s*define\s+{name}\s+(\S+)", path.read_text(errors="replace"), re.M)
    except OSError:
        return None
    return match.group(1).strip('"') if match else None


def pybind11_version(tree: Path) -> str | None:
    header = tree / "include" / "pybind11" / "detail" / "common.h"
    parts = [_define(header, f"PYBIND11_VERSION_{p}") for p in ("MAJOR", "MINOR", "PATCH")]
    if any(p is None for p in parts):
        return None
    return ".".join(re.sub(r"\D.*", "", p or "") or "0" for p in parts)


def dlpack_version(tree: Path) -> str | None:
    raw = _define(tree / "include" / "dlpack" / "dlpack.h", "DLPACK_VERSION")
    if raw is None or not raw.isdigit():
        return None
    number = int(raw)  # 80 → 0.8, 100 → 1.0
    return f"{number // 100}.{(number % 100) // 10}"


def googletest_version(tree: Path) -> str | None:
    try:
        text = (tree / "CMakeLists.txt").read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"GOOGLETEST_VERSION\s+([0-9.]+)", text)
    return match.group(1) if match else None


def boost_headers_version(include_root: Path) -> str | None:
    raw = _define(include_root / "boost" / "version.hpp", "BOOST_VERSION")
    if raw is None or not raw.isdigit():
        return None
    number = int(raw)
    return f"{number // 100000}.{number // 100 % 1000}.{number % 100}"


def boost_tarball_version(path: Path) -> str | None:
    match = pins_mod._BOOST_FILE.search(path.name)
    return ".".join(match.groups()) if match else None


def _git_commit(tree: Path) -> str | None:
    if not (tree / ".git").exists():
        return None
    try:
        proc = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None  # no git here: the checkout is still usable, its commit just goes unrecorded
    return proc.stdout.strip() if proc.returncode == 0 else None


def _git_branch(tree: Path) -> str | None:
    if not (tree / ".git").exists():
        return None
    try:
        proc = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "--abbrev-ref", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    branch = proc.stdout.strip()
    return branch if proc.returncode == 0 and branch != "HEAD" else None


# ---------------------------------------------------------------------------------------------- store


def _triton_dir(branch: str) -> Path:
    return cache.sources_dir() / "triton" / branch


def _lib_dir(kind: str, version: str) -> Path:
    return cache.sources_dir() / kind / version


def _record_path(kind: str, version: str, form: str = "tree") -> Path:
    if kind in TRITON_REPOS:
        return _triton_dir(version) / f"{kind}.json"
    # A boost header tree and the boost tarball of one version are different inputs: separate records.
    name = f"headers-{version}" if form == "headers" else version
    return cache.sources_dir() / kind / f"{name}.json"


def _save(record: Input) -> None:
    fsutil.write_json_atomic(_record_path(record.kind, record.version, record.form), record.to_dict())


def _load_file(path: Path) -> Input | None:
    if not path.is_file():
        return None
    try:
        record = Input(**cache.read_json(path))
    except (OSError, ValueError, TypeError):
        return None
    return record if Path(record.path).exists() else None


def _load(kind: str, version: str) -> Input | None:
    return _load_file(_record_path(kind, version))


def _stored(kind: str) -> list[Input]:
    base = cache.sources_dir() / kind
    if not base.is_dir():
        return []
    found = (_load_file(record_file) for record_file in sorted(base.glob("*.json")))
    return [record for record in found if record is not None]


def _copy_tree(src: Path, dest: Path) -> None:
    """Copy a checkout into the store atomically; .git stays behind (the commit is recorded instead)."""
    with fsutil.staging_dir(dest) as staging:
        shutil.copytree(src, staging / "t", symlinks=True, ignore=shutil.ignore_patterns(".git"))
        for entry in (staging / "t").iterdir():
            os.replace(entry, staging / entry.name)
        (staging / "t").rmdir()


def _store_tree(kind: str, version: str, src: Path, origin: str, commit: str | None) -> Input:
    dest = _triton_dir(version) / kind if kind in TRITON_REPOS else _lib_dir(kind, version)
    if src.resolve() != dest.resolve():
        _copy_tree(src, dest)
    record = Input(kind=kind, version=version, path=str(dest), commit=commit, origin=origin)
    _save(record)
    return record


def _check_tarball(archive: Path, expected_sha256: str | None) -> tuple[str, str]:
    version = boost_tarball_version(archive)
    if version is None:
        raise SourcesError(
            f"{archive}: not a boost source tarball (expected a name like boost_1_79_0.tar.gz)",
            hint="pass the genuine tarball from the boost archive, or a header tree with --boost DIR",
        )
    digest = cache.sha256_of(archive)
    if expected_sha256 and digest != expected_sha256:
        raise SourcesError(
            f"{archive}: sha256 {digest} does not match the pinned {expected_sha256}",
            hint="the download is corrupt or not the genuine boost release; fetch it again or use a mirror",
        )
    return version, digest


def store_boost_tarball(archive: Path, expected_sha256: str | None, origin: str) -> Input:
    version, digest = _check_tarball(archive, expected_sha256)
    dest_dir = _lib_dir("boost", version)
    with fsutil.staging_dir(dest_dir) as staging:
        shutil.copyfile(archive, staging / archive.name)
    record = Input(
        kind="boost",
        version=version,
        path=str(dest_dir / archive.name),
        form="tarball",
        origin=origin,
        sha256=digest,
    )
    _save(record)
    return record


def boost_headers(include_root: Path, origin: str = "") -> Input:
    """Describe a header tree (the directory that holds boost/version.hpp's boost/); nothing is copied."""
    root = include_root.resolve()
    if (root / "version.hpp").is_file() and root.name == "boost":
        root = root.parent  # accept the boost/ dir itself too
    version = boost_headers_version(root)
    if version is None:
        raise SourcesError(
            f"{include_root}: no boost/version.hpp below it",
            hint="pass the include root that holds boost/ (e.g. /usr/include after apt-get install "
            "libboost-dev, or site-packages/boost-headers' include dir)",
        )
    return Input(kind="boost", version=version, path=str(root), form="headers", origin=origin or str(root))


# ---------------------------------------------------------------------------------------------- import


def import_sources(
    release_spec: releases.Release | str, from_dir: Path, progress: Progress = QUIET
) -> list[Input]:
    """Store checkouts obtained elsewhere. Layout of from_dir: python_backend/ common/ core/ backend/ and
    optionally pybind11*/ dlpack/ googletest/ boost/ (a header include root) and boost_*.tar.gz."""
    release = releases.get(release_spec)
    if not from_dir.is_dir():
        raise SourcesError(f"{from_dir}: no such directory", hint="pass the directory holding the checkouts")
    missing = [name for name in TRITON_REPOS if not (from_dir / name / "CMakeLists.txt").is_file()]
    if missing:
        raise SourcesError(
            f"{from_dir} lacks {', '.join(n + '/' for n in missing)} (each must be a checkout with CMakeLists.txt)",
            hint=f"clone python_backend, common, core and backend at branch {release.branch} into it",
        )
    pins = pins_mod.read(from_dir / "python_backend")
    for name in TRITON_REPOS:
        branch = _git_branch(from_dir / name)
        if branch is not None and branch != release.branch:
            raise SourcesError(
                f"{from_dir / name} is on branch {branch}, not {release.branch}",
                hint=f"check out {release.branch} (the release branch; never main or a YY.MM tag)",
            )
    stored: list[Input] = []
    # Validate everything before storing anything: a bad pybind11 must not leave half an import behind.
    libs: list[tuple[str, str, Path]] = []
    for entry in sorted(from_dir.iterdir()):
        if entry.is_dir() and entry.name.startswith("pybind11"):
            version = pybind11_version(entry)
            if version is None:
                raise SourcesError(
                    f"{entry}: no include/pybind11/detail/common.h with a version",
                    hint="pass a pybind11 source checkout",
                )
            libs.append(("pybind11", version, entry))
    for kind, reader in (("dlpack", dlpack_version), ("googletest", googletest_version)):
        tree = from_dir / kind
        if tree.is_dir():
            version = reader(tree)
            if version is None:
                raise SourcesError(f"{tree}: cannot tell its version", hint=f"pass a {kind} source checkout")
            libs.append((kind, version, tree))
    headers = boost_headers(from_dir / "boost") if (from_dir / "boost").is_dir() else None
    tarballs = sorted(from_dir.glob("boost_*.tar.gz"))
    expected = pins.boost.sha256 if pins.boost else release.boost_sha256
    pinned_version = _pinned_boost_version(pins, release)
    for tarball in tarballs:
        progress.step("check", tarball.name)
        _check_tarball(tarball, expected if boost_tarball_version(tarball) == pinned_version else None)

    for name in TRITON_REPOS:
        progress.step("import", name)
        src = from_dir / name
        stored.append(_store_tree(name, release.branch, src, f"import {src}", _git_commit(src)))
    for kind, version, tree in libs:
        progress.step("import", f"{kind} {version}")
        stored.append(_store_tree(kind, version, tree, f"import {tree}", _git_commit(tree)))
    for tarball in tarballs:
        progress.step("import", tarball.name)
        pinned = expected if boost_tarball_version(tarball) == pinned_version else None
        stored.append(store_boost_tarball(tarball, pinned, f"import {tarball}"))
    if headers is not None:
        progress.step("import", f"boost headers {headers.version}")
        stored.append(_store_boost_headers(headers))
    return stored


def _store_boost_headers(headers: Input) -> Input:
    """Copy an imported header tree into the store: the import directory may be a USB stick."""
    dest = _lib_dir("boost", f"headers-{headers.version}")
    with fsutil.staging_dir(dest) as staging:
        # Follow symlinks: an import dir often links boost/ to a system tree.
        shutil.copytree(Path(headers.path) / "boost", staging / "boost", symlinks=False)
    record = Input(
        kind="boost", version=headers.version, path=str(dest), form="headers", origin=headers.origin
    )
    _save(record)
    return record


def _pinned_boost_version(pins: pins_mod.Pins, release: releases.Release) -> str:
    return (pins.boost.version if pins.boost and pins.boost.version else None) or release.boost


# ---------------------------------------------------------------------------------------------- fetch


def _run_git(args: list[str], what: str) -> None:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    try:
        proc = subprocess.run(
            ["git", *args], capture_output=True, text=True, check=False, timeout=GIT_TIMEOUT_S, env=env
        )
    except FileNotFoundError as exc:
        raise SourcesError("git is not installed", hint="apt-get install git") from exc
    except subprocess.TimeoutExpired as exc:
        raise SourcesError(
            f"{what}: git gave no result within {GIT_TIMEOUT_S:.0f} s",
            hint="behind a firewall, point git at a mirror (docs/sources.md, url.<base>.insteadOf)",
        ) from exc
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise SourcesError(f"{what} failed", hint=git_mirror_hint(), details=tail)


def git_mirror_hint() -> str:
    return (
        "check the network or use a mirror: git config --global "
        "url.<mirror>.insteadOf https://github.com/ (docs/sources.md, Offline); offline, use "
        "`stubforge sources import`"
    )


def _clone(url: str, ref: str, dest: Path, commit: str | None = None) -> str | None:
    """Shallow-clone url at a branch or tag (or a bare commit) into dest; returns HEAD's commit."""
    if ref:
        _run_git(
            ["clone", "--quiet", "--depth", "1", "--branch", ref, url, str(dest)], f"git clone {url} {ref}"
        )
    else:
        assert commit is not None
        _run_git(["init", "--quiet", str(dest)], f"git init {dest}")
        _run_git(
            ["-C", str(dest), "fetch", "--quiet", "--depth", "1", url, commit], f"git fetch {url} {commit}"
        )
        _run_git(["-C", str(dest), "checkout", "--quiet", "FETCH_HEAD"], f"git checkout {commit}")
    head = _git_commit(dest)
    if commit and head != commit:
        raise SourcesError(
            f"{url} {ref} is at {head}, but python_backend pins {commit}",
            hint="the tag moved or the mirror is wrong; remove the mirror or import the pinned commit",
        )
    return head


_VERSION_READERS: dict[str, Callable[[Path], str | None]] = {}


def _fetch_tree(
    kind: str, version: str | None, url: str, ref: str, commit: str | None, progress: Progress
) -> Input:
    """Clone one library; version None means: read it from the checkout (googletest pinned by commit)."""
    if version is not None:
        existing = _load(kind, version)
        # An import without .git records no commit: that version is what the pin stands for, so use it
        # rather than clone (a recorded, different commit is another tree and is fetched).
        if existing is not None and (commit is None or existing.commit in (None, commit)):
            progress.step("cached", f"{kind} {version}")
            return existing
    else:
        for existing in _stored(kind):
            if commit is not None and existing.commit == commit:
                progress.step("cached", f"{kind} {existing.version}")
                return existing
    progress.step("fetch", f"{kind} {ref or commit} from {url}")
    sources_root = cache.sources_dir()
    sources_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"stubforge-{kind}-", dir=sources_root) as tmp:
        checkout = Path(tmp) / kind
        head = _clone(url, ref, checkout, commit)
        found = _VERSION_READERS[kind](checkout)
        if found is None:
            raise SourcesError(
                f"{url} {ref or commit}: cannot tell the {kind} version", hint="check the mirror"
            )
        if version is not None and found != version:
            raise SourcesError(
                f"{url} {ref or commit} is {kind} {found}, not {version}",
                hint="the mirror serves another version; fix the mirror or import the right checkout",
            )
        return _store_tree(kind, found, checkout, f"git {url} {ref or commit}", head)


_VERSION_READERS.update(pybind11=pybind11_version, dlpack=dlpack_version, googletest=googletest_version)


def boost_download_url(release: releases.Release, pin: pins_mod.BoostPin | None, mirror: str | None) -> str:
    return boost_download_urls(release, pin, mirror)[0]


def boost_download_urls(
    release: releases.Release, pin: pins_mod.BoostPin | None, mirror: str | None
) -> list[str]:
    """Where to download the pinned tarball, in order: a mirror alone when one is set; otherwise the pinned URL
    (its retired host replaced by boost's archive) and then boost's archive. The sha256 pin is checked after."""
    url = pin.url if pin and pin.url else release.boost_url
    filename = url.rsplit("/", 1)[-1]
    version = boost_tarball_version(Path(filename)) or release.boost
    if mirror:
        if "{" in mirror:
            return [mirror.format(version=version, file=filename)]
        return [mirror.rstrip("/") + "/" + filename]
    archive_url = f"{releases.BOOST_ARCHIVE_BASE}{version}/source/{filename}"
    for retired in RETIRED_BOOST_HOSTS:
        if url.startswith(retired):
            url = archive_url
    return [url] if url == archive_url else [url, archive_url]


def download(url: str, dest: Path, progress: Progress = QUIET, timeout: float = 60.0) -> None:
    """Stream url into dest (atomically: a broken download leaves nothing)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with fsutil.atomic_file(dest) as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            step = 16 << 20
            next_report = step
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                done += len(block)
                if done >= next_report:
                    progress.step(
                        "download", f"{done >> 20} MiB" + (f" of {total >> 20} MiB" if total else "")
                    )
                    next_report += step
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SourcesError(
            f"download of {url} failed ({getattr(exc, 'reason', exc)})",
            hint=f"use a mirror (--mirror URL, or {BOOST_MIRROR_ENV}=URL: a base URL or a template with "
            "{version} and {file}), or download it elsewhere and pass --archive FILE; or skip it with "
            "--no-boost and build with a local header tree (--boost /usr/include after apt-get install "
            "libboost-dev)",
        ) from exc


def fetch_sources(
    release_spec: releases.Release | str,
    *,
    org_url: str = TRITON_ORG,
    mirror: str | None = None,
    archive: Path | None = None,
    skip_boost: bool = False,
    extra_pybind11: tuple[str, ...] = (),
    progress: Progress = QUIET,
) -> list[Input]:
    """Clone the release's repositories and pinned libraries with git; download (or take) boost."""
    release = releases.get(release_spec)
    stored: list[Input] = []
    for name in TRITON_REPOS:
        url = f"{org_url.rstrip('/')}/{name}.git"
        existing = _load(name, release.branch)
        if existing is not None:
            progress.step("cached", f"{name} {release.branch}")
            stored.append(existing)
            continue
        progress.step("fetch", f"{name} {release.branch} from {url}")
        cache.sources_dir().mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"stubforge-{name}-", dir=cache.sources_dir()) as tmp:
            checkout = Path(tmp) / name
            head = _clone(url, release.branch, checkout)
            stored.append(_store_tree(name, release.branch, checkout, f"git {url} {release.branch}", head))
    python_backend = Path(stored[0].path)
    pins = pins_mod.read(python_backend)

    pyb = pins.declared.get("pybind11")
    pyb_version = (pyb.version if pyb else None) or release.pybind11
    pyb_commit = pyb.tag if pyb and pyb.tag and re.fullmatch(r"[0-9a-f]{40}", pyb.tag) else None
    stored.append(
        _fetch_tree("pybind11", pyb_version, PYBIND11_REPO, f"v{pyb_version}", pyb_commit, progress)
    )
    for version in extra_pybind11:
        version = version.lstrip("v")
        if version != pyb_version:
            stored.append(_fetch_tree("pybind11", version, PYBIND11_REPO, f"v{version}", None, progress))

    dl = pins.declared.get("dlpack")
    dl_version = (dl.version if dl else None) or release.dlpack
    stored.append(_fetch_tree("dlpack", dl_version, DLPACK_REPO, f"v{dl_version}", None, progress))

    stored.append(_fetch_googletest(release, Path(stored[1].path), progress))

    if not skip_boost:
        stored.append(
            _fetch_boost(release, pins, mirror or os.environ.get(BOOST_MIRROR_ENV), archive, progress)
        )
    return stored


def _fetch_googletest(release: releases.Release, common: Path, progress: Progress) -> Input:
    """common pins googletest only for its own tests and any googletest configures (docs/triton-behaviour.md,
    Building the stub offline): a cached one is used whatever its commit, Debian's when the clone fails."""
    gt = pins_mod.googletest_pin(common)
    gt_commit = pins_mod.commit_of(gt) if gt else None
    cached = _stored("googletest")
    if cached:
        pinned = [r for r in cached if gt_commit and r.commit == gt_commit]
        chosen = pinned[0] if pinned else cached[-1]  # resolve() takes the last one too
        note = (
            "" if pinned or not gt_commit else f" (common pins {gt_commit[:12]}; any googletest configures)"
        )
        progress.step("cached", f"googletest {chosen.version}{note}")
        return chosen
    try:
        if gt_commit:
            return _fetch_tree("googletest", None, GOOGLETEST_REPO, "", gt_commit, progress)
        gt_tag = (gt.tag if gt else None) or f"v{release.googletest}"
        return _fetch_tree("googletest", None, GOOGLETEST_REPO, gt_tag, None, progress)
    except SourcesError as exc:
        system = system_googletest()
        if system is not None:
            progress.step("googletest", f"{exc.message}; builds use {system.path} ({system.version}) instead")
            return system
        raise SourcesError(
            exc.message,
            hint=f"any googletest works: apt-get install googletest (then {SYSTEM_GOOGLETEST} is used), "
            "or put a googletest checkout in an import directory (`stubforge sources import`), or "
            "reach GitHub through a mirror: git config --global url.<mirror>.insteadOf https://github.com/",
            details=exc.details,
        ) from exc


def system_googletest() -> Input | None:
    """Debian's googletest package, which configures as well as the pinned commit."""
    version = googletest_version(SYSTEM_GOOGLETEST)
    if version is None:
        return None
    return Input(
        kind="googletest", version=version, path=str(SYSTEM_GOOGLETEST), origin="system (Debian googletest)"
    )


def _fetch_boost(
    release: releases.Release,
    pins: pins_mod.Pins,
    mirror: str | None,
    archive: Path | None,
    progress: Progress,
) -> Input:
    expected = pins.boost.sha256 if pins.boost else release.boost_sha256
    version = _pinned_boost_version(pins, release)
    existing = _load("boost", version)
    if existing is not None and archive is None:
        progress.step("cached", f"boost {version}")
        return existing
    if archive is not None:
        if not archive.is_file():
            raise SourcesError(f"{archive}: no such file", hint="pass the path of boost_X_Y_Z.tar.gz")
        progress.step("take", f"boost from {archive}")
        return store_boost_tarball(archive, expected, f"archive {archive}")
    pinned_url = pins.boost.url if pins.boost and pins.boost.url else release.boost_url
    urls = boost_download_urls(release, pins.boost, mirror)
    if not mirror and urls[0] != pinned_url:
        progress.step(
            "boost",
            f"python_backend pins {pinned_url}, which no longer serves boost; using boost's own archive",
        )
    cache.sources_dir().mkdir(parents=True, exist_ok=True)
    failures: list[SourcesError] = []
    for url in urls:
        progress.step("download", f"boost {version} from {url}")
        with tempfile.TemporaryDirectory(prefix="stubforge-boost-", dir=cache.sources_dir()) as tmp:
            target = Path(tmp) / url.rsplit("/", 1)[-1]
            try:
                download(url, target, progress)
            except SourcesError as exc:
                failures.append(exc)
                continue
            return store_boost_tarball(target, expected, f"download {url}")
    headers = [r for r in _stored("boost") if r.form == "headers"]
    if headers and not mirror:
        # A cached header tree builds as well (the version becomes part of the artifact key).
        progress.step(
            "boost", f"{version}: no download worked; builds use the cached header tree {headers[-1].version}"
        )
        return headers[-1]
    if len(failures) == 1:
        raise failures[0]
    raise SourcesError(
        f"download of boost {version} failed from every known URL: "
        + "; ".join(exc.message.removeprefix("download of ") for exc in failures),
        hint=failures[-1].hint,
    )


# ---------------------------------------------------------------------------------------------- resolve


def resolve(
    release_spec: releases.Release | str,
    *,
    pybind11: str | None = None,
    source: Path | None = None,
    boost: Path | None = None,
) -> SourceSet:
    """The inputs of one build, from the store (and overrides); errors say exactly what is missing."""
    release = releases.get(release_spec)
    fetch_hint = (
        f"run `stubforge sources fetch --triton {release.yymm}`, or offline "
        f"`stubforge sources import --triton {release.yymm} --from DIR`"
    )
    warnings: list[str] = []
    triton: dict[str, Input] = {}
    for name in TRITON_REPOS:
        record = _load(name, release.branch)
        if name == "python_backend" and source is not None:
            if not (source / "CMakeLists.txt").is_file():
                raise SourcesError(
                    f"--source {source}: no CMakeLists.txt there", hint="point at a python_backend checkout"
                )
            record = Input(
                kind=name,
                version=release.branch,
                path=str(source.resolve()),
                commit=_git_commit(source),
                origin=f"--source {source}",
            )
        if record is None:
            raise SourcesError(f"{name} for {release.branch} is not in the source cache", hint=fetch_hint)
        triton[name] = record
    pins = pins_mod.read(Path(triton["python_backend"].path))

    pyb_decl = pins.declared.get("pybind11")
    pinned_pybind11 = (pyb_decl.version if pyb_decl else None) or release.pybind11
    wanted_pybind11 = (pybind11 or pinned_pybind11).lstrip("v")
    pyb = _load("pybind11", wanted_pybind11)
    if pyb is None:
        cached = ", ".join(r.version for r in _stored("pybind11")) or "none"
        raise SourcesError(
            f"pybind11 {wanted_pybind11} is not in the source cache (cached: {cached})",
            hint=f"run `stubforge sources fetch --triton {release.yymm} --pybind11 {wanted_pybind11}` "
            "or import a pybind11 checkout",
        )

    dl_decl = pins.declared.get("dlpack")
    dl_version = (dl_decl.version if dl_decl else None) or release.dlpack
    dl = _load("dlpack", dl_version)
    if dl is None:
        raise SourcesError(f"dlpack {dl_version} is not in the source cache", hint=fetch_hint)

    gt_candidates = _stored("googletest")
    system_gt = None if gt_candidates else system_googletest()
    if gt_candidates:
        gt = gt_candidates[-1]
    elif system_gt is not None:
        # common only declares googletest for its own tests; any googletest configures, Debian's included.
        gt = system_gt
    else:
        raise SourcesError(
            "no googletest in the source cache and none at /usr/src/googletest",
            hint=f"apt-get install googletest, or {fetch_hint}",
        )

    boost_input = _resolve_boost(release, pins, boost, fetch_hint)
    return SourceSet(
        release=release,
        python_backend=triton["python_backend"],
        common=triton["common"],
        core=triton["core"],
        backend=triton["backend"],
        pybind11=pyb,
        dlpack=dl,
        googletest=gt,
        boost=boost_input,
        pins=pins,
        warnings=warnings,
    )


def _resolve_boost(
    release: releases.Release, pins: pins_mod.Pins, override: Path | None, fetch_hint: str
) -> Input:
    if override is not None:
        if override.is_file():
            expected = pins.boost.sha256 if pins.boost else None
            digest = cache.sha256_of(override)
            if expected and digest != expected:
                raise SourcesError(
                    f"--boost {override}: sha256 {digest} is not the pinned {expected}",
                    hint="pass the genuine tarball, or a header tree directory instead",
                )
            return Input(
                kind="boost",
                version=boost_tarball_version(override) or "unknown",
                path=str(override.resolve()),
                form="tarball",
                origin=f"--boost {override}",
                sha256=digest,
            )
        if override.is_dir():
            return boost_headers(override, origin=f"--boost {override}")
        raise SourcesError(
            f"--boost {override}: no such file or directory", hint="pass a tarball or a header tree"
        )
    version = _pinned_boost_version(pins, release)
    tarball = _load("boost", version)
    if tarball is not None:
        return tarball
    headers = [r for r in _stored("boost") if r.form == "headers"]
    if headers:
        return headers[-1]
    if boost_headers_version(SYSTEM_BOOST_INCLUDE):
        return boost_headers(SYSTEM_BOOST_INCLUDE, origin="system (/usr/include/boost)")
    raise SourcesError(
        f"no boost for {release.branch}: neither the boost {version} tarball nor a header tree is available",
        hint=f"apt-get install libboost-dev (headers), pass --boost DIR|TARBALL, or {fetch_hint}",
    )


# ---------------------------------------------------------------------------------------------- list


def list_sources() -> list[dict[str, object]]:
    """One row per cached release: its inputs and whether a build could start from them."""
    rows: list[dict[str, object]] = []
    triton_root = cache.sources_dir() / "triton"
    branches = sorted(p.name for p in triton_root.iterdir() if p.is_dir()) if triton_root.is_dir() else []
    for branch in branches:
        present = {name: _load(name, branch) for name in TRITON_REPOS}
        row: dict[str, object] = {
            "release": branch,
            "inputs": {k: (v.to_dict() if v else None) for k, v in present.items()},
        }
        try:
            resolved = resolve(branch)
            row["complete"] = True
            row["inputs"] = {i.kind: i.to_dict() for i in resolved.inputs()}
            row["missing"] = ""
        except SourcesError as exc:
            row["complete"] = False
            row["missing"] = exc.message
        rows.append(row)
    return rows


def cached_libraries() -> dict[str, list[str]]:
    libs = {kind: [r.version for r in _stored(kind)] for kind in ("pybind11", "dlpack", "googletest")}
    libs["boost"] = [f"{r.version} ({r.form})" for r in _stored("boost")]
    return libs
