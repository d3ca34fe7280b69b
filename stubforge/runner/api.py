"""Run a model.py the way Triton's Python backend does, without a server: `stubforge run` and tests.

    with stubforge.runner.api.load("models/add_sub", python="3.10") as model:
        outputs = model.infer({"INPUT0": a, "INPUT1": b})

A separate stub process of the model's Python (stubforge's harness stub, built on demand), the env activated as
the chosen Triton release does, tensors over shared memory, Triton's initialize arguments, health monitoring.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stubforge.core import cache, pythons, releases
from stubforge.errors import PythonNotFound, StubforgeError
from stubforge.runner import batching
from stubforge.runner import requests as validate
from stubforge.runner.launcher import envmanager
from stubforge.runner.launcher import stub as stub_mod
from stubforge.runner.runtime import _stubforge_wire as wire
from stubforge.stubs import runner_stub as harness_build
from stubforge.triton import backends as backend_dirs
from stubforge.triton import envpath
from stubforge.triton.config import config_json, read_config

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
# Numeric Triton types and their numpy dtypes: the runtime's table (BYTES travels encoded, see _stubforge_wire).
TRITON_TO_NUMPY = {k: np.dtype(v) for k, v in wire._TRITON_TO_NUMPY.items() if k != "BYTES"}
NUMPY_TO_TRITON = {v: k for k, v in TRITON_TO_NUMPY.items()}
DEFAULT_SHM_PREFIX = "triton_python_backend_shm_region_"
MIN_SHM_SIZE = 1 << 20


class RunnerError(StubforgeError):
    """The model cannot be run as asked (before any stub starts)."""


@dataclass
class Deployment:
    """What Triton would use for this model: file, version, Python, env, runtime dir."""

    model_dir: Path
    name: str
    version: str
    model_path: Path
    config: dict[str, Any]
    python: str  # X.Y
    python_source: str  # where the version came from
    env_path: Path | None
    runtime_dir: str


def _versions(model_dir: Path) -> list[str]:
    return sorted((p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=int)


def deployment(
    model_dir: Path,
    python: str | None = None,
    backends: Path | None = None,
    fallback_python: str | None = None,
) -> Deployment:
    """Read the model as Triton would: latest version, its file, its env, the stub's Python."""
    info = read_config(model_dir)
    model_dir = info.path.parent
    versions = _versions(model_dir)
    if not versions:
        raise RunnerError(
            f"{model_dir} has no version directory (1/, 2/, ...)", hint="put model.py into <model>/1/"
        )
    version = versions[-1]
    model_path = model_dir / version / (info.default_model_filename or "model.py")
    if not model_path.is_file():
        raise RunnerError(f"{model_path} does not exist", hint="the model's code must be at that path")
    backend = info.backend or backend_dirs.STOCK
    backend_dir = backends / backend if backends else None
    runtime_dir = "DEFAULT"
    if backend_dir is not None and backend != backend_dirs.STOCK and (backend_dir / "model.py").is_file():
        runtime_dir = str(backend_dir)

    env_path = None
    value = info.parameters.get(envpath.EXECUTION_ENV_PATH)
    if value:
        env_path = envpath.validate_env_path(model_dir, value)
    elif backend_dir is not None and (backend_dir / backend_dirs.DEFAULT_ENV).is_file():
        env_path = backend_dir / backend_dirs.DEFAULT_ENV

    found: list[tuple[str, str]] = []
    for stub in (model_dir / cache.STUB_NAME, backend_dir / cache.STUB_NAME if backend_dir else None):
        if stub is not None and stub.is_file():
            minor = backend_dirs.stub_python(stub)
            if minor:
                found.append((minor, f"the stub {stub}"))
                break
    if python:
        wanted = pythons.resolve(python).minor
        if found and found[0][0] != wanted:
            raise RunnerError(
                f"--python {python} is Python {wanted}, but the deployment runs Python {found[0][0]} "
                f"({found[0][1]})",
                hint=f"drop --python, or pass --python {found[0][0]}",
            )
        found.insert(0, (wanted, f"--python {python}"))
    if not found and env_path is not None:
        minor = backend_dirs.env_python(env_path)
        if minor:
            found.append((minor, f"the env {env_path}"))
    if not found and fallback_python:
        found.append(
            (pythons.resolve(fallback_python).minor, f"{fallback_python}, the calling model's Python")
        )
    if not found:
        raise RunnerError(
            f"which Python runs {model_dir.name}? No stub in the model directory, no env with a libpython",
            hint="pass --python 3.X",
        )
    config = config_json(info.message)
    config["name"] = config.get("name") or model_dir.name
    return Deployment(
        model_dir=model_dir,
        name=info.name or model_dir.name,
        version=version,
        model_path=model_path,
        config=config,
        python=found[0][0],
        python_source=found[0][1],
        env_path=env_path,
        runtime_dir=runtime_dir,
    )


