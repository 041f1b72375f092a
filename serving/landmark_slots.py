"""``LandmarkSlots``: the one limit on landmark searches running or queued in a process.

A landmark search costs seconds of CPU (or GPU) time, so a server admits at most
``landmark_workers + landmark_queue`` of them at once and answers the next one
RESOURCE_EXHAUSTED (gRPC) or 429 (HTTP). The gRPC servicer owns one ``LandmarkSlots`` and
the HTTP frontend beside it takes the same object (``HttpFrontend(..., landmark_slots=...)``),
so both ports together never admit more than the configured number::

    slots = LandmarkSlots(6)
    if not slots.try_acquire():
        raise Overloaded(slots.busy_message())
    future = batcher.submit(job)
    future.add_done_callback(lambda _future: slots.release())   # when the search really ends

A slot is released when the search ends, not when its caller gives up: cancel-and-resend
must not queue unbounded work. Thread-safe: searches end on the landmark workers' threads,
and the HTTP frontend may run on a loop of its own.
"""

from __future__ import annotations

import threading

from denarius.engine.errors import ConfigError

__all__ = ["LandmarkSlots"]


class LandmarkSlots:
    """A non-blocking counting limit (try, never wait: a full server answers at once).

    Args:
        limit: searches admitted at once, >= 1.
    Attributes:
        peak: the most slots ever held at once (tests and logs; never above ``limit``).
    """

    def __init__(self, limit: int):
        if int(limit) < 1:
            raise ConfigError(f"the landmark slot limit must be >= 1, got {limit}")
        self.limit = int(limit)
        self.peak = 0
        self._busy = 0
        self._lock = threading.Lock()

    @property
    def busy(self) -> int:
        """Slots held now."""
        return self._busy

    def try_acquire(self) -> bool:
        """Take a slot if one is free; False when all ``limit`` are held."""
        with self._lock:
            if self._busy >= self.limit:
                return False
            self._busy += 1
            self.peak = max(self.peak, self._busy)
            return True

    def release(self) -> None:
        """Give back a slot taken by :meth:`try_acquire` (once per successful take)."""
        with self._lock:
            if self._busy <= 0:
                raise RuntimeError("LandmarkSlots.release() without a slot held")
            self._busy -= 1

    def busy_message(self) -> str:
        """The Overloaded message a refused search gets."""
        return f"all {self.limit} landmark slots are busy; retry later or use another replica"

    def __repr__(self) -> str:
        return f"LandmarkSlots(busy={self._busy}, limit={self.limit})"
