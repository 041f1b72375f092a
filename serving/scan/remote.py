"""``denarius scan --server HOST:PORT``: the scan through a running server's IdentifyStream.

The whole pending list goes over ONE bidirectional stream; the server's per-stream window
bounds the coins in flight, so the files are read only as fast as the server answers.
Responses come back in completion order and are matched to coins by ``request_id`` (the
coin id). Lines are the same as the local runner's (``serving/scan/records.py``); they are
flushed through the journal every ``batch_size`` answers, in completion order.

A bad image is an error line (the server answers that item with INVALID_ARGUMENT and the
stream goes on). Any other failure (server gone, overloaded, deadline, INTERNAL) stops the
scan with a message; what was written is kept, and rerunning the same command resumes.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Iterator, Sequence
from pathlib import Path

from denarius.engine.bundle import SIDES
from denarius.engine.errors import DenariusError
from denarius.serving.scan.inputs import CoinItem
from denarius.serving.scan.records import error_record, identification_record

__all__ = ["RemoteRunner", "response_record"]

log = logging.getLogger(__name__)


def response_record(item: CoinItem, response) -> dict:
    """An IdentifyResponse as a scan line (the same fields as the local runner writes).

    Raises:
        DenariusError: the item failed for a reason other than its images (retry later).
    """
    if response.HasField("error") and response.error.code != 0:
        if response.error.code_name == "INVALID_ARGUMENT":
            return error_record(item, kind="input", message=response.error.message, model_version=response.model_version or None)
        raise DenariusError(
            f"the server answered {response.error.code_name} for coin {item.coin_id!r}: {response.error.message}; "
            "the results so far are saved, rerun the same command to resume")
    candidates = [
        {
            "ric": c.ric or None,
            "emperor": c.emperor,
            "score": c.score,
            "p_ric": c.p_ric if c.HasField("p_ric") else None,
            "p_emperor": c.p_emperor if c.HasField("p_emperor") else None,
        }
        for c in response.candidates
    ]
    return identification_record(item, mode=response.mode or "joint", candidates=candidates, model_version=response.model_version,
                                 unknown=response.unknown,
                                 open_set_score=response.open_set_score if response.HasField("open_set_score") else None,
                                 watchlist_matches=[
                                     {"specimen_id": m.specimen.specimen_id, "verdict": m.verdict,
                                      "obverse_inliers": m.obverse_inliers, "reverse_inliers": m.reverse_inliers}
                                     for m in response.watchlist_matches
                                 ] or None)


class RemoteRunner:
    """Scans through ``CoinClient.identify_stream`` (see the module docstring)."""

    def __init__(self, config):
        import grpc

        from denarius.serving.client import CoinClient

        self.config = config
        self._grpc = grpc
        self.client = CoinClient(config.server, token=config.token, timeout=60.0)
        try:
            self.client.wait_until_serving(timeout=60.0)
            info = self.client.model_info()
        except (TimeoutError, grpc.RpcError) as error:
            self.client.close()
            detail = error.details() if isinstance(error, grpc.RpcError) else str(error)
            raise DenariusError(f"cannot use the server at {config.server}: {detail}") from None
        self.model_version = info.version
        self.precision = info.precision
        log.info("scanning through %s: model %s, %s %s", config.server, info.version, info.backend, info.precision)

    def close(self) -> None:
        self.client.close()

    def iter_batches(self, items: Sequence[CoinItem]) -> Iterator[list[dict]]:
        from denarius.serving.denarius.v1 import coins_pb2

        by_id = {item.coin_id: item for item in items}
        # Lines made on the request side (unreadable files, unpaired coins) while gRPC's
        # thread consumes the request generator; drained by this thread between responses.
        local: queue.SimpleQueue = queue.SimpleQueue()

        def requests():
            for item in items:
                if item.problem is not None:
                    kind, message = item.problem
                    local.put(error_record(item, kind=kind, message=message, model_version=self.model_version))
                    continue
                request = coins_pb2.IdentifyRequest(request_id=item.coin_id, top_k=self.config.top_k)
                try:
                    for side in SIDES:
                        setattr(request, side, Path(getattr(item, side)).read_bytes())
                except OSError as error:
                    local.put(error_record(item, kind="read", message=f"{side}: cannot read {getattr(item, side)}: "
                                           f"{error.strerror or error}", model_version=self.model_version))
                    continue
                yield request

        batch: list[dict] = []

        def drain_local():
            while True:
                try:
                    batch.append(local.get_nowait())
                except queue.Empty:
                    return

        try:
            for response in self.client.identify_stream(requests()):
                item = by_id.get(response.request_id)
                if item is None:
                    raise DenariusError(f"the server answered an unknown request id {response.request_id!r}")
                batch.append(response_record(item, response))
                drain_local()
                if len(batch) >= self.config.batch_size:
                    yield batch
                    batch = []
        except self._grpc.RpcError as error:
            raise DenariusError(
                f"the stream to {self.config.server} failed ({error.code().name}: {error.details()}); "
                "the results so far are saved, rerun the same command to resume") from None
        drain_local()
        if batch:
            yield batch
