"""``CoinClient``: a small synchronous client for the Denarius gRPC service.

    with CoinClient("127.0.0.1:50051", token=token, timeout=10) as client:
        answer = client.identify(obverse="obv.jpg", reverse="rev.jpg", top_k=5)
        for candidate in answer.candidates:
            print(candidate.rank, candidate.ric, candidate.score)

Unary calls are retried only when the server answers UNAVAILABLE (model still loading,
replica draining, connection refused), with exponential backoff and jitter, all within the
call's one deadline. Every other status code is raised at once as ``grpc.RpcError``:
retrying INVALID_ARGUMENT cannot help and retrying RESOURCE_EXHAUSTED makes overload worse.
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc

from denarius.engine.errors import ConfigError
from denarius.serving.denarius.v1 import coins_pb2, coins_pb2_grpc
from denarius.serving.messages import METHODS, SIDES, Image, identify_request, read_image

__all__ = ["CoinClient", "Image", "read_image", "METHODS", "SIDES"]

log = logging.getLogger(__name__)

class CoinClient:
    """A channel to one Denarius server; a context manager (or call ``close()``).

    Args:
        target: "host:port".
        token: bearer token sent as ``authorization: Bearer <token>`` metadata.
        tls: use TLS; implied by ``ca_cert``.
        ca_cert: PEM file of the CA (or self-signed certificate) to trust; None = system roots.
        server_name: expected certificate host name when it differs from the target host.
        timeout: default deadline of each call in seconds (the whole call, retries included).
        retries: how many times an UNAVAILABLE unary call is retried.
        backoff_s: first retry delay; doubles each retry, with +-50 % jitter.
        max_message_bytes: largest message sent or received.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: bool = False,
        ca_cert: str | os.PathLike | None = None,
        server_name: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.1,
        max_message_bytes: int = 16 * 1024 * 1024,
    ):
        if timeout <= 0 or retries < 0 or backoff_s < 0:
            raise ConfigError("timeout must be > 0, retries and backoff_s >= 0")
        options: list[tuple[str, int | str]] = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        if tls or ca_cert is not None:
            roots = None
            if ca_cert is not None:
                try:
                    roots = Path(ca_cert).read_bytes()
                except OSError as error:
                    raise ConfigError(f"cannot read CA certificate {ca_cert}: {error.strerror}") from None
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(roots), options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = coins_pb2_grpc.CoinServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.target, self.timeout, self.retries, self.backoff_s = target, timeout, retries, backoff_s

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> CoinClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def channel(self) -> grpc.Channel:
        return self._channel

    # -- calls -----------------------------------------------------------------------------
    def _unary(self, method, request, timeout: float | None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        for attempt in range(self.retries + 1):
            remaining = deadline - time.monotonic()
            try:
                return method(request, timeout=max(remaining, 0.001), metadata=self._metadata)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == self.retries:
                    raise
                delay = self.backoff_s * (2**attempt) * random.uniform(0.5, 1.5)
                if time.monotonic() + delay >= deadline:
                    raise
                log.debug("UNAVAILABLE (%s); retry %d in %.3f s", error.details(), attempt + 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    identify_request = staticmethod(identify_request)

    def identify(
        self,
        obverse: Image | None = None,
        reverse: Image | None = None,
        *,
        top_k: int = 0,
        request_id: str = "",
        timeout: float | None = None,
    ) -> coins_pb2.IdentifyResponse:
        """Identify one coin; ``top_k`` 0 = the server default. Raises grpc.RpcError."""
        request = self.identify_request(obverse, reverse, top_k=top_k, request_id=request_id)
        return self._unary(self._stub.Identify, request, timeout)

    def identify_stream(
        self,
        requests: Iterable[coins_pb2.IdentifyRequest],
        *,
        timeout: float | None = None,
    ) -> Iterator[coins_pb2.IdentifyResponse]:
        """Send many requests on one stream; yields responses in completion order.

        Requests without a request_id get a generated one (match responses by it). The
        request iterable is consumed lazily, as the server's flow control allows. Not
        retried; ``timeout`` (default: none) bounds the whole stream.
        """

        def with_ids():
            for request in requests:
                if not request.request_id:
                    request.request_id = uuid.uuid4().hex
                yield request

        return self._stub.IdentifyStream(with_ids(), timeout=timeout, metadata=self._metadata)

    def landmarks(
        self,
        image: Image,
        *,
        side: str,
        method: str = "optimized",
        epsilon: float | None = None,
        sparsity: float | None = None,
        window: int | None = None,
        stride: int | None = None,
        superpixels: int | None = None,
        pixels: bool = False,
        target: str | None = None,
        top_regions: int = 0,
        overlay: bool = False,
        max_iterations: int = 0,
        reference: str | None = None,
        request_id: str = "",
        timeout: float | None = None,
    ) -> coins_pb2.LandmarksResponse:
        """Landmarks of one coin side.

        Regions: ``pixels``, else ``superpixels`` (about that many), else windows of
        ``window``/``stride`` pixels (None = server defaults); the first given wins.
        ``target`` None or "" = the predicted class. ``reference``: what a removed region
        becomes, "blur" or "black" (None = server default, blur).
        """
        if side not in SIDES:
            raise ConfigError(f"side must be one of {sorted(SIDES)}, got {side!r}")
        if method not in METHODS:
            raise ConfigError(f"method must be one of {sorted(METHODS)}, got {method!r}")
        request = coins_pb2.LandmarksRequest(
            request_id=request_id, image=read_image(image, side=side), side=SIDES[side],
            method=METHODS[method], target=target or "", top_regions=top_regions,
            include_overlay=overlay, max_iterations=max_iterations,
        )
        if reference is not None:
            references = {"blur": coins_pb2.REFERENCE_BLUR, "black": coins_pb2.REFERENCE_BLACK}
            if reference not in references:
                raise ConfigError(f"reference must be one of {sorted(references)}, got {reference!r}")
            request.reference = references[reference]
        if epsilon is not None:
            request.epsilon = epsilon
        if sparsity is not None:
            request.sparsity = sparsity
        if pixels:
            request.pixels.SetInParent()
        elif superpixels is not None:
            request.superpixels.count = superpixels
        elif window is not None or stride is not None:
            request.windows.size = window or 0
            request.windows.stride = stride or 0
        return self._unary(self._stub.Landmarks, request, timeout)

    def model_info(self, *, timeout: float | None = None) -> coins_pb2.ModelInfo:
        """What the server runs: bundle version, classes, hierarchy, backend, precision."""
        return self._unary(self._stub.GetModelInfo, coins_pb2.GetModelInfoRequest(), timeout)

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """grpc.health.v1 status name: "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN" or "UNKNOWN"."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self._channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service),
                           timeout=self.timeout if timeout is None else timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def wait_until_serving(self, *, timeout: float = 60.0, poll_s: float = 0.1) -> None:
        """Block until health reports SERVING; raises TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                last = self.health(timeout=max(0.05, min(1.0, deadline - time.monotonic())))
                if last == "SERVING":
                    return
            except grpc.RpcError as error:
                last = error.code().name
            time.sleep(poll_s)
        raise TimeoutError(f"{self.target} not SERVING after {timeout:.0f} s (last: {last})")
