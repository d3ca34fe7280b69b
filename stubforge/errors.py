"""One exception family for every failure a user can cause or fix.

Each error carries a message naming the file or value at fault and a hint saying what to do next; the CLI
prints both and exits non-zero without a traceback.
"""

from __future__ import annotations


class StubforgeError(Exception):
    exit_code = 2

    def __init__(self, message: str, hint: str = "", *, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # Extra text shown after the message, e.g. the tail of a build log.
        self.details = details

    def to_dict(self) -> dict[str, str]:
        return {
            "error": self.message,
            "hint": self.hint,
            "details": self.details,
            "kind": type(self).__name__,
        }


class PythonNotFound(StubforgeError):
    """No interpreter matches, or more than one does."""


class SourcesError(StubforgeError):
    """Upstream inputs are missing, incomplete or do not verify."""


class BuildError(StubforgeError):
    """cmake or the compiler failed, or the result did not verify."""

    exit_code = 3


class EnvError(StubforgeError):
    """An execution environment that cannot be created, packed, extracted or used."""


class ReleaseError(StubforgeError):
    """A Triton release name that cannot be understood."""


class RunnerError(StubforgeError):
    """The runner cannot run the model as asked (before any stub starts, or after the model was closed)."""
