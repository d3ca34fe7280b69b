"""config.pbtxt: read it with Triton's real ModelConfig schema, edit one parameter surgically, and apply the
EXECUTION_ENV_PATH rules (TRITON_FACTS §3).

Reading uses the generated `model_config_pb2` that ships in the `tritonclient` wheel together with
`google.protobuf.text_format`, so what parses here is what Triton's schema accepts. Editing never
re-serialises the message: a small tokenizer for the protobuf text format finds the byte span of one string
literal and only that span changes, so comments, order, spacing and CRLF line endings survive. Every edit is
checked by parsing the result again and comparing it with the original message plus the one change.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import importlib.util
import os
import re
import stat
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from stubforge.core import cache
from stubforge.errors import StubforgeError

CONFIG_NAME = "config.pbtxt"
EXECUTION_ENV_PATH = "EXECUTION_ENV_PATH"
MODEL_DIR_VAR = "$$TRITON_MODEL_DIRECTORY"
# Triton opens anything that is not a directory with libarchive, gzip being the only filter it enables.
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
UNSUPPORTED_SUFFIXES = {
    ".tar.xz": "xz",
    ".txz": "xz",
    ".tar.bz2": "bzip2",
    ".tbz": "bzip2",
    ".tbz2": "bzip2",
    ".tar.zst": "zstd",
    ".tzst": "zstd",
    ".tar.lz4": "lz4",
    ".tar.lzma": "lzma",
    ".tar.lz": "lzip",
    ".zip": "zip",
    ".7z": "7-zip",
    ".rar": "rar",
    ".conda": "conda package",
    ".whl": "wheel (zip)",
    ".xz": "xz",
    ".bz2": "bzip2",
    ".zst": "zstd",
    ".gz": "gzip (not a .tar.gz name)",
}
_MAGIC = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
    (b"7z\xbc\xaf\x27\x1c", "7-zip"),
    (b"\x04\x22\x4d\x18", "lz4"),
)
_ARCHIVE_FAILURE = "archive_read_open_filename() failed."


class ConfigError(StubforgeError):
    """A config.pbtxt that cannot be read or edited, or an EXECUTION_ENV_PATH that Triton would reject."""

    exit_code = 2


# ------------------------------------------------------------------------------------------ schema


class _Proto(NamedTuple):
    model_config: Any  # the generated inference.ModelConfig class
    text_format: Any
    text_encoding: Any


@functools.cache
def _proto() -> _Proto:
    """Triton's ModelConfig class from tritonclient.

    `tritonclient[grpc]` imports it normally. Plain `tritonclient` ships the same generated file, but its
    `tritonclient.grpc` package refuses to import without grpcio, so the file is then loaded by path (it only
    needs `protobuf`).
    """
    hint = "install Triton's client package with the schema: pip install 'tritonclient[grpc]'"
    try:
        from google.protobuf import text_encoding, text_format
    except ImportError as exc:
        raise ConfigError("reading config.pbtxt needs the protobuf package", hint=hint) from exc
    try:
        from tritonclient.grpc import model_config_pb2

        return _Proto(model_config_pb2.ModelConfig, text_format, text_encoding)
    except (ImportError, RuntimeError):
        pass  # no grpcio: load the generated module by path below
    except Exception as exc:  # e.g. protobuf's gencode/runtime VersionError
        raise ConfigError(f"cannot load Triton's ModelConfig schema: {exc}", hint=hint) from exc
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("reading config.pbtxt needs Triton's ModelConfig schema (tritonclient)", hint=hint)
    source = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    module_spec = importlib.util.spec_from_file_location("_stubforge_model_config_pb2", source)
    if not source.is_file() or module_spec is None or module_spec.loader is None:
        raise ConfigError(f"tritonclient has no {source.name} (looked for {source})", hint=hint)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # protobuf too old for this gencode, or missing
        raise ConfigError(f"cannot load Triton's ModelConfig schema from {source}: {exc}", hint=hint) from exc
    return _Proto(module.ModelConfig, text_format, text_encoding)


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _excerpt(text: str, line: int, column: int | None = None) -> str:
    lines = text.split("\n")  # protobuf counts lines by \n only
    if not 1 <= line <= len(lines):
        return ""
    shown = f"{line:5d} | {lines[line - 1].rstrip(chr(13))}"
    if column is not None and column >= 1:
        shown += "\n      | " + " " * (column - 1) + "^"
    return shown


def _parse_hint(reason: str, line: int | None) -> str:
    where = f"line {line}" if line else "the file"
    if "has no field named" in reason:
        return (
            f"check the field name at {where} against Triton's model configuration (model_config.proto); "
            "Triton rejects unknown fields too"
        )
    if "should not have multiple" in reason:
        return f"that field may appear only once: delete the extra one at {where}"
    if "missing ending quote" in reason:
        return f"close the string at {where}; text-format strings cannot span lines"
    if "Couldn't parse string" in reason:
        return "save the file as UTF-8 text"
    return (
        f"fix {where}: fields are written `name: value`, messages `name {{ ... }}`, lists `[a, b]`, "
        "strings in quotes, comments start with #"
    )


def _parse(text: str, source: str) -> Any:
    """The ModelConfig message of `text`; a ConfigError names `source`, the line and the column."""
    proto = _proto()
    message = proto.model_config()
    try:
        proto.text_format.Parse(text, message)
    except proto.text_format.ParseError as exc:
        line, column = exc.GetLine(), exc.GetColumn()
        reason = re.sub(r"^\d+:\d+ : ", "", str(exc))
        where = f", line {line} column {column}" if line else ""
        raise ConfigError(
            f"cannot parse {source}{where}: {reason}",
            hint=_parse_hint(reason, line),
            details=_excerpt(text, line, column) if line else "",
        ) from exc
    return message


# ------------------------------------------------------------------------------------------ reading


@dataclass
class ModelConfigInfo:
    """What stubforge needs from one config.pbtxt, plus the exact text it was read from."""

    path: Path
    name: str
    backend: str
    platform: str
    parameters: dict[str, str]  # key -> string_value
    default_model_filename: str
    text: str
    message: Any = field(default=None, repr=False, compare=False)  # the parsed inference.ModelConfig

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "name": self.name,
            "backend": self.backend,
            "platform": self.platform,
            "parameters": dict(self.parameters),
            "default_model_filename": self.default_model_filename,
        }


def _config_file(path: Path) -> Path:
    path = Path(path)
    return path / CONFIG_NAME if path.is_dir() else path


def _decode(data: bytes, source: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{source} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})",
            hint="save it as UTF-8; Triton reads config.pbtxt as UTF-8 protobuf text",
        ) from exc


def read_config(path: Path) -> ModelConfigInfo:
    """Parse a config.pbtxt (or the one in a model directory) with Triton's ModelConfig schema."""
    path = _config_file(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"no {CONFIG_NAME} at {path}",
            hint='every Triton model directory needs one; for a Python model it holds at least backend: "python"',
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path} ({exc.strerror})", hint="check the path and its permissions"
        ) from exc
    text = _decode(data, path)
    message = _parse(text, str(path))
    return ModelConfigInfo(
        path=path,
        name=message.name,
        backend=message.backend,
        platform=message.platform,
        parameters={key: entry.string_value for key, entry in message.parameters.items()},
        default_model_filename=message.default_model_filename,
        text=text,
        message=message,
    )


