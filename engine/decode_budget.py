"""The memory budget of image decoding: a per-image cap and a process-wide byte budget.

A small compressed file can inflate to hundreds of MB (a 6,324 x 6,324 RGBA 16-bit PNG is
320 MB of decoded samples), so every decode first estimates its peak bytes from the file
header (see ``denarius.engine.imageio.plan_decode``) and then:

- an image whose estimate exceeds ``image_bytes`` is refused with an ``InputError`` that
  names the size and the cap, before any pixel is decoded;
- the decode waits until the estimate fits in what is left of ``total_bytes`` (the sum over
  every decode in flight, in every thread), at most ``wait_s`` seconds, and is otherwise
  refused with ``Overloaded`` (RESOURCE_EXHAUSTED: back off and retry).

A decode holds its reservation for as long as its pixels live: the decoder's buffers until
the conversion to RGB ends, then the (H, W, 3) uint8 result until it is garbage collected.

Memory is a process resource, so the budget is process-wide: ``install`` sets the one
every decode in this process is admitted against (the gRPC server installs its own for its
lifetime); without one, decodes are not limited.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref

from denarius.engine.errors import ConfigError, InputError, Overloaded

__all__ = ["DecodeBudget", "Reservation", "install", "uninstall", "current", "host_memory_bytes", "default_budget_bytes"]

log = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULT_IMAGE_BYTES = 640 * MIB  # admits a 40 Mpx RGBA 16-bit PNG (about 614 MiB at its peak)
DEFAULT_FRACTION = 1 / 8  # of the host's memory, for the server-wide default


def host_memory_bytes() -> int:
    """Physical memory of this host, or the cgroup (container) limit when that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def default_budget_bytes() -> int:
    """The server's default decode budget: 1/8 of the host's memory, at least one max image."""
    return max(DEFAULT_IMAGE_BYTES, int(host_memory_bytes() * DEFAULT_FRACTION))


class Reservation:
    """Bytes one decode holds in a :class:`DecodeBudget`; released exactly once."""

    def __init__(self, budget: DecodeBudget, nbytes: int):
        self._budget, self.nbytes = budget, nbytes

    def shrink(self, nbytes: int) -> None:
        """Keep only ``nbytes`` (<= what is held): the decoder's buffers are gone."""
        self._budget._give_back(self, max(0, self.nbytes - max(0, int(nbytes))))

    def release(self) -> None:
        self._budget._give_back(self, self.nbytes)

    def release_with(self, array) -> None:
        """Hold the remaining bytes until ``array`` (the decoded result) is garbage collected."""
        weakref.finalize(array, self.release)


class DecodeBudget:
    """Admits decodes while the sum of their estimated bytes stays within ``total_bytes``.

    Args:
        total_bytes: bytes all decodes in flight may hold together (>= ``image_bytes``).
        image_bytes: most bytes one image may need; bigger ones are refused (InputError).
            None = min(640 MiB, total_bytes).
        wait_s: how long a decode may wait for room before ``Overloaded`` (>= 0).
    """

    def __init__(self, total_bytes: int, *, image_bytes: int | None = None, wait_s: float = 2.0):
        total_bytes = int(total_bytes)
        image_bytes = min(DEFAULT_IMAGE_BYTES, total_bytes) if image_bytes is None else int(image_bytes)
        if image_bytes < 1 or total_bytes < image_bytes:
            raise ConfigError(f"decode budget: need 1 <= image_bytes ({image_bytes:,}) <= total_bytes ({total_bytes:,})")
        if wait_s < 0:
            raise ConfigError(f"decode budget: wait_s must be >= 0, got {wait_s}")
        self.total_bytes, self.image_bytes, self.wait_s = total_bytes, image_bytes, float(wait_s)
        self._cond = threading.Condition(threading.RLock())  # RLock: a finalizer may run while held
        self._held = 0
        self.peak_bytes = 0  # the most ever held at once (for tests and the soak report)
        self.refused = 0  # decodes answered Overloaded

    @property
    def held_bytes(self) -> int:
        with self._cond:
            return self._held

    def check_image(self, nbytes: int, *, what: str) -> None:
        """InputError when one image needs more than the per-image cap.

        Args:
            nbytes: the decode's estimated peak bytes.
            what: the image, as the message should name it ("6324 x 6324 PNG, 4 x 16-bit").
        """
        if nbytes > self.image_bytes:
            raise InputError(
                f"{what} needs about {nbytes / MIB:,.0f} MiB to decode, more than the per-image cap of "
                f"{self.image_bytes / MIB:,.0f} MiB; send a smaller or 8-bit image")

    def reserve(self, nbytes: int, *, what: str) -> Reservation:
        """Wait (at most ``wait_s``) until ``nbytes`` fit, then hold them.

        Raises:
            InputError: one image needs more than ``image_bytes``.
            Overloaded: the decodes in flight left no room for ``wait_s`` seconds.
        """
        nbytes = int(nbytes)
        self.check_image(nbytes, what=what)
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            while self._held + nbytes > self.total_bytes:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.refused += 1
                    raise Overloaded(
                        f"the server's decode memory budget is in use ({self._held / MIB:,.0f} of "
                        f"{self.total_bytes / MIB:,.0f} MiB held by images being decoded; this {what} needs "
                        f"{nbytes / MIB:,.0f} MiB); retry shortly")
                self._cond.wait(left)
            self._held += nbytes
            self.peak_bytes = max(self.peak_bytes, self._held)
        return Reservation(self, nbytes)

    def _give_back(self, reservation: Reservation, nbytes: int) -> None:
        with self._cond:
            nbytes = min(nbytes, reservation.nbytes)
            if nbytes <= 0:
                return
            reservation.nbytes -= nbytes
            self._held -= nbytes
            self._cond.notify_all()

    def __repr__(self) -> str:
        return (f"DecodeBudget(total={self.total_bytes / MIB:,.0f} MiB, image={self.image_bytes / MIB:,.0f} MiB, "
                f"held={self.held_bytes / MIB:,.0f} MiB)")


_current: DecodeBudget | None = None
_install_lock = threading.Lock()


def current() -> DecodeBudget | None:
    """The budget decodes in this process are admitted against, or None (no limit)."""
    return _current


def install(budget: DecodeBudget | None) -> DecodeBudget | None:
    """Make ``budget`` the process-wide one; returns the one it replaces (for ``uninstall``)."""
    global _current
    with _install_lock:
        previous, _current = _current, budget
    log.info("decode budget: %r", budget)
    return previous


def uninstall(budget: DecodeBudget, previous: DecodeBudget | None) -> None:
    """Put ``previous`` back, if ``budget`` is still the installed one."""
    global _current
    with _install_lock:
        if _current is budget:
            _current = previous
