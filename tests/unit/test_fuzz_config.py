"""Property-based fuzzing of the EXECUTION_ENV_PATH write into config.pbtxt (issue 12, "Also").

Hypothesis starts from the fixtures in tests/fixtures/configs and mutates them (bytes inserted, deleted or
replaced; comments; CRLF, LF and mixed line endings; a UTF-8 BOM; repeated and nested `parameters`; unicode),
then writes a fuzzed value with the function `stubforge param --write` and `pack-env --model` use. Properties:

- on any error it is a StubforgeError (never another exception), the file's bytes are unchanged and no temp
  or backup file is left beside it;
- on success the file parses with the ModelConfig reader, sets the value, holds the key exactly once at the
  top level, keeps the original as config.pbtxt.bak, and every byte outside the edited `parameters` entry is
  unchanged (comments, order, line endings).

The entry is located by a small lexer written here, independent of stubforge's tokenizer. Examples are bounded;
with the CI environment variable set the run is derandomized.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_encoding
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from stubforge.errors import StubforgeError

# The split of triton/modelrepo.py moves these; the test runs against either layout until the merge.
try:
    from stubforge.triton.config import read_config
    from stubforge.triton.envpath import set_env_path
    from stubforge.triton.pbtxt import write_parameter
except ImportError:
    from stubforge.triton.modelrepo import read_config, set_env_path, write_parameter

KEY = "EXECUTION_ENV_PATH"
CONFIGS = Path(__file__).parent.parent / "fixtures" / "configs"
FIXTURES = {path.name: path.read_bytes() for path in sorted(CONFIGS.glob("*.pbtxt"))}
BOM = b"\xef\xbb\xbf"

IN_CI = bool(os.environ.get("CI"))
settings.register_profile(
    "stubforge-fuzz-config",
    max_examples=int(os.environ.get("STUBFORGE_FUZZ_EXAMPLES", "150")),
    deadline=None,
    derandomize=IN_CI,
    database=None if IN_CI else settings.default.database,
    # The cache (only its lock files) is shared by the examples on purpose: a fresh model directory is made
    # for each one.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
FUZZ = settings.get_profile("stubforge-fuzz-config")

# ------------------------------------------------------------------------------------------ strategies

SNIPPETS = [
    b"#",
    b"\n",
    b"\r\n",
    b"\r",
    b'"',
    b"'",
    b"{",
    b"}",
    b"[",
    b"]",
    b"<",
    b">",
    b":",
    b",",
    b";",
    b"\\",
    b" ",
    b"\t",
    b"\x00",
    b"\xff",
    BOM,
    "é".encode(),
    "\u2028".encode(),
    "\xa0".encode(),
    b"\x0c",
    b"\x1c",
    b"parameters",
    b"EXECUTION_ENV_PATH",
    b'"EXECUTION_ENV_PATH"',
]
comment_text = st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=30)
KEYS = [KEY, KEY, "OTHER", KEY.lower(), KEY + " "]


def _literal(value: str, quote: str) -> str:
    escaped = value.replace("\\", "\\\\").replace(quote, "\\" + quote).replace("\n", "\\n")
    return quote + escaped + quote


@st.composite
def parameter_block(draw: st.DrawFn) -> str:
    """A `parameters` entry in one of the layouts the text format allows."""
    key = _literal(draw(st.sampled_from(KEYS)), draw(st.sampled_from(['"', "'"])))
    value = _literal(draw(comment_text), '"')
    form = draw(st.integers(0, 6))
    if form == 0:
        return f"parameters {{ key: {key} value {{ string_value: {value} }} }}"
    if form == 1:
        return f"parameters: < key: {key} value: < string_value: {value} > >"
    if form == 2:
        return f'parameters [ {{ key: {key} value: {{ string_value: {value} "tail" }} }}, {{ key: "B" }} ]'
    if form == 3:
        return f"parameters {{ key: {key} }}"
    if form == 4:
        return f"parameters {{ key: {key} value {{ }} }}"
    if form == 5:  # a parameter of a repository agent: not the model's, must be left alone
        return f"model_repository_agents {{ agents [ {{ name: 'a' parameters {{ key: {key} value: {value} }} }} ] }}"
    return f"parameters {{\n  # {draw(comment_text)}\n  key:\n {key}  # {draw(comment_text)}\n}}"


@st.composite
def mutated_config(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from(sorted(FIXTURES.items())))[1]
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["comment"] * 3 + ["lines", "bom", "block", "block", "bytes"]))
        if op == "comment":  # a comment line, or one at the end of a line (never inside a string there)
            starts = [0] + [i + 1 for i, byte in enumerate(data) if byte == ord("\n")]
            if draw(st.booleans()):
                at = draw(st.sampled_from(starts))
                insert = ("#" + draw(comment_text) + "\n").encode()
            else:
                ends = [i for i, byte in enumerate(data) if byte == ord("\n")] or [len(data)]
                at = draw(st.sampled_from(ends))
                at -= 1 if at > 0 and data[at - 1 : at] == b"\r" else 0
                insert = (" # " + draw(comment_text)).encode()
            data = data[:at] + insert + data[at:]
        elif op == "lines":
            lf = data.replace(b"\r\n", b"\n")
            style = draw(st.sampled_from(["crlf", "lf", "mixed"]))
            if style == "crlf":
                data = lf.replace(b"\n", b"\r\n")
            elif style == "lf":
                data = lf
            else:
                lines = lf.split(b"\n")
                ends = draw(st.lists(st.booleans(), min_size=len(lines), max_size=len(lines)))
                data = (
                    b"".join(line + (b"\r\n" if crlf else b"\n") for line, crlf in zip(lines[:-1], ends))
                    + lines[-1]
                )
        elif op == "bom":
            data = BOM + data
        elif op == "block":
            block = draw(parameter_block()).encode()
            newline = b"\r\n" if b"\r\n" in data else b"\n"
            at = draw(st.sampled_from([0, len(data)]))
            data = block + newline + data if at == 0 else data + newline + block + newline
        else:
            at = draw(st.integers(0, len(data)))
            length = draw(st.integers(0, 8))
            insert = draw(st.one_of(st.sampled_from(SNIPPETS), st.binary(max_size=4)))
            data = data[:at] + insert + data[at + length :]
    return data


env_values = st.one_of(
    st.sampled_from(
        [
            "",
            "$$TRITON_MODEL_DIRECTORY/env.tar.gz",
            "$$TRITON_MODEL_DIRECTORY/old_env.tar.gz",
            '"',
            "'",
            "\\",
            "\n",
            "\r\n",
            "a\"b'c\\d",
            "é/ü env.tar.gz",
            KEY,
            "# not a comment",
            "} parameters {",
            "\x00\x7f",
        ]
    ),
    st.text(max_size=40),  # surrogates included: not UTF-8, so an error
)

# ------------------------------------------------------------------------------------------ oracle


@dataclass(frozen=True)
class Tok:
    kind: str  # "word", "string" or "punct"
    start: int
    end: int
    text: str


def lex(text: str) -> list[Tok]:
    """Protobuf text format tokens with offsets: whitespace and # comments skipped, a BOM at the start too."""
    out: list[Tok] = []
    i = 1 if text.startswith("\ufeff") else 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():  # what protobuf's tokenizer skips: \s, Unicode whitespace included
            i += 1
        elif ch == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif ch in "\"'":
            j = i + 1
            while text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            out.append(Tok("string", i, j + 1, text[i : j + 1]))
            i = j + 1
        elif ch.isalnum() or ch in "_.+-":
            j = i
            while j < len(text) and (text[j].isalnum() or text[j] in "_.+-"):
                j += 1
            out.append(Tok("word", i, j, text[i:j]))
            i = j
        else:
            out.append(Tok("punct", i, i + 1, ch))
            i += 1
    return out


