"""BLS: the calls a model makes to other models of its repository, answered as Triton's server would.

Each model a call names is loaded on first use, in its own stub process with the caller's options, and stays
loaded until the caller closes. A call that fails gets its error as the answer: the calling stub always waits
for one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from stubforge.errors import RunnerError, StubforgeError
from stubforge.runner import protocol
from stubforge.runner.launcher.stub import StubProcess
from stubforge.runner.requests import InferenceError
from stubforge.triton.config import is_model_dir


class BlsRefused(RunnerError):
    """A BLS request refused before it reaches the callee (unknown model, decoupled misuse)."""


class Peer(Protocol):
    """What a BLS call needs of the model it names."""

    @property
    def decoupled(self) -> bool: ...

    def infer(
        self,
        inputs: dict[str, np.ndarray],
        outputs: list[str] | None = None,
        *,
        parameters: protocol.Parameters | None = None,
    ) -> Any: ...

    def infer_events(
        self,
        inputs: dict[str, np.ndarray],
        outputs: list[str] | None = None,
        *,
        parameters: protocol.Parameters | None = None,
    ) -> list[protocol.StreamedResponse]: ...

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
                if not is_model_dir(model_dir):
                    # Triton: a model it does not know (or has not loaded) is "not ready".
                    raise BlsRefused(
                        f"Failed for execute the inference request. Model '{name}' is not ready.", hint=""
                    )
                self.loaded[name] = self._load(model_dir)
            return self.loaded[name]

    def answer(self, stub: StubProcess, message: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        """Run the BLS call `message` from `stub` on the model it names; answer with its responses (a decoupled
        callee's whole stream) or its error.

        Returns the stub's next message."""
        inputs = {t["name"]: protocol.read_tensor(stub, t) for t in message["tensors"]}
        responses: list[protocol.BlsResponse] = []
        try:
            name = message["model"]
            outputs = message.get("requested_output_names") or None
            # The callee gets the caller's parameters as the server passes them on (parsed, then re-written).
            parameters = json.loads(message.get("parameters") or "{}")
            peer = self[name]
            if peer.decoupled and not message.get("decoupled"):
                # Triton's words (python_backend request_executor.cc, r24.10), its stray quote included.
                raise BlsRefused(
                    f"Model {name} is using the decoupled. The current BLS request call doesn't support models "
                    "using the decoupled transaction policy. Please use 'decoupled=True' argument to the 'exec' "
                    "or 'async_exec' calls for decoupled models.'",
                    hint="",
                )
            if peer.decoupled:
                # Each send of the callee is one response; a final flag sent alone is an empty last response.
                for event in peer.infer_events(inputs, outputs, parameters=parameters):
                    encoded = [protocol.encode_tensor(n, a) for n, a in event.tensors.items()]
                    # The stub side rebuilds a TritonError from the text (its code is not carried yet).
                    responses.append((encoded, event.error.message if event.error is not None else None))
            else:
                result = peer.infer(inputs, outputs, parameters=parameters)
                responses.append(([protocol.encode_tensor(n, a) for n, a in result.items()], None))
        except (BlsRefused, InferenceError) as exc:
            # Refused before the callee ran: Triton's backend words it with the callee's name in front
            # (docs/triton-behaviour.md, "BLS, Logger and Python-based backends as a model sees them").
            responses = [([], f"Model {message['model']} - Error when running inference: {exc.message}")]
        except StubforgeError as exc:
            responses = [([], exc.message)]
        except Exception as exc:  # anything else still gets an answer: the stub waits for one
            responses = [([], f"{type(exc).__name__}: {exc}")]
        return protocol.answer_bls_call(stub, responses, timeout)

    def close(self) -> None:
        for peer in self.loaded.values():
            peer.close()
        self.loaded.clear()
