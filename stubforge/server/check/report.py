"""What `stubforge check` returns: findings per model and for the repository, with their levels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stubforge.server.check.rules import ERROR, WARN, require

__all__ = ["ERROR", "WARN", "CheckReport", "Finding", "ModelCheck"]


@dataclass
class Finding:
    level: str  # ERROR or WARN
    check: str  # the rule's id (rules.RULES)
    message: str
    fix: str

    def __post_init__(self) -> None:
        require(self.check, self.level)

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
    store: str = "local"  # where the server reads the repository from (`check --for`)

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
            "store": self.store,
            "errors": self.errors,
            "warnings": self.warnings,
            "models": [m.to_dict() for m in self.models],
            "repository": [f.to_dict() for f in self.repository],
        }
