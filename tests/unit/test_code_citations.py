"""Code comments cite docs/triton-behaviour.md by section title: every cited title must be a section there, and
every document the code names is one of the project's own."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    p
    for d in ("stubforge", "stub_src", "tests", "benchmarks")
    for p in (ROOT / d).rglob("*")
    if p.suffix in {".py", ".c", ".h", ".pyi"}
]


def test_cited_sections_exist() -> None:
    titles = set(re.findall(r"^## (.+)$", (ROOT / "docs" / "triton-behaviour.md").read_text(), re.M))
    cited: dict[str, str] = {}
    for path in SOURCES:
        text = " ".join(path.read_text(errors="replace").split())  # citations wrap across comment lines
        text = re.sub(r"\s*(#|//|\*)\s+", " ", text)
        for match in re.finditer(r'triton-behaviour\.md[,:]? ((?:"[^"]+"(?:;? (?:and |to )?)?)+)', text):
            for title in re.findall(r'"([^"]+)"', match.group(1)):
                cited[title] = str(path.relative_to(ROOT))
    assert cited, "no citation found: the pattern is wrong"
    unknown = {t: p for t, p in cited.items() if t not in titles}
    assert unknown == {}


def test_cited_documents_are_in_the_project() -> None:
    """Every Markdown document a source file names (a page of docs/, the README, ...) exists in this repository: code
    never points at notes a user does not have."""
    known = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*.md") if ".git" not in p.parts}
    known |= {Path(k).name for k in known}
    missing = {}
    for path in SOURCES:
        for name in re.findall(r"\b([\w./-]+\.md)\b", path.read_text(errors="replace")):
            if name.lstrip("./") not in known and Path(name).name not in known:
                missing[name] = str(path.relative_to(ROOT))
    assert missing == {}
