"""Triton's own Python models, run in the runner and in tritonserver with the same inputs, compared.

A model is a directory with config.pbtxt and model.py (qa/python_models keeps them side by side; a `1/model.py`
layout works too). Only numpy-only models run (imports from the standard library, numpy, json and
triton_python_backend_utils); the others are `unsupported` with the reason. Inputs come from the config,
deterministically: every -1 dimension is 2, a batched model gets a batch of 1, values count up from 1.
"""

from __future__ import annotations

import ast
import queue
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stubforge.runner.runtime._stubforge_config import TRITON_STRING_TO_NUMPY
from stubforge.triton.config import config_json, read_config

ALLOWED = {"numpy", "triton_python_backend_utils"}
WIRE = {
    "TYPE_BOOL": "BOOL",
    "TYPE_STRING": "BYTES",
}


@dataclass
class Case:
    name: str
    source: Path
    config: dict[str, Any]
    reason: str = ""  # why it cannot run (unsupported)


@dataclass
class Row:
    name: str
    verdict: str  # same / different / unsupported
    detail: str = ""


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def collect(root: Path) -> list[Case]:
    cases = []
    stdlib = set(getattr(sys, "stdlib_module_names", ()))
    for config in sorted(root.rglob("config.pbtxt")):
        folder = config.parent
        model = folder / "model.py" if (folder / "model.py").is_file() else folder / "1" / "model.py"
        if not model.is_file():
            continue
        try:
            parsed = config_json(read_config(config).message)
        except Exception as exc:
            cases.append(Case(folder.name, folder, {}, f"config: {exc}"))
            continue
        name = parsed.get("name") or folder.name
        case = Case(name, folder, parsed)
        local = {p.stem for p in model.parent.glob("*.py")}
        foreign = sorted(
            m for m in _imports(model) if m not in ALLOWED and m not in stdlib and m not in local
        )
        if any(c.name == name and not c.reason for c in cases):
            case.reason = f"a second model named {name} (from {folder})"
        elif foreign:
            case.reason = "imports " + ", ".join(foreign)
        elif parsed.get("backend", "python") != "python" or parsed.get("platform"):
            case.reason = "not a python backend model"
        elif any(g.get("kind") == "KIND_GPU" for g in parsed.get("instance_group", [])):
            case.reason = "GPU instances"
        elif "pb_utils.InferenceRequest(" in model.read_text() or "exec(" in model.read_text():
            case.reason = "BLS (needs the models it calls)"
        elif parsed.get("sequence_batching") is not None:
            case.reason = "sequence batching (needs correlation ids)"
        elif not parsed.get("input"):
            case.reason = "no inputs in config.pbtxt (auto-completed)"
        cases.append(case)
    return cases


def layout(cases: list[Case], repo: Path) -> None:
    """Each runnable case as <repo>/<name>/{config.pbtxt,1/model.py} (plus files beside model.py)."""
    for case in cases:
        if case.reason:
            continue
        target = repo / case.name
        version = target / "1"
        version.mkdir(parents=True)
        shutil.copy2(case.source / "config.pbtxt", target / "config.pbtxt")
        source = case.source / "1" if (case.source / "1" / "model.py").is_file() else case.source
        for item in source.iterdir():
            if item.is_file() and item.name != "config.pbtxt":
                shutil.copy2(item, version / item.name)


def inputs(config: dict[str, Any]) -> dict[str, np.ndarray]:
    batched = int(config.get("max_batch_size", 0) or 0) > 0
    made: dict[str, np.ndarray] = {}
    for spec in config.get("input", []):
        if spec.get("optional"):
            continue
        dims = [2 if int(d) == -1 else int(d) for d in spec.get("dims", [])]
        shape = ([1] if batched else []) + dims
        count = int(np.prod(shape)) if shape else 1
        kind = spec.get("data_type", "TYPE_FP32")
        if kind == "TYPE_STRING":
            values = np.array([str(i + 1).encode() for i in range(count)], dtype=np.object_)
        elif kind == "TYPE_BOOL":
            values = np.array([i % 2 == 0 for i in range(count)])
        else:
            values = (np.arange(count) + 1).astype(TRITON_STRING_TO_NUMPY[kind])
        made[spec["name"]] = values.reshape(shape)
    return made


