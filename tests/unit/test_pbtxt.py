"""The surgical edit of one parameter in config.pbtxt: only that literal changes (or one block is appended),
comments, order and CRLF survive; on disk atomically with numbered backups."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from stubforge.triton import envpath, pbtxt
from stubforge.triton.config import ConfigError, parse_text, read_config
from stubforge.triton.envpath import EXECUTION_ENV_PATH
from tests.unit.configs import CONFIGS, NEW, REPLACE_CASES, VALID, parameters, sample


def nth(text: str, needle: str, index: int) -> int:
    position = -1
    for _ in range(index + 1):
        position = text.index(needle, position + 1)
    return position


# ------------------------------------------------------------------------------------------ set_parameter


@pytest.mark.parametrize(("name", "literal", "occurrence"), REPLACE_CASES)
@pytest.mark.parametrize("crlf", [False, True])
def test_replace_changes_only_the_value_span(name: str, literal: str, occurrence: int, crlf: bool) -> None:
    text = sample(name)
    if crlf and "\r\n" not in text:
        text = text.replace("\n", "\r\n")
    start = nth(text, literal, occurrence)
    end = start + len(literal)
    new = pbtxt.set_parameter(text, EXECUTION_ENV_PATH, NEW)
    quote_char = literal[0]
    assert new == text[:start] + quote_char + NEW + quote_char + text[end:]
    assert parameters(new)[EXECUTION_ENV_PATH] == NEW
    assert new.count(EXECUTION_ENV_PATH) == text.count(EXECUTION_ENV_PATH)  # never duplicated
    # Setting it again changes nothing; setting the old value back restores the original bytes.
    assert pbtxt.set_parameter(new, EXECUTION_ENV_PATH, NEW) == new
    old_value = parameters(text)[EXECUTION_ENV_PATH]
    assert pbtxt.set_parameter(new, EXECUTION_ENV_PATH, old_value) == text


@pytest.mark.parametrize("name", VALID)
def test_other_parameters_and_fields_survive(name: str) -> None:
    text = sample(name)
    before = parse_text(text, name)
    after = parse_text(pbtxt.set_parameter(text, EXECUTION_ENV_PATH, NEW), name)
    before.parameters[EXECUTION_ENV_PATH].string_value = NEW
    assert after == before


def test_append_without_trailing_newline() -> None:
    text = sample("no_parameters_no_newline.pbtxt")
    assert not text.endswith("\n")
    new = pbtxt.set_parameter(text, EXECUTION_ENV_PATH, NEW)
    assert new == text + "\n\n" + envpath.param_block(NEW)
    assert new.endswith("}\n")
    assert parameters(new) == {EXECUTION_ENV_PATH: NEW}
    assert pbtxt.set_parameter(new, EXECUTION_ENV_PATH, NEW) == new


def test_append_follows_the_file_style() -> None:
    # Tabs and `parameters {` without a colon; the key in comments, another string and nested maps is ignored.
    text = sample("nested_parameters.pbtxt")
    new = pbtxt.set_parameter(text, EXECUTION_ENV_PATH, NEW)
    assert new == (
        text + '\nparameters {\n\tkey: "EXECUTION_ENV_PATH"\n\tvalue: { string_value: "' + NEW + '" }\n}\n'
    )
    config = parse_text(new, "nested")
    assert config.parameters["OTHER"].string_value == EXECUTION_ENV_PATH
    accelerator = config.optimization.execution_accelerators.cpu_execution_accelerator[0]
    assert accelerator.parameters[EXECUTION_ENV_PATH] == "an accelerator parameter"
    assert config.model_repository_agents.agents[0].parameters[EXECUTION_ENV_PATH] == "an agent parameter"


def test_append_to_crlf_file_uses_crlf() -> None:
    text = sample("crlf.pbtxt").replace("EXECUTION_ENV_PATH", "OTHER_KEY")
    new = pbtxt.set_parameter(text, EXECUTION_ENV_PATH, NEW)
    assert new.startswith(text)
    added = new[len(text) :]
    assert added == "\r\n" + envpath.param_block(NEW).replace("\n", "\r\n").replace(
        "parameters:", "parameters"
    )
    assert new.count("\n") == new.count("\r\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", envpath.param_block(NEW)),
        ('name: "a"\n', 'name: "a"\n\n' + envpath.param_block(NEW)),
        ('name: "a"\n\n', 'name: "a"\n\n' + envpath.param_block(NEW)),
        ('name: "a" # trailing comment', 'name: "a" # trailing comment\n\n' + envpath.param_block(NEW)),
        (
            'input [\n    { name: "x" }\n]\n',
            'input [\n    { name: "x" }\n]\n\nparameters: {\n    key: "EXECUTION_ENV_PATH"\n'
            '    value: { string_value: "' + NEW + '" }\n}\n',
        ),
    ],
)
def test_append_layouts(text: str, expected: str) -> None:
    assert pbtxt.set_parameter(text, EXECUTION_ENV_PATH, NEW) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # key split across adjacent literals, value too: one literal replaces the value's span
        (
            'parameters { key: "EXECUTION_" "ENV_PATH" value { string_value: "a" \'b\' } }\n',
            'parameters { key: "EXECUTION_" "ENV_PATH" value { string_value: "NEW" } }\n',
        ),
        # angle brackets and semicolons are protobuf text format too
        (
            'parameters < key: "EXECUTION_ENV_PATH"; value < string_value: "old" > >;\n',
            'parameters < key: "EXECUTION_ENV_PATH"; value < string_value: "NEW" > >;\n',
        ),
        # a value message without string_value, and an entry without a value at all
        (
            'parameters { key: "EXECUTION_ENV_PATH" value { } }\n',
            'parameters { key: "EXECUTION_ENV_PATH" value { string_value: "NEW" } }\n',
        ),
        (
            'parameters { key: "EXECUTION_ENV_PATH" }\n',
            'parameters { key: "EXECUTION_ENV_PATH" value: { string_value: "NEW" } }\n',
        ),
        # escaped quotes and a '#' inside strings are not comments; comments may hold quotes
        (
            'name: "a # \\" b" # "EXECUTION_ENV_PATH\n'
            'parameters: [{key: "EXECUTION_ENV_PATH",value:{string_value:"x\\"#y"}}] # }\n',
            'name: "a # \\" b" # "EXECUTION_ENV_PATH\n'
            'parameters: [{key: "EXECUTION_ENV_PATH",value:{string_value:"NEW"}}] # }\n',
        ),
        # the key escaped differently still matches
        (
            'parameters { key: "EXECUTION\\137ENV_PATH" value { string_value: "old" } }\n',
            'parameters { key: "EXECUTION\\137ENV_PATH" value { string_value: "NEW" } }\n',
        ),
    ],
)
def test_replace_layouts(text: str, expected: str) -> None:
    new = pbtxt.set_parameter(text, EXECUTION_ENV_PATH, "NEW")
    assert new == expected
    assert parameters(new)[EXECUTION_ENV_PATH] == "NEW"


@pytest.mark.parametrize(
    "value",
    ['with "double" quotes', "with 'single' quotes", "back\\slash", "tab\tnew\nline", "ünïcødé ✓", ""],
)
@pytest.mark.parametrize("name", VALID)
def test_values_are_escaped(name: str, value: str) -> None:
    new = pbtxt.set_parameter(sample(name), EXECUTION_ENV_PATH, value)
    assert parameters(new)[EXECUTION_ENV_PATH] == value


def test_quote() -> None:
    assert pbtxt.quote('a"b') == '"a\\"b"'
    assert pbtxt.quote("a'b\"", "'") == "'a\\'b\"'"
    assert pbtxt.quote("\x01\x7f") == '"\\001\\177"'


def test_duplicate_key_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        pbtxt.set_parameter(sample("duplicate_key.pbtxt"), EXECUTION_ENV_PATH, NEW, source="dup/config.pbtxt")
    error = info.value
    assert "dup/config.pbtxt" in error.message and "2 times" in error.message
    assert "lines 4, 12" in error.message
    assert "keeps the last" in error.hint and "second.tar.gz" in error.hint
    # ... which is what protobuf does: the last entry wins when it is parsed.
    assert parameters(sample("duplicate_key.pbtxt"))[EXECUTION_ENV_PATH].endswith("second.tar.gz")


def test_set_parameter_on_malformed_text() -> None:
    with pytest.raises(ConfigError, match=r"x/config.pbtxt, line 5 column 1"):
        pbtxt.set_parameter(sample("malformed.pbtxt"), EXECUTION_ENV_PATH, NEW, source="x/config.pbtxt")


def test_unencodable_value() -> None:
    with pytest.raises(ConfigError, match="cannot be written as UTF-8"):
        pbtxt.set_parameter("", EXECUTION_ENV_PATH, "\udc80")


def test_param_block_pastes() -> None:
    block = envpath.param_block(NEW)
    assert block == (
        'parameters: {\n  key: "EXECUTION_ENV_PATH"\n'
        '  value: { string_value: "$$TRITON_MODEL_DIRECTORY/env.tar.gz" }\n}\n'
    )
    assert parameters(sample("nested_parameters.pbtxt") + block)[EXECUTION_ENV_PATH] == NEW
    assert parameters(envpath.param_block("x", key="OTHER")) == {"OTHER": "x"}


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # hypothesis is optional here: the examples above cover the same ground
    pass
else:
    _text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)

    @settings(max_examples=150, deadline=None)
    @given(name=st.sampled_from(VALID), value=_text, comment=_text)
    def test_property_round_trip(name: str, value: str, comment: str) -> None:
        # Any value round-trips, whatever comment precedes the file (comments run to the end of their line).
        comment_line = "# " + comment.replace("\n", " ").replace("\r", " ") + "\n"
        text = comment_line + sample(name)
        new = pbtxt.set_parameter(text, EXECUTION_ENV_PATH, value)
        assert new.startswith(comment_line)
        assert parameters(new)[EXECUTION_ENV_PATH] == value
        assert pbtxt.set_parameter(new, EXECUTION_ENV_PATH, value) == new

    _separator = st.lists(
        st.sampled_from(
            [
                " ",
                "\t",
                "\n",
                "\r\n",
                "# EXECUTION_ENV_PATH \"x' {[\n",
                '#parameters { key: "EXECUTION_ENV_PATH" }\n',
            ]
        ),
        min_size=1,
        max_size=3,
    ).map("".join)

    @settings(max_examples=150, deadline=None)
    @given(case=st.sampled_from(REPLACE_CASES), value=_text, data=st.data())
    def test_property_any_layout(case: tuple[str, str, int], value: str, data: st.DataObject) -> None:
        # The same tokens laid out with random whitespace, line endings and comments (which mention the key):
        # only the value literal changes.
        name, literal, _ = case
        tokens = pbtxt._tokenize(sample(name))
        separators = data.draw(st.lists(_separator, min_size=len(tokens) + 1, max_size=len(tokens) + 1))

        def render(replacement: str) -> str:
            parts = [separators[0]]
            for token, separator in zip(tokens, separators[1:]):
                parts += [
                    replacement if token.kind == "string" and token.text == literal else token.text,
                    separator,
                ]
            return "".join(parts)

        text = render(literal)
        expected = (
            render(pbtxt.quote(value, literal[0])) if value != parameters(text)[EXECUTION_ENV_PATH] else text
        )
        assert pbtxt.set_parameter(text, EXECUTION_ENV_PATH, value) == expected


# ------------------------------------------------------------------------------------------ write_parameter


def model_with(tmp_path: Path, name: str, mode: int = 0o640) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    config = model / "config.pbtxt"
    config.write_bytes((CONFIGS / name).read_bytes())
    config.chmod(mode)
    return config


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_write_parameter_backups_and_mode(tmp_path: Path, cache_root: Path) -> None:
    config = model_with(tmp_path, "crlf.pbtxt")
    original = config.read_bytes()
    result = pbtxt.write_parameter(config, EXECUTION_ENV_PATH, NEW)
    assert result.changed and result.old_value == "$$TRITON_MODEL_DIRECTORY/env"
    assert result.backup == config.with_name("config.pbtxt.bak")
    assert result.backup.read_bytes() == original
    assert config.read_bytes() == original.replace(b'/env"', b'/env.tar.gz"')  # CRLF kept on disk
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert stat.S_IMODE(result.backup.stat().st_mode) == 0o640
    assert result.to_dict()["backup"] == str(result.backup)

    # Unchanged: nothing written, no backup.
    mtime = config.stat().st_mtime_ns
    again = pbtxt.write_parameter(config.parent, EXECUTION_ENV_PATH, NEW)
    assert not again.changed and again.backup is None and again.old_value == NEW
    assert config.stat().st_mtime_ns == mtime

    # A different .bak is never overwritten: .bak.1, then .bak.2.
    second = pbtxt.write_parameter(config, EXECUTION_ENV_PATH, "$$TRITON_MODEL_DIRECTORY/b")
    assert second.backup == config.with_name("config.pbtxt.bak.1")
    assert second.backup.read_bytes() == original.replace(b'/env"', b'/env.tar.gz"')
    third = pbtxt.write_parameter(config, EXECUTION_ENV_PATH, "$$TRITON_MODEL_DIRECTORY/c")
    assert third.backup == config.with_name("config.pbtxt.bak.2")
    assert config.with_name("config.pbtxt.bak").read_bytes() == original
    assert leftovers(config.parent) == []


def test_identical_backup_is_reused(tmp_path: Path, cache_root: Path) -> None:
    config = model_with(tmp_path, "python_basic.pbtxt")
    config.with_name("config.pbtxt.bak").write_text("something else\n")
    config.with_name("config.pbtxt.bak.1").write_bytes(config.read_bytes())
    result = pbtxt.write_parameter(config, EXECUTION_ENV_PATH, NEW)
    assert result.backup == config.with_name("config.pbtxt.bak.1")
    assert config.with_name("config.pbtxt.bak").read_text() == "something else\n"
    assert not config.with_name("config.pbtxt.bak.2").exists()


def test_write_without_backup_appends(tmp_path: Path, cache_root: Path) -> None:
    config = model_with(tmp_path, "no_parameters_no_newline.pbtxt")
    result = pbtxt.write_parameter(config, EXECUTION_ENV_PATH, NEW, backup=False)
    assert result.changed and result.old_value is None and result.backup is None
    assert sorted(p.name for p in config.parent.iterdir()) == ["config.pbtxt"]
    assert read_config(config).parameters == {EXECUTION_ENV_PATH: NEW}


def test_write_through_symlink(tmp_path: Path, cache_root: Path) -> None:
    real = model_with(tmp_path, "python_basic.pbtxt")
    link_dir = tmp_path / "linked"
    link_dir.mkdir()
    (link_dir / "config.pbtxt").symlink_to(real)
    result = pbtxt.write_parameter(link_dir / "config.pbtxt", EXECUTION_ENV_PATH, NEW)
    assert (link_dir / "config.pbtxt").is_symlink()
    assert read_config(real).parameters[EXECUTION_ENV_PATH] == NEW
    assert result.backup == real.with_name("config.pbtxt.bak")


def test_write_refuses_malformed_and_duplicates(tmp_path: Path, cache_root: Path) -> None:
    for name in ("malformed.pbtxt", "duplicate_key.pbtxt"):
        directory = tmp_path / name
        directory.mkdir()
        config = directory / "config.pbtxt"
        config.write_bytes((CONFIGS / name).read_bytes())
        with pytest.raises(ConfigError):
            pbtxt.write_parameter(config, EXECUTION_ENV_PATH, NEW)
        assert config.read_bytes() == (CONFIGS / name).read_bytes()
        assert sorted(p.name for p in directory.iterdir()) == ["config.pbtxt"]


BOM_CONFIG = b'\xef\xbb\xbfname: "m"\nbackend: "python"\n'


def _assert_bom_refusal(exc: ConfigError, source: str) -> None:
    assert f"{source} starts with a UTF-8 byte order mark (BOM)" in exc.message
    assert "Triton cannot read" in exc.message and "\ufeff" not in exc.message
    assert "save it without a BOM" in exc.hint


def test_bom_is_refused_alike_by_reading_editing_and_the_tokenizer(tmp_path: Path, cache_root: Path) -> None:
    # Triton's C++ TextFormat parser does not skip a BOM (see config.refuse_bom): every reader must say so.
    model = tmp_path / "m"
    model.mkdir()
    config = model / "config.pbtxt"
    config.write_bytes(BOM_CONFIG)
    with pytest.raises(ConfigError) as read:
        read_config(model)
    _assert_bom_refusal(read.value, str(config))
    with pytest.raises(ConfigError) as edit:
        pbtxt.set_parameter(BOM_CONFIG.decode(), EXECUTION_ENV_PATH, NEW, source="m/config.pbtxt")
    _assert_bom_refusal(edit.value, "m/config.pbtxt")
    with pytest.raises(pbtxt._LayoutProblem, match="byte order mark"):
        pbtxt._tokenize(BOM_CONFIG.decode())
    with pytest.raises(ConfigError) as write:
        pbtxt.write_parameter(config, EXECUTION_ENV_PATH, NEW)
    _assert_bom_refusal(write.value, str(config))
    assert config.read_bytes() == BOM_CONFIG  # not a byte changed, and no backup left behind
    assert [p.name for p in model.iterdir()] == ["config.pbtxt"]
    # Not at the start it is no BOM but a character in a string or comment, which Triton reads.
    inside = (
        'name: "m"\nbackend: "python"\n# \ufeff\nparameters { key: "k\ufeff" value { string_value: "v" } }\n'
    )
    assert parse_text(inside, "x").parameters["k\ufeff"].string_value == "v"
    assert pbtxt.set_parameter(inside, "k\ufeff", "w").count("\ufeff") == 2
