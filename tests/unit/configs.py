"""The sample config.pbtxt files of tests/fixtures/configs, shared by the config, pbtxt and envpath tests."""

from __future__ import annotations

from pathlib import Path

from stubforge.triton import config

CONFIGS = Path(__file__).parent.parent / "fixtures" / "configs"
NEW = "$$TRITON_MODEL_DIRECTORY/env.tar.gz"


def sample(name: str) -> str:
    return (CONFIGS / name).read_bytes().decode("utf-8")


def parameters(text: str) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parse_text(text, "test").parameters.items()}


# Each sample that sets the key: the literal that holds its value and which occurrence of that literal it is
# (an earlier one sits in a comment or another string and must stay).
REPLACE_CASES = [
    ("python_basic.pbtxt", '"$$TRITON_MODEL_DIRECTORY/old_env.tar.gz"', 1),
    ("list_form_single_quotes.pbtxt", "'/opt/envs/py38.tar.gz'", 0),
    ("crlf.pbtxt", '"$$TRITON_MODEL_DIRECTORY/env"', 0),
]
APPEND_CASES = ["no_parameters_no_newline.pbtxt", "nested_parameters.pbtxt"]
VALID = [case[0] for case in REPLACE_CASES] + APPEND_CASES