CLOSE = {"{": "}", "<": ">", "[": "]"}


def _skip_value(toks: list[Tok], i: int) -> int:
    """The index after the value starting at toks[i] (a message, a list, or a scalar)."""
    if toks[i].text in CLOSE and toks[i].kind == "punct":
        depth = 0
        while True:
            if toks[i].kind == "punct" and toks[i].text in CLOSE:
                depth += 1
            elif toks[i].kind == "punct" and toks[i].text in CLOSE.values():
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
    i += 1
    while i < len(toks) and toks[i].kind == "string" and toks[i - 1].kind == "string":
        i += 1
    return i


def _string_at(toks: list[Tok], i: int) -> str | None:
    if i >= len(toks) or toks[i].kind != "string":
        return None
    raw = b""
    while i < len(toks) and toks[i].kind == "string":
        raw += text_encoding.CUnescape(toks[i].text[1:-1])
        i += 1
    return raw.decode("utf-8", errors="replace")


def _entry_key(toks: list[Tok], start: int, end: int) -> str | None:
    """The key of the map entry toks[start:end] (start is its opener), read at its own level only."""
    i = start + 1
    while i < end - 1:
        if toks[i].kind == "word" and toks[i].text == "key":
            j = i + 1 + (toks[i + 1].text == ":")
            return _string_at(toks, j)
        if toks[i].kind == "word":
            j = i + 1 + (toks[i + 1].text == ":")
            i = _skip_value(toks, j)
        else:
            i += 1
    return None


