"""The gRPC ``denarius.v1.Watchlist`` service, and the watchlist matches of Identify.

A thin servicer over :class:`denarius.engine.watchlist.Watchlist`: its work (decoding,
features, SQLite, the index) runs in a small thread pool, never on the event loop; errors
map to status codes through ``serving/status.py`` (NotFound -> NOT_FOUND, AlreadyExists ->
ALREADY_EXISTS, InputError -> INVALID_ARGUMENT). It sits behind the server's interceptors,
so it needs the same bearer tokens as CoinService.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from concurrent.futures import ThreadPoolExecutor

from denarius.engine.errors import InputError
from denarius.engine.watchlist import Watchlist, WatchlistMatch
from denarius.serving.denarius.v1 import watchlist_pb2, watchlist_pb2_grpc
from denarius.serving.servicer import _guarded

__all__ = ["WatchlistServicer", "SERVICE_NAME", "match_message", "serve_watchlist"]

log = logging.getLogger(__name__)

SERVICE_NAME = watchlist_pb2.DESCRIPTOR.services_by_name["Watchlist"].full_name


def _specimen(specimen) -> watchlist_pb2.Specimen:
    return watchlist_pb2.Specimen(specimen_id=specimen.specimen_id, source=specimen.source, note=specimen.note, added=specimen.added)


def match_message(match: WatchlistMatch) -> watchlist_pb2.WatchlistMatch:
    """One engine match as the proto message (also used in IdentifyResponse.watchlist_matches)."""
    return watchlist_pb2.WatchlistMatch(
        specimen=_specimen(match.specimen), verdict=match.verdict,
        obverse_inliers=match.inliers[0], reverse_inliers=match.inliers[1], similarity=match.similarity,
    )


def _photos(request) -> tuple[bytes, bytes]:
    for side in ("obverse", "reverse"):
        if not getattr(request, side):
            raise InputError("no photo given: both sides are needed", side=side)
    return request.obverse, request.reverse


class WatchlistServicer(watchlist_pb2_grpc.WatchlistServicer):
    """Handlers of denarius.v1.Watchlist over one open watchlist directory (owned: ``close()``)."""

    def __init__(self, watchlist: Watchlist, *, threads: int = 2):
        self.watchlist = watchlist
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="watchlist")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.watchlist.close()

    async def _run(self, function, /, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(function, *args, **kwargs))

    async def matches(self, obverse: bytes, reverse: bytes, *, top_k: int = 3) -> list[watchlist_pb2.WatchlistMatch]:
        """Matches of a coin's photos, as messages (for Identify / IdentifyStream)."""
        found = await self._run(self.watchlist.match, obverse, reverse, top_k=top_k)
        return [match_message(m) for m in found]

    @_guarded
    async def AddSpecimen(self, request, context, rid):
        obverse, reverse = _photos(request)
        specimen = await self._run(self.watchlist.add, request.specimen_id, obverse, reverse,
                                   source=request.source, note=request.note)
        log.info("request %s: watchlist: added %s", rid, specimen.specimen_id)
        return _specimen(specimen)

    @_guarded
    async def RemoveSpecimen(self, request, context, rid):
        specimen = await self._run(self.watchlist.remove, request.specimen_id)
        log.info("request %s: watchlist: removed %s", rid, specimen.specimen_id)
        return _specimen(specimen)

    @_guarded
    async def ListSpecimens(self, request, context, rid):
        listed = await self._run(self.watchlist.listed, limit=request.limit or None, offset=request.offset)
        total = await self._run(len, self.watchlist)
        return watchlist_pb2.ListSpecimensResponse(specimens=[_specimen(s) for s in listed], total=total)

    @_guarded
    async def Match(self, request, context, rid):
        obverse, reverse = _photos(request)
        matches = await self.matches(obverse, reverse, top_k=request.top_k or 3)
        total = await self._run(len, self.watchlist)
        return watchlist_pb2.MatchResponse(matches=matches, listed=total)


def serve_watchlist(path, server) -> WatchlistServicer:
    """Open the watchlist directory ``path`` (created when missing) and add its service to ``server``."""
    servicer = WatchlistServicer(Watchlist(path))
    watchlist_pb2_grpc.add_WatchlistServicer_to_server(servicer, server)
    log.info("watchlist %s: %d specimen(s) listed", path, len(servicer.watchlist))
    return servicer
