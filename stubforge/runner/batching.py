"""Dynamic batching as tritonserver's scheduler does it for a Python model: concurrent requests are gathered,
for at most max_queue_delay_microseconds, into one execute() whose batch sizes add up to at most max_batch_size
(or to a preferred_batch_size); each request keeps its own tensors and gets its own response.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from typing import Any

import numpy as np

_STOP = object()


def _batch_size(inputs: dict[str, np.ndarray], batched: bool) -> int:
    if not batched or not inputs:
        return 1
    first = next(iter(inputs.values()))
    return int(np.shape(first)[0]) if np.ndim(first) else 1


class Batcher:
    def __init__(self, model: Any, policy: dict[str, Any], max_batch_size: int) -> None:
        self.model = model
        self.max_batch = max(1, max_batch_size)
        self.batched = max_batch_size > 0
        self.delay = int(policy.get("max_queue_delay_microseconds", 0) or 0) / 1e6
        self.preferred = sorted(int(p) for p in policy.get("preferred_batch_size", []) or [])
        self.queue: queue.Queue[Any] = queue.Queue()
        # One dispatcher per instance: batches run side by side on the model's instances.
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(model.pids)))
        self.thread = threading.Thread(target=self._gather, name="stubforge-batcher", daemon=True)
        self.thread.start()

    def submit(
        self, inputs: dict[str, np.ndarray], outputs: list[str] | None, parameters: Any = None
    ) -> dict[str, np.ndarray]:
        self.model.check_request(inputs, outputs)  # a bad request fails alone, before it can join a batch
        future: concurrent.futures.Future[dict[str, np.ndarray]] = concurrent.futures.Future()
        self.queue.put((inputs, outputs, future, parameters))
        return future.result()

    def _full(self, size: int) -> bool:
        return size >= self.max_batch or (bool(self.preferred) and size in self.preferred)

    def _gather(self) -> None:
        carried: Any = None  # a queue item, or _STOP
        while True:
            item = carried if carried is not None else self.queue.get()
            carried = None
            if item is _STOP:
                return
            batch = [item]
            size = _batch_size(item[0], self.batched)
            deadline = time.monotonic() + self.delay
            while not self._full(size):
                remaining = deadline - time.monotonic()
                try:
                    nxt = self.queue.get(timeout=remaining) if remaining > 0 else self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    carried = nxt
                    break
                extra = _batch_size(nxt[0], self.batched)
                if size + extra > self.max_batch or nxt[1] != item[1]:
                    carried = nxt  # starts the next batch (full, or asking for other outputs)
                    break
                batch.append(nxt)
                size += extra
            self.pool.submit(self._dispatch, batch)

    def _dispatch(self, batch: list[Any]) -> None:
        outputs = batch[0][1]
        try:
            results = self.model._run_batch([item[0] for item in batch], outputs, [item[3] for item in batch])
        except BaseException as exc:  # the whole execute failed: every caller gets the error
            for item in batch:
                item[2].set_exception(exc)
            return
        for (_, _, future, _), result in zip(batch, results):
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    def stop(self) -> None:
        self.queue.put(_STOP)
        self.thread.join(timeout=10)
        self.pool.shutdown(wait=True)
