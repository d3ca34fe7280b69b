"""What `verify` found: one report per model and one for the run, as text fields and JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from stubforge.errors import StubforgeError

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
    values: dict[str, list[Any]] = field(default_factory=dict)  # name -> flat values, for small outputs only
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
    arch: str | None = None  # the server's architecture
    emulation: str | None = (
        None  # "native", or how another architecture ran ("emulated by qemu-aarch64-static")
    )

    @property
    def ok(self) -> bool:
        return bool(self.models) and all(m.ok for m in self.models)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        for model, report in zip(data["models"], self.models):
            model["ok"] = report.ok
        return data
