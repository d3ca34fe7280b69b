"""The module `stubforge check` lived in before its rules were split by topic; kept so that existing imports work.

New code imports from stubforge.server.check.
"""

from __future__ import annotations

from stubforge.server.check import ERROR, RULES, WARN, CheckReport, Finding, ModelCheck, check, check_model

__all__ = ["ERROR", "RULES", "WARN", "CheckReport", "Finding", "ModelCheck", "check", "check_model"]
