"""Look-ahead over groups of work: start the next groups while the caller consumes the current one.

    for chunk, started in lookahead(chunks, start=lambda chunk: pool.submit(prepare, chunk), depth=2):
        consume(chunk, started)      # chunks k+1 .. k+2 are already being prepared

``Engine.identify`` overlaps preprocessing of the next chunks with inference of the current
one this way, and the local scanner overlaps reading + preprocessing of the next groups with
identifying the current group. (The dynamic ``Batcher`` has no groups: its requests arrive
one by one and go straight to the same preprocessing pool.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

__all__ = ["lookahead"]

G = TypeVar("G")
S = TypeVar("S")


def lookahead(groups: Iterable[G], *, start: Callable[[G], S], depth: int) -> Iterator[tuple[G, S]]:
    """Yield ``(group, start(group))`` in order, having called ``start`` up to ``depth`` groups ahead.

    Args:
        groups: the work, in order (consumed lazily).
        start: begins one group's preparation and returns its handle (futures, a dict, ...).
        depth: groups started beyond the one being consumed (>= 0; 0 = no overlap).
    """
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    window: deque[tuple[G, S]] = deque()
    for group in groups:
        window.append((group, start(group)))
        if len(window) > depth:
            yield window.popleft()
    while window:
        yield window.popleft()
