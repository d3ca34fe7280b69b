"""`stubforge run` inputs and outputs: NAME=FILE.npy or NAME=JSON typed by the model config; .npy outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from stubforge.core import fsutil
from stubforge.errors import StubforgeError
from stubforge.runner.runtime._stubforge_config import TRITON_STRING_TO_NUMPY

# The runtime's own table (TYPE_STRING: BYTES as JSON strings, or a .npy of S/U strings).
CONFIG_DTYPES = TRITON_STRING_TO_NUMPY


class InputError(StubforgeError):
    """An --input that does not fit the model."""


def parse(items: tuple[str, ...], config: dict[str, Any]) -> dict[str, np.ndarray]:
    specs = {spec["name"]: spec for spec in config.get("input", [])}
    tensors: dict[str, np.ndarray] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InputError(
                f"--input {item!r} is not NAME=FILE.npy or NAME=JSON", hint="e.g. --input INPUT0=[1,2]"
            )
        if name not in specs:
            raise InputError(
                f"--input {name}: the model has no input of that name",
                hint="its inputs: " + (", ".join(specs) or "none"),
            )
        type_name = specs[name].get("data_type", "")
        dtype = CONFIG_DTYPES.get(type_name)
        if dtype is None:
            raise InputError(
                f"input {name} is {type_name}: not supported by the runner yet", hint="numeric or bool"
            )
        tensors[name] = _load(name, value, np.dtype(dtype))
    missing = [n for n, s in specs.items() if n not in tensors and not s.get("optional")]
    if missing:
        raise InputError(
            f"missing input(s): {', '.join(missing)}", hint=" ".join(f"--input {n}=..." for n in missing)
        )
    return tensors


def _load(name: str, value: str, dtype: np.dtype) -> np.ndarray:
    if value.endswith(".npy"):
        path = Path(value)
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(
                f"--input {name}: cannot read {path}: {exc}", hint="pass a .npy file (numpy.save)"
            ) from exc
        if dtype == np.object_ and array.dtype.kind in "SU":
            return array.astype(np.object_)
        if array.dtype != dtype:
            raise InputError(
                f"--input {name}: {path} holds {array.dtype}, the model's config says {dtype}",
                hint=f"save it as {dtype} (array.astype(numpy.{dtype}))",
            )
        return array
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"--input {name}: {value!r} is neither a .npy path nor JSON ({exc.msg})",
            hint="e.g. [[1, 2], [3, 4]]",
        ) from exc
    try:
        return np.array(data, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"--input {name}: {value!r} is not a {dtype} tensor ({exc})", hint="a nested list"
        ) from exc


def save(outputs: dict[str, np.ndarray], directory: Path) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, array in outputs.items():
        target = directory / f"{name}.npy"
        with fsutil.atomic_file(target) as fh:
            np.save(fh, array, allow_pickle=False)
        written[name] = str(target)
    return written


def report(model: Any, outputs: dict[str, np.ndarray], written: dict[str, str]) -> dict[str, Any]:
    return {
        "model": model.deployment.name,
        "python": model.info.get("python"),
        "numpy": model.info.get("numpy"),
        "executable": model.info.get("executable"),
        "pid": model.info.get("pid"),
        "python_source": model.deployment.python_source,
        "env": str(model.deployment.env_path) if model.deployment.env_path else None,
        "load_s": round(model.timings.load_s, 4),
        "request_s": [round(t, 6) for t in model.timings.requests],
        "logs": model.logs,
        "stub_output": model.output(),
        "outputs": {
            name: {
                "datatype": str(array.dtype),
                "shape": list(array.shape),
                "preview": np.array2string(array, threshold=20, separator=", "),
                "values": array.tolist() if array.size <= 64 else None,
                "file": written.get(name),
            }
            for name, array in outputs.items()
        },
    }


def flatten_stream(result: dict[str, np.ndarray] | list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One infer()'s outputs by name; a decoupled model answers with a stream, whose outputs become NAME[i]."""
    if isinstance(result, list):
        return {
            f"{name}[{i}]": array for i, response in enumerate(result) for name, array in response.items()
        }
    return result