def _interpreter(spec: str | None, minor: str) -> pythons.Interpreter:
    """The interpreter whose headers and libpython build the harness stub: --python exactly as given, else any
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


def _shm_settings(backend_config: dict[str, str]) -> tuple[str, int, int]:
    """The python backend's own keys and rules (TRITON_FACTS §1)."""
    prefix = backend_config.get("shm-region-prefix-name", DEFAULT_SHM_PREFIX)
    try:
        default = int(backend_config.get("shm-default-byte-size", MIN_SHM_SIZE))
        growth = int(backend_config.get("shm-growth-byte-size", MIN_SHM_SIZE))
    except ValueError as exc:
        raise RunnerError(f"backend config: {exc}", hint="sizes are byte counts, e.g. 1048576") from exc
    if default < MIN_SHM_SIZE:
        raise RunnerError(
            f"shm-default-byte-size {default} is below the minimum {MIN_SHM_SIZE}",
            hint="use at least 1048576",
        )
    if growth <= 0:
        raise RunnerError(f"shm-growth-byte-size {growth} must be positive", hint="e.g. 1048576")
    if not prefix or "/" in prefix:
        raise RunnerError(f"shm-region-prefix-name {prefix!r} is not usable", hint="a plain name, no '/'")
    return prefix, default, growth


@dataclass
class Timings:
    load_s: float = 0.0
    requests: list[float] = field(default_factory=list)


