"""The short way through one plain request: one instance, not decoupled, no dynamic batching, numeric inputs.

A stream of like requests (same input names, types and shapes, same requested outputs and parameters) produces
the same execute message every time, and a model that answers them alike produces the same reply. The lane keeps
both: the message's bytes and the region views its inputs are copied into (made once, after Triton's checks ran
on the first such request), and each distinct reply's output views. A request then costs the input copies, one
semaphore round trip and the output copies.

Anything else the stub answers (a BLS call, a cancellation question, a response sent through a response
sender, an error, log records, a rescheduled request) is handed over, mid-exchange, to the general path
(Model._run_batch with `first_reply`), which carries on exactly as if it had sent the request itself.
"""

from __future__ import annotations

import marshal
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import posix_ipc

from stubforge.runner import history, protocol
from stubforge.runner.ipc import layout
from stubforge.runner.launcher.stub import POLL_S, StubProcess

SMALL = 1 << 16  # below this, bytes are copied through Python bytes; above, by numpy into a pooled buffer
CACHE_ENTRIES = 16

Tensors = dict[str, np.ndarray]


class Handover:
    """A first reply the lane does not handle itself: the general path carries the exchange on from it."""

    __slots__ = ("reply",)

    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply = reply


class _Prepared:
    """One request signature made ready against one mapping of the region."""

    __slots__ = ("at", "config", "map", "message", "targets")

    def __init__(self, region_map: Any, config: Any, targets: list[Any], message: bytes, at: int) -> None:
        self.map = region_map
        self.config = config
        self.targets = targets  # per input: (offset, end, view of a large one), in the message's order
        self.message = message
        self.at = at


NOT_TAKEN = object()  # Lane.run's answer for a request that is not for the lane (or an instance that is busy)
# The general path on the lane's stub, given the stub's first reply (None: nothing was sent): the answer, or
# the error raised.
General = Callable[[StubProcess, Tensors, "list[str] | None", Any, "dict[str, Any] | None"], Tensors]


