"""CoinServicer: the thin gRPC layer over the engine, its batcher and the landmark methods.

Every handler turns its request into engine calls and the answer into a proto; errors from
``denarius.engine.errors`` become status codes through ``denarius.serving.status`` (the one mapping), and any
other exception becomes INTERNAL with a request id that is logged with the traceback.
Blocking work never runs on the event loop: identification goes through the engine's
dynamic batcher (its own thread), landmark searches through the landmark batcher
(``denarius.engine.landmarks.batcher``: worker threads; concurrent optimised searches with the same
settings share one optimiser run).

Every handler takes the current :class:`~denarius.serving.runtime.Runtime` once, at its start,
and holds it until its answer is built, so a request in flight finishes on the bundle it
started with when the server swaps bundles (:meth:`CoinServicer.swap`); each IdentifyStream
item does the same, so items read after a swap are answered by the new bundle (every
response carries its ``model_version``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import uuid

import grpc

from denarius.engine.errors import BackendUnavailable, Cancelled, DeadlineExceeded, DenariusError, InputError, Overloaded
from denarius.serving import runtime
from denarius.serving.denarius.v1 import coins_pb2, coins_pb2_grpc, tensor_pb2
from denarius.serving.interceptors import abort_call, end_if_expired
from denarius.serving.landmark_slots import LandmarkSlots
from denarius.serving.logs import check_request_id, current_request_id, preview
from denarius.serving.messages import MalformedRequest
from denarius.serving.status import internal_message, status_for

__all__ = ["CoinServicer"]

log = logging.getLogger(__name__)


def _request_id(request) -> tuple[str, InputError | None]:
    """The id a call is logged and answered under, and why the offered one was refused.

    A valid ``request_id`` (see :func:`denarius.serving.logs.check_request_id`) is used as
    it is; an empty one is replaced by a generated id; an invalid one too, and the
    InputError saying what is wrong with it is returned for the call to fail with.
    """
    offered = getattr(request, "request_id", "")
    if not offered:
        return uuid.uuid4().hex[:16], None
    try:
        return check_request_id(offered), None
    except InputError as error:
        return uuid.uuid4().hex[:16], error


def _log_refused(rid: str, offered: str, error: InputError) -> None:
    log.info("request %s: INVALID_ARGUMENT: %s (offered: %s)", rid, error, preview(offered))


def _deadline(context) -> float | None:
    """The call's deadline as an absolute time.monotonic() value (None = no deadline).

    Raises:
        DeadlineExceeded: it has already passed, so no work is started.
    """
    remaining = context.time_remaining()
    if remaining is None:
        return None
    if remaining <= 0:
        raise DeadlineExceeded("the deadline passed before the server started the request")
    return time.monotonic() + remaining


def _guarded(handler):
    """Map errors of a unary handler onto status codes (see module docstring)."""

    @functools.wraps(handler)
    async def wrapper(self, request, context):
        rid, refused = _request_id(request)
        current_request_id.set(rid)  # this call's task only: JSON log lines carry it
        try:
            if refused is not None:
                _log_refused(rid, request.request_id, refused)
                await abort_call(context, grpc.StatusCode.INVALID_ARGUMENT, str(refused))
            response = await handler(self, request, context, rid)
            end_if_expired(context)  # finished at its deadline: gRPC has answered DEADLINE_EXCEEDED
            return response
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except DenariusError as error:
            code = status_for(error)
            if code == grpc.StatusCode.INTERNAL:
                log.error("request %s: %s", rid, error, exc_info=True)
                await abort_call(context, code, internal_message(rid))
            log.info("request %s: %s: %s", rid, code.name, error)
            await abort_call(context, code, str(error))
        except Exception:
            log.exception("request %s failed unexpectedly", rid)
            await abort_call(context, grpc.StatusCode.INTERNAL, internal_message(rid))

    return wrapper


class CoinServicer(coins_pb2_grpc.CoinServiceServicer):
    """Handlers of denarius.v1.CoinService. ``load()`` must finish before calls succeed."""

    def __init__(self, config, metrics):
        self.config = config
        self.metrics = metrics
        self.watchlist = None  # a WatchlistServicer under `serve --watchlist DIR` (serving/watchlist_service.py)
        self.runtime: runtime.Runtime | None = None
        self._retired: set[runtime.Runtime] = set()  # swapped out, closing once their requests are done
        self._retired_lock = threading.Lock()
        # The one landmark limit of the process: the HTTP frontend beside this server shares it.
        self.landmark_slots = LandmarkSlots(config.landmark_workers + config.landmark_queue)

    # -- lifecycle (load, open_runtime and close are called from an executor thread) -------
    def open_runtime(self, bundle) -> runtime.Runtime:
        """Load, verify and warm up ``bundle`` (a bundle folder) with this server's settings,
        and start its landmark workers. Raises what ``Runtime.open`` raises."""
        config = self.config
        rt = runtime.Runtime.open(
            bundle, backend=config.backend, precision=config.precision, max_batch=config.max_batch,
            max_wait_ms=config.max_wait_ms, max_queue=config.max_queue, max_pixels=config.max_pixels,
            eager_dispatch=config.eager_dispatch,
            preprocess_workers=config.preprocess_workers, threads=config.threads,
            warmup=config.warmup, on_batch=self.metrics.batch_size.observe,
            max_message_bytes=config.max_message_bytes, stream_window=config.stream_window,
            verify_key=config.bundle_key,
        )
        from denarius.engine.landmarks.batcher import LandmarkBatcher

        try:
            rt.landmark_batcher = LandmarkBatcher(
                rt.landmarks, workers=config.landmark_workers, max_batch=config.landmark_batch,
                on_run=self.metrics.landmark_run_size.observe,
            )
        except BaseException:
            rt.close()
            raise
        return rt

    def load(self, bundle=None) -> None:
        """Open ``bundle`` (default: the config's, which must then be a bundle folder) as the runtime served."""
        self.runtime = self.open_runtime(self.config.bundle if bundle is None else bundle)
        self.metrics.track_queue_depth(self.queue_depth)
        self.metrics.track_runtimes(self.open_runtimes)
        self._note_serving(self.runtime)

    def _note_serving(self, rt: runtime.Runtime) -> None:
        info = rt.engine.info()
        self.metrics.set_build_info(version=runtime.SERVER_VERSION, model_version=str(info["model_version"]),
                                    backend=str(info["backend"]), precision=str(info["precision"]))

    def swap(self, new: runtime.Runtime, *, timeout: float) -> runtime.Runtime | None:
        """Serve ``new`` from now on (one reference switch, on the event loop) and retire the
        old runtime: it takes no new request and closes, in a thread of its own, once the last
        request holding it is done (at most ``timeout`` seconds). Returns the old runtime."""
        old, self.runtime = self.runtime, new
        self._note_serving(new)
        if old is not None:
            with self._retired_lock:
                self._retired.add(old)
            old.retire(timeout=timeout, on_closed=self._closed_retired)
        return old

    def _closed_retired(self, rt: runtime.Runtime, _seconds: float) -> None:
        with self._retired_lock:
            self._retired.discard(rt)

    def open_runtimes(self) -> int:
        """Runtimes open: the one served plus swapped-out ones still finishing requests."""
        with self._retired_lock:
            return (self.runtime is not None) + len(self._retired)

    def queue_depth(self) -> int:
        rt = self.runtime
        return rt.queue_depth() if rt is not None else 0

    def close(self) -> None:
        """Close the runtime served and every swapped-out one (running searches finish first)."""
        current, self.runtime = self.runtime, None
        with self._retired_lock:
            retired = list(self._retired)
        for rt in ([current] if current is not None else []) + retired:
            rt.close()
        if self.watchlist is not None:
            self.watchlist.close()

    @property
    def landmark_batcher(self):
        """The LandmarkBatcher of the runtime served now (None until ``load()``)."""
        rt = self.runtime
        return rt.landmark_batcher if rt is not None else None

    def _acquire(self) -> runtime.Runtime:
        """The runtime served now, held for one request: ``release()`` it when done.

        Raises:
            BackendUnavailable: still loading, or closing.
        """
        while True:
            rt = self.runtime
            if rt is None:
                raise BackendUnavailable("the model bundle is still loading; retry shortly")
            if rt.acquire():
                return rt
            if self.runtime is rt:  # retired and not replaced: the server is closing
                raise BackendUnavailable("the server is shutting down; retry on another replica")

    # -- Identify --------------------------------------------------------------------------
    async def _identify(self, request, context, rid: str, method: str = "Identify") -> coins_pb2.IdentifyResponse:
        received = time.perf_counter()
        rt = self._acquire()
        try:
            pair = rt.pair_from_request(request)  # InputError when neither side is present
            deadline = _deadline(context)
            metrics = self.metrics

            def stages(times) -> None:  # on the batcher's inference thread
                metrics.observe_stages(method, queue_wait=times.queue_wait, preprocess=times.preprocess, inference=times.inference)

            future = rt.submit(pair, top_k=request.top_k or self.config.default_top_k, deadline=deadline, on_stages=stages)
            try:
                result = await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                future.cancel()  # the client went away: the batcher skips a cancelled future
                raise
            response = rt.identification_response(result, request_id=rid, received=received)
        finally:
            rt.release()
        if self.watchlist is not None and request.HasField("obverse") and request.HasField("reverse"):
            response.watchlist_matches.extend(await self.watchlist.matches(request.obverse, request.reverse))
        return response

    @_guarded
    async def Identify(self, request, context, rid):
        return await self._identify(request, context, rid)

    async def IdentifyStream(self, request_iterator, context):
        """Bounded bidirectional stream: at most ``stream_window`` requests in flight.

        A request counts as in flight from the moment it is read until its response has been
        handed to gRPC for writing; the next request is read only when a slot is free. gRPC
        asks this generator for the next response only after the previous one was written,
        so a client that stops reading stops the server reading too (HTTP/2 flow control
        then pushes back on the client's writes) instead of the server buffering answers.
        """
        window = asyncio.Semaphore(self.config.stream_window)
        done: asyncio.Queue = asyncio.Queue()
        tasks: set[asyncio.Task] = set()
        reading_finished = object()
        outstanding = 0  # read and not yet yielded; never above the window

        async def answer(request, read_at: float) -> tuple[coins_pb2.IdentifyResponse, float]:
            return await respond(request), read_at

        async def respond(request) -> coins_pb2.IdentifyResponse:
            rid, refused = _request_id(request)
            current_request_id.set(rid)  # this item's task only
            try:
                if isinstance(request, MalformedRequest):  # not valid protobuf (see RequestParsingInterceptor)
                    raise request.error
                if refused is not None:
                    _log_refused(rid, request.request_id, refused)
                    rid = request.request_id  # the error item carries the id the client sent, to match it by
                    raise refused
                return await self._identify(request, context, rid, "IdentifyStream")
            except asyncio.CancelledError:
                raise
            except Exception as error:  # one bad coin must not end the stream
                if isinstance(error, DenariusError) and status_for(error) != grpc.StatusCode.INTERNAL:
                    code, message = status_for(error), str(error)
                else:
                    log.error("stream item %s failed unexpectedly", rid, exc_info=True)
                    code, message = grpc.StatusCode.INTERNAL, internal_message(rid)
                return coins_pb2.IdentifyResponse(
                    request_id=rid,
                    error=tensor_pb2.Error(code=code.value[0], code_name=code.name, message=message),
                )

        def finished(task: asyncio.Task) -> None:
            tasks.discard(task)
            done.put_nowait(task)

        async def reader() -> None:
            nonlocal outstanding
            try:
                iterator = request_iterator.__aiter__()
                while True:
                    await window.acquire()
                    try:
                        request = await iterator.__anext__()
                    except StopAsyncIteration:
                        window.release()
                        break
                    read_at = time.perf_counter()
                    outstanding += 1
                    self.metrics.stream_outstanding.inc()
                    self.metrics.note_stream_outstanding(outstanding)
                    task = asyncio.create_task(answer(request, read_at))
                    tasks.add(task)
                    task.add_done_callback(finished)
            finally:
                done.put_nowait(reading_finished)

        reader_task = asyncio.create_task(reader())
        finished_reading = False
        try:
            while True:
                item = await done.get()
                if item is reading_finished:
                    finished_reading = True
                    await reader_task  # re-raises a transport error from the reader
                else:
                    response, read_at = item.result()
                    self.metrics.stream_items.labels(
                        code=response.error.code_name if response.HasField("error") else "OK").inc()
                    self.metrics.latency.labels(method="IdentifyStream").observe(time.perf_counter() - read_at)
                    yield response
                    outstanding -= 1
                    self.metrics.stream_outstanding.dec()
                    window.release()
                if finished_reading and not tasks and done.empty():
                    return
        finally:
            reader_task.cancel()
            for task in list(tasks):
                task.cancel()
            self.metrics.stream_outstanding.dec(outstanding)

    # -- Landmarks -------------------------------------------------------------------------
    @_guarded
    async def Landmarks(self, request, context, rid):
        received = time.perf_counter()
        rt = self._acquire()  # held until the answer is built: a swap closes it only after that
        try:
            return await self._landmarks_on(rt, request, context, rid, received)
        finally:
            rt.release()

    async def _landmarks_on(self, rt: runtime.Runtime, request, context, rid: str, received: float):
        job = rt.landmark_job(request)  # validates everything before queueing
        client_deadline = _deadline(context)
        # Every search ends by the server's own limit too: the drain can wait for all of them.
        limit = time.monotonic() + self.config.landmark_timeout_s
        deadline = limit if client_deadline is None else min(client_deadline, limit)
        gave_up = threading.Event()  # set when the RPC ends without us (cancelled, deadline)
        context.add_done_callback(lambda _context: gave_up.set())

        def should_stop() -> bool:
            return gave_up.is_set() or (deadline is not None and time.monotonic() >= deadline)

        job.should_stop, job.deadline = should_stop, deadline

        def settled(future) -> None:
            # Gave up while queued (future cancelled), at its start or while running
            # (Cancelled, or DeadlineExceeded when its deadline passed): either way the
            # search ended for its caller's sake.
            if future.cancelled() or isinstance(future.exception(), (Cancelled, DeadlineExceeded)):
                self.metrics.landmarks_cancelled.inc()
            slots.release()

        # The slot is held until the work really ends, not merely until this call is
        # cancelled: counting it as free would let cancel-and-resend queue unbounded work.
        # A running search polls should_stop between forward calls, so it ends soon after
        # its caller (and everyone sharing its run) cancels or runs out of time.
        slots = self.landmark_slots
        if not slots.try_acquire():
            raise Overloaded(slots.busy_message())
        try:
            future = rt.landmark_batcher.submit(job)
        except BaseException:
            slots.release()
            raise
        future.add_done_callback(settled)
        try:
            result = await asyncio.wrap_future(future)  # cancelling this cancels a still-queued search
        except DeadlineExceeded:
            if deadline == limit and time.monotonic() >= limit:
                raise DeadlineExceeded(
                    f"the landmark search ran past this server's {self.config.landmark_timeout_s:g} s limit "
                    "(serve --landmark-timeout); ask for fewer regions or iterations") from None
            raise
        started = job.started if job.started is not None else received
        prepared = job.prepared if job.prepared is not None else started
        self.metrics.observe_stages("Landmarks", queue_wait=started - received, preprocess=prepared - started,
                                    inference=time.perf_counter() - prepared)
        return rt.landmarks_response(result, request_id=rid, received=received, started=started)

    # -- GetModelInfo ----------------------------------------------------------------------
    @_guarded
    async def GetModelInfo(self, request, context, rid):
        rt = self._acquire()
        try:
            return rt.model_info()
        finally:
            rt.release()
