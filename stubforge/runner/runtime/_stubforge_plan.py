# Execute messages prepared once for the stub loop. A stream of like requests (the same input names, types, shapes,
# hence the same offsets) arrives as the same message bytes every time: the loop parses each distinct message once
# and keeps, per input, a numpy view of its bytes in the region, so a request costs a few object creations instead
# of a parse and a buffer lookup per tensor. Python 3.6+, numpy only (imported by the stub as a top-level module).
import marshal

import numpy as np
from _stubforge_wire import _TRITON_TO_NUMPY, _from_wire

CACHE_ENTRIES = 16  # distinct execute messages kept (a model sees few distinct request shapes at a time)
CACHE_MAX_BYTES = 4096  # larger messages are parsed each time (they are rare and their parse is not the cost)

# dtype -> Triton name for the numeric types; a lookup by dtype object is cheaper than by dtype.str. A
# non-native byte order or any other dtype is not here: such tensors take the general path (and its errors).
NUMERIC = {np.dtype(v): k for k, v in _TRITON_TO_NUMPY.items() if k != "BYTES"}


class MessageCache:
    """Parsed messages by their bytes. Entries are [message, plan]; the message dict is shared, never changed."""

    def __init__(self):
        self._entries = {}

    def load(self, raw):
        if len(raw) > CACHE_MAX_BYTES:
            return [marshal.loads(raw), None]
        key = bytes(raw)
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= CACHE_ENTRIES:
                self._entries.clear()
            entry = self._entries[key] = [marshal.loads(key), None]
        return entry


class Plan:
    """One execute message made ready against one mapping of the region: per request its input views and fields,
    and the byte spans the inputs occupy (an output that is a view inside them needs no copy)."""

    def __init__(self, message, region):
        self.region = region
        self.base = None  # the region's address in this process, once an output asks
        self.requests = []
        self.spans = []
        for spec in message["requests"]:
            inputs = []
            for tensor in spec["inputs"]:
                offset, nbytes = tensor["offset"], tensor["nbytes"]
                self.spans.append((offset, offset + nbytes))
                view = None
                if tensor["datatype"] != "BYTES":
                    # A view of the shared region: the parent wrote the bytes once, the model reads them there.
                    view = _from_wire(tensor["datatype"], tensor["shape"], region[offset : offset + nbytes])
                inputs.append((tensor["name"], view, tensor))
            self.requests.append(
                (
                    inputs,
                    list(spec.get("requested_output_names", [])),
                    spec.get("request_id", ""),
                    spec.get("correlation_id", 0),
                    spec.get("flags", 0),
                    # As the server hands them over: compact JSON, in the order the client sent them.
                    spec.get("parameters", "{}"),
                )
            )

    def build(self, pb, decoupled):
        """Fresh InferenceRequest objects for one execute (each input a fresh array object over the same bytes)."""
        region = self.region
        requests = []
        for index, (inputs, requested, request_id, correlation_id, flags, parameters) in enumerate(
            self.requests
        ):
            tensors = []
            for name, view, spec in inputs:
                if view is None:  # BYTES: decoded from this request's bytes
                    start = spec["offset"]
                    view = _from_wire("BYTES", spec["shape"], region[start : start + spec["nbytes"]])
                else:
                    view = view.view()
                tensors.append(pb.Tensor(name, view))
            requests.append(
                pb.InferenceRequest._received(
                    tensors, requested, request_id, correlation_id, flags, parameters, index, decoupled
                )
            )
        return requests

    def offset_of(self, array, nbytes):
        """The region offset of an output that is a C-contiguous view lying wholly inside this execute's inputs
        (the model returned an input or a slice of one), else None. Relative to the mapping the inputs were
        viewed in: the same file offsets in every mapping, also after the region grew."""
        if not self.spans or not array.flags.c_contiguous:
            return None
        if self.base is None:
            self.base = np.frombuffer(self.region, dtype=np.uint8, count=1).__array_interface__["data"][0]
        offset = array.__array_interface__["data"][0] - self.base
        for start, end in self.spans:
            if start <= offset and offset + nbytes <= end:
                return offset
        return None
