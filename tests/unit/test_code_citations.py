"""Code comments cite docs/triton-behaviour.md by section title: every cited title must be a section there, and
nothing cites a document outside the project."""

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


def test_no_citation_of_files_outside_the_project() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in SOURCES if "TRITON_FACTS" in p.read_text(errors="replace")]
    offenders = [p for p in offenders if p != "tests/unit/test_code_citations.py"]
    assert offenders == []