def wire_type(config_type: str) -> str:
    return WIRE.get(config_type, config_type[5:])


def decoupled(config: dict[str, Any]) -> bool:
    return bool((config.get("model_transaction_policy") or {}).get("decoupled"))


def from_triton(client: Any, grpcclient: Any, case: Case, feed: dict[str, np.ndarray]) -> Any:
    """The answer of the real server: outputs, a stream of outputs, or ("error", code, text)."""
    specs = {s["name"]: s for s in case.config.get("input", [])}
    built = []
    for name, array in feed.items():
        tensor = grpcclient.InferInput(name, list(array.shape), wire_type(specs[name].get("data_type", "")))
        tensor.set_data_from_numpy(array)
        built.append(tensor)
    if decoupled(case.config):
        answers: queue.Queue = queue.Queue()
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        try:
            client.async_stream_infer(case.name, built, enable_empty_final_response=True)
            stream: list[Any] = []
            while True:
                result, error = answers.get(timeout=60)
                if error is not None:
                    stream.append(("error", str(error.message())))
                    break
                response = result.get_response()
                if response.outputs:
                    stream.append({o.name: result.as_numpy(o.name) for o in response.outputs})
                if response.parameters["triton_final_response"].bool_param:
                    break
            return stream
        finally:
            client.stop_stream()
    try:
        result = client.infer(case.name, built, client_timeout=60)
    except Exception as exc:  # the server's error is the answer being compared
        status = exc.status() if hasattr(exc, "status") else ""
        message = exc.message() if hasattr(exc, "message") else str(exc)
        return ("error", str(status), str(message))
    return {o.name: result.as_numpy(o.name) for o in result.get_response().outputs}


GRPC = {
    "INTERNAL": "StatusCode.INTERNAL",
    "INVALID_ARG": "StatusCode.INVALID_ARGUMENT",
    "NOT_FOUND": "StatusCode.NOT_FOUND",
    "UNAVAILABLE": "StatusCode.UNAVAILABLE",
    "UNSUPPORTED": "StatusCode.UNIMPLEMENTED",
    "UNKNOWN": "StatusCode.UNKNOWN",
    "ALREADY_EXISTS": "StatusCode.ALREADY_EXISTS",
    "CANCELLED": "StatusCode.CANCELLED",
}


def from_runner(model: Any, feed: dict[str, np.ndarray]) -> Any:
    if model.decoupled and not hasattr(model, "stream"):  # a runner before Model.stream (to score older code)
        try:
            return list(model.infer_stream(feed))
        except Exception as exc:
            return [("error", str(exc))]
    if model.decoupled:
        stream: list[Any] = []
        for item in model.stream(feed):
            if item.error is not None:
                stream.append(("error", item.error.message))
                break
            if item.outputs:
                stream.append(item.outputs)
        return stream
    try:
        return model.infer(feed)
    except Exception as exc:
        status = getattr(exc, "status", None)
        if status is None:
            return ("error", "", str(exc))
        return ("error", GRPC.get(status.code, status.code), status.message)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) or isinstance(b, tuple):
        return a == b
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and (np.array_equal(a, b) if a.dtype == object else np.array_equal(a, b, equal_nan=True))
    )


def table(rows: list[Row]) -> str:
    width = max([len(r.name) for r in rows] + [5])
    lines = [f"{'model':<{width}}  verdict      detail"]
    for row in rows:
        detail = row.detail.replace("\n", "\\n")
        lines.append(
            f"{row.name:<{width}}  {row.verdict:<11}  {detail if row.verdict == 'different' else detail[:120]}"
        )
    counts = {v: sum(r.verdict == v for r in rows) for v in ("same", "different", "unsupported")}
    runnable = counts["same"] + counts["different"]
    lines.append(
        f"score: {counts['same']}/{runnable} runnable models answer the same "
        f"(same {counts['same']}, different {counts['different']}, unsupported {counts['unsupported']})"
    )
    return "\n".join(lines)
