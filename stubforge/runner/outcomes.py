"""What the client of each request sees after one execute(), decided as tritonserver decides it.

The stub reports what the model did: the responses it sent through response senders (StreamedResponse), then the
final reply (the returned responses, or the exception execute() raised with which senders were already closed).
From that, each request of a non-decoupled batch gets one answer (its outputs, or a ModelError whose `status` is
Triton's code and text) and each request of a decoupled one gets its stream, ending with the final flag.
docs/triton-behaviour.md: "Error results and codes" and "Responses, final flags and rescheduling".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stubforge.runner import status as st
from stubforge.runner.launcher.stub import ModelError
from stubforge.runner.protocol import StreamedResponse
from stubforge.runner.status import TritonStatus

Tensors = dict[str, np.ndarray]
ReadOutputs = Callable[[list[dict[str, Any]]], Tensors]


class Rescheduled:
    """The model set TRITONSERVER_REQUEST_RELEASE_RESCHEDULE: the request runs again in a later execute()."""


RESCHEDULED = Rescheduled()


@dataclass
class Failure:
    """execute() raised: Triton's text for every request of the batch, and which senders were closed by then."""

    status: TritonStatus
    error: dict[str, Any]
    closed: list[bool]


def execute_failure(instance: str, reply: dict[str, Any]) -> Failure:
    error = reply.get("error", {})
    text = error.get("triton") or f"{error.get('type', 'Error')}: {error.get('message', '')}"
    return Failure(
        TritonStatus("INTERNAL", st.execute_failed(instance, text)), error, list(reply.get("closed", []))
    )


def model_error(
    model: str,
    status: TritonStatus,
    error: dict[str, Any] | None = None,
    hint: str = "",
    *,
    carried: str = "",
) -> ModelError:
    """The runner's error for a request, with Triton's status (what a client of tritonserver receives).
    carried: "the"/"a" for an error a response carries (`<model>: the response carries an error: <message>`)."""
    if carried:
        return ModelError(
            f"{model}: {carried} response carries an error: {status.message}", hint=hint, status=status
        )
    if error is not None:
        return ModelError(
            f"{model}: {error.get('type', 'Error')}: {error.get('message', '')}",
            hint=hint or "the model's own error; its Python traceback is shown above",
            details=error.get("traceback", ""),
            error_type=error.get("type", ""),
            status=status,
        )
    return ModelError(f"{model}: {status.message}", hint=hint, status=status)


def unary(
    model: str,
    count: int,
    streamed: list[StreamedResponse],
    reply: dict[str, Any] | None,
    failure: Failure | None,
    read_outputs: ReadOutputs,
) -> list[Tensors | ModelError | Rescheduled]:
    """Each request's answer as a unary (HTTP or gRPC infer) client of a non-decoupled model receives it: exactly
    one response, or Triton's `expected a single response, got N`."""
    results: list[Tensors | ModelError | Rescheduled] = []
    for index in range(count):
        sent = [r for r in streamed if r.request == index and not r.empty]
        answers: list[Tensors | ModelError] = [
            model_error(model, r.error, hint="the model sent InferenceResponse(error=...)", carried="the")
            if r.error
            else r.tensors
            for r in sent
        ]
        if failure is not None:
            closed = failure.closed[index] if index < len(failure.closed) else False
            if not closed:  # the error goes to the request as its final response; else only to the log
                answers.append(model_error(model, failure.status, failure.error))
        else:
            assert reply is not None
            answer = reply["responses"][index]
            if answer.get("rescheduled"):
                results.append(RESCHEDULED)
                continue
            if answer.get("no_response"):
                results.append(_hangs(model))
                continue
            if "outputs" in answer:
                carried = st_error(answer.get("error"))
                if carried is not None:
                    answers.append(
                        model_error(
                            model,
                            carried,
                            hint="the model returned InferenceResponse(error=...)",
                            carried="the",
                        )
                    )
                else:
                    answers.append(read_outputs(answer["outputs"]))
        if len(answers) == 1:
            results.append(answers[0])
        elif not answers:
            results.append(_hangs(model))
        else:
            results.append(
                model_error(
                    model,
                    TritonStatus("INTERNAL", st.SINGLE_RESPONSE.format(count=len(answers))),
                    hint="a model without `decoupled: true` sends exactly one response per request",
                )
            )
    return results


def st_error(error: Any) -> TritonStatus | None:
    from stubforge.runner.protocol import carried_error

    return carried_error(error)


HANGS = (
    "execute() sent no response for this request: tritonserver would leave its client waiting forever; the runner "
    "answers at once"
)


def _hangs(model: str) -> ModelError:
    return ModelError(
        f"{model}: {HANGS}",
        hint="return one InferenceResponse per request, or send it with the request's response sender "
        "(None is only for rescheduled requests)",
        status=TritonStatus("UNAVAILABLE", f"{model}: no response (tritonserver: the client waits forever)"),
    )


@dataclass
class StreamItem:
    """One response of a decoupled stream as a streaming (gRPC) client receives it: outputs or an error, and
    whether it is the final one (the final flag alone is an empty final response)."""

    outputs: Tensors = field(default_factory=dict)
    final: bool = False
    error: TritonStatus | None = None


def decoupled(
    index: int, streamed: list[StreamedResponse], failure: Failure | None, logs: list[dict[str, str]]
) -> list[StreamItem]:
    """Request `index`'s stream. An exception after its final flag reaches only the log (Triton logs it); one
    before it ends the stream with Triton's error."""
    items = [
        StreamItem(outputs=r.tensors, final=r.final, error=r.error) for r in streamed if r.request == index
    ]
    if failure is not None:
        closed = failure.closed[index] if index < len(failure.closed) else False
        if closed:
            logs.append({"level": "ERROR", "message": failure.status.message})
        else:
            items.append(StreamItem(final=True, error=failure.status))
    return items
