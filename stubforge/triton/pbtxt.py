"""The protobuf text format of config.pbtxt: a tokenizer with offsets, and the surgical edit of one parameter.

Editing never re-serialises the message: the tokenizer finds the byte span of one string literal and only that
span changes (or one block is appended), so comments, order, spacing and CRLF line endings survive byte for byte.
Every edit is checked by parsing the result again with Triton's schema and comparing it with the original message
plus the one change; on disk the edit is atomic, serialised between processes and keeps a numbered backup.
"""

from __future__ import annotations

import contextlib
import hashlib
import stat
from dataclasses import dataclass
from pathlib import Path

from stubforge.core import cache, fsutil
from stubforge.triton import config


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


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
        if ch == config.BOM and i == 0:  # refused like config.parse_text does, for the same reason
            raise _LayoutProblem(i, "a UTF-8 byte order mark (BOM) starts the file; Triton cannot read it")
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
    proto = config.schema()
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


def parameter_block(key: str, value: str) -> str:
    """The text block that sets `key` to `value` in a config.pbtxt, ready to paste at the top level."""
    _check_text(key, "parameter name")
    _check_text(value, f"value of {key}")
    return _block(key, value)


def _check_text(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise config.ConfigError(
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


def set_parameter(text: str, key: str, value: str, *, source: str = config.CONFIG_NAME) -> str:
    """`text` with parameter `key` set to `value`: only that string literal changes, or a block is appended.

    The text must parse as a ModelConfig; a key set more than once is an error. The result is parsed again
    and must equal the original message with that one parameter changed.
    """
    _check_text(key, "parameter name")
    _check_text(value, f"value of {key}")
    before = config.parse_text(text, source)
    try:
        tokens = _tokenize(text)
        top = _Reader(tokens).fields(None)
    except _LayoutProblem as exc:
        raise config.ConfigError(
            f"stubforge cannot edit {source}: {exc.reason} at line {_line_of(text, exc.offset)}",
            hint=f"the file parses, but its layout is new to stubforge's editor; add this block by hand:\n"
            f"{_block(key, value)}",
        ) from exc
    matches = [entry for entry in _entries(tokens, top) if entry.key == key]
    if len(matches) > 1:
        lines = [_line_of(text, tokens[entry.key_value.first].start) for entry in matches]
        winner = matches[-1]
        last_value = _unquote(tokens, winner.string_value) if winner.string_value else ""
        raise config.ConfigError(
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
    after_edit = config.parse_text(new, source)
    expected = config.schema().model_config()
    expected.CopyFrom(before)
    expected.parameters[key].string_value = value
    if after_edit != expected:
        raise config.ConfigError(
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


def _lock_name(target: Path) -> str:
    # One lock per real file, whichever path or symlink reaches it.
    return "config-" + hashlib.sha256(str(target.resolve()).encode()).hexdigest()[:16]


def write_parameter(config_path: Path, key: str, value: str, *, backup: bool = True) -> WriteResult:
    """Set one parameter in a config.pbtxt on disk, surgically and atomically, keeping a backup.

    A symlinked config.pbtxt is edited where it points. Concurrent stubforge runs on the same file are
    serialised. When the file already holds the value nothing is written and no backup is made.
    """
    path = config.config_file(config_path)
    target = path.resolve() if path.is_symlink() else path
    with cache.locked(_lock_name(target)):
        info = config.read_config(path)
        old_value = info.parameters.get(key)
        new_text = set_parameter(info.text, key, value, source=str(path))
        if new_text == info.text:
            return WriteResult(path, key, value, old_value, changed=False)
        original = info.text.encode("utf-8")
        status = target.stat()
        mode, owner = stat.S_IMODE(status.st_mode), (status.st_uid, status.st_gid)

        def verify(tmp: Path) -> None:
            written = config.parse_text(config.decode(tmp.read_bytes(), tmp), str(path))
            if key not in written.parameters or written.parameters[key].string_value != value:
                raise config.ConfigError(
                    f"after the edit {path} does not set {key} to {value!r}",
                    hint="this is a stubforge bug and the file was not changed; please report it",
                )

        backup_path: Path | None = None
        created = False
        if backup:
            backup_path, created = fsutil.backup_path(target, original)
            if created:
                fsutil.write_atomic(backup_path, original, mode=mode, owner=owner, error=config.ConfigError)
        try:
            fsutil.write_atomic(
                target,
                new_text.encode("utf-8"),
                mode=mode,
                owner=owner,
                check=verify,
                error=config.ConfigError,
            )
        except BaseException:
            if created and backup_path is not None:
                with contextlib.suppress(OSError):
                    backup_path.unlink()
            raise
        return WriteResult(path, key, value, old_value, changed=True, backup=backup_path)
