"""BLS: the calls a model makes to other models of its repository, answered as Triton's server would.

Each model a call names is loaded on first use, in its own stub process with the caller's options, and stays
loaded until the caller closes. A call that fails gets its error as the answer: the calling stub always waits
for one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from stubforge.errors import RunnerError, StubforgeError
from stubforge.runner import protocol
from stubforge.runner.launcher.stub import StubProcess
from stubforge.triton.config import CONFIG_NAME


class Peer(Protocol):
    """What a BLS call needs of the model it names."""

    @property
    def decoupled(self) -> bool: ...

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> Any: ...

    def close(self) -> None: ...


PeerT = TypeVar("PeerT", bound=Peer)


class Peers(Generic[PeerT]):
    """The models of one repository that a model's BLS calls reach: `peers[name]` is loaded on first use."""

    def __init__(self, repository: Path, load: Callable[[Path], PeerT]) -> None:
        self.repository = repository
        self._load = load
        self.loaded: dict[str, PeerT] = {}
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> PeerT:
        with self._lock:
            if name not in self.loaded:
                model_dir = self.repository / name
                if not (model_dir / CONFIG_NAME).is_file():
                    raise RunnerError(f"Request for unknown model: '{name}' is not found", hint="")
                self.loaded[name] = self._load(model_dir)
            return self.loaded[name]

    def answer(self, stub: StubProcess, message: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        """Run the BLS call `message` from `stub` on the model it names; answer with its outputs or its error.

        Returns the stub's next message."""
        inputs = {t["name"]: protocol.read_tensor(stub, t) for t in message["tensors"]}
        error: str | None = None
        tensors: list[tuple[dict[str, Any], np.ndarray]] = []
        try:
            peer = self[message["model"]]
            if peer.decoupled:
                raise RunnerError(
                    f"model '{message['model']}' is decoupled: the runner does not run decoupled BLS requests yet",
                    hint="",
                )
            result = peer.infer(inputs, message.get("requested_output_names") or None)
            for name, array in result.items():
                tensors.append(protocol.encode_tensor(name, array))
        except StubforgeError as exc:
            error = exc.message
        except Exception as exc:  # anything else still gets an answer: the stub waits for one
            error = f"{type(exc).__name__}: {exc}"
            tensors = []
        return protocol.answer_bls_call(stub, error, tensors, timeout)

    def close(self) -> None:
        for peer in self.loaded.values():
            peer.close()
        self.loaded.clear()
