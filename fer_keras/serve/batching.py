"""Concurrent requests share one ensemble: one at a time (:class:`SerialEnsemble`) or several at once
(:class:`MicroBatcher`).

Both stand in for an :class:`~fer_keras.ensemble.Ensemble` (``predict_proba``,
``members``, ``class_names``), so a :class:`~fer_keras.inference.FacePredictor`
takes either unchanged. The ensemble itself is not thread-safe (it caches the
last batches it saw) and a Keras model runs one batch at a time best on a few
cores, so requests never call it concurrently.

The micro-batcher waits for nothing: a single worker thread takes every
request queued by the time it is free and runs their faces through the models
as one batch. At one client a request goes straight through (no added
latency); under load, requests that arrived while the models were busy share
the next batch, so each member runs once per batch instead of once per
request.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time

import numpy as np

MAX_BATCH_FACES = 64
"""The most faces one batch takes; later requests wait for the next."""


class _SharedEnsemble:
    """What the app reads of the ensemble it shares: its members and class names."""

    @property
    def members(self):
        return self.ensemble.members

    @property
    def class_names(self):
        return self.ensemble.class_names


class SerialEnsemble(_SharedEnsemble):
    """An ensemble behind a lock: each request's faces go through the models alone."""

    batching = False

    def __init__(self, ensemble):
        self.ensemble = ensemble
        self._lock = threading.Lock()

    def predict_proba(self, faces, *, tta=False):
        with self._lock:
            return self.ensemble.predict_proba(faces, tta=tta)

    def close(self):
        pass


@dataclasses.dataclass
class _Request:
    faces: np.ndarray
    tta: object
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class MicroBatcher(_SharedEnsemble):
    """An ensemble fed by one worker thread that batches the faces of concurrent requests.

    Args:
      ensemble: the :class:`~fer_keras.ensemble.Ensemble` (or any object with
        ``predict_proba(faces, tta=)``, ``members`` and ``class_names``).
      max_batch: the most faces per batch (a request with more runs alone).
      max_wait_s: how long the worker waits for more requests after the first
        (0: only those already queued; see the module's docstring).
    """

    batching = True

    def __init__(self, ensemble, *, max_batch=MAX_BATCH_FACES, max_wait_s=0.0):
        self.ensemble = ensemble
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_s)
        self.batches = 0
        """Batches run so far (for tests and benchmarks: fewer than requests means batching happened)."""
        self._queue = queue.Queue()
        self._held = None  # a request that did not fit the last batch: first in the next
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="fer-micro-batcher", daemon=True)
        self._thread.start()

    def predict_proba(self, faces, *, tta=False):
        """Probabilities (N, C) of ``faces``, computed in a batch with other callers' faces."""
        if self._closed:
            raise RuntimeError("the micro-batcher is closed")
        request = _Request(np.asarray(faces), tta)
        self._queue.put(request)  # even with no faces: only the worker thread touches the ensemble
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def close(self):
        """Stop the worker once the queued requests are answered."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=10)

    # === Worker ===

    def _work(self):
        while True:
            first, self._held = (self._held, None) if self._held is not None else (self._queue.get(), None)
            if first is None:
                return
            batch, stop = self._collect(first)
            self._run(batch)
            if stop:
                return

    def _collect(self, first):
        """``first`` and the requests queued behind it, up to ``max_batch`` faces; whether to stop after."""
        batch, count = [first], len(first.faces)
        deadline = time.monotonic() + self.max_wait_s
        while count < self.max_batch:
            try:
                wait = deadline - time.monotonic()
                item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            if count + len(item.faces) > self.max_batch:
                self._held = item
                break
            batch.append(item)
            count += len(item.faces)
        return batch, False

    def _run(self, batch):
        groups = {}
        for r in batch:  # one batch per test-time augmentation mode (a server uses one)
            groups.setdefault(r.tta, []).append(r)
        for tta, group in groups.items():
            try:
                probs = np.asarray(self.ensemble.predict_proba(np.concatenate([r.faces for r in group]), tta=tta))
            except BaseException as exc:  # handed to each caller, who raises it in its own thread
                for r in group:
                    r.error = exc
                    r.done.set()
                continue
            self.batches += 1
            start = 0
            for r in group:
                r.result = probs[start:start + len(r.faces)]
                start += len(r.faces)
                r.done.set()