class Model:
    """One loaded model: one stub process (one instance), ready for infer()."""

    def __init__(
        self,
        model_dir: Path | str,
        *,
        python: str | None = None,
        triton: str = "24.10",
        backends: Path | str | None = None,
        backend_config: dict[str, str] | None = None,
        startup_timeout: float = 30.0,
        execute_timeout: float | None = None,
        auto_complete: bool = True,
        fallback_python: str | None = None,
    ) -> None:
        """auto_complete=False is tritonserver's --disable-auto-complete-config. fallback_python: the Python for
        a model whose deployment names none (BLS peers of a model run with --python)."""
        started = time.monotonic()
        self._peers: dict[str, Model] = {}
        self._peer_lock = threading.Lock()
        self._options: dict[str, Any] = {
            "triton": triton,
            "backends": backends,
            "backend_config": backend_config,
            "startup_timeout": startup_timeout,
            "execute_timeout": execute_timeout,
            "auto_complete": auto_complete,
            "fallback_python": python or fallback_python,
        }
        self.release = releases.get(triton)
        self.deployment = deployment(
            Path(model_dir), python, Path(backends) if backends else None, fallback_python=fallback_python
        )
        self.execute_timeout = execute_timeout
        self.logs: list[dict[str, str]] = []
        self.timings = Timings()
        prefix, default, growth = _shm_settings(backend_config or {})
        interp = _interpreter(
            python or (fallback_python if "calling model" in self.deployment.python_source else None),
            self.deployment.python,
        )
        stub = harness_build.build_harness(interp).stub
        self._stubs: list[stub_mod.StubProcess] = []
        self._free: queue.Queue[stub_mod.StubProcess] = queue.Queue()
        self._single = threading.Lock()
        self._checked: tuple[Any, dict[str, list[int]]] = (None, {})
        self._batcher: batching.Batcher | None = None
        try:
            env_dir = (
                envmanager.shared().resolve(self.deployment.env_path) if self.deployment.env_path else None
            )
            base_env = dict(os.environ)
            base_env.setdefault("PYTHONUNBUFFERED", "1")  # the model's print() reaches output() as it happens
            if env_dir is None:
                # No env: stand in for a server whose first python3 is this interpreter.
                assert interp.libpython
                base_env["PATH"] = os.pathsep.join(
                    p for p in (os.path.dirname(interp.executable), base_env.get("PATH", "")) if p
                )
                base_env["LD_LIBRARY_PATH"] = os.pathsep.join(
                    p for p in (os.path.dirname(interp.libpython), base_env.get("LD_LIBRARY_PATH", "")) if p
                )
            spec = stub_mod.LaunchSpec(
                stub=stub,
                model_path=self.deployment.model_path,
                python_lib=RUNTIME_DIR,
                instance="",
                runtime_dir=self.deployment.runtime_dir,
                env_dir=env_dir,
                launcher=self.release.launcher,
                base_env=base_env,
                shm_prefix=prefix,
                default_size=default,
                growth=growth,
            )
            # The first instance also runs auto_complete_config (Triton's auto-complete stub); the config it
            # returns decides how many instances there are and whether requests are batched.
            first = self._launch(
                spec, instance_names(self.deployment.config)[0], startup_timeout, auto_complete
            )
            self.info = first.info
            for name in instance_names(self.deployment.config)[1:]:
                self._launch(spec, name, startup_timeout, False)
            policy = self.deployment.config.get("dynamic_batching")
            if policy is not None and not self.decoupled:
                self._batcher = batching.Batcher(
                    self, policy, int(self.deployment.config.get("max_batch_size", 0))
                )
        except BaseException:
            self.close()
            raise
        self.timings.load_s = time.monotonic() - started

    def _launch(
        self, spec: stub_mod.LaunchSpec, instance: str, startup_timeout: float, auto_complete: bool
    ) -> stub_mod.StubProcess:
        stub = stub_mod.StubProcess(dataclasses.replace(spec, instance=instance), startup_timeout)
        self._stubs.append(stub)
        args = {
            "model_config": json.dumps(self.deployment.config),
            "model_instance_kind": "CPU",
            "model_instance_name": instance,
            "model_instance_device_id": "0",
            "model_repository": str(self.deployment.model_dir),
            "model_version": self.deployment.version,
            "model_name": self.deployment.name,
        }
        header = {"op": "initialize", "args": args, "auto_complete": auto_complete}
        reply = self._check(stub.request(header, timeout=startup_timeout))
        if "model_config" in reply:  # auto_complete_config() completed it: requests are checked against that
            self.deployment.config = json.loads(reply["model_config"])
            self.deployment.config["name"] = self.deployment.config.get("name") or self.deployment.name
        self._free.put(stub)
        return stub

    @property
    def _stub(self) -> stub_mod.StubProcess | None:
        """The first instance (tests and single-instance callers)."""
        return self._stubs[0] if self._stubs else None

    def output(self) -> str:
        """What the model printed (stdout and stderr of every instance), as Triton would log it."""
        return "".join(stub.output(limit=1 << 20) for stub in self._stubs)

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self._stubs]

    @property
    def pid(self) -> int | None:
        return self._stubs[0].pid if self._stubs else None

    @contextlib.contextmanager
    def _instance(self) -> Iterator[stub_mod.StubProcess]:
        """A free instance for one execute; concurrent callers run on different instances."""
        if not self._stubs:
            raise RunnerError("the model is closed", hint="load it again")
        if len(self._stubs) == 1:  # the common case: a lock is a fraction of a queue's cost per request
            with self._single:
                yield self._stubs[0]
            return
        stub = self._free.get()
        try:
            yield stub
        finally:
            self._free.put(stub)

    def _check(self, reply: dict[str, Any]) -> dict[str, Any]:
        self.logs.extend(reply.get("logs", []))
        if not reply.get("ok"):
            error = reply.get("error", {})
            raise stub_mod.ModelError(
                f"{self.deployment.name}: {error.get('type', 'Error')}: {error.get('message', '')}",
                hint="the model's own error; its Python traceback is shown above",
                details=error.get("traceback", ""),
                error_type=error.get("type", ""),
            )
        return reply

    def _request_message(
        self, inputs: dict[str, np.ndarray], outputs: list[str] | None
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        arrays, specs, wires = [], [], {}
        for name, value in inputs.items():
            array = np.asarray(value)
            if array.dtype not in NUMPY_TO_TRITON and not wire._is_bytes(array):
                raise RunnerError(
                    f"input {name}: dtype {array.dtype} is not a Triton tensor type",
                    hint="numeric types, bool, and bytes/str (object, S or U arrays) for BYTES",
                )
            datatype, shape, payload = wire._wire(array)
            wires[name] = (datatype, shape)
            arrays.append(payload)
            specs.append({"name": name, "datatype": datatype, "shape": shape, "nbytes": int(payload.nbytes)})
        # Triton's checks and wording; a reshape in the config changes the shape the model sees.
        signature = (id(self.deployment.config), tuple((n, d, tuple(sh)) for n, (d, sh) in wires.items()))
        if signature == self._checked[0]:  # the same names, types and shapes as the last request: same answer
            reached = self._checked[1]
        else:
            reached = validate.check(self.deployment.config, wires)
            self._checked = (signature, reached)
        for spec in specs:
            spec["shape"] = reached[spec["name"]]
        return {"inputs": specs, "requested_output_names": list(outputs or [])}, arrays

    @property
    def decoupled(self) -> bool:
        return bool((self.deployment.config.get("model_transaction_policy") or {}).get("decoupled"))

    def _execute(
        self, stub: stub_mod.StubProcess, batch: list[dict[str, np.ndarray]], outputs: list[str] | None
    ) -> Iterator[tuple[Any, ...]]:
        """The events of one execute() on one instance: ("response", index, tensors, flags, error) for each
        response a decoupled model sends, BLS calls answered on the way, then ("done", reply)."""
        requests, arrays = [], []
        for inputs in batch:
            message, request_arrays = self._request_message(inputs, outputs)
            requests.append(message)
            arrays.extend(request_arrays)
        offsets = iter(stub_mod.place([a.nbytes for a in arrays]))
        for message in requests:
            for spec in message["inputs"]:
                spec["offset"] = next(offsets)
        t0 = time.monotonic()
        finished = False
        try:
            reply = stub.request(
                {"op": "execute", "requests": requests}, arrays, timeout=self.execute_timeout
            )
            while reply.get("op") in ("response", "bls"):
                if reply["op"] == "response":
                    tensors = {t["name"]: _read(stub, t) for t in reply["tensors"]}
                    yield ("response", reply["request"], tensors, reply["flags"], reply.get("error"))
                    reply = stub.request(
                        {"op": "ack"}, start=stub.message_end(), timeout=self.execute_timeout
                    )
                else:
                    reply = self._answer_bls(stub, reply)
            finished = True
        finally:
            if not finished and stub.alive() and not stub.exit_reason:
                # Left in the middle of an exchange (the caller stopped, an error, Ctrl-C): the stub waits for an
                # answer that will not come, and the next request would be read as that answer. Stop it.
                stub.kill()
                stub.exit_reason = "interrupted in the middle of a request"
        self.timings.requests.append(time.monotonic() - t0)
        yield ("done", self._check(reply))

    def _peer(self, name: str) -> Model:
        """Another model of the same repository for BLS, loaded on first use in its own stub."""
        with self._peer_lock:
            if name not in self._peers:
                model_dir = self.deployment.model_dir.parent / name
                if not (model_dir / "config.pbtxt").is_file():
                    raise RunnerError(f"Request for unknown model: '{name}' is not found", hint="")
                self._peers[name] = Model(model_dir, **self._options)
            return self._peers[name]

    def _answer_bls(self, stub: stub_mod.StubProcess, message: dict[str, Any]) -> dict[str, Any]:
        inputs = {t["name"]: _read(stub, t) for t in message["tensors"]}
        error, payloads, specs = None, [], []
        try:
            peer = self._peer(message["model"])
            if peer.decoupled:
                raise RunnerError(
                    f"model '{message['model']}' is decoupled: the runner does not run decoupled BLS requests yet",
                    hint="",
                )
            result = peer.infer(inputs, message.get("requested_output_names") or None)
            for name, array in result.items():
                datatype, shape, payload = wire._wire(array)
                payloads.append(payload)
                specs.append(
                    {"name": name, "datatype": datatype, "shape": shape, "nbytes": int(payload.nbytes)}
                )
        except StubforgeError as exc:
            error = exc.message
        except Exception as exc:  # anything else still gets an answer: the stub waits for one
            error = f"{type(exc).__name__}: {exc}"
            payloads, specs = [], []
        start = stub.message_end()
        for spec, offset in zip(specs, stub_mod.place([p.nbytes for p in payloads], start)):
            spec["offset"] = offset
        header = {"op": "bls_reply", "error": error, "tensors": specs}
        return stub.request(header, payloads, start=start, timeout=self.execute_timeout)

    def _run_batch(
        self, batch: list[dict[str, np.ndarray]], outputs: list[str] | None
    ) -> list[dict[str, np.ndarray] | StubforgeError]:
        """One execute() with these requests on a free instance: each request's outputs, or its error."""
        with self._instance() as stub:
            reply = list(self._execute(stub, batch, outputs))[-1][1]
            results: list[dict[str, np.ndarray] | StubforgeError] = []
            for response in reply["responses"]:
                if response.get("error"):
                    results.append(
                        stub_mod.ModelError(
                            f"{self.deployment.name}: the response carries an error: {response['error']}",
                            hint="the model returned InferenceResponse(error=...)",
                        )
                    )
                    continue
                tensors = {o["name"]: _read(stub, o) for o in response["outputs"]}
                if outputs:  # the server drops what was not requested
                    tensors = {k: v for k, v in tensors.items() if k in outputs}
                results.append(tensors)
            return results

    def check_request(self, inputs: dict[str, np.ndarray]) -> None:
        """Triton's request checks (names, data types, shapes, batch size), without sending anything."""
        wires = {}
        for name, value in inputs.items():
            array = np.asarray(value)
            datatype = (
                "BYTES" if wire._is_bytes(array) else NUMPY_TO_TRITON.get(array.dtype, str(array.dtype))
            )
            wires[name] = (datatype, list(array.shape))
        validate.check(self.deployment.config, wires)

    def infer_many(
        self, batch: list[dict[str, np.ndarray]], outputs: list[str] | None = None
    ) -> list[dict[str, np.ndarray]]:
        """Several requests in one execute() call, as Triton hands a batch of requests to the model."""
        if self.decoupled:
            raise RunnerError(
                f"{self.deployment.name} is decoupled: its responses come as a stream",
                hint="use infer_stream(inputs), or infer(inputs) for the list of responses",
            )
        results = self._run_batch(batch, outputs)
        for result in results:
            if isinstance(result, StubforgeError):
                raise result
        return results  # type: ignore[return-value]

    def infer_stream(
        self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """A decoupled model's responses to one request, as they are sent (the final-flag-only send ends it).

        A response carrying an error is raised after the stream has ended; stopping early answers the rest."""
        with self._instance() as stub:
            events = self._execute(stub, [inputs], outputs)
            failure: StubforgeError | None = None
            try:
                for event in events:
                    if event[0] != "response":
                        continue
                    _, _, tensors, _flags, error = event
                    if error and failure is None:
                        failure = stub_mod.ModelError(
                            f"{self.deployment.name}: a response carries an error: {error}",
                            hint="the model sent InferenceResponse(error=...)",
                        )
                    if tensors and failure is None:
                        yield tensors
            finally:
                for _ in events:  # let the stream end, so the stub is not left waiting for an answer
                    pass
            if failure is not None:
                raise failure

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> Any:
        """The outputs of one request; for a decoupled model, the list of all its responses' outputs.

        Thread-safe: concurrent calls run on the model's instances side by side, and with dynamic_batching in
        the config they are gathered into one execute() as tritonserver's scheduler does."""
        if self.decoupled:
            return list(self.infer_stream(inputs, outputs))
        if self._batcher is not None:
            return self._batcher.submit(inputs, outputs)
        return self.infer_many([inputs], outputs)[0]

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.stop()
            self._batcher = None
        for peer in self._peers.values():
            peer.close()
        self._peers.clear()
        stubs, self._stubs = self._stubs, []
        for stub in stubs:
            stub.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read(stub: stub_mod.StubProcess, spec: dict[str, Any]) -> np.ndarray:
    """One output (or BLS input) out of an instance's region."""
    region = stub.region
    if spec["datatype"] == "BYTES":
        raw = bytes(region.map[spec["offset"] : spec["offset"] + spec["nbytes"]])
        return wire.deserialize_bytes_tensor(raw).reshape(spec["shape"])
    return region.read_array(spec["offset"], TRITON_TO_NUMPY[spec["datatype"]], spec["shape"])


def instance_names(config: dict[str, Any]) -> list[str]:
    """Triton's instance names, <model>_<group>_<n>, one per instance of every instance_group."""
    name = config.get("name", "")
    groups = config.get("instance_group") or [{"count": 1}]
    names = []
    for index, group in enumerate(groups):
        if group.get("kind") == "KIND_GPU":
            raise RunnerError(
                f"{name}: instance_group {index} is KIND_GPU; the runner has CPU instances only",
                hint="use KIND_CPU (or KIND_AUTO) for tests with the runner",
            )
        group_name = group.get("name") or f"{name}_{index}"
        names += [f"{group_name}_{n}" for n in range(max(1, int(group.get("count", 1) or 1)))]
    return names


class Repository:
    """A model repository: each model is loaded in its own stub on first use, all closed together."""

    def __init__(self, root: Path | str, **options: Any) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise RunnerError(
                f"{self.root}: no such model repository", hint="pass the directory holding models"
            )
        self.options = options
        self._models: dict[str, Model] = {}

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / "config.pbtxt").is_file())

    def model(self, name: str) -> Model:
        if name not in self._models:
            if not (self.root / name / "config.pbtxt").is_file():
                raise RunnerError(
                    f"{name}: not a model of {self.root}",
                    hint="models there: " + (", ".join(self.names()) or "none"),
                )
            self._models[name] = Model(self.root / name, **self.options)
        return self._models[name]

    def close(self) -> None:
        for model in self._models.values():
            model.close()
        self._models.clear()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load(model_dir: Path | str, **options: Any) -> Model:
    return Model(model_dir, **options)