def top_level_entries(text: str) -> list[tuple[int, int, str | None]]:
    """(start, end, key) of every top-level `parameters` map entry: the span of its `{...}`."""
    toks = lex(text)
    found = []
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok.kind != "word":
            i += 1  # separators , and ;
            continue
        j = i + 1 + (i + 1 < len(toks) and toks[i + 1].text == ":")
        end = _skip_value(toks, j)
        if tok.text == "parameters":
            if toks[j].text == "[":
                k = j + 1
                while toks[k].text != "]":
                    if toks[k].text in ("{", "<"):
                        after = _skip_value(toks, k)
                        found.append((toks[k].start, toks[after - 1].end, _entry_key(toks, k, after)))
                        k = after
                    else:
                        k += 1
            else:
                found.append((toks[j].start, toks[end - 1].end, _entry_key(toks, j, end)))
        i = end
    return found


def _key_entries(text: str) -> list[tuple[int, int]]:
    return [(start, end) for start, end, key in top_level_entries(text) if key == KEY]


# ------------------------------------------------------------------------------------------ properties


def check_write(
    data: bytes, value: str, write: Callable[[Path, str], Any] | None = None, config_dir: Path | None = None
) -> str:
    """Write `value` into a config.pbtxt holding `data` and check every property; returns what happened."""
    with tempfile.TemporaryDirectory(prefix="sf-fuzz-config-") as name:
        model = Path(config_dir or name) / "model"
        model.mkdir(exist_ok=True)
        config = model / "config.pbtxt"
        config.write_bytes(data)
        listing = sorted(os.listdir(model))
        try:
            result = write_parameter(config, KEY, value) if write is None else write(model, value)
        except StubforgeError:  # anything else propagates and fails the test with its traceback
            assert config.read_bytes() == data, "the config changed although the write failed"
            assert sorted(os.listdir(model)) == listing, "a temp or backup file was left behind"
            return "error"
        after = config.read_bytes()
        if not result.changed:
            assert after == data
            assert sorted(os.listdir(model)) == listing
        else:
            assert sorted(os.listdir(model)) == sorted([*listing, "config.pbtxt.bak"])
            assert (model / "config.pbtxt.bak").read_bytes() == data
        assert read_config(config).parameters[KEY] == value
        old_text, new_text = data.decode("utf-8"), after.decode("utf-8")
        old_entries, new_entries = _key_entries(old_text), _key_entries(new_text)
        assert len(new_entries) == 1, f"the key is set {len(new_entries)} times"
        (s1, e1) = new_entries[0]
        if old_entries:  # replaced in place: everything before and after the entry is the same
            (s0, e0) = old_entries[0]
            assert new_text[:s1] == old_text[:s0]
            assert new_text[e1:] == old_text[e0:]
            return "replaced" if result.changed else "unchanged"
        # appended: the original text first, then blank line(s) and the block, in the file's line endings
        assert new_text.startswith(old_text)
        assert s1 >= len(old_text)
        tail = new_text[len(old_text) :]
        if old_text.count("\r\n") and old_text.count("\r\n") == old_text.count("\n"):
            assert "\n" not in tail.replace("\r\n", ""), "an appended block mixes line endings into CRLF"
        assert new_text[e1:].strip() == ""
        return "appended"


