"""Reading config.pbtxt with Triton's real ModelConfig schema, and the JSON view Triton gives a model.

Reading uses the generated `model_config_pb2` that ships in the `tritonclient` wheel together with
`google.protobuf.text_format`, so what parses here is what Triton's schema accepts. Errors name the file, the
line and the column, quote the line and say how to fix it.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from stubforge.errors import StubforgeError

CONFIG_NAME = "config.pbtxt"


class ConfigError(StubforgeError):
    """A config.pbtxt that cannot be read or edited, or an EXECUTION_ENV_PATH that Triton would reject."""

    exit_code = 2


# ------------------------------------------------------------------------------------------ schema


class Schema(NamedTuple):
    """The generated ModelConfig class and the protobuf modules that read and quote its text format."""

    model_config: Any  # the generated inference.ModelConfig class
    text_format: Any
    text_encoding: Any


@functools.cache
def schema() -> Schema:
    """Triton's ModelConfig class from tritonclient.

    The generated `tritonclient/grpc/model_config_pb2.py` is loaded by path: it needs only `protobuf`, while
    importing it through its package runs `tritonclient.grpc/__init__`, which pulls in grpc, numpy and
    ml_dtypes (0.4 s instead of 1.4-1.7 s on a busy 2-core machine, paid by every command that reads a
    config: pack-env --model, install, check, verify, run). Importing the package later (verify's client)
    registers the identical descriptors again, which protobuf accepts. When loading by path fails, the
    package import is tried (a tritonclient laid out differently).
    """
    hint = "install Triton's client package with the schema: pip install 'tritonclient[grpc]'"
    try:
        from google.protobuf import text_encoding, text_format
    except ImportError as exc:
        raise ConfigError("reading config.pbtxt needs the protobuf package", hint=hint) from exc
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("reading config.pbtxt needs Triton's ModelConfig schema (tritonclient)", hint=hint)
    source = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    module_spec = importlib.util.spec_from_file_location("_stubforge_model_config_pb2", source)
    by_path: Exception | None = None
    if source.is_file() and module_spec is not None and module_spec.loader is not None:
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
            return Schema(module.ModelConfig, text_format, text_encoding)
        except Exception as exc:  # protobuf too old for this gencode, or missing
            by_path = exc
    try:
        from tritonclient.grpc import model_config_pb2

        return Schema(model_config_pb2.ModelConfig, text_format, text_encoding)
    except Exception as exc:  # no grpcio, or protobuf's gencode/runtime VersionError
        if by_path is None and not source.is_file():
            raise ConfigError(f"tritonclient has no {source.name} (looked for {source})", hint=hint) from exc
        raise ConfigError(
            f"cannot load Triton's ModelConfig schema from {source}: {by_path or exc}", hint=hint
        ) from exc


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


# A UTF-8 byte order mark, as text decoded with "utf-8" (not "utf-8-sig") keeps it.
BOM = "\ufeff"


def refuse_bom(text: str, source: str) -> None:
    """Refuse a config that starts with a UTF-8 byte order mark, as Triton does.

    Triton reads config.pbtxt with protobuf's C++ TextFormat parser, which takes tokens with
    io::Tokenizer::Next(); only NextWithComments() (the .proto compiler's entry) skips a leading BOM, so the
    parser sees byte 0xEF where a field name must be and the model fails to load. Python protobuf (what
    tritonclient's schema is read with here) refuses it too, with "Expected identifier or number, got \ufeff",
    which names neither the BOM nor the fix. Reading and editing both come through parse_text, so both refuse.
    """
    if text.startswith(BOM):
        raise ConfigError(
            f"{source} starts with a UTF-8 byte order mark (BOM), which Triton cannot read: "
            "the model would fail to load",
            hint="save it without a BOM (as 'UTF-8', not 'UTF-8 with BOM'), e.g. "
            f"sed -i '1s/^\\xEF\\xBB\\xBF//' {shlex.quote(source)}",
        )


def parse_text(text: str, source: str) -> Any:
    """The ModelConfig message of `text`; a ConfigError names `source`, the line and the column."""
    refuse_bom(text, source)
    proto = schema()
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


def config_file(path: Path) -> Path:
    """The config.pbtxt of a model directory, or `path` itself when it names the file."""
    path = Path(path)
    return path / CONFIG_NAME if path.is_dir() else path


def decode(data: bytes, source: Path) -> str:
    """config.pbtxt bytes as text; a ConfigError names the first byte that is not UTF-8 and its line."""
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
    path = config_file(path)
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
    text = decode(data, path)
    message = parse_text(text, str(path))
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


def autofilled(model_dir: Path) -> ModelConfigInfo:
    """The config Triton (auto-complete on, its default) gives a model directory without config.pbtxt: the
    directory's name, and backend "python" with model.py as its file when the first subdirectory (in name order)
    holds a model.py (docs/triton-behaviour.md, "Configs the server completes"). Raises the missing-file
    ConfigError when the directory shows no Python model."""
    model_dir = Path(model_dir)
    path = model_dir / CONFIG_NAME
    if not is_model_dir(model_dir):
        return read_config(path)  # the missing-file error, worded once
    message = parse_text("", str(path))
    message.name = model_dir.name
    message.backend = "python"
    message.default_model_filename = "model.py"
    return ModelConfigInfo(
        path=path,
        name=message.name,
        backend=message.backend,
        platform="",
        parameters={},
        default_model_filename=message.default_model_filename,
        text="",
        message=message,
    )


def is_model_dir(path: Path) -> bool:
    """A directory Triton loads as a model: with config.pbtxt, or one autofilled() can complete."""
    path = Path(path)
    if (path / CONFIG_NAME).is_file():
        return True
    subdirs = sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
    return bool(subdirs) and (path / subdirs[0] / "model.py").is_file()


def read_or_autofill(model_dir: Path) -> ModelConfigInfo:
    """config.pbtxt of a model directory, or what Triton fills in without one (see autofilled)."""
    model_dir = Path(model_dir)
    if model_dir.is_dir() and not (model_dir / CONFIG_NAME).exists():
        return autofilled(model_dir)
    return read_config(model_dir)


# ------------------------------------------------------------------------------------------ JSON view


def config_json(message: Any) -> dict[str, Any]:
    """The config as Triton hands it to initialize(): every field, proto names, int64 as numbers."""
    from google.protobuf import json_format  # protobuf comes with the schema (see schema())

    try:
        data = json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    except TypeError:  # protobuf < 5 names the option differently
        data = json_format.MessageToDict(  # type: ignore[call-arg]
            message, preserving_proto_field_name=True, including_default_value_fields=True
        )
    _int64_as_numbers(message.DESCRIPTOR, data)
    return data


_INT64 = {3, 4, 6, 16, 18}  # FieldDescriptor.TYPE_INT64, UINT64, FIXED64, SFIXED64, SINT64


def _int64_as_numbers(descriptor: Any, data: dict[str, Any]) -> None:
    # protobuf's JSON writes 64-bit integers as strings; Triton's config JSON has numbers ("dims": [-1]).
    # Only those fields change: a parameter's string_value "42" stays a string.
    for key, value in data.items():
        proto_field = descriptor.fields_by_name.get(key)
        if proto_field is None:
            continue
        if proto_field.message_type is not None:
            if proto_field.message_type.GetOptions().map_entry:
                value_field = proto_field.message_type.fields_by_name["value"]
                if value_field.message_type is not None:
                    for item in value.values():
                        _int64_as_numbers(value_field.message_type, item)
                elif value_field.type in _INT64:
                    for k in value:
                        value[k] = int(value[k])
            elif isinstance(value, list):
                for item in value:
                    _int64_as_numbers(proto_field.message_type, item)
            elif isinstance(value, dict):
                _int64_as_numbers(proto_field.message_type, value)
        elif proto_field.type in _INT64:
            data[key] = [int(v) for v in value] if isinstance(value, list) else int(value)