# ------------------------------------------------------------------------------------------ tokenizer


@dataclass(frozen=True)
class _Token:
    kind: str  # "word" (identifier or number), "string" (one quoted literal) or "punct"
    start: int
    end: int
    text: str


class _LayoutProblem(Exception):
    """The structural reader disagrees with the text (the file parsed, so this is a gap in the reader)."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-")
_PUNCT = frozenset("{}[]<>:,;/")


def _tokenize(text: str) -> list[_Token]:
    """Tokens of protobuf text format with their character offsets; whitespace and # comments are skipped."""
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == "#":  # a comment runs to the end of the line
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif ch in "\"'":
            j = i + 1
            while True:
                if j >= n or text[j] == "\n":
                    raise _LayoutProblem(i, "a string has no closing quote")
                if text[j] == "\\":
                    if j + 1 >= n or text[j + 1] == "\n":
                        raise _LayoutProblem(i, "a string has no closing quote")
                    j += 2
                elif text[j] == ch:
                    j += 1
                    break
                else:
                    j += 1
            tokens.append(_Token("string", i, j, text[i:j]))
            i = j
        elif ch in _WORD_CHARS:
            j = i + 1
            while j < n and text[j] in _WORD_CHARS:
                j += 1
            tokens.append(_Token("word", i, j, text[i:j]))
            i = j
        elif ch in _PUNCT:
            tokens.append(_Token("punct", i, i + 1, ch))
            i += 1
        else:
            raise _LayoutProblem(i, f"unexpected character {ch!r}")
    return tokens