class Lane:
    def __init__(
        self, stub: StubProcess, encoder: protocol.RequestEncoder, lock: threading.Lock, general: General
    ) -> None:
        self.stub = stub
        self.encoder = encoder
        self._lock = lock  # the instance's: held for the whole exchange, the general path's part included
        self._general = general
        self._prepared: dict[Any, _Prepared] = {}
        self._replies: dict[bytes, tuple[Any, list[tuple[str, Any, bool]]]] = {}

    def run(
        self,
        inputs: Tensors,
        outputs: list[str] | None,
        parameters: Any,
        config: dict[str, Any],
        timeout: float | None,
        times: list[float],
    ) -> Any:
        """One request's outputs (the request's time appended to `times`), or NOT_TAKEN: then nothing was
        done and the caller takes the general path."""
        key = self.key(inputs, outputs, parameters)
        if key is None or not self._lock.acquire(blocking=False):
            return NOT_TAKEN
        try:
            stub = self.stub
            if stub.exit_reason or stub.process.returncode is not None:
                # A stub known to be gone: the general path reports it in its own words.
                return self._general(stub, inputs, outputs, parameters, None)
            started = time.monotonic()
            self.send(key, config, inputs, outputs, parameters)
            try:
                received = self.receive(timeout, outputs)
            except BaseException:
                if stub.alive() and not stub.exit_reason:
                    # Interrupted before the answer was read: the stub's answer would be taken for the next one.
                    stub.kill()
                    stub.exit_reason = "interrupted in the middle of a request"
                raise
            if type(received) is Handover:  # the general path carries on (and records the time)
                return self._general(stub, inputs, outputs, parameters, received.reply)
            times.append(time.monotonic() - started)
            history.keep_recent(times)
            return received
        finally:
            self._lock.release()

    def key(self, inputs: Tensors, outputs: list[str] | None, parameters: Any) -> Any:
        """The request's signature, or None when it is not one for the lane (non-array or BYTES inputs)."""
        signature = []
        numeric = protocol.NUMPY_TO_TRITON
        for name, array in inputs.items():
            if type(array) is not np.ndarray:
                return None
            dtype = array.dtype
            if dtype not in numeric:
                return None
            signature.append((name, dtype, array.shape))
        return (
            tuple(signature),
            tuple(outputs) if outputs else None,
            protocol.parameters_json(parameters) if parameters else None,
        )

    def _prepare(
        self, key: Any, config: dict[str, Any], inputs: Tensors, outputs: list[str] | None, parameters: Any
    ) -> _Prepared:
        """Triton's checks (raising their errors) and the message's bytes and input views."""
        message, arrays = self.encoder.encode(config, inputs, outputs, parameters)
        offsets = protocol.place_inputs([message], arrays)
        end = offsets[-1] + arrays[-1].nbytes if arrays else layout.CONTROL_SIZE
        region = self.stub.region
        at = layout.align(end)
        data = marshal.dumps({"op": "execute", "requests": [message]}, layout.MARSHAL_VERSION)
        region.ensure(at + len(data))
        region_map = region.map
        targets = []
        for array, offset in zip(arrays, offsets):
            view = None  # small: copied through bytes
            if array.nbytes >= SMALL:
                view = np.frombuffer(region_map, dtype=array.dtype, count=array.size, offset=offset)
                view = view.reshape(array.shape)
            targets.append((offset, offset + array.nbytes, view))
        if len(self._prepared) >= CACHE_ENTRIES:
            self._prepared.clear()
        prepared = self._prepared[key] = _Prepared(region_map, config, targets, data, at)
        return prepared

    def send(
        self, key: Any, config: dict[str, Any], inputs: Tensors, outputs: list[str] | None, parameters: Any
    ) -> None:
        """Write the request into the region and wake the stub (the caller holds the instance)."""
        prepared = self._prepared.get(key)
        region = self.stub.region
        if prepared is None or prepared.map is not region.map or prepared.config is not config:
            prepared = self._prepare(key, config, inputs, outputs, parameters)
        region_map = prepared.map
        for (offset, end, view), array in zip(prepared.targets, inputs.values()):
            if view is None:
                region_map[offset:end] = array.tobytes()
            else:
                np.copyto(view, array)
        region.write_bytes(prepared.message, prepared.at)
        region.to_stub.release()

    def receive(self, timeout: float | None, outputs: list[str] | None) -> Tensors | Handover:
        """The stub's answer: the outputs of a plain reply, else the reply for the general path."""
        region = self.stub.region
        try:
            region.to_parent.acquire(POLL_S)
        except posix_ipc.BusyError:  # not at once: wait watching the stub's health
            self.stub.await_answer(timeout, "answering execute")
        raw = region.message_bytes()
        region_map = region.map
        known = self._replies.get(raw)
        if known is None or known[0] is not region_map:
            reply = marshal.loads(raw)
            views = self._plain(reply, region_map, outputs)
            if views is None:
                return Handover(reply)
            if len(self._replies) >= CACHE_ENTRIES:
                self._replies.clear()
            known = self._replies[raw] = (region_map, views)
        result = {}
        for name, view, small in known[1]:
            if small:
                result[name] = view.copy()
            else:
                target = region.pool.array(view.nbytes, view.dtype, view.shape)
                np.copyto(target, view)
                result[name] = target
        return result

    @staticmethod
    def _plain(
        reply: dict[str, Any], region_map: Any, outputs: list[str] | None
    ) -> list[tuple[str, Any, bool]] | None:
        """The output views of a reply that is one successful response with numeric outputs and nothing else
        (no log records, no error, not rescheduled), else None."""
        if not reply.get("ok") or "op" in reply or reply.get("logs") or len(reply.get("responses", ())) != 1:
            return None
        answer = reply["responses"][0]
        if "outputs" not in answer or answer.get("error") is not None:
            return None
        views = []
        for spec in answer["outputs"]:
            if outputs and spec["name"] not in outputs:
                continue
            dtype = protocol.TRITON_TO_NUMPY.get(spec["datatype"])
            if dtype is None:  # BYTES: decoded each time by the general path
                return None
            count = 1
            for dim in spec["shape"]:
                count *= dim
            if count == 0:
                return None
            view = np.frombuffer(region_map, dtype=dtype, count=count, offset=spec["offset"])
            views.append((spec["name"], view.reshape(spec["shape"]), view.nbytes < SMALL))
        return views
