"""stubforge: Triton python_backend stubs and execution environments for any CPython.

The public API, usable without the command line::

    import stubforge

    stubforge.build_stub("3.10", triton="24.10")            # Triton's stub for Python 3.10, cached
    stubforge.pack_env("3.10", ["pillow"], model_dir="models/pre")   # env + EXECUTION_ENV_PATH
    report = stubforge.check("models")                      # known pitfalls, from the files alone
    with stubforge.load("models/add_sub") as model:         # the model.py in its env, no server
        model.infer({"INPUT0": ..., "INPUT1": ...})

Names are imported on first use (PEP 562), so `import stubforge` loads neither numpy nor click.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that defines it (the one place each name lives).
_EXPORTS: dict[str, str] = {
    # functions
    "build_stub": "stubforge.api",
    "build_stubs": "stubforge.api",
    "pack_env": "stubforge.api",
    "plan_env_path": "stubforge.api",
    "set_env_path": "stubforge.api",
    "check": "stubforge.api",
    "clean": "stubforge.api",
    "verify": "stubforge.api",
    "push": "stubforge.api",
    "run_model": "stubforge.api",
    "find_pythons": "stubforge.api",
    "create_sysroot": "stubforge.api",
    "describe_sysroot": "stubforge.api",
    "install_model_stub": "stubforge.server.install",
    "install_backend": "stubforge.server.install",
    "load": "stubforge.runner.api",
    "Repository": "stubforge.runner.api",
    # result types
    "Model": "stubforge.runner.api",
    "Interpreter": "stubforge.core.pythons",
    "BuildResult": "stubforge.stubs.build",
    "PackResult": "stubforge.envs.packenv",
    "WriteResult": "stubforge.triton.pbtxt",
    "CheckReport": "stubforge.server.check",
    "Verification": "stubforge.api",
    "VerifyReport": "stubforge.server.verify.session",
    "InstallResult": "stubforge.server.install",
    "PushResult": "stubforge.server.push",
    "RunReport": "stubforge.api",
    # progress reporting
    "Progress": "stubforge.progress",
    "TextProgress": "stubforge.progress",
    "EventLog": "stubforge.progress",
    # errors
    "StubforgeError": "stubforge.errors",
}

__all__ = [
    "BuildResult",
    "CheckReport",
    "EventLog",
    "InstallResult",
    "Interpreter",
    "Model",
    "PackResult",
    "Progress",
    "PushResult",
    "Repository",
    "RunReport",
    "StubforgeError",
    "TextProgress",
    "Verification",
    "VerifyReport",
    "WriteResult",
    "__version__",
    "build_stub",
    "build_stubs",
    "check",
    "clean",
    "create_sysroot",
    "describe_sysroot",
    "find_pythons",
    "install_backend",
    "install_model_stub",
    "load",
    "pack_env",
    "plan_env_path",
    "push",
    "run_model",
    "set_env_path",
    "verify",
]

if TYPE_CHECKING:  # what mypy and editors see; at run time __getattr__ imports on demand
    from stubforge.api import (
        RunReport,
        Verification,
        build_stub,
        build_stubs,
        check,
        clean,
        find_pythons,
        pack_env,
        plan_env_path,
        push,
        run_model,
        set_env_path,
        verify,
    )
    from stubforge.core.pythons import Interpreter
    from stubforge.envs.packenv import PackResult
    from stubforge.errors import StubforgeError
    from stubforge.progress import EventLog, Progress, TextProgress
    from stubforge.runner.api import Model, Repository, load
    from stubforge.server.check import CheckReport
    from stubforge.server.install import InstallResult, install_backend, install_model_stub
    from stubforge.server.push import PushResult
    from stubforge.server.verify.session import VerifyReport
    from stubforge.stubs.build import BuildResult
    from stubforge.triton.pbtxt import WriteResult


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stubforge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
