"""Every relative link in the documents points at a file that exists, and every #anchor at a heading there.

Code comments cite docs/triton-behaviour.md by section title, so its anchors are checked like any other.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted([*ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md")])
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} (.+)$", re.M)
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors_of(document: Path) -> set[str]:
    prose = _FENCE.sub("", document.read_text())  # a '# comment' in a code block is not a heading
    return {github_anchor(h) for h in _HEADING.findall(prose)}


def test_anchor_rules() -> None:
    assert github_anchor("EXECUTION_ENV_PATH and extraction") == "execution_env_path-and-extraction"
    assert github_anchor("Health, failures and lifecycle") == "health-failures-and-lifecycle"
    assert github_anchor("`stubforge run` and `--json`") == "stubforge-run-and---json"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(document: Path) -> None:
    broken = []
    for target in _LINK.findall(_FENCE.sub("", document.read_text())):
        if re.match(r"^[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        destination = (document.parent / path).resolve() if path else document
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors_of(destination):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{document.name}: " + "; ".join(broken)


def test_the_pages_code_cites_exist() -> None:
    for name in ("triton-behaviour.md", "architecture.md"):
        assert (ROOT / "docs" / name).is_file()
    assert {"the-stub-process-and-its-probe", "execution_env_path-and-extraction"} <= anchors_of(
        ROOT / "docs" / "triton-behaviour.md"
    )