def test_the_oracle_finds_entries() -> None:
    text = FIXTURES["list_form_single_quotes.pbtxt"].decode()
    entries = top_level_entries(text)
    assert [key for _, _, key in entries] == ["NOTE", KEY]
    start, end, _ = entries[1]
    assert text[start] == "{" and text[end - 1] == "}" and "/opt/envs/py38.tar.gz" in text[start:end]
    # Nested parameters (accelerators, agents) and commented-out ones are not the model's.
    assert [key for _, _, key in top_level_entries(FIXTURES["nested_parameters.pbtxt"].decode())] == ["OTHER"]


@FUZZ
@given(data=mutated_config(), value=env_values)
@example(data=FIXTURES["crlf.pbtxt"], value="$$TRITON_MODEL_DIRECTORY/new")
@example(data=FIXTURES["no_parameters_no_newline.pbtxt"].replace(b"\n", b"\r\n"), value="x")
@example(data=FIXTURES["duplicate_key.pbtxt"], value="x")
def test_write_parameter_keeps_the_file_or_changes_only_the_entry(
    cache_root: Path, data: bytes, value: str
) -> None:
    event(check_write(data, value))


# File names an env can have inside the model directory: quotes, spaces, backslashes, unicode, `$`.
env_names = st.text(
    st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=20
).filter(lambda s: s not in (".", "..") and len(s.encode()) < 200)


@FUZZ
@given(name=env_names, data=st.sampled_from(sorted(FIXTURES.values())))
def test_set_env_path_with_any_env_name(cache_root: Path, name: str, data: bytes) -> None:
    """What `param --write` and `pack-env --model` call: the env's file name becomes the value."""
    with tempfile.TemporaryDirectory(prefix="sf-fuzz-env-") as root:
        model = Path(root) / "model"
        model.mkdir()
        env = model / f"{name}.tar.gz"
        with tarfile.open(env, "w:gz") as tar:
            tar.addfile(tarfile.TarInfo("bin"))

        def write(model_dir: Path, _value: str) -> Any:
            return set_env_path(model_dir, env)

        value = f"$$TRITON_MODEL_DIRECTORY/{name}.tar.gz"
        outcome = check_write(data, value, write, config_dir=Path(root))
        event(outcome)


def test_the_properties_can_fail(cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that re-serialises the message (losing comments) or leaves its temp file is caught."""

    def reserialising(model_dir: Path, value: str) -> Any:
        config = model_dir / "config.pbtxt"
        result = write_parameter(config, KEY, value)
        config.write_text(config.read_text().replace("# ", "#"))  # a comment outside the entry changes
        return result

    with pytest.raises(AssertionError):
        check_write(FIXTURES["python_basic.pbtxt"], "v", reserialising)

    def leaky(model_dir: Path, value: str) -> Any:
        (model_dir / ".config.pbtxt.tmp").write_text("half")
        raise StubforgeError("failed")

    with pytest.raises(AssertionError, match="left behind"):
        check_write(FIXTURES["python_basic.pbtxt"], "v", leaky)
