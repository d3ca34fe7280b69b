"""Every rule `stubforge check` applies, by stable id: the registry docs/check.md is written against.

A finding carries its rule's id (`Finding.check`); the id is what scripts match on in `--json` output and what
docs/check.md lists, so ids never change meaning. A finding whose id or level is not registered here is a bug in
the rule that made it (ModelCheck.add and Finding refuse it).
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR, WARN = "ERROR", "WARN"


@dataclass(frozen=True)
class Rule:
    id: str
    topic: str  # the module of stubforge.server.check that applies it
    levels: tuple[str, ...]  # the levels its findings can have
    summary: str  # one line: what it finds


_ALL = (
    # model_code.py
    Rule("config", "model_code", (ERROR,), "config.pbtxt does not parse with Triton's ModelConfig schema"),
    Rule("model-file", "model_code", (ERROR,), "model.py missing, unparsable, or without execute"),
    Rule("heavy-import", "model_code", (WARN,), "a heavy framework imported at model.py's top level"),
    # stub.py
    Rule("backend", "stub", (ERROR,), "the model's backend directory is missing or holds no model.py"),
    Rule("stub", "stub", (ERROR, WARN), "no stub that will run, or one that links no libpython"),
    Rule("stub-mode", "stub", (ERROR, WARN), "the stub is not executable, or left so by a failed probe"),
    Rule("libpython", "stub", (ERROR,), "nothing provides the stub's libpython to the server"),
    # gpu.py
    Rule("gpu-mismatch", "gpu", (WARN,), "a GPU stub with a CPU libtriton_python.so, or the reverse"),
    Rule("cudart", "gpu", (ERROR,), "nothing provides the CUDA runtime a GPU stub needs"),
    # arch.py
    Rule(
        "arch",
        "arch",
        (ERROR,),
        "a stub, env or backend library built for another architecture than the server",
    ),
    # env.py
    Rule("env-path", "env", (ERROR,), "EXECUTION_ENV_PATH that Triton cannot use"),
    Rule("env", "env", (ERROR,), "the env archive cannot be read as tar or tar.gz"),
    Rule("env-archive", "env", (ERROR,), "an archive member that is unsafe to extract"),
    Rule("env-activate", "env", (ERROR,), "the env has no bin/activate"),
    Rule("env-hooks", "env", (WARN,), "conda activate.d hooks the release does not run"),
    Rule("env-python", "env", (ERROR,), "the env has no lib/libpythonX.Y.so.1.0"),
    Rule("env-python3", "env", (ERROR,), "the env has no bin/python3, so its packages are never seen"),
    Rule("python-mismatch", "env", (ERROR,), "the stub and the env are of different Pythons"),
    Rule("numpy", "env", (ERROR,), "the env has no numpy"),
    Rule("numpy2", "env", (ERROR,), "numpy 2 with a stub built against pybind11 before 2.12"),
    Rule("glibcxx", "env", (ERROR,), "the env's libstdc++ is older than the stub needs"),
    # paths.py
    Rule("path-chars", "paths", (ERROR, WARN), "characters in the model or env path the release cannot take"),
    # host.py
    Rule("path-python", "host", (WARN,), "no env: this host's python3 is another version or lacks numpy"),
    Rule("user-site", "host", (WARN,), "no env: the user site-packages of the stub's Python leaks in"),
    # store.py (check --for s3|gcs|azure)
    Rule("store-env-dir", "store", (ERROR,), "a directory env in an object-store repository"),
    Rule("store-stub-mode", "store", (WARN,), "a per-model stub loses its execute bit in an object store"),
    Rule("store-parent-env", "store", (ERROR,), "a `..` env the server does not fetch for this backend"),
    # repository.py
    Rule("parallel-envs", "repository", (WARN,), "tarball envs on several backends, extracted in parallel"),
    Rule("shm", "repository", (WARN,), "the models need more /dev/shm than is free"),
)
RULES: dict[str, Rule] = {rule.id: rule for rule in _ALL}


def require(rule_id: str, level: str) -> None:
    """Refuse a finding no registered rule can make: its id would be missing from docs/check.md."""
    rule = RULES.get(rule_id)
    if rule is None:
        raise ValueError(
            f"no check rule has the id {rule_id!r}: register it in stubforge/server/check/rules.py"
        )
    if level not in rule.levels:
        raise ValueError(f"check rule {rule_id!r} makes {'/'.join(rule.levels)} findings, not {level}")
