"""config.pbtxt read with Triton's real ModelConfig schema: fields, errors that name the file, line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from stubforge.errors import StubforgeError
from stubforge.triton import config
from stubforge.triton.config import ConfigError
from stubforge.triton.envpath import EXECUTION_ENV_PATH
from tests.unit.configs import CONFIGS, VALID, sample

# ------------------------------------------------------------------------------------------ reading


def test_read_config_fields(tmp_path: Path) -> None:
    info = config.read_config(CONFIGS / "list_form_single_quotes.pbtxt")
    assert (info.name, info.backend, info.platform) == ("preprocess", "python", "")
    assert info.default_model_filename == "entry.py"
    assert info.parameters == {
        "NOTE": 'key: "EXECUTION_ENV_PATH" is the one below',
        EXECUTION_ENV_PATH: "/opt/envs/py38.tar.gz",
    }
    assert info.text == sample("list_form_single_quotes.pbtxt")
    assert info.message.instance_group[0].count == 1
    assert info.to_dict()["parameters"] == info.parameters
    # A model directory is accepted in place of its config.pbtxt.
    (tmp_path / "config.pbtxt").write_bytes((CONFIGS / "crlf.pbtxt").read_bytes())
    info = config.read_config(tmp_path)
    assert info.path == tmp_path / "config.pbtxt"
    assert "\r\n" in info.text  # read without newline translation


@pytest.mark.parametrize("name", VALID)
def test_every_sample_parses(name: str) -> None:
    info = config.read_config(CONFIGS / name)
    assert info.backend == "python"


def test_malformed_names_file_line_and_hint() -> None:
    path = CONFIGS / "malformed.pbtxt"
    with pytest.raises(ConfigError) as info:
        config.read_config(path)
    error = info.value
    assert isinstance(error, StubforgeError) and error.exit_code == 2
    assert str(path) in error.message and "line 5" in error.message
    assert "instance_groups" in error.message
    assert "line 5" in error.hint and "model_config.proto" in error.hint
    assert "instance_groups [" in error.details and "^" in error.details


def test_unterminated_string_names_line(tmp_path: Path) -> None:
    path = tmp_path / "config.pbtxt"
    path.write_text('name: "a"\n\nbackend: "python\nmax_batch_size: 1\n')
    with pytest.raises(ConfigError) as info:
        config.read_config(path)
    assert "line 3" in info.value.message and str(path) in info.value.message
    assert "close the string" in info.value.hint


def test_missing_and_non_utf8(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no config\.pbtxt at"):
        config.read_config(tmp_path)
    path = tmp_path / "config.pbtxt"
    path.write_bytes(b'name: "a"\nbackend: "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"not UTF-8 text .* line 2"):
        config.read_config(path)


def test_config_json_is_what_initialize_sees() -> None:
    info = config.read_config(CONFIGS / "python_basic.pbtxt")
    data = config.config_json(info.message)
    # int64 fields are numbers (protobuf's JSON writes strings), in lists, messages and repeated messages.
    assert data["input"][0]["dims"] == [4] and data["max_batch_size"] == 8
    assert data["dynamic_batching"]["preferred_batch_size"] == [4, 8]
    assert data["dynamic_batching"]["max_queue_delay_microseconds"] == 100
    assert data["instance_group"][0]["count"] == 2 and data["instance_group"][0]["kind"] == "KIND_CPU"
    # String parameters stay strings; fields the file leaves out are present with their defaults.
    assert data["parameters"]["FORCE_CPU_ONLY_INPUT_TENSORS"] == {"string_value": "no"}
    assert data["platform"] == "" and data["input"][0]["data_type"] == "TYPE_FP32"
