# The message loop of stubforge's harness stub. It runs inside the model's env, on any Python from 3.6, with
# only the standard library, numpy and the built-in module _sfipc (stub_src/sfstub.c): no f-string tricks,
# no dataclasses, no `from __future__ import annotations`.
#
# Layout facts repeat stubforge/runner/ipc/layout.py (the test test_ipc_layout checks they agree).
import asyncio
import importlib
import importlib.util
import inspect
import json
import marshal
import os
import queue
import struct
import sys
import threading
import traceback

import _sfipc
import _stubforge_plan

MAGIC = b"SFSTUB01"
OFF_SIZE = 8
OFF_MSG_OFFSET = 24
OFF_MSG_LENGTH = 32
ALIGN = 64
ZERO_COPY_MIN = 1 << 16  # below this a copy costs less than finding out whether one is needed
MARSHAL_VERSION = 2
# size, heartbeat, message offset, message length: read in one call per message
CONTROL = struct.Struct("<QQQQ")
MESSAGE_AT = struct.Struct("<QQ")  # message offset, message length


def _align(value):
    return (value + ALIGN - 1) // ALIGN * ALIGN


class RegionGrowthError(Exception):
    """The region could not be grown: the stub's failure, not the model's."""

    def __init__(self, size, target, cause):
        Exception.__init__(
            self,
            f"the stub could not grow the shared-memory region from {size} to {target} bytes: "
            f"{cause.strerror or cause}",
        )
        self.size = size
        self.target = target


class Channel:
    """The stub's view of the region: read the parent's message, write tensors and the answer."""

    def __init__(self, control, growth):
        self.control = control
        self.growth = growth
        self.region = _sfipc.region()
        self.messages = _stubforge_plan.MessageCache()
        self.entry = None  # [message, plan] of the last message read through the cache

    def ensure(self, needed):
        size = len(self.region)
        if needed > size:
            missing = needed - size
            target = size + self.growth * (missing // self.growth + 1)
            try:
                self.region = _sfipc.grow(target)
            except OSError as exc:
                raise RegionGrowthError(size, target, exc) from None

    def read(self, cached=False):
        """The parent's message, and the first byte after it (where the answer may go). `cached`: the message
        comes from (and goes to) the cache of parsed messages, shared: the caller must not change it."""
        size, _beat, offset, length = CONTROL.unpack_from(self.region, self.control + OFF_SIZE)
        if size > len(self.region):
            self.region = _sfipc.region()
        raw = self.region[offset : offset + length]
        if not cached:
            return marshal.loads(raw), offset + length
        return self.parsed(raw), offset + length

    def parsed(self, raw):
        """A message from its bytes, through the cache of parsed messages (shared: not to be changed)."""
        self.entry = self.messages.load(raw)
        return self.entry[0]

    def write(self, header, at):
        self.write_bytes(marshal.dumps(header, MARSHAL_VERSION), at)

    def write_bytes(self, data, at):
        if _ANSWER is not None and _ANSWER(data, at):
            return
        at = _align(at)
        self.ensure(at + len(data))
        self.region[at : at + len(data)] = data
        MESSAGE_AT.pack_into(self.region, self.control + OFF_MSG_OFFSET, at, len(data))
        _sfipc.post()


class BackendError(Exception):
    """A check the Python backend makes in C++ (what execute returned, ...): Triton reports its bare text."""


# The C side's one-call receive and answer (a runner stub built before they existed has neither: the loop then
# does the same in Python).
_NEXT_MESSAGE = getattr(_sfipc, "next_message", None)
_ANSWER = getattr(_sfipc, "answer", None)

_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__))


