"""config.pbtxt reading and surgical editing with Triton's real ModelConfig schema; EXECUTION_ENV_PATH rules."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path
from typing import Literal

import pytest

from stubforge.errors import StubforgeError
from stubforge.triton import modelrepo
from stubforge.triton.modelrepo import EXECUTION_ENV_PATH, ConfigError

CONFIGS = Path(__file__).parent.parent / "fixtures" / "configs"
NEW = "$$TRITON_MODEL_DIRECTORY/env.tar.gz"


def sample(name: str) -> str:
    return (CONFIGS / name).read_bytes().decode("utf-8")


def parameters(text: str) -> dict[str, str]:
    return {k: v.string_value for k, v in modelrepo._parse(text, "test").parameters.items()}


# Each sample that sets the key: the literal that holds its value and which occurrence of that literal it is
# (an earlier one sits in a comment or another string and must stay).
REPLACE_CASES = [
    ("python_basic.pbtxt", '"$$TRITON_MODEL_DIRECTORY/old_env.tar.gz"', 1),
    ("list_form_single_quotes.pbtxt", "'/opt/envs/py38.tar.gz'", 0),
    ("crlf.pbtxt", '"$$TRITON_MODEL_DIRECTORY/env"', 0),
]
APPEND_CASES = ["no_parameters_no_newline.pbtxt", "nested_parameters.pbtxt"]
VALID = [case[0] for case in REPLACE_CASES] + APPEND_CASES


def nth(text: str, needle: str, index: int) -> int:
    position = -1
    for _ in range(index + 1):
        position = text.index(needle, position + 1)
    return position


# ------------------------------------------------------------------------------------------ reading


def test_read_config_fields(tmp_path: Path) -> None:
    info = modelrepo.read_config(CONFIGS / "list_form_single_quotes.pbtxt")
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
    info = modelrepo.read_config(tmp_path)
    assert info.path == tmp_path / "config.pbtxt"
    assert "\r\n" in info.text  # read without newline translation


@pytest.mark.parametrize("name", VALID)
def test_every_sample_parses(name: str) -> None:
    info = modelrepo.read_config(CONFIGS / name)
    assert info.backend == "python"


def test_malformed_names_file_line_and_hint() -> None:
    path = CONFIGS / "malformed.pbtxt"
    with pytest.raises(ConfigError) as info:
        modelrepo.read_config(path)
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
        modelrepo.read_config(path)
    assert "line 3" in info.value.message and str(path) in info.value.message
    assert "close the string" in info.value.hint


def test_missing_and_non_utf8(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no config\.pbtxt at"):
        modelrepo.read_config(tmp_path)
    path = tmp_path / "config.pbtxt"
    path.write_bytes(b'name: "a"\nbackend: "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"not UTF-8 text .* line 2"):
        modelrepo.read_config(path)


# ------------------------------------------------------------------------------------------ set_parameter


@pytest.mark.parametrize(("name", "literal", "occurrence"), REPLACE_CASES)
@pytest.mark.parametrize("crlf", [False, True])
def test_replace_changes_only_the_value_span(name: str, literal: str, occurrence: int, crlf: bool) -> None:
    text = sample(name)
    if crlf and "\r\n" not in text:
        text = text.replace("\n", "\r\n")
    start = nth(text, literal, occurrence)
    end = start + len(literal)
    new = modelrepo.set_parameter(text, EXECUTION_ENV_PATH, NEW)
    quote_char = literal[0]
    assert new == text[:start] + quote_char + NEW + quote_char + text[end:]
    assert parameters(new)[EXECUTION_ENV_PATH] == NEW
    assert new.count(EXECUTION_ENV_PATH) == text.count(EXECUTION_ENV_PATH)  # never duplicated
    # Setting it again changes nothing; setting the old value back restores the original bytes.
    assert modelrepo.set_parameter(new, EXECUTION_ENV_PATH, NEW) == new
    old_value = parameters(text)[EXECUTION_ENV_PATH]
    assert modelrepo.set_parameter(new, EXECUTION_ENV_PATH, old_value) == text


@pytest.mark.parametrize("name", VALID)
def test_other_parameters_and_fields_survive(name: str) -> None:
    text = sample(name)
    before = modelrepo._parse(text, name)
    after = modelrepo._parse(modelrepo.set_parameter(text, EXECUTION_ENV_PATH, NEW), name)
    before.parameters[EXECUTION_ENV_PATH].string_value = NEW
    assert after == before


def test_append_without_trailing_newline() -> None:
    text = sample("no_parameters_no_newline.pbtxt")
    assert not text.endswith("\n")
    new = modelrepo.set_parameter(text, EXECUTION_ENV_PATH, NEW)
    assert new == text + "\n\n" + modelrepo.param_block(NEW)
    assert new.endswith("}\n")
    assert parameters(new) == {EXECUTION_ENV_PATH: NEW}
    assert modelrepo.set_parameter(new, EXECUTION_ENV_PATH, NEW) == new


def test_append_follows_the_file_style() -> None:
    # Tabs and `parameters {` without a colon; the key in comments, another string and nested maps is ignored.
    text = sample("nested_parameters.pbtxt")
    new = modelrepo.set_parameter(text, EXECUTION_ENV_PATH, NEW)
    assert new == (
        text + '\nparameters {\n\tkey: "EXECUTION_ENV_PATH"\n\tvalue: { string_value: "' + NEW + '" }\n}\n'
    )
    config = modelrepo._parse(new, "nested")
    assert config.parameters["OTHER"].string_value == EXECUTION_ENV_PATH
    accelerator = config.optimization.execution_accelerators.cpu_execution_accelerator[0]
    assert accelerator.parameters[EXECUTION_ENV_PATH] == "an accelerator parameter"
    assert config.model_repository_agents.agents[0].parameters[EXECUTION_ENV_PATH] == "an agent parameter"


def test_append_to_crlf_file_uses_crlf() -> None:
    text = sample("crlf.pbtxt").replace("EXECUTION_ENV_PATH", "OTHER_KEY")
    new = modelrepo.set_parameter(text, EXECUTION_ENV_PATH, NEW)
    assert new.startswith(text)
    added = new[len(text) :]
    assert added == "\r\n" + modelrepo.param_block(NEW).replace("\n", "\r\n").replace(
        "parameters:", "parameters"
    )
    assert new.count("\n") == new.count("\r\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", modelrepo.param_block(NEW)),
        ('name: "a"\n', 'name: "a"\n\n' + modelrepo.param_block(NEW)),
        ('name: "a"\n\n', 'name: "a"\n\n' + modelrepo.param_block(NEW)),
        ('name: "a" # trailing comment', 'name: "a" # trailing comment\n\n' + modelrepo.param_block(NEW)),
        (
            'input [\n    { name: "x" }\n]\n',
            'input [\n    { name: "x" }\n]\n\nparameters: {\n    key: "EXECUTION_ENV_PATH"\n'
            '    value: { string_value: "' + NEW + '" }\n}\n',
        ),
    ],
)
def test_append_layouts(text: str, expected: str) -> None:
    assert modelrepo.set_parameter(text, EXECUTION_ENV_PATH, NEW) == expected


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
    new = modelrepo.set_parameter(text, EXECUTION_ENV_PATH, "NEW")
    assert new == expected
    assert parameters(new)[EXECUTION_ENV_PATH] == "NEW"


@pytest.mark.parametrize(
    "value",
    ['with "double" quotes', "with 'single' quotes", "back\\slash", "tab\tnew\nline", "ünïcødé ✓", ""],
)
@pytest.mark.parametrize("name", VALID)
def test_values_are_escaped(name: str, value: str) -> None:
    new = modelrepo.set_parameter(sample(name), EXECUTION_ENV_PATH, value)
    assert parameters(new)[EXECUTION_ENV_PATH] == value


def test_quote() -> None:
    assert modelrepo.quote('a"b') == '"a\\"b"'
    assert modelrepo.quote("a'b\"", "'") == "'a\\'b\"'"
    assert modelrepo.quote("\x01\x7f") == '"\\001\\177"'


def test_duplicate_key_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        modelrepo.set_parameter(
            sample("duplicate_key.pbtxt"), EXECUTION_ENV_PATH, NEW, source="dup/config.pbtxt"
        )
    error = info.value
    assert "dup/config.pbtxt" in error.message and "2 times" in error.message
    assert "lines 4, 12" in error.message
    assert "keeps the last" in error.hint and "second.tar.gz" in error.hint
    # ... which is what protobuf does: the last entry wins when it is parsed.
    assert parameters(sample("duplicate_key.pbtxt"))[EXECUTION_ENV_PATH].endswith("second.tar.gz")


def test_set_parameter_on_malformed_text() -> None:
    with pytest.raises(ConfigError, match=r"x/config.pbtxt, line 5 column 1"):
        modelrepo.set_parameter(sample("malformed.pbtxt"), EXECUTION_ENV_PATH, NEW, source="x/config.pbtxt")


def test_unencodable_value() -> None:
    with pytest.raises(ConfigError, match="cannot be written as UTF-8"):
        modelrepo.set_parameter("", EXECUTION_ENV_PATH, "\udc80")


def test_param_block_pastes() -> None:
    block = modelrepo.param_block(NEW)
    assert block == (
        'parameters: {\n  key: "EXECUTION_ENV_PATH"\n'
        '  value: { string_value: "$$TRITON_MODEL_DIRECTORY/env.tar.gz" }\n}\n'
    )
    assert parameters(sample("nested_parameters.pbtxt") + block)[EXECUTION_ENV_PATH] == NEW
    assert parameters(modelrepo.param_block("x", key="OTHER")) == {"OTHER": "x"}


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
        new = modelrepo.set_parameter(text, EXECUTION_ENV_PATH, value)
        assert new.startswith(comment_line)
        assert parameters(new)[EXECUTION_ENV_PATH] == value
        assert modelrepo.set_parameter(new, EXECUTION_ENV_PATH, value) == new

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
        tokens = modelrepo._tokenize(sample(name))
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
            render(modelrepo.quote(value, literal[0]))
            if value != parameters(text)[EXECUTION_ENV_PATH]
            else text
        )
        assert modelrepo.set_parameter(text, EXECUTION_ENV_PATH, value) == expected


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
    result = modelrepo.write_parameter(config, EXECUTION_ENV_PATH, NEW)
    assert result.changed and result.old_value == "$$TRITON_MODEL_DIRECTORY/env"
    assert result.backup == config.with_name("config.pbtxt.bak")
    assert result.backup.read_bytes() == original
    assert config.read_bytes() == original.replace(b'/env"', b'/env.tar.gz"')  # CRLF kept on disk
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert stat.S_IMODE(result.backup.stat().st_mode) == 0o640
    assert result.to_dict()["backup"] == str(result.backup)

    # Unchanged: nothing written, no backup.
    mtime = config.stat().st_mtime_ns
    again = modelrepo.write_parameter(config.parent, EXECUTION_ENV_PATH, NEW)
    assert not again.changed and again.backup is None and again.old_value == NEW
    assert config.stat().st_mtime_ns == mtime

    # A different .bak is never overwritten: .bak.1, then .bak.2.
    second = modelrepo.write_parameter(config, EXECUTION_ENV_PATH, "$$TRITON_MODEL_DIRECTORY/b")
    assert second.backup == config.with_name("config.pbtxt.bak.1")
    assert second.backup.read_bytes() == original.replace(b'/env"', b'/env.tar.gz"')
    third = modelrepo.write_parameter(config, EXECUTION_ENV_PATH, "$$TRITON_MODEL_DIRECTORY/c")
    assert third.backup == config.with_name("config.pbtxt.bak.2")
    assert config.with_name("config.pbtxt.bak").read_bytes() == original
    assert leftovers(config.parent) == []


def test_identical_backup_is_reused(tmp_path: Path, cache_root: Path) -> None:
    config = model_with(tmp_path, "python_basic.pbtxt")
    config.with_name("config.pbtxt.bak").write_text("something else\n")
    config.with_name("config.pbtxt.bak.1").write_bytes(config.read_bytes())
    result = modelrepo.write_parameter(config, EXECUTION_ENV_PATH, NEW)
    assert result.backup == config.with_name("config.pbtxt.bak.1")
    assert config.with_name("config.pbtxt.bak").read_text() == "something else\n"
    assert not config.with_name("config.pbtxt.bak.2").exists()


def test_write_without_backup_appends(tmp_path: Path, cache_root: Path) -> None:
    config = model_with(tmp_path, "no_parameters_no_newline.pbtxt")
    result = modelrepo.write_parameter(config, EXECUTION_ENV_PATH, NEW, backup=False)
    assert result.changed and result.old_value is None and result.backup is None
    assert sorted(p.name for p in config.parent.iterdir()) == ["config.pbtxt"]
    assert modelrepo.read_config(config).parameters == {EXECUTION_ENV_PATH: NEW}


def test_write_through_symlink(tmp_path: Path, cache_root: Path) -> None:
    real = model_with(tmp_path, "python_basic.pbtxt")
    link_dir = tmp_path / "linked"
    link_dir.mkdir()
    (link_dir / "config.pbtxt").symlink_to(real)
    result = modelrepo.write_parameter(link_dir / "config.pbtxt", EXECUTION_ENV_PATH, NEW)
    assert (link_dir / "config.pbtxt").is_symlink()
    assert modelrepo.read_config(real).parameters[EXECUTION_ENV_PATH] == NEW
    assert result.backup == real.with_name("config.pbtxt.bak")


def test_write_refuses_malformed_and_duplicates(tmp_path: Path, cache_root: Path) -> None:
    for name in ("malformed.pbtxt", "duplicate_key.pbtxt"):
        directory = tmp_path / name
        directory.mkdir()
        config = directory / "config.pbtxt"
        config.write_bytes((CONFIGS / name).read_bytes())
        with pytest.raises(ConfigError):
            modelrepo.write_parameter(config, EXECUTION_ENV_PATH, NEW)
        assert config.read_bytes() == (CONFIGS / name).read_bytes()
        assert sorted(p.name for p in directory.iterdir()) == ["config.pbtxt"]


@pytest.mark.parametrize("failure", [ConfigError("rejected"), KeyboardInterrupt()])
def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path, failure: BaseException) -> None:
    target = tmp_path / "config.pbtxt"
    target.write_bytes(b"original\n")
    seen: list[bytes] = []

    def check(tmp: Path) -> None:
        seen.append(tmp.read_bytes())  # the complete new content is there before anything is replaced
        assert tmp.parent == tmp_path
        raise failure

    with pytest.raises(type(failure)):
        modelrepo.write_atomic(target, b"new\n", mode=0o600, check=check)
    assert seen == [b"new\n"]
    assert target.read_bytes() == b"original\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.pbtxt"]


def test_atomic_write_success(tmp_path: Path) -> None:
    target = tmp_path / "file"
    modelrepo.write_atomic(target, b"data", mode=0o604)
    assert target.read_bytes() == b"data" and stat.S_IMODE(target.stat().st_mode) == 0o604
    with pytest.raises(ConfigError, match="cannot write in"):
        modelrepo.write_atomic(tmp_path / "missing" / "file", b"data")


# ------------------------------------------------------------------------------------------ EXECUTION_ENV_PATH


def make_env_dir(path: Path) -> Path:
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "activate").write_text("export PATH=...\n")
    return path


def make_tar(path: Path, mode: Literal["w", "w:gz", "w:xz"] = "w:gz") -> Path:
    data = b"export PATH=...\n"
    with tarfile.open(path, mode) as tar:
        member = tarfile.TarInfo("bin/activate")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    directory = tmp_path / "repo" / "add_sub"
    (directory / "1").mkdir(parents=True)
    return directory


def test_env_inside_model_dir(model: Path) -> None:
    make_tar(model / "env.tar.gz")
    assert modelrepo.env_path_value(model, model / "env.tar.gz") == NEW
    make_env_dir(model / "envs" / "py38")
    value = modelrepo.env_path_value(model, model / "envs" / "py38")
    assert value == "$$TRITON_MODEL_DIRECTORY/envs/py38"
    assert modelrepo.validate_env_path(model, value) == (model / "envs" / "py38").resolve()
    # A relative env path, and allow_host_path, still give the portable form inside the model dir.
    cwd = os.getcwd()
    try:
        os.chdir(model)
        assert modelrepo.env_path_value(Path("."), Path("env.tar.gz"), allow_host_path=True) == NEW
    finally:
        os.chdir(cwd)


def test_env_outside_model_dir(model: Path, tmp_path: Path) -> None:
    outside = make_tar(tmp_path / "env.tar.gz")
    with pytest.raises(ConfigError) as info:
        modelrepo.env_path_value(model, outside)
    error = info.value
    assert str(outside) in error.message and str(model) in error.message
    assert "download only the model directory" in error.hint and "only on this host" in error.hint
    assert "--allow-host-path" in error.hint and f"pack-env --model {model}" in error.hint
    assert modelrepo.env_path_value(model, outside, allow_host_path=True) == str(outside.resolve())


def test_env_symlink_escaping_model_dir(model: Path, tmp_path: Path) -> None:
    outside = make_tar(tmp_path / "real.tar.gz")
    (model / "env.tar.gz").symlink_to(outside)
    with pytest.raises(ConfigError, match="symlink") as info:
        modelrepo.env_path_value(model, model / "env.tar.gz")
    assert str(outside) in info.value.message
    with pytest.raises(ConfigError, match="through a symlink"):
        modelrepo.validate_env_path(model, NEW)


def test_env_is_model_dir_itself(model: Path) -> None:
    with pytest.raises(ConfigError, match="model directory itself"):
        modelrepo.env_path_value(model, model)
    with pytest.raises(ConfigError, match="model directory itself"):
        modelrepo.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/.")


@pytest.mark.parametrize(
    ("name", "kind"),
    [("env.tar.xz", "xz"), ("env.tar.bz2", "bzip2"), ("env.tar.zst", "zstd"), ("env.zip", "zip")],
)
def test_unsupported_archive_names(model: Path, name: str, kind: str) -> None:
    for must_exist in (False, True):
        with pytest.raises(ConfigError) as info:
            modelrepo.validate_env_path(model, f"$$TRITON_MODEL_DIRECTORY/{name}", must_exist=must_exist)
        assert name in info.value.message and kind in info.value.message
        assert "archive_read_open_filename() failed." in info.value.message
        assert ".tar.gz" in info.value.hint and "directory" in info.value.hint
    with pytest.raises(ConfigError, match="archive_read_open_filename"):
        modelrepo.env_path_value(model, model / name)


def test_archive_content_is_checked(model: Path) -> None:
    make_tar(model / "ok.tar.gz")
    make_tar(model / "ok.tgz")
    make_tar(model / "ok.tar", "w")
    for name in ("ok.tar.gz", "ok.tgz", "ok.tar"):
        assert (
            modelrepo.validate_env_path(model, f"$$TRITON_MODEL_DIRECTORY/{name}") == (model / name).resolve()
        )
    make_tar(model / "really_xz.tar.gz", "w:xz")
    with pytest.raises(ConfigError, match="holds xz data"):
        modelrepo.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/really_xz.tar.gz")
    with zipfile.ZipFile(model / "really_zip.tar", "w") as archive:
        archive.writestr("bin/activate", "x")
    with pytest.raises(ConfigError, match="holds zip data"):
        modelrepo.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/really_zip.tar")
    (model / "plain.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ConfigError, match="cannot be read as a tar"):
        modelrepo.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/plain.tar.gz")
    (model / "env.bin").write_bytes(b"x" * 600)
    with pytest.raises(ConfigError, match=r"not named \.tar\.gz"):
        modelrepo.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/env.bin")
    # A directory is fine whatever its name.
    make_env_dir(model / "odd.zip")
    assert modelrepo.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/odd.zip").is_dir()


def test_dot_dot_escape(model: Path) -> None:
    make_tar(model.parent / "shared.tar.gz")
    with pytest.raises(ConfigError) as info:
        modelrepo.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/../shared.tar.gz")
    assert "'..'" in info.value.message and "$$TRITON_MODEL_DIRECTORY/../shared.tar.gz" in info.value.message
    assert "download only the model directory" in info.value.hint
    # '..' that stays inside is only a longer spelling.
    make_tar(model / "env.tar.gz")
    value = "$$TRITON_MODEL_DIRECTORY/1/../env.tar.gz"
    assert modelrepo.validate_env_path(model, value) == (model / "env.tar.gz").resolve()


def test_symlinked_subdir_escape(model: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    make_tar(tmp_path / "elsewhere" / "env.tar.gz")
    (model / "envs").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="through a symlink"):
        modelrepo.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/envs/env.tar.gz")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "is empty"),
        ("/opt/$$TRITON_MODEL_DIRECTORY/env.tar.gz", "only as a leading prefix"),
        ("$$TRITON_MODEL_DIRECTORYenv.tar.gz", "does not name a path inside"),
        ("$$TRITON_MODEL_DIRECTORY/", "does not name a path inside"),
        ("env.tar.gz", "relative path"),
        ("~/envs/env.tar.gz", r"relative path \(~ is not expanded\)"),
        ("/opt/env\n.tar.gz", "control character"),
    ],
)
def test_bad_values(model: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        modelrepo.validate_env_path(model, value)
    assert info.value.hint
    if value.strip() and "\n" not in value:
        assert repr(value) in info.value.message


def test_absolute_values_and_existence(model: Path, tmp_path: Path) -> None:
    env = make_env_dir(tmp_path / "host_env")
    assert modelrepo.validate_env_path(model, str(env)) == env.resolve()
    missing = str(tmp_path / "nowhere.tar.gz")
    with pytest.raises(ConfigError, match="does not exist") as info:
        modelrepo.validate_env_path(model, missing)
    assert "pack-env" in info.value.hint
    assert modelrepo.validate_env_path(model, missing, must_exist=False) == Path(missing)
    assert modelrepo.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/later", must_exist=False) == (
        model.resolve() / "later"
    )
    (model / "empty_env").mkdir()
    with pytest.raises(ConfigError, match="without bin/activate") as info:
        modelrepo.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/empty_env")
    assert "bin/activate does not exist" in info.value.message


def test_generated_values_validate(model: Path, tmp_path: Path) -> None:
    # What env_path_value writes, validate_env_path accepts and resolves back to the environment.
    for env in (
        make_tar(model / "env.tar.gz"),
        make_env_dir(model / "a" / "b"),
        make_tar(tmp_path / "x.tgz"),
    ):
        value = modelrepo.env_path_value(model, env, allow_host_path=True)
        assert modelrepo.validate_env_path(model, value) == env.resolve()
        # ... and it can be written into a config and read back.
        text = modelrepo.set_parameter(sample("python_basic.pbtxt"), EXECUTION_ENV_PATH, value)
        assert parameters(text)[EXECUTION_ENV_PATH] == value


def test_plan_and_set_env_path(model: Path, tmp_path: Path, cache_root: Path) -> None:
    (model / "config.pbtxt").write_bytes((CONFIGS / "no_parameters_no_newline.pbtxt").read_bytes())
    env = model / "env.tar.gz"
    assert modelrepo.plan_env_path(model, env) == NEW  # before the archive exists
    with pytest.raises(ConfigError, match="does not exist"):
        modelrepo.set_env_path(model, env)
    assert modelrepo.read_config(model).parameters == {}
    make_tar(env)
    result = modelrepo.set_env_path(model, env, backup=False)
    assert result.changed and result.value == NEW and result.backup is None
    assert modelrepo.read_config(model).parameters == {EXECUTION_ENV_PATH: NEW}
    # Outside the model dir: refused before any work, allowed as a host path on request.
    outside = make_env_dir(tmp_path / "host_env")
    with pytest.raises(ConfigError, match="outside the model directory"):
        modelrepo.plan_env_path(model, outside)
    result = modelrepo.set_env_path(model, outside, allow_host_path=True)
    assert result.old_value == NEW and result.value == str(outside.resolve())
    assert result.backup == model / "config.pbtxt.bak"
    # A config that sets the key twice is refused before packing.
    (model / "config.pbtxt").write_bytes((CONFIGS / "duplicate_key.pbtxt").read_bytes())
    with pytest.raises(ConfigError, match="2 times"):
        modelrepo.plan_env_path(model, env)
