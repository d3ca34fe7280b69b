"""The check rules' registry: every finding `stubforge check` can make carries a registered id and level."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from stubforge.server import check as checker
from stubforge.server.check import RULES

CHECK_PACKAGE = Path(checker.__file__).parent


def findings_in_source() -> list[tuple[str, str, str]]:
    """(level, id, where) of every `.add(LEVEL, "id", ...)` and `Finding(LEVEL, "id", ...)` in the package."""
    made = []
    for module in sorted(CHECK_PACKAGE.glob("*.py")):
        if module.name == "report.py":
            continue  # ModelCheck.add itself: it passes its arguments on
        for node in ast.walk(ast.parse(module.read_text(), str(module))):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name not in ("add", "Finding") or len(node.args) < 2:
                continue
            level, rule_id = node.args[0], node.args[1]
            where = f"{module.name}:{node.lineno}"
            # A computed id or level could not be checked here: rules spell theirs out.
            assert isinstance(level, ast.Name) and level.id in ("ERROR", "WARN"), where
            assert isinstance(rule_id, ast.Constant) and isinstance(rule_id.value, str), where
            made.append((level.id, rule_id.value, where))
    return made


def test_every_finding_in_the_code_is_a_registered_rule_at_a_registered_level() -> None:
    made = findings_in_source()
    assert len(made) > len(RULES)  # the scan sees the rules' calls (several rules add at more than one place)
    unknown = [f"{where}: {rule_id}" for _, rule_id, where in made if rule_id not in RULES]
    assert not unknown, unknown
    wrong_level = [
        f"{where}: {rule_id} {level}" for level, rule_id, where in made if level not in RULES[rule_id].levels
    ]
    assert not wrong_level, wrong_level
    # ... and every registered rule is made somewhere, at every level it registers.
    assert {(level, rule_id) for level, rule_id, _ in made} == {
        (level, rule.id) for rule in RULES.values() for level in rule.levels
    }


def test_each_rule_names_the_module_that_applies_it() -> None:
    for rule in RULES.values():
        assert rule.id == rule.id.lower() and " " not in rule.id
        made_in = {where.split(":")[0] for _, rule_id, where in findings_in_source() if rule_id == rule.id}
        # The orchestrator (model.py) reports the resolver's config error; every other rule lives in its topic.
        assert made_in <= {f"{rule.topic}.py", "model.py"}, (rule.id, made_in)


def test_a_finding_with_an_unregistered_id_or_level_is_refused() -> None:
    model = checker.ModelCheck("m", "/m")
    with pytest.raises(ValueError, match="no check rule has the id 'no-such-rule'"):
        model.add(checker.ERROR, "no-such-rule", "message", "fix")
    with pytest.raises(ValueError, match="'heavy-import' makes WARN findings, not ERROR"):
        checker.Finding(checker.ERROR, "heavy-import", "message", "fix")
    assert model.findings == []


def test_the_old_module_still_exports_the_same_names() -> None:
    from stubforge.server.check import checks

    assert checks.check is checker.check and checks.CheckReport is checker.CheckReport
    assert checks.Finding is checker.Finding and checks.ModelCheck is checker.ModelCheck


CHECK_PAGE = Path(__file__).resolve().parents[2] / "docs" / "check.md"
_RULE_HEADING = re.compile(r"^#### `([^`]+)`\n(.*?)(?=^#)", re.M | re.S)


def documented_rules() -> dict[str, str]:
    """Rule id -> its section of docs/check.md (the text under `#### `id``)."""
    return dict(_RULE_HEADING.findall(CHECK_PAGE.read_text()))


def test_docs_check_lists_every_rule_and_only_those() -> None:
    documented = documented_rules()
    assert sorted(documented) == sorted(RULES), (
        f"missing from docs/check.md: {sorted(set(RULES) - set(documented))}; "
        f"not a rule: {sorted(set(documented) - set(RULES))}"
    )


def test_each_documented_rule_states_its_levels_what_triton_does_and_the_fix() -> None:
    for rule_id, section in documented_rules().items():
        for level in RULES[rule_id].levels:
            assert level in section, (rule_id, level)
        assert "Fix:" in section, rule_id
        assert "Triton" in section or "r24.10" in section, rule_id