def _triton_text(exc):
    """The error text Triton's stub reports for an exception out of the model (docs/triton-behaviour.md: "Error
    results and codes"): `Type: message`, a blank line, `At:` and one line per frame, innermost first, up to the
    model's entry point. Frames of this runtime are C++ in Triton and do not appear."""
    if isinstance(exc, BackendError):
        return str(exc)
    message = str(exc) or "<EMPTY MESSAGE>"
    tb = exc.__traceback__
    if tb is None:
        return type(exc).__name__ + ": " + message
    while tb.tb_next is not None:
        tb = tb.tb_next
    lines = []
    frame = tb.tb_frame
    while frame is not None:
        filename = frame.f_code.co_filename
        if os.path.dirname(os.path.abspath(filename)) == _RUNTIME_DIR:
            if lines:  # the loop that called into the model: Triton's C++ from here up
                break
        else:
            lines.append(f"  {filename}({frame.f_lineno}): {frame.f_code.co_name}\n")
        frame = frame.f_back
    return type(exc).__name__ + ": " + message + "\n\nAt:\n" + "".join(lines)


def _error(exc):
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        "triton": _triton_text(exc),
        # Who failed: the model's code, or the stub's region handling (not the model's fault).
        "origin": "region" if isinstance(exc, RegionGrowthError) else "model",
    }


def _specs(written):
    """Tensor specs as messages carry them, from _write_tensors' tuples."""
    return [
        {"name": name, "datatype": datatype, "shape": list(shape), "offset": offset, "nbytes": nbytes}
        for name, datatype, shape, offset, nbytes in written
    ]


def _error_answer(error):
    """A TritonError a response carries: its message and its code's number."""
    if error is None:
        return None
    code = error.code() if hasattr(error, "code") else 1
    return {"message": error.message(), "code": code if isinstance(code, int) else 1}


RESCHEDULE = 2  # TRITONSERVER_REQUEST_RELEASE_RESCHEDULE


def _rescheduled(request):
    return request._release_flags == RESCHEDULE


