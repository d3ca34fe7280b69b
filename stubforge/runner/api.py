"""Run a model.py the way Triton's Python backend does, without a server: `stubforge run` and tests.

    with stubforge.runner.api.load("models/add_sub", python="3.10") as model:
        outputs = model.infer({"INPUT0": a, "INPUT1": b})

A separate stub process of the model's Python (the runner's own stub, built on demand), the env activated as
the chosen Triton release does, tensors over shared memory, Triton's initialize arguments, health monitoring.

This module is the public face: load(), Model, Repository, and which stub, env and Python serve a model
(deployment()). The work is done by instances (launch plan, one stub process per instance), protocol (the
messages and tensors exchanged with a stub), bls (calls to the other models of the repository) and batching.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stubforge.core import pythons, releases
from stubforge.errors import PythonNotFound, RunnerError, StubforgeError
from stubforge.runner import batching, bls, foreign, history, instances, lane, outcomes, protocol, status
from stubforge.runner.launcher import envmanager
from stubforge.runner.launcher.stub import LaunchSpec, ModelError, StubError, StubProcess
from stubforge.runner.runtime._stubforge_config import normalize_config
from stubforge.stubs import runner_stub as runner_stub_build
from stubforge.triton import config as config_mod
from stubforge.triton import deployment as resolver
from stubforge.triton.config import config_json

__all__ = [
    "Call",
    "Deployment",
    "Model",
    "ModelOptions",
    "Repository",
    "RunnerError",
    "Timings",
    "deployment",
    "load",
]

# tritonserver's default --backend-directory: Python-based backends are found there without --backends.
DEFAULT_BACKENDS = Path("/opt/tritonserver/backends")


@dataclass
class Deployment:
    """What the runner starts for a model: the resolver's answer (`resolved`) narrowed to one Python, plus the
    model file, the config as initialize() receives it and the runtime dir the stub loads model.py from."""

    model_dir: Path
    name: str
    version: str
    model_path: Path
    config: dict[str, Any]
    python: str  # X.Y
    python_source: str  # where the version came from
    env_path: Path | None
    runtime_dir: str
    resolved: resolver.Deployment | None = field(default=None, repr=False, compare=False)


def deployment(
    model_dir: Path,
    python: str | None = None,
    backends: Path | None = None,
    fallback_python: str | None = None,
    *,
    triton: releases.Release | str = releases.DEFAULT_TRITON,
    auto_complete: bool = True,
) -> Deployment:
    """The resolver's answer for the model, made runnable: latest version, its file, its env, one Python.

    The Python: --python (which must agree with the stub's), else the stub's, else the env's, else
    `fallback_python` (a BLS peer without stub or env borrows its caller's)."""
    if backends is None and DEFAULT_BACKENDS.is_dir():
        backends = DEFAULT_BACKENDS  # tritonserver's default --backend-directory
    # Without config.pbtxt the server fills one in, unless auto-complete is off
    # (docs/triton-behaviour.md, "Configs the server completes").
    config_info = (
        config_mod.read_or_autofill(model_dir) if auto_complete else config_mod.read_config(model_dir)
    )
    resolved = resolver.resolve(model_dir, triton=triton, backends=backends, config=config_info)
    model_dir = resolved.model_dir
    model_path = resolved.model_file
    if model_path is None:
        raise RunnerError(
            f"{model_dir} has no version directory (1/, 2/, ...)", hint="put model.py into <model>/1/"
        )
    # A Python-based backend's model.py serves the model (it needs no file of its own); otherwise Triton's stub
    # refuses a missing model file.
    if not resolved.runs_backend_model and not model_path.is_file():
        if resolved.backend != resolver.STOCK:
            where = resolved.backend_dir or DEFAULT_BACKENDS / resolved.backend
            raise RunnerError(
                f'{model_path} does not exist, and backend "{resolved.backend}" is not a Python-based backend '
                f"here: no {where / 'model.py'}",
                hint=f"pass --backends DIR holding {resolved.backend}/model.py (tritonserver's default backend "
                f"directory is {DEFAULT_BACKENDS}), or put the model's code at {model_path}",
            )
        raise RunnerError(f"{model_path} does not exist", hint="the model's code must be at that path")
    runtime_dir = str(resolved.backend_dir) if resolved.runs_backend_model else "DEFAULT"
    env = resolved.env
    if env is not None and env.error is not None:
        raise env.error
    env_path = env.path if env is not None else None

    found: list[tuple[str, str]] = []
    stub = resolved.stub
    if stub is not None and stub.python:
        found.append((stub.python, f"the stub {stub.path}"))
    if python:
        wanted = pythons.resolve(python).minor
        if found and found[0][0] != wanted:
            raise RunnerError(
                f"--python {python} is Python {wanted}, but the deployment runs Python {found[0][0]} "
                f"({found[0][1]})",
                hint=f"drop --python, or pass --python {found[0][0]}",
            )
        found.insert(0, (wanted, f"--python {python}"))
    if not found and env is not None and env.python:
        found.append((env.python, f"the env {env_path}"))
    if not found and fallback_python:
        found.append(
            (pythons.resolve(fallback_python).minor, f"{fallback_python}, the calling model's Python")
        )
    if not found:
        raise RunnerError(
            f"which Python runs {model_dir.name}? No stub in the model directory, no env with a libpython",
            hint="pass --python 3.X",
        )
    config = config_json(resolved.config.message)
    config["name"] = config.get("name") or model_dir.name
    normalize_config(config)
    return Deployment(
        model_dir=model_dir,
        name=resolved.name,
        version=model_path.parent.name,
        model_path=model_path,
        config=config,
        python=found[0][0],
        python_source=found[0][1],
        env_path=env_path,
        runtime_dir=runtime_dir,
        resolved=resolved,
    )


def _interpreter(spec: str | None, minor: str) -> pythons.Interpreter:
    """The interpreter whose headers and libpython build the runner's stub: --python exactly as given, else any
    buildable one of the deployment's X.Y (two installs of one version build the same stub)."""
    if spec:
        return pythons.resolve(spec, require_buildable=True)
    try:
        return pythons.resolve(minor, require_buildable=True)
    except PythonNotFound as exc:
        candidates = [i for i in pythons.discover() if i.minor == minor and i.buildable]
        if not candidates:
            raise
        del exc
        pyenv = [i for i in candidates if "/.pyenv/" in i.executable]
        return (pyenv or candidates)[0]


@dataclass
class Timings:
    load_s: float = 0.0
    requests: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class ModelOptions:
    """How models are loaded: load() and Model take these as keyword arguments, a Repository hands them to every
    model it loads, and a model's BLS peers load with them too (see Model.__init__ for what each means)."""

    python: str | None = None
    triton: releases.Release | str = releases.DEFAULT_TRITON
    backends: Path | str | None = None
    backend_config: dict[str, str] | None = None
    startup_timeout: float = 30.0
    execute_timeout: float | None = None
    auto_complete: bool = True
    fallback_python: str | None = None
    runner_stub: Path | str | None = None

    def for_peer(self) -> ModelOptions:
        """A BLS peer's options: its own deployment decides its Python, the caller's is the fallback."""
        return dataclasses.replace(self, python=None, fallback_python=self.python or self.fallback_python)


_DEFAULTS = ModelOptions()


class Model:
    """One loaded model: a stub process per instance, ready for infer()."""

    def __init__(
        self,
        model_dir: Path | str,
        *,
        python: str | None = _DEFAULTS.python,
        triton: releases.Release | str = _DEFAULTS.triton,
        backends: Path | str | None = _DEFAULTS.backends,
        backend_config: dict[str, str] | None = _DEFAULTS.backend_config,
        startup_timeout: float = _DEFAULTS.startup_timeout,
        execute_timeout: float | None = _DEFAULTS.execute_timeout,
        auto_complete: bool = _DEFAULTS.auto_complete,
        fallback_python: str | None = _DEFAULTS.fallback_python,
        runner_stub: Path | str | None = _DEFAULTS.runner_stub,
    ) -> None:
        """python: the stub's Python (a version or an interpreter path) when the deployment names none or the
        same; triton: the release whose launcher and env activation to follow; backends: the server's backends
        directory (a python_3_X backend's stub, env and model.py); backend_config: the python backend's
        --backend-config keys (shm-*); auto_complete=False is tritonserver's --disable-auto-complete-config;
        fallback_python: the Python for a model whose deployment names none (BLS peers of a model run with
        --python); runner_stub: the runner's stub to start instead of building one for this machine, needed
        for an env of another architecture (it then runs under emulation, its timeouts scaled)."""
        started = time.monotonic()
        # Settings first: a bad value is an error before anything is resolved, built or started.
        shm = instances.shm_settings(backend_config or {})
        self.options = ModelOptions(
            python=python,
            triton=triton,
            backends=backends,
            backend_config=backend_config,
            startup_timeout=startup_timeout,
            execute_timeout=execute_timeout,
            auto_complete=auto_complete,
            fallback_python=fallback_python,
            runner_stub=runner_stub,
        )
        self.release = releases.as_release(triton)
        self.deployment = deployment(
            Path(model_dir),
            python,
            Path(backends) if backends else None,
            fallback_python=fallback_python,
            auto_complete=auto_complete,
        )
        self.execute_timeout = execute_timeout
        self.logs: list[dict[str, str]] = []
        self.timings = Timings()
        self._peers: bls.Peers[Model] = bls.Peers(
            self.deployment.model_dir.parent, lambda peer_dir: _load(peer_dir, self.options.for_peer())
        )
        self._pool = instances.InstancePool()
        self._encoder = protocol.RequestEncoder()
        self._batcher: batching.Batcher | None = None
        self._lane: lane.Lane | None = None  # plain requests' short way (single instance, unary, unbatched)
        env_path = self.deployment.env_path
        env_dir = envmanager.shared().resolve(env_path, self.release) if env_path is not None else None
        other = foreign.plan(
            self.deployment.name, env_dir, env_path, Path(runner_stub) if runner_stub is not None else None
        )
        interp: pythons.Interpreter | None = None
        if other is not None:
            stub = other.stub
            startup_timeout *= other.timeout_factor
            if execute_timeout is not None:
                self.execute_timeout = execute_timeout * other.timeout_factor
        else:
            interp = _interpreter(
                python or (fallback_python if "calling model" in self.deployment.python_source else None),
                self.deployment.python,
            )
            stub = runner_stub_build.build_runner_stub(interp).stub
        try:
            spec = instances.launch_spec(
                stub=stub,
                model_path=self.deployment.model_path,
                runtime_dir=self.deployment.runtime_dir,
                env_path=self.deployment.env_path,
                interpreter=interp,
                release=self.release,
                shm=shm,
            )
            # The first instance also runs auto_complete_config (Triton's auto-complete stub); the config it
            # returns decides how many instances there are and whether requests are batched.
            first = self._launch(
                spec, instances.instance_names(self.deployment.config)[0], startup_timeout, auto_complete
            )
            self.info = first.info
            for name in instances.instance_names(self.deployment.config)[1:]:
                self._launch(spec, name, startup_timeout, False)
            policy = self.deployment.config.get("dynamic_batching")
            if policy is not None and not self.decoupled:
                self._batcher = batching.Batcher(
                    self, policy, int(self.deployment.config.get("max_batch_size", 0))
                )
            if self._batcher is None and not self.decoupled and len(self._pool.stubs) == 1:
                self._lane = lane.Lane(first, self._encoder, self._pool.single, self._after_lane)
        except BaseException:
            self.close()
            raise
        self.timings.load_s = time.monotonic() - started

    def _launch(
        self, spec: LaunchSpec, instance: str, startup_timeout: float, auto_complete: bool
    ) -> StubProcess:
        stub = self._pool.start(spec, instance, startup_timeout)
        header = protocol.initialize_header(
            config=self.deployment.config,
            instance=instance,
            model_dir=self.deployment.model_dir,
            version=self.deployment.version,
            name=self.deployment.name,
            auto_complete=auto_complete,
        )
        try:
            reply = self._check(stub.request(header, timeout=startup_timeout))
        except StubError as exc:
            # Triton's health check finds the dead stub and fails the load with these words.
            exc.status = status.TritonStatus(
                "INVALID_ARG",
                status.load_failed(
                    self.deployment.name,
                    self.deployment.version,
                    f"Stub process '{instance}' is not healthy.",
                ),
            )
            raise
        if "model_config" in reply:  # auto_complete_config() completed it: requests are checked against that
            self.deployment.config = json.loads(reply["model_config"])
            self.deployment.config["name"] = self.deployment.config.get("name") or self.deployment.name
        self._pool.ready(stub)
        return stub

    @property
    def _stub(self) -> StubProcess | None:
        """The first instance (tests and single-instance callers)."""
        return self._pool.stubs[0] if self._pool.stubs else None

    def output(self) -> str:
        """What the model printed (stdout and stderr of every instance), as Triton would log it."""
        return self._pool.output()

    @property
    def pids(self) -> list[int]:
        return self._pool.pids

    @property
    def pid(self) -> int | None:
        return self._pool.stubs[0].pid if self._pool.stubs else None

    @property
    def decoupled(self) -> bool:
        return bool((self.deployment.config.get("model_transaction_policy") or {}).get("decoupled"))

    def _check(self, reply: dict[str, Any]) -> dict[str, Any]:
        return protocol.check_reply(self.deployment.name, reply, self.logs, version=self.deployment.version)

    def _execute(
        self,
        stub: StubProcess,
        batch: list[dict[str, np.ndarray]],
        outputs: list[str] | None,
        parameters: list[protocol.Parameters | None] | None = None,
        cancelled: Callable[[int], bool] | None = None,
        first_reply: dict[str, Any] | None = None,
    ) -> Iterator[protocol.Event]:
        """The events of one execute() with these requests on one instance (see protocol.execute); the final
        reply's time is recorded, its log records kept. A failure of the stub itself (not of the model) raises.
        `parameters`: each request's parameters; `first_reply`: the lane already sent them, this is the answer."""
        requests: list[dict[str, Any]] = []
        arrays: list[np.ndarray] = []
        if first_reply is None:
            for i, inputs in enumerate(batch):
                message, request_arrays = self._encoder.encode(
                    self.deployment.config, inputs, outputs, parameters[i] if parameters else None
                )
                requests.append(message)
                arrays.extend(request_arrays)
        t0 = time.monotonic()
        exchange = protocol.execute(
            stub,
            requests,
            arrays,
            timeout=self.execute_timeout,
            answer_bls=lambda caller, call: self._peers.answer(caller, call, self.execute_timeout),
            is_cancelled=cancelled or (lambda index: False),
            first_reply=first_reply,
        )
        try:
            for event in exchange:
                if isinstance(event, protocol.Finished):
                    self.timings.requests.append(time.monotonic() - t0)
                    history.keep_recent(self.timings.requests)
                    if not event.reply.get("ok") and event.reply.get("error", {}).get("origin") == "region":
                        self._check(event.reply)  # raises the stub's own failure
                    self.logs.extend(event.reply.get("logs", []))
                    history.keep_recent(self.logs)
                yield event
        finally:
            exchange.close()  # now, not when collected: a half-done exchange stops its stub (see execute)

    def _failure(self, stub: StubProcess, reply: dict[str, Any]) -> outcomes.Failure | None:
        return None if reply.get("ok") else outcomes.execute_failure(stub.spec.instance, reply)

    def _run_batch(
        self,
        batch: list[dict[str, np.ndarray]],
        outputs: list[str] | None,
        parameters: list[protocol.Parameters | None] | None = None,
        cancelled: Callable[[int], bool] | None = None,
        *,
        held: StubProcess | None = None,
        first_reply: dict[str, Any] | None = None,
    ) -> list[dict[str, np.ndarray] | StubforgeError]:
        """One execute() with these requests on a free instance: each request's outputs, or its error. Requests
        the model rescheduled run again in the next execute(), as Triton's scheduler runs them. `held`: the
        instance the caller holds (the lane), `first_reply` its answer to the execute the lane sent."""
        results: list[Any] = [outcomes.RESCHEDULED] * len(batch)
        waiting = list(range(len(batch)))
        while waiting:
            with contextlib.nullcontext(held) if held is not None else self._pool.borrow() as stub:
                events = list(
                    self._execute(
                        stub,
                        [batch[i] for i in waiting],
                        outputs,
                        [parameters[i] for i in waiting] if parameters else None,
                        cancelled=_renumbered(cancelled, waiting),
                        first_reply=first_reply,
                    )
                )
                first_reply = None
                finished = events[-1]
                assert isinstance(finished, protocol.Finished)
                streamed = [e for e in events if isinstance(e, protocol.StreamedResponse)]
                answers = outcomes.unary(
                    self.deployment.name,
                    len(waiting),
                    streamed,
                    finished.reply if finished.reply.get("ok") else None,
                    self._failure(stub, finished.reply),
                    functools.partial(protocol.outputs, stub, requested=outputs),
                )
            for index, answer in zip(waiting, answers):
                results[index] = answer
                if isinstance(answer, ModelError) and outcomes.HANGS in answer.message:
                    self._warn_hang()
            waiting = [i for i in waiting if results[i] is outcomes.RESCHEDULED]
        return results

    def _warn_hang(self) -> None:
        message = (
            f"{self.deployment.name}: execute() sent no response for a request; tritonserver would leave its "
            "client waiting forever, the runner answers at once with an error"
        )
        self.logs.append({"level": "WARNING", "message": message})
        warnings.warn(message, RuntimeWarning, stacklevel=4)

    def check_request(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> None:
        """Triton's request checks (requested outputs, names, data types, shapes, batch size), without sending
        anything."""
        protocol.check_request(self.deployment.config, inputs, outputs)

    def infer_many(
        self,
        batch: list[dict[str, np.ndarray]],
        outputs: list[str] | None = None,
        *,
        parameters: list[protocol.Parameters | None] | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """Several requests in one execute() call, as Triton hands a batch of requests to the model;
        `parameters`: each request's (request.parameters() in the model)."""
        if self.decoupled:
            raise RunnerError(
                f"{self.deployment.name} is decoupled: its responses come as a stream",
                hint="use infer_stream(inputs), or infer(inputs) for the list of responses",
            )
        results = self._run_batch(batch, outputs, parameters)
        for result in results:
            if isinstance(result, StubforgeError):
                raise result
        return results  # type: ignore[return-value]

    def infer_events(
        self,
        inputs: dict[str, np.ndarray],
        outputs: list[str] | None = None,
        *,
        parameters: protocol.Parameters | None = None,
    ) -> list[protocol.StreamedResponse]:
        """Every send of a decoupled model for one request, as sent: an empty one is a final flag sent alone,
        a response's error is its `error` (what a decoupled BLS call iterates over)."""
        with self._pool.borrow() as stub:
            return [
                event
                for event in self._execute(stub, [inputs], outputs, [parameters])
                if isinstance(event, protocol.StreamedResponse)
            ]

    def stream(
        self,
        inputs: dict[str, np.ndarray],
        outputs: list[str] | None = None,
        cancelled: Callable[[], bool] | None = None,
        *,
        parameters: protocol.Parameters | None = None,
    ) -> Iterator[outcomes.StreamItem]:
        """Every response of a decoupled model to one request as a streaming gRPC client with
        enable_empty_final_response receives it: outputs or an error, and the final flag (the final flag sent
        alone is an item without outputs). Errors are items, not raised."""
        if not self.decoupled:
            raise RunnerError(
                f"{self.deployment.name} is not decoupled: it answers each request once",
                hint="use infer(inputs)",
            )
        with self._pool.borrow() as stub:
            events = self._execute(
                stub,
                [inputs],
                outputs,
                [parameters],
                cancelled=None if cancelled is None else lambda i: cancelled(),
            )
            try:
                for event in events:
                    if isinstance(event, protocol.StreamedResponse):
                        yield outcomes.StreamItem(event.tensors, event.final, event.error)
                    elif isinstance(event, protocol.Finished):
                        failure = self._failure(stub, event.reply)
                        if failure is not None:
                            yield from outcomes.decoupled(0, [], failure, self.logs)
            finally:
                for _ in events:  # let the stream end, so the stub is not left waiting for an answer
                    pass

    def infer_stream(
        self,
        inputs: dict[str, np.ndarray],
        outputs: list[str] | None = None,
        *,
        parameters: protocol.Parameters | None = None,
    ) -> Iterator[dict[str, np.ndarray]]:
        """A decoupled model's responses to one request, as they are sent (the final-flag-only send ends it).

        A response carrying an error is raised after the stream has ended; stopping early answers the rest."""
        failure: StubforgeError | None = None
        for item in self.stream(inputs, outputs, parameters=parameters):
            if item.error is not None and failure is None:
                failure = outcomes.model_error(
                    self.deployment.name,
                    item.error,
                    hint="the model sent InferenceResponse(error=...)",
                    carried="a",
                )
            if item.outputs and failure is None:
                yield item.outputs
        if failure is not None:
            raise failure

    def infer(
        self,
        inputs: dict[str, np.ndarray],
        outputs: list[str] | None = None,
        *,
        parameters: protocol.Parameters | None = None,
    ) -> Any:
        """The outputs of one request; for a decoupled model, the list of all its responses' outputs.
        `parameters` reach the model as request.parameters() (str keys; bool, int, float or str values).

        Thread-safe: concurrent calls run on the model's instances side by side, and with dynamic_batching in
        the config they are gathered into one execute() as tritonserver's scheduler does."""
        if self._lane is not None:
            answer = self._lane.run(
                inputs,
                outputs,
                parameters,
                self.deployment.config,
                self.execute_timeout,
                self.timings.requests,
            )
            if answer is not lane.NOT_TAKEN:
                return answer
        if self.decoupled:
            return list(self.infer_stream(inputs, outputs, parameters=parameters))
        if self._batcher is not None:
            return self._batcher.submit(inputs, outputs, parameters)
        return self.infer_many([inputs], outputs, parameters=[parameters])[0]

    def _after_lane(
        self,
        stub: StubProcess,
        inputs: dict[str, np.ndarray],
        outputs: list[str] | None,
        parameters: Any,
        first_reply: dict[str, Any] | None,
    ) -> dict[str, np.ndarray]:
        """The general path from where the lane stopped, on the instance the lane holds: from the stub's first
        reply, or (None) from the start."""
        answer = self._run_batch([inputs], outputs, [parameters], held=stub, first_reply=first_reply)[0]
        if isinstance(answer, StubforgeError):
            raise answer
        return answer

    def submit(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> Call:
        """Start one request in the background; Call.cancel() cancels it as a client does (the model's
        request.is_cancelled() turns true), Call.result() waits for the answer."""
        return Call(self, inputs, outputs)

    def close(self) -> None:
        self._lane = None  # a closed model's requests get the general path's "the model is closed"
        if self._batcher is not None:
            self._batcher.stop()
            self._batcher = None
        self._peers.close()
        self._pool.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _renumbered(cancelled: Callable[[int], bool] | None, waiting: list[int]) -> Callable[[int], bool] | None:
    """The cancel check of the requests of a re-run (their numbers in the batch are `waiting`)."""
    if cancelled is None:
        return None
    check = cancelled
    return lambda index: check(waiting[index])


def _ignoring_index(cancelled: Callable[[], bool] | None) -> Callable[[int], bool] | None:
    if cancelled is None:
        return None
    check = cancelled
    return lambda index: check()


class Call:
    """One request running in the background (Model.submit)."""

    def __init__(self, model: Model, inputs: dict[str, np.ndarray], outputs: list[str] | None) -> None:
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(model, inputs, outputs), daemon=True)
        self._thread.start()

    def _run(self, model: Model, inputs: dict[str, np.ndarray], outputs: list[str] | None) -> None:
        try:
            if model.decoupled:
                self._result = list(model.stream(inputs, outputs, cancelled=self._cancel.is_set))
            else:
                answer = model._run_batch([inputs], outputs, cancelled=lambda index: self._cancel.is_set())[0]
                if isinstance(answer, BaseException):
                    raise answer
                self._result = answer
        except BaseException as exc:  # handed to result()
            self._error = exc
        finally:
            self._done.set()

    def cancel(self) -> None:
        """Cancel as a Triton client does: the model sees it, the caller gets CANCELLED at once."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> Any:
        """The answer (outputs; a decoupled model's list of StreamItem). After cancel(): a ModelError with status
        CANCELLED, as the client library reports it, once the model's execute() has ended."""
        if not self._done.wait(timeout):
            raise TimeoutError("the request has not finished")
        if self._cancel.is_set():
            raise ModelError(
                f"request cancelled: {status.CANCELLED_BY_CLIENT}",
                hint="Call.cancel() was called",
                status=status.TritonStatus("CANCELLED", status.CANCELLED_BY_CLIENT),
            )
        if self._error is not None:
            raise self._error
        return self._result


def _load(model_dir: Path | str, options: ModelOptions) -> Model:
    return Model(
        model_dir,
        python=options.python,
        triton=options.triton,
        backends=options.backends,
        backend_config=options.backend_config,
        startup_timeout=options.startup_timeout,
        execute_timeout=options.execute_timeout,
        auto_complete=options.auto_complete,
        fallback_python=options.fallback_python,
        runner_stub=options.runner_stub,
    )


class Repository:
    """A model repository: each model is loaded in its own stub on first use, all closed together.

    The keyword arguments are load()'s, for every model."""

    def __init__(
        self,
        root: Path | str,
        *,
        python: str | None = _DEFAULTS.python,
        triton: releases.Release | str = _DEFAULTS.triton,
        backends: Path | str | None = _DEFAULTS.backends,
        backend_config: dict[str, str] | None = _DEFAULTS.backend_config,
        startup_timeout: float = _DEFAULTS.startup_timeout,
        execute_timeout: float | None = _DEFAULTS.execute_timeout,
        auto_complete: bool = _DEFAULTS.auto_complete,
        fallback_python: str | None = _DEFAULTS.fallback_python,
        runner_stub: Path | str | None = _DEFAULTS.runner_stub,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise RunnerError(
                f"{self.root}: no such model repository", hint="pass the directory holding models"
            )
        self.options = ModelOptions(
            python=python,
            triton=triton,
            backends=backends,
            backend_config=backend_config,
            startup_timeout=startup_timeout,
            execute_timeout=execute_timeout,
            auto_complete=auto_complete,
            fallback_python=fallback_python,
            runner_stub=runner_stub,
        )
        self._models: dict[str, Model] = {}

    def names(self) -> list[str]:
        return [p.name for p in resolver.list_models(self.root)]

    def model(self, name: str) -> Model:
        if name not in self._models:
            if not config_mod.is_model_dir(self.root / name):
                raise RunnerError(
                    f"{name}: not a model of {self.root}",
                    hint="models there: " + (", ".join(self.names()) or "none"),
                )
            self._models[name] = _load(self.root / name, self.options)
        return self._models[name]

    def close(self) -> None:
        for model in self._models.values():
            model.close()
        self._models.clear()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load(
    model_dir: Path | str,
    *,
    python: str | None = _DEFAULTS.python,
    triton: releases.Release | str = _DEFAULTS.triton,
    backends: Path | str | None = _DEFAULTS.backends,
    backend_config: dict[str, str] | None = _DEFAULTS.backend_config,
    startup_timeout: float = _DEFAULTS.startup_timeout,
    execute_timeout: float | None = _DEFAULTS.execute_timeout,
    auto_complete: bool = _DEFAULTS.auto_complete,
    fallback_python: str | None = _DEFAULTS.fallback_python,
    runner_stub: Path | str | None = _DEFAULTS.runner_stub,
) -> Model:
    """Load the model in `model_dir` as Triton would and start its instances (see Model.__init__)."""
    return Model(
        model_dir,
        python=python,
        triton=triton,
        backends=backends,
        backend_config=backend_config,
        startup_timeout=startup_timeout,
        execute_timeout=execute_timeout,
        auto_complete=auto_complete,
        fallback_python=fallback_python,
        runner_stub=runner_stub,
    )
