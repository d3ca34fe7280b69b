"""verify leaves the stubs of a repository and a backends directory as it found them.

Triton releases before r25.08 run a stub with no arguments before each launch and, unless it exits 1, chmod it
to 0100 (docs/triton-behaviour.md: "The stub process and its probe"). A per-model stub whose libpython is only
in the model's env fails that probe at every load, so a verify run would leave the user's file changed, and
the same chmod fails where the server may not change the file (a read-only volume, a file of another owner):
the load then fails with "Failed to give execute permission to triton_python_backend_stub". verify restores
the mode and reports what happened.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from stubforge.core import cache
from stubforge.server.verify.report import ModelReport


class StubModes:
    """The modes of the stubs a server is about to probe: per-model stubs of `models`, backends' stubs."""

    def __init__(self, repository: Path | None, models: list[str], backends: Path | None) -> None:
        self._before: dict[Path, tuple[int, str | None, str | None]] = {}  # path -> mode, model, backend
        if repository is not None:
            for name in models:
                self._note(repository / name / cache.STUB_NAME, name, None)
        if backends is not None and backends.is_dir():
            for backend in sorted(p for p in backends.iterdir() if p.is_dir()):
                self._note(backend / cache.STUB_NAME, None, backend.name)

    def _note(self, path: Path, model: str | None, backend: str | None) -> None:
        try:
            if path.is_file() and not path.is_symlink():
                self._before[path] = (stat.S_IMODE(path.stat().st_mode), model, backend)
        except OSError:
            return

    def restore(self, reports: dict[str, ModelReport]) -> list[str]:
        """Put back every mode the server changed; a warning on each model the stub serves. Returns the paths."""
        restored = []
        for path, (mode, model, backend) in self._before.items():
            try:
                now = stat.S_IMODE(path.stat().st_mode)
            except OSError:
                continue
            if now == mode:
                continue
            try:
                os.chmod(path, mode)
                done = f"mode {mode:04o} restored"
            except OSError as exc:
                done = f"could not restore mode {mode:04o} ({exc.strerror})"
            restored.append(str(path))
            warning = (
                f"tritonserver changed {path} from mode {mode:04o} to {now:04o} ({done}): releases before r25.08 "
                "do that when the stub's no-argument probe fails, typically because it cannot start without "
                "the model's env (its libpython only in the env's lib/). Where the server may not change the "
                "file (a read-only volume, a file of another owner) that load fails with 'Failed to give "
                "execute permission to triton_python_backend_stub'"
            )
            for report in reports.values():
                if report.name == model or (backend is not None and report.backend == backend):
                    report.warnings.append(warning)
        return restored