class Stub:
    def __init__(self, argv):
        (
            self.model_path,
            self.region_name,
            _default,
            growth,
            _parent,
            self.python_lib,
            control,
            self.instance,
            self.runtime_dir,
        ) = argv[1:10]
        self.channel = Channel(int(control), int(growth))
        self.model = None
        self.pb_utils = None
        self.config = {}
        self.decoupled = False
        self.model_dir = None
        self.version_dir = None
        self._main = threading.get_ident()
        self._ipc = threading.Lock()  # one exchange with the parent at a time
        self._executing = False  # the parent listens for responses and BLS calls only during execute
        self._free = 4096  # first free byte after the current execute message
        self._pending = queue.Queue()  # decoupled responses sent from other threads
        self._loop = None
        self._finals = 0  # final flags forwarded during the current execute
        self._requests = []
        self._replies = {}  # marshalled plain replies by their outputs' specs and free offset

    def _import_model(self):
        # Triton's stub appends <model_dir>/<version>, <model_dir> and the python-lib dir and imports
        # <version>.model; for a Python-based backend it appends the backend dir and the python-lib dir and imports
        # `model` from there (docs/triton-behaviour.md: "The stub process and its probe").
        version_dir = os.path.dirname(self.model_path)
        model_dir = os.path.dirname(version_dir)
        self.model_dir = model_dir
        self.version_dir = version_dir  # what pb_utils.get_model_dir() answers
        backend_model = self.runtime_dir != "DEFAULT"
        for path in (self.runtime_dir,) if backend_model else (version_dir, model_dir):
            sys.path.append(path)
        if self.python_lib in sys.path:
            sys.path.remove(self.python_lib)
        sys.path.append(self.python_lib)
        import triton_python_backend_utils as pb_utils

        self.pb_utils = pb_utils
        pb_utils._hooks = self
        if backend_model:
            module = importlib.import_module("model")
        else:
            stem = os.path.splitext(os.path.basename(self.model_path))[0]
            module = importlib.import_module(os.path.basename(version_dir) + "." + stem)
        if not hasattr(module, "TritonPythonModel"):
            raise AttributeError(f"{module.__file__} defines no class TritonPythonModel")
        return module.TritonPythonModel

    def initialize(self, message, at):
        model_class = self._import_model()
        args = message["args"]
        body = {}
        if message.get("auto_complete", True) and hasattr(model_class, "auto_complete_config"):
            # What Triton's auto-complete stub does before any instance starts: the model completes its config.
            config = self.pb_utils.ModelConfig(json.loads(args["model_config"]))
            completed = model_class.auto_complete_config(config)
            if not isinstance(completed, self.pb_utils.ModelConfig):
                raise self.pb_utils.TritonModelException(
                    "auto_complete_config function in model '"
                    + args["model_name"]
                    + "' must return a valid pb.ModelConfig object."
                )
            normalized = self.pb_utils._normalize_config(completed.as_dict())
            args = dict(args, model_config=json.dumps(normalized))
            body["model_config"] = args["model_config"]
        self.config = json.loads(args["model_config"])
        self.decoupled = self.pb_utils.using_decoupled_model_transaction_policy(self.config)
        self.pb_utils._hooks = self
        self.model = model_class()
        if hasattr(self.model, "initialize"):
            self.model.initialize(args)
        return body

    def _write_tensors(self, tensors, at, plan=None):
        """Tensors into the region from `at`; their specs (name, datatype, shape, offset, nbytes; see _specs), and
        the first free byte after them. A large output that is a view inside the inputs of `plan` (an execute's)
        is not copied: its spec points at it."""
        specs = []
        channel = self.channel
        numeric = _stubforge_plan.NUMERIC
        for tensor in tensors:
            array = tensor._array
            datatype = numeric.get(array.dtype)
            if datatype is None:  # BYTES, or a type Triton lacks (its error comes from the general path)
                datatype, shape, payload = tensor._wire()
                array, shape, nbytes = payload, tuple(shape), payload.nbytes
            else:
                shape, nbytes = array.shape, array.nbytes
            offset = None
            if nbytes >= ZERO_COPY_MIN and plan is not None:
                offset = plan.offset_of(array, nbytes)
            if offset is None:
                offset = (at + ALIGN - 1) // ALIGN * ALIGN
                at = offset + nbytes
                if at > len(channel.region):
                    channel.ensure(at)
                if nbytes >= ZERO_COPY_MIN:
                    self.pb_utils._write_array(channel.region, offset, array)
                elif nbytes:
                    channel.region[offset:at] = array.tobytes()
            specs.append((tensor.name(), datatype, shape, offset, nbytes))
        return specs, at

    def call_parent(self, header, tensors):
        """One exchange during execute: a decoupled response or a BLS request; returns the parent's answer."""
        if not self._executing:
            raise self.pb_utils.TritonModelException(
                "the stubforge runner serves responses and BLS requests only while execute() is running"
            )
        with self._ipc:
            specs, end = self._write_tensors(tensors, self._free)
            header = dict(header, tensors=_specs(specs))
            self.channel.write(header, end)
            while not _sfipc.wait(1.0):
                pass
            answer, _ = self.channel.read()
            if answer.get("tensors"):
                region = self.channel.region
                answer["arrays"] = [
                    (
                        t["name"],
                        self.pb_utils._from_wire(
                            t["datatype"], t["shape"], region[t["offset"] : t["offset"] + t["nbytes"]]
                        ).copy(),
                    )
                    for t in answer["tensors"]
                ]
            return answer

    # Called by triton_python_backend_utils (pb_utils._hooks).
    def send_response(self, index, response, flags):
        if threading.get_ident() == self._main:
            self._forward(index, response, flags)
        else:
            self._pending.put((index, response, flags))

    def _forward(self, index, response, flags):
        if flags & self.pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL:
            self._finals += 1
        error = response.error() if response is not None else None
        tensors = response.output_tensors() if response is not None else []
        header = {
            "op": "response",
            "request": index,
            "flags": flags,
            "empty": response is None,
            "error": _error_answer(error),
        }
        self.call_parent(header, tensors)

    def bls(self, request, decoupled=False):
        """A BLS request to the parent: the callee's responses (one unless `decoupled`)."""
        header = {
            "op": "bls",
            "model": request.model_name(),
            "version": request._model_version,
            "requested_output_names": request.requested_output_names(),
            "request_id": request.request_id(),
            "correlation_id": request.correlation_id(),
            "parameters": request.parameters(),
            "decoupled": decoupled,
        }
        answer = self.call_parent(header, request.inputs())
        pb = self.pb_utils
        arrays = answer.get("arrays", [])
        # One response per entry of "responses" (its number of tensors, its error), tensors in order.
        responses = []
        for count, error in answer.get("responses") or [(len(arrays), answer.get("error"))]:
            outputs = [pb.Tensor(name, array) for name, array in arrays[:count]]
            arrays = arrays[count:]
            responses.append(pb.InferenceResponse(outputs, error=pb.TritonError(error) if error else None))
        return responses

    def _completed(self, result):
        """What an `async def execute` (as Triton allows) returned, or `result` itself."""
        if inspect.isawaitable(result):
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            result = self._loop.run_until_complete(result)
        return result

    def is_cancelled(self, index):
        """Whether the caller cancelled request `index` of the current execute (asked of the parent, as Triton's
        stub asks the server)."""
        if not self._executing:
            return False
        return bool(self.call_parent({"op": "cancelled", "request": index}, []).get("cancelled"))

    def _plan(self, message):
        """The prepared form of an execute message (kept with the parsed message while the region's mapping
        stays the same)."""
        entry = self.channel.entry
        region = self.channel.region
        if entry is not None and entry[0] is message:
            plan = entry[1]
            if plan is None or plan.region is not region:
                plan = entry[1] = _stubforge_plan.Plan(message, region)
            return plan
        return _stubforge_plan.Plan(message, region)

    def execute(self, message, at):
        pb = self.pb_utils
        self._free = at
        self._finals = 0
        self._requests = []
        plan = self._plan(message)
        # Every request has a response sender (made when the model asks for it): a decoupled model streams with
        # it, a non-decoupled one may send its single response with it and return None (Triton's rules are in
        # InferenceResponseSender.send).
        requests = plan.build(pb, self.decoupled)
        self._requests = requests
        self._executing = True
        try:
            responses = self.model.execute(requests)
            if type(responses) is not list:
                responses = self._completed(responses)
            if self.decoupled:
                if responses is not None:
                    raise BackendError(
                        f"Python model '{self.instance}' is using the decoupled mode and the execute function "
                        "must return None."
                    )
                # Responses sent from other threads arrive here until every request's final flag went out
                # (a rescheduled request has none to send).
                while self._finals < sum(1 for r in requests if not _rescheduled(r)):
                    try:
                        self._forward(*self._pending.get(timeout=0.05))
                    except queue.Empty:
                        continue
                return {
                    "ok": True,
                    "responses": [{"rescheduled": _rescheduled(r)} for r in requests],
                    "free_offset": at,
                }
            if responses is None:  # every response went through the senders, or Triton's client waits
                return {
                    "ok": True,
                    "responses": [self._sent_or_hangs(i, None) for i in range(len(requests))],
                    "free_offset": at,
                }
        finally:
            self._executing = False
            # Sends left over from a failed execute belong to no request now (the deque is peeked at without
            # the queue's lock: draining is rare, checking is every request).
            while self._pending.queue:
                try:
                    self._pending.get_nowait()
                except queue.Empty:
                    break
        # Triton's own checks and words (pb_stub.cc, ProcessReturnedResponses), before anything is read.
        if not isinstance(responses, list):
            raise BackendError(f"Expected a list in the execute return, found type '{type(responses)}'.")
        if len(responses) != len(requests):
            raise BackendError(
                "Number of InferenceResponse objects do not match the number of InferenceRequest objects. "
                f"InferenceRequest(s) size is:{len(requests)}, and InferenceResponse(s) size is:{len(responses)}\n"
            )
        for request, response in zip(requests, responses):
            if response is None:
                continue
            if _rescheduled(request):
                raise BackendError(
                    "Expected a None object in the execute function return list for reschduled request, found "
                    f"type '{type(response)}'."
                )
            if not isinstance(response, pb.InferenceResponse):
                raise BackendError(
                    "Expected an 'InferenceResponse' object in the execute function return list, found type "
                    f"'{type(response)}'."
                )
            if request._sender is not None:  # the returned response after any the model sent
                request._sender._count(response, pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        answers = []
        plain = not pb._records  # every request answered with outputs, no error, nothing logged
        for i, (request, response) in enumerate(zip(requests, responses)):
            if response is None:
                answers.append(self._sent_or_hangs(i, request))
                plain = False
                continue
            requested = request._requested
            tensors = response._outputs
            if requested:
                tensors = [t for t in tensors if t.name() in requested]
            outputs, at = self._write_tensors(tensors, at, plan)
            error = response._error
            if error is not None:
                plain = False
            answers.append((outputs, error))
        if plain:
            # Like requests get like replies: each distinct one is marshalled once.
            if len(answers) == 1:
                key = (tuple(answers[0][0]), at)
            else:
                key = (tuple(tuple(outputs) for outputs, _ in answers), at)
            data = self._replies.get(key)
            if data is None:
                if len(self._replies) >= 16:
                    self._replies.clear()
                data = self._replies[key] = marshal.dumps(self._final_reply(answers, at), MARSHAL_VERSION)
            return data, at
        return self._final_reply(answers, at)

    @staticmethod
    def _final_reply(answers, at):
        responses = [
            answer
            if isinstance(answer, dict)
            else {
                "outputs": _specs(answer[0]),
                "error": None if answer[1] is None else _error_answer(answer[1]),
            }
            for answer in answers
        ]
        return {"ok": True, "responses": responses, "free_offset": at, "logs": []}

    def _sent_or_hangs(self, index, request):
        """The answer for a request execute() returned no response for: rescheduled, answered through its sender,
        or left without a response (Triton's client then waits forever; the runner answers at once)."""
        request = request or self._requests[index]
        if _rescheduled(request):
            return {"rescheduled": True}
        if request._sender is not None and request._sender._closed:
            return {"sent": True}
        return {"no_response": True}

    def finalize(self, message, at):
        if self.model is not None and hasattr(self.model, "finalize"):
            self.model.finalize()
        return {}

    def run(self):
        import numpy

        info = {
            "op": "ready",
            "pid": os.getpid(),
            "python": ".".join(str(p) for p in sys.version_info[:3]),
            "executable": sys.executable,
            "prefix": sys.prefix,
            "numpy": numpy.__version__,
        }
        self.channel.write(info, 4096)
        channel = self.channel
        while True:
            if _NEXT_MESSAGE is not None:
                raw, at, remapped = _NEXT_MESSAGE()
                if remapped:
                    channel.region = _sfipc.region()
                message = channel.parsed(raw)
            else:
                if not _sfipc.wait(1.0):
                    continue
                message, at = channel.read(cached=True)
            op = message.get("op")
            try:
                if op == "execute":
                    reply = self.execute(message, at)
                    if type(reply) is tuple:  # (the whole answer marshalled, where it goes): nothing logged
                        channel.write_bytes(*reply)
                        continue
                    at = reply["free_offset"]
                elif op in ("initialize", "finalize"):
                    reply = {"ok": True}
                    reply.update(getattr(self, op)(message, at))
                else:
                    raise ValueError(f"unknown message {op!r}")
            except Exception as exc:  # the model's own error, reported to the caller with its traceback
                reply = {"ok": False, "error": _error(exc)}
                if op == "execute":
                    # Triton sends the error only to requests whose sender is still open (the others are
                    # complete: the error then only reaches the log).
                    reply["closed"] = [r._sender is not None and r._sender._closed for r in self._requests]
            pb = self.pb_utils
            reply["logs"] = pb._drain_logs() if pb is not None and pb._records else []
            self.channel.write(reply, at)
            if op == "finalize":
                return 0


def main(argv):
    try:
        return Stub(argv).run()
    except Exception:
        traceback.print_exc()
        return 1
