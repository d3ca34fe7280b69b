"""Check a request against the model config before it reaches the model, with Triton's words
(core/src/infer_request.cc, r24.10): a request the runner accepts is one tritonserver accepts, and vice versa.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stubforge.errors import StubforgeError
from stubforge.runner.status import TritonStatus


class InferenceError(StubforgeError):
    """The request does not fit the model's config (Triton answers these with INVALID_ARG)."""

    @property
    def status(self) -> TritonStatus:
        return TritonStatus("INVALID_ARG", self.message)


def _dims(values: Any) -> str:
    return "[" + ",".join(str(int(v)) for v in values) + "]"


def _protocol(config_type: str) -> str:
    name = config_type[5:] if config_type.startswith("TYPE_") else config_type
    return "BYTES" if name == "STRING" else name


_SPECS_CACHE: dict[int, tuple[Any, dict[str, Any]]] = {}


def _specs(config: dict[str, Any]) -> dict[str, Any]:
    """The config's inputs by name, kept per config object (the same config checks every request)."""
    cached = _SPECS_CACHE.get(id(config))
    if cached is None or cached[0] is not config:
        specs = {spec["name"]: spec for spec in config.get("input", [])}
        cached = (config, specs)
        _SPECS_CACHE[id(config)] = cached
    return cached[1]


def check_outputs(config: dict[str, Any], outputs: list[str]) -> None:
    """Every requested output must be one of the config's (Triton: INVALID_ARG, without a request-id prefix)."""
    if not outputs:
        return
    known = [spec.get("name") for spec in config.get("output", [])]
    for name in outputs:
        if name not in known:
            raise InferenceError(
                f"unexpected inference output '{name}' for model '{config.get('name', '')}'",
                hint="the model's outputs: " + (", ".join(str(n) for n in known) or "none in its config"),
            )


def _count_message(model: str, specs: dict[str, Any], required: list[str], inputs: dict[str, Any]) -> str:
    """Triton's words for a request with too few or too many inputs (ValidateRequestInputs), quirks included:
    the request's inputs as its hash map lists them (the last added first, for a handful of names) and, when
    nothing is missing, a bare `]`."""
    missing = "[" + "".join(f"'{n}'," for n in specs if n in required and n not in inputs)
    missing = missing[:-1] + "]"
    got = "[" + ",".join(f"'{n}'" for n in reversed(list(inputs))) + "]"
    if len(required) == len(specs):
        count = f"expected {len(specs)} inputs but got {len(inputs)} inputs"
    else:
        count = (
            f"expected number of inputs between {len(required)} and {len(specs)} but got {len(inputs)} inputs"
        )
    return (
        f"{count} for model '{model}'. Got input(s) {got}, but missing required input(s) {missing}. "
        "Please provide all required input(s)."
    )


def check(
    config: dict[str, Any], inputs: dict[str, tuple[str, list[int]]], request_id: str = ""
) -> dict[str, list[int]]:
    """inputs: name -> (Triton datatype, shape). Returns the shape each input reaches the model with (reshape)."""
    prefix = "[request id: " + (request_id or "<id_unknown>") + "] "
    model = config.get("name", "")
    specs = _specs(config)
    required = [n for n, s in specs.items() if not s.get("optional")]
    if len(inputs) > len(specs) or len(inputs) < len(required):
        raise InferenceError(
            f"{prefix}{_count_message(model, specs, required, inputs)}", hint="pass every required input"
        )
    for name in inputs:
        if name not in specs:
            raise InferenceError(
                # the one request check Triton words without the request-id prefix
                f"unexpected inference input '{name}' for model '{model}'",
                hint="the model's inputs: " + ", ".join(specs),
            )
    if any(n not in inputs for n in required):
        raise InferenceError(
            f"{prefix}{_count_message(model, specs, required, inputs)}", hint="pass every required input"
        )
    max_batch = int(config.get("max_batch_size", 0) or 0)
    batch = 0
    if max_batch > 0:
        for name, (_, shape) in inputs.items():
            if not shape:
                raise InferenceError(
                    f"{prefix}input '{name}' has no shape but model requires batch dimension for '{model}'",
                    hint="prepend a batch dimension",
                )
            if batch == 0:
                batch = shape[0]
            elif shape[0] != batch:
                raise InferenceError(
                    f"{prefix}input '{name}' batch size does not match other inputs for '{model}'",
                    hint="every input needs the same first (batch) dimension",
                )
        if batch > max_batch:
            raise InferenceError(
                f"{prefix}inference request batch-size must be <= {max_batch} for '{model}'",
                hint="send smaller batches",
            )
    reached = {}
    for name, (datatype, shape) in inputs.items():
        spec = specs[name]
        expected = _protocol(spec.get("data_type", "TYPE_FP32"))
        if datatype != expected:
            raise InferenceError(
                f"{prefix}inference input '{name}' data-type is '{datatype}', but model '{model}' expects "
                f"'{expected}'",
                hint=f"send {expected}",
            )
        dims = [int(d) for d in spec.get("dims", [])]
        body = shape[1:] if max_batch > 0 else shape
        if len(dims) != len(body) or any(d != -1 and d != s for d, s in zip(dims, body)):
            full = ([-1] if max_batch > 0 else []) + dims
            note = (
                "NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension to be "
                "prepended to each input shape. If you want to specify the full shape including the batch dim in "
                "your input dims config, try setting max_batch_size to zero. See the model configuration docs for "
                "more info on max_batch_size."
                if max_batch > 0
                else ""
            )
            raise InferenceError(
                f"{prefix}unexpected shape for input '{name}' for model '{model}'. Expected {_dims(full)}, got "
                f"{_dims(shape)}. {note}",  # a trailing space when there is no note, as Triton has it
                hint="match the config's dims (-1 is any size)",
            )
        reshape = (spec.get("reshape") or {}).get("shape")
        if reshape is not None:
            target = [int(d) for d in reshape]
            if -1 in target:
                known = int(np.prod([d for d in target if d != -1])) or 1
                total = int(np.prod(body)) if body else 1
                target = [total // known if d == -1 else d for d in target]
            reached[name] = ([batch] if max_batch > 0 else []) + target
        else:
            reached[name] = list(shape)
    return reached
