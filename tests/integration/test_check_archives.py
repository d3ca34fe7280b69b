"""`stubforge check` flags exactly the archives the runner's extraction refuses (one set of rules)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from tests.integration.test_check import archive_of, env_tree, findings, model, only
from tests.unit.test_archive import CHAIN, _write, pathmax_escape_members


@pytest.mark.parametrize(
    ("members", "words"),
    [
        (pathmax_escape_members(), "passes through the symbolic link"),
        (CHAIN, "passes through the symbolic link 'a/b/c'"),
    ],
    ids=["pathmax-escape", "link-chain"],
)
def test_hostile_archives_are_errors(tmp_path: Path, members: list, words: str) -> None:
    tree = env_tree(tmp_path / "tree")
    m = model(tmp_path / "repo", env="$$TRITON_MODEL_DIRECTORY/env.tar.gz")
    archive_of(tree, m / "env.tar.gz")
    # Append the hostile members after the good env.
    with tarfile.open(m / "env.tar.gz") as good:
        kept = [(info, good.extractfile(info).read() if info.isfile() else b"") for info in good.getmembers()]
    _write(m / "env.tar.gz", kept + members)
    finding = only(findings(tmp_path / "repo")["m"], "env-archive")
    assert finding.level == "ERROR" and "unsafe member" in finding.message and words in finding.message