@dataclass
class _Value:
    first: int  # token index of the first token
    last: int  # token index of the last token (the closing brace of a message)
    fields: list[_Field] | None = None  # None for a scalar


@dataclass
class _Field:
    name: str
    name_token: int
    colon: bool
    values: list[_Value]  # several when written as a list `name: [a, b]`


_CLOSERS = {"{": "}", "<": ">"}


class _Reader:
    """Recursive descent over the tokens: fields, nested messages and lists, with token positions."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def _peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _is(self, token: _Token | None, *punct: str) -> bool:
        return token is not None and token.kind == "punct" and token.text in punct

    def _end_offset(self) -> int:
        return self.tokens[-1].end if self.tokens else 0

    def fields(self, closer: str | None) -> list[_Field]:
        found: list[_Field] = []
        while True:
            token = self._peek()
            if token is None:
                if closer is None:
                    return found
                raise _LayoutProblem(self._end_offset(), f"a message is not closed with {closer!r}")
            if closer is not None and self._is(token, closer):
                return found
            if self._is(token, ",", ";"):
                self.pos += 1
                continue
            found.append(self._field())

    def _field(self) -> _Field:
        start = self.pos
        token = self.tokens[start]
        if token.kind == "word":
            name = token.text
            self.pos += 1
        elif self._is(token, "["):  # extension or Any type name: [a.b/c]
            while not self._is(self._peek(), "]"):
                if self._peek() is None:
                    raise _LayoutProblem(token.start, "a [name] is not closed")
                self.pos += 1
            self.pos += 1
            name = "".join(t.text for t in self.tokens[start : self.pos])
        else:
            raise _LayoutProblem(token.start, f"expected a field name, found {token.text!r}")
        colon = self._is(self._peek(), ":")
        if colon:
            self.pos += 1
        values: list[_Value] = []
        if self._is(self._peek(), "["):
            self.pos += 1
            while True:
                item = self._peek()
                if item is None:
                    raise _LayoutProblem(token.start, f"the list of {name!r} is not closed")
                if self._is(item, "]"):
                    self.pos += 1
                    break
                if self._is(item, ","):
                    self.pos += 1
                    continue
                values.append(self._value(name))
        else:
            values.append(self._value(name))
        return _Field(name, start, colon, values)

    def _value(self, name: str) -> _Value:
        token = self._peek()
        if token is None:
            raise _LayoutProblem(self._end_offset(), f"field {name!r} has no value")
        first = self.pos
        if self._is(token, "{", "<"):
            self.pos += 1
            inner = self.fields(_CLOSERS[token.text])
            self.pos += 1  # the closer
            return _Value(first, self.pos - 1, inner)
        if token.kind == "string":  # adjacent literals concatenate: "a" "b"
            while (nxt := self._peek()) is not None and nxt.kind == "string":
                self.pos += 1
            return _Value(first, self.pos - 1)
        if token.kind == "word":
            self.pos += 1
            return _Value(first, first)
        raise _LayoutProblem(token.start, f"field {name!r} has no value (found {token.text!r})")


# ------------------------------------------------------------------------------------------ editing


@dataclass
class _Entry:
    """One `parameters` map entry at the top level of the file."""

    message: _Value
    key: str
    key_value: _Value
    value_message: _Value | None  # the `value { ... }` message
    string_value: _Value | None  # its string_value literal(s)


def _unquote(tokens: list[_Token], value: _Value) -> str:
    proto = _proto()
    raw = b"".join(
        proto.text_encoding.CUnescape(tokens[i].text[1:-1]) for i in range(value.first, value.last + 1)
    )
    return raw.decode("utf-8", errors="replace")


def _scalar(message: _Value, name: str) -> _Value | None:
    for item in message.fields or []:
        if item.name == name and item.values and item.values[0].fields is None:
            return item.values[0]
    return None


def _submessage(message: _Value, name: str) -> _Value | None:
    for item in message.fields or []:
        if item.name == name and item.values and item.values[0].fields is not None:
            return item.values[0]
    return None


def _entries(tokens: list[_Token], top: list[_Field]) -> list[_Entry]:
    found = []
    for item in top:  # only top-level fields: parameters of accelerators or repository agents do not count
        if item.name != "parameters":
            continue
        for message in item.values:
            if message.fields is None:
                continue
            key = _scalar(message, "key")
            if key is None or tokens[key.first].kind != "string":
                continue
            value_message = _submessage(message, "value")
            string_value = _scalar(value_message, "string_value") if value_message else None
            if string_value is not None and tokens[string_value.first].kind != "string":
                string_value = None
            found.append(_Entry(message, _unquote(tokens, key), key, value_message, string_value))
    return found


def quote(value: str, quote_char: str = '"') -> str:
    """`value` as a protobuf text-format string literal (UTF-8 kept as is, control characters escaped)."""
    out = [quote_char]
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == quote_char:
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    out.append(quote_char)
    return "".join(out)


def _newline(text: str) -> str:
    crlf = text.count("\r\n")
    return "\r\n" if crlf and crlf >= text.count("\n") - crlf else "\n"


def _indent_unit(text: str) -> str:
    """The smallest indentation of a non-comment line (tabs win), or two spaces."""
    widths = []
    for line in text.splitlines():
        body = line.lstrip(" \t")
        if not body or body.startswith("#") or len(body) == len(line):
            continue
        lead = line[: len(line) - len(body)]
        if lead.startswith("\t"):
            return "\t"
        widths.append(len(lead))
    return " " * min(widths) if widths else "  "


def _block(key: str, value: str, *, newline: str = "\n", indent: str = "  ", colon: bool = True) -> str:
    sep = ":" if colon else ""
    return (
        f"parameters{sep} {{{newline}"
        f"{indent}key: {quote(key)}{newline}"
        f"{indent}value: {{ string_value: {quote(value)} }}{newline}"
        f"}}{newline}"
    )


def param_block(value: str, *, key: str = EXECUTION_ENV_PATH) -> str:
    """The text block that sets `key` to `value` in a config.pbtxt, ready to paste at the top level."""
    _check_text(key, "parameter name")
    _check_text(value, f"value of {key}")
    return _block(key, value)


def _check_text(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(
            f"the {what} {value!r} cannot be written as UTF-8", hint="pass it as plain text"
        ) from exc


def _append(text: str, key: str, value: str, top: list[_Field]) -> str:
    newline = _newline(text)
    existing = [item for item in top if item.name == "parameters"]
    colon = not existing or any(item.colon for item in existing)
    block = _block(key, value, newline=newline, indent=_indent_unit(text), colon=colon)
    if not text:
        return block
    if not text.endswith("\n"):
        text += newline
    lines = text.split("\n")
    if len(lines) < 2 or lines[-2].strip():  # the last line is not blank yet
        text += newline
    return text + block


def set_parameter(text: str, key: str, value: str, *, source: str = CONFIG_NAME) -> str:
    """`text` with parameter `key` set to `value`: only that string literal changes, or a block is appended.

    The text must parse as a ModelConfig; a key set more than once is an error. The result is parsed again
    and must equal the original message with that one parameter changed.
    """
    _check_text(key, "parameter name")
    _check_text(value, f"value of {key}")
    before = _parse(text, source)
    try:
        tokens = _tokenize(text)
        top = _Reader(tokens).fields(None)
    except _LayoutProblem as exc:
        raise ConfigError(
            f"stubforge cannot edit {source}: {exc.reason} at line {_line_of(text, exc.offset)}",
            hint=f"the file parses, but its layout is new to stubforge's editor; add this block by hand:\n"
            f"{_block(key, value)}",
        ) from exc
    matches = [entry for entry in _entries(tokens, top) if entry.key == key]
    if len(matches) > 1:
        lines = [_line_of(text, tokens[entry.key_value.first].start) for entry in matches]
        winner = matches[-1]
        last_value = _unquote(tokens, winner.string_value) if winner.string_value else ""
        raise ConfigError(
            f"{source} sets parameter {key} {len(matches)} times (lines {', '.join(map(str, lines))})",
            hint=f"delete all but one of them: parameters is a protobuf map, which silently keeps the last "
            f"entry (line {lines[-1]}: {last_value!r}), so Triton ignores the others; stubforge will not "
            "guess which one you meant",
        )
    if not matches:
        new = _append(text, key, value, top)
    else:
        entry = matches[0]
        current = _unquote(tokens, entry.string_value) if entry.string_value else ""
        if current == value:
            return text
        if entry.string_value is not None:
            opening, closing = tokens[entry.string_value.first], tokens[entry.string_value.last]
            new = text[: opening.start] + quote(value, opening.text[0]) + text[closing.end :]
        elif entry.value_message is not None:  # value { } without string_value
            opener = tokens[entry.value_message.first]
            new = text[: opener.end] + f" string_value: {quote(value)}" + text[opener.end :]
        else:  # key only, no value message
            after = tokens[entry.key_value.last]
            new = text[: after.end] + f" value: {{ string_value: {quote(value)} }}" + text[after.end :]
    after_edit = _parse(new, source)
    expected = _proto().model_config()
    expected.CopyFrom(before)
    expected.parameters[key].string_value = value
    if after_edit != expected:
        raise ConfigError(
            f"editing {source} would change more than parameter {key}",
            hint="this is a stubforge bug and nothing was written; set the parameter by hand and report the file",
        )
    return new


# ------------------------------------------------------------------------------------------ writing


@dataclass
class WriteResult:
    """What write_parameter did: changed is False when the file already had the value (nothing written)."""

    path: Path
    key: str
    value: str
    old_value: str | None  # None when the parameter was not set
    changed: bool
    backup: Path | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "key": self.key,
            "value": self.value,
            "old_value": self.old_value,
            "changed": self.changed,
            "backup": str(self.backup) if self.backup else None,
        }


def write_atomic(
    path: Path,
    data: bytes,
    *,
    mode: int | None = None,
    owner: tuple[int, int] | None = None,
    check: Callable[[Path], None] | None = None,
) -> None:
    """Replace `path` with `data` through a temp file in the same directory and os.replace.

    `check` runs on the complete temp file before it replaces anything; if it raises (or anything else fails,
    Ctrl-C included) the temp file is removed and `path` is untouched.
    """
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigError(
            f"cannot write in {path.parent} ({exc.strerror})", hint="check that the directory is writable"
        ) from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644 if mode is None else mode)  # mkstemp makes 0600
        if owner is not None and owner != (os.geteuid(), os.getegid()):
            with contextlib.suppress(OSError):  # only root may give a file away; others keep their own
                os.chown(tmp, *owner)
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise ConfigError(
                f"cannot write {path} ({exc.strerror})", hint="check the file system and permissions"
            ) from exc
        raise


def _backup_path(target: Path, data: bytes) -> tuple[Path, bool]:
    """A backup name next to `target`: an existing identical backup is reused, a different one never touched."""
    index = 0
    while True:
        candidate = target.with_name(target.name + (".bak" if index == 0 else f".bak.{index}"))
        if not candidate.exists() and not candidate.is_symlink():
            return candidate, True
        if candidate.is_file() and not candidate.is_symlink():
            with contextlib.suppress(OSError):
                if candidate.read_bytes() == data:
                    return candidate, False
        index += 1


def _lock_name(target: Path) -> str:
    return "config-" + hashlib.sha256(str(target.resolve()).encode()).hexdigest()[:16]


def write_parameter(config_path: Path, key: str, value: str, *, backup: bool = True) -> WriteResult:
    """Set one parameter in a config.pbtxt on disk, surgically and atomically, keeping a backup.

    A symlinked config.pbtxt is edited where it points. Concurrent stubforge runs on the same file are
    serialised. When the file already holds the value nothing is written and no backup is made.
    """
    path = _config_file(config_path)
    target = path.resolve() if path.is_symlink() else path
    with cache.locked(_lock_name(target)):
        info = read_config(path)
        old_value = info.parameters.get(key)
        new_text = set_parameter(info.text, key, value, source=str(path))
        if new_text == info.text:
            return WriteResult(path, key, value, old_value, changed=False)
        original = info.text.encode("utf-8")
        status = target.stat()
        mode, owner = stat.S_IMODE(status.st_mode), (status.st_uid, status.st_gid)

        def verify(tmp: Path) -> None:
            written = _parse(_decode(tmp.read_bytes(), tmp), str(path))
            if key not in written.parameters or written.parameters[key].string_value != value:
                raise ConfigError(
                    f"after the edit {path} does not set {key} to {value!r}",
                    hint="this is a stubforge bug and the file was not changed; please report it",
                )

        backup_path: Path | None = None
        created = False
        if backup:
            backup_path, created = _backup_path(target, original)
            if created:
                write_atomic(backup_path, original, mode=mode, owner=owner)
        try:
            write_atomic(target, new_text.encode("utf-8"), mode=mode, owner=owner, check=verify)
        except BaseException:
            if created and backup_path is not None:
                with contextlib.suppress(OSError):
                    backup_path.unlink()
            raise
        return WriteResult(path, key, value, old_value, changed=True, backup=backup_path)


# ------------------------------------------------------------------------------------------ EXECUTION_ENV_PATH

_OUTSIDE_HINT = (
    "Triton's cloud and remote repositories (S3, GCS, Azure) download only the model directory, and a host "
    "path exists only on this host (not in a container or on another server)"
)


def _inside(path: str, directory: str) -> bool:
    return path != directory and os.path.commonpath([path, directory]) == directory


def unsupported_archive(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith(ARCHIVE_SUFFIXES):
        return None
    for suffix, kind in UNSUPPORTED_SUFFIXES.items():
        if lower.endswith(suffix):
            return kind
    return None


def _archive_problem(path: Path, shown: str) -> tuple[str, str] | None:
    """Why Triton could not open this environment archive (message, hint), from its name and content."""
    hint = (
        "pack the environment as .tar.gz or .tar (e.g. `tar -czf env.tar.gz -C env .` or `stubforge pack-env`), "
        "or point EXECUTION_ENV_PATH at an unpacked directory, which Triton uses as is and loads fastest"
    )
    if path.is_dir():
        return None  # directories are used as they are, whatever their name
    kind = unsupported_archive(path.name)
    if kind is not None:
        return (
            f"{shown}: Triton cannot read {kind} archives (it reads only tar or tar+gzip and fails with "
            f"`{_ARCHIVE_FAILURE}`)",
            hint,
        )
    if not path.is_file():
        return None  # not there (yet): only its name can be judged
    if not path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return (
            f"{shown} is a file but not named .tar.gz, .tgz or .tar; Triton needs a directory or a tar(.gz) "
            "archive",
            hint,
        )
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
        for magic, name in _MAGIC:
            if head.startswith(magic):
                return (
                    f"{shown} is named like a tar archive but holds {name} data; Triton fails with "
                    f"`{_ARCHIVE_FAILURE}`",
                    hint,
                )
        if head.startswith(b"\x1f\x8b"):
            with gzip.open(path, "rb") as fh:
                head = fh.read(512)
    except (OSError, EOFError, zlib.error) as exc:
        return (f"{shown} cannot be read as a tar or tar.gz archive ({exc})", hint)
    if head[257:262] != b"ustar":
        return (f"{shown} is not a tar archive (no tar header found)", hint)
    return None


def env_path_value(model_dir: Path, env: Path, *, allow_host_path: bool = False) -> str:
    """The EXECUTION_ENV_PATH value that points Triton at `env` for the model in `model_dir`.

    Inside the model directory: `$$TRITON_MODEL_DIRECTORY/<relative path>`, which works in every kind of
    repository. Outside it: an error, unless `allow_host_path`, which gives the absolute real path.
    """
    model_abs = os.path.abspath(model_dir)
    model_real = os.path.realpath(model_dir)
    env_abs = os.path.abspath(env)
    env_real = os.path.realpath(env)
    if env_real == model_real or env_abs == model_abs:
        raise ConfigError(
            f"the environment {env} is the model directory itself",
            hint="put the environment in a file or directory inside it, e.g. <model>/env.tar.gz",
        )
    problem = _archive_problem(Path(env), str(env))
    if problem is not None:
        raise ConfigError(problem[0], hint=problem[1])
    if _inside(env_real, model_real):
        # Keep the name the user gave when it is inside (a symlink inside the model dir stays a symlink).
        if _inside(env_abs, model_abs):
            relative = os.path.relpath(env_abs, model_abs)
        else:
            relative = os.path.relpath(env_real, model_real)
        return f"{MODEL_DIR_VAR}/{Path(relative).as_posix()}"
    if allow_host_path:
        return env_real
    via = (
        f" (it is a symlink, or lies under one, that leads to {env_real})"
        if _inside(env_abs, model_abs)
        else ""
    )
    raise ConfigError(
        f"the environment {env} is outside the model directory {model_dir}{via}",
        hint=f"{_OUTSIDE_HINT}. Put the environment inside the model directory (e.g. `stubforge pack-env "
        f"--model {model_dir}`), or pass --allow-host-path to write the absolute path {env_real}",
    )


def validate_env_path(model_dir: Path, value: str, *, must_exist: bool = True) -> Path:
    """Resolve an EXECUTION_ENV_PATH value as Triton does and return the real path it names.

    `$$TRITON_MODEL_DIRECTORY` is honoured only as a leading prefix and the result must stay inside the model
    directory (no `..` or symlink escapes); any other value must be absolute. The target must be a directory
    or a .tar.gz/.tgz/.tar archive. With `must_exist`, it must exist here and a directory needs bin/activate.
    """
    shown = repr(value)
    fix = f"e.g. {MODEL_DIR_VAR}/env.tar.gz for an environment inside the model directory"
    if not value.strip():
        raise ConfigError("EXECUTION_ENV_PATH is empty", hint=f"set it to the environment, {fix}")
    if any(ch in value for ch in "\0\n\r"):
        raise ConfigError(
            f"EXECUTION_ENV_PATH {shown} contains a control character", hint=f"write a plain path, {fix}"
        )
    position = value.find(MODEL_DIR_VAR)
    model_real = os.path.realpath(model_dir)
    if position > 0:
        raise ConfigError(
            f"EXECUTION_ENV_PATH {shown} uses {MODEL_DIR_VAR} after the start; Triton replaces it only as a "
            "leading prefix",
            hint=f"start the value with it, {fix}",
        )
    if position == 0:
        rest = value[len(MODEL_DIR_VAR) :]
        if not rest.startswith("/") or not rest.strip("/"):
            raise ConfigError(
                f"EXECUTION_ENV_PATH {shown} does not name a path inside the model directory",
                hint=f"follow {MODEL_DIR_VAR} with / and the environment's relative path, {fix}",
            )
        target = Path(os.path.abspath(model_dir)) / rest.lstrip("/")
        real = os.path.realpath(target)
        if not _inside(real, model_real):
            if real == model_real:
                raise ConfigError(
                    f"EXECUTION_ENV_PATH {shown} names the model directory itself",
                    hint=f"name the environment inside it, {fix}",
                )
            how = (
                "climbs out of it with '..'"
                if ".." in Path(rest).parts
                else "leads outside it through a symlink"
            )
            raise ConfigError(
                f"EXECUTION_ENV_PATH {shown} {how}: it resolves to {real}, outside the model directory "
                f"{model_dir}",
                hint=f"Triton requires {MODEL_DIR_VAR} paths to stay inside the model directory: {_OUTSIDE_HINT}. "
                "Move the environment into the model directory (a real file or directory, not a symlink out)",
            )
    else:
        if not os.path.isabs(value):
            tilde = " (~ is not expanded)" if value.startswith("~") else ""
            raise ConfigError(
                f"EXECUTION_ENV_PATH {shown} is a relative path{tilde}; Triton needs an absolute path or "
                f"{MODEL_DIR_VAR}/...",
                hint=fix,
            )
        target = Path(value)
        real = os.path.realpath(target)
    problem = _archive_problem(target, f"EXECUTION_ENV_PATH {shown}")
    if problem is not None:
        raise ConfigError(problem[0], hint=problem[1])
    if must_exist:
        if not os.path.exists(real):
            raise ConfigError(
                f"EXECUTION_ENV_PATH {shown} does not exist ({real})",
                hint="create or pack the environment there (stubforge pack-env), or fix the path; an absolute path "
                "must exist on the host (or in the container) that runs Triton",
            )
        if os.path.isdir(real) and not os.path.isfile(os.path.join(real, "bin", "activate")):
            raise ConfigError(
                f"EXECUTION_ENV_PATH {shown} is a directory without bin/activate; Triton stops with "
                f"`Path {real}/bin/activate does not exist`",
                hint="point it at a complete environment (a venv/conda prefix with bin/activate), e.g. one made by "
                "stubforge pack-env",
            )
    return Path(real)


def plan_env_path(model_dir: Path, env: Path, *, allow_host_path: bool = False) -> str:
    """The EXECUTION_ENV_PATH value set_env_path will write, checked before anything is packed.

    Fails early (before a long pack) when the env would be outside the model directory, when its name is an
    archive Triton cannot read, or when the model's config.pbtxt is missing, malformed or sets the key twice.
    """
    value = env_path_value(model_dir, env, allow_host_path=allow_host_path)
    info = read_config(model_dir)
    set_parameter(info.text, EXECUTION_ENV_PATH, value, source=str(info.path))
    return value


def set_env_path(
    model_dir: Path, env: Path, *, allow_host_path: bool = False, backup: bool = True
) -> WriteResult:
    """Point the model's EXECUTION_ENV_PATH at an existing environment (archive or directory)."""
    value = env_path_value(model_dir, env, allow_host_path=allow_host_path)
    validate_env_path(model_dir, value)
    return write_parameter(_config_file(model_dir), EXECUTION_ENV_PATH, value, backup=backup)
