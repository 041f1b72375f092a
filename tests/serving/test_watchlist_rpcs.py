"""The Watchlist service and Identify's watchlist_matches, through a real server on a
loopback port (tiny bundle, real onnxruntime, a real watchlist directory), behind tokens."""

from __future__ import annotations

import grpc
import pytest

from denarius.serving.denarius.v1 import coins_pb2, coins_pb2_grpc, watchlist_pb2, watchlist_pb2_grpc
from denarius.serving.scan.inputs import CoinItem
from denarius.serving.scan.remote import response_record
from denarius.serving.server import BackgroundServer
from denarius.training.synth.specimen_set import generate_specimens

from serving_helpers import server_config

TOKEN = "watchlist-token-0123456789"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """{specimen_id: (obverse bytes, reverse bytes)} of 3 listing photos (types 0-2)."""
    root = tmp_path_factory.mktemp("specimens")
    generate_specimens(root, n_specimens=3, dies_per_type=1, preset="tiny", min_size=256, max_size=256, workers=1, progress=False)
    import csv

    with (root / "manifest.csv").open() as handle:
        return {r["specimen_id"]: ((root / r["obverse"]).read_bytes(), (root / r["reverse"]).read_bytes())
                for r in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    folder = tmp_path_factory.mktemp("served") / "watchlist"
    with BackgroundServer(server_config(tiny_bundle, tokens=(TOKEN,), watchlist=folder)) as running:
        yield running


@pytest.fixture
def channel(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as opened:
        yield opened


def test_watchlist_rpcs_end_to_end(channel, photos):
    stub = watchlist_pb2_grpc.WatchlistStub(channel)
    coins = coins_pb2_grpc.CoinServiceStub(channel)
    (first, (obverse, reverse)), (second, other) = list(photos.items())[:2]

    with pytest.raises(grpc.RpcError) as caught:
        stub.ListSpecimens(watchlist_pb2.ListSpecimensRequest(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # the same tokens as CoinService

    # an empty watchlist: an empty answer, not an error
    empty = stub.Match(watchlist_pb2.MatchRequest(obverse=obverse, reverse=reverse), metadata=AUTH, timeout=30)
    assert list(empty.matches) == [] and empty.listed == 0

    added = stub.AddSpecimen(watchlist_pb2.AddSpecimenRequest(specimen_id=first, obverse=obverse, reverse=reverse,
                                                              source="report 7", note="silver"), metadata=AUTH, timeout=30)
    assert (added.specimen_id, added.source, added.note) == (first, "report 7", "silver") and added.added > 0
    stub.AddSpecimen(watchlist_pb2.AddSpecimenRequest(specimen_id=second, obverse=other[0], reverse=other[1]), metadata=AUTH, timeout=30)
    listed = stub.ListSpecimens(watchlist_pb2.ListSpecimensRequest(), metadata=AUTH, timeout=10)
    assert [s.specimen_id for s in listed.specimens] == [first, second] and listed.total == 2

    found = stub.Match(watchlist_pb2.MatchRequest(obverse=obverse, reverse=reverse), metadata=AUTH, timeout=30)
    assert found.matches[0].specimen.specimen_id == first and found.matches[0].verdict == "same_specimen"
    assert found.matches[0].obverse_inliers >= 20 and found.listed == 2

    # Identify and IdentifyStream carry the matches
    answer = coins.Identify(coins_pb2.IdentifyRequest(obverse=obverse, reverse=reverse), metadata=AUTH, timeout=30)
    assert answer.candidates and answer.watchlist_matches[0].specimen.specimen_id == first
    record = response_record(CoinItem(coin_id="c1", obverse=None, reverse=None), answer)  # a `scan --server` line
    assert record["watchlist_matches"][0]["specimen_id"] == first
    assert record["watchlist_matches"][0]["verdict"] == "same_specimen"
    one_sided = coins.Identify(coins_pb2.IdentifyRequest(obverse=obverse), metadata=AUTH, timeout=30)
    assert list(one_sided.watchlist_matches) == []
    streamed = list(coins.IdentifyStream(iter([coins_pb2.IdentifyRequest(request_id="a", obverse=other[0], reverse=other[1])]),
                                         metadata=AUTH, timeout=30))
    assert streamed[0].watchlist_matches[0].specimen.specimen_id == second

    removed = stub.RemoveSpecimen(watchlist_pb2.RemoveSpecimenRequest(specimen_id=second), metadata=AUTH, timeout=10)
    assert removed.specimen_id == second
    assert stub.ListSpecimens(watchlist_pb2.ListSpecimensRequest(), metadata=AUTH, timeout=10).total == 1


@pytest.mark.parametrize("call, request_message, code, words", [
    ("RemoveSpecimen", watchlist_pb2.RemoveSpecimenRequest(specimen_id="nobody"), grpc.StatusCode.NOT_FOUND,
     "not on the watchlist"),
    ("Match", watchlist_pb2.MatchRequest(obverse=b"\xff\xd8\xff not a jpeg", reverse=b"GIF89a"), grpc.StatusCode.INVALID_ARGUMENT,
     "obverse"),
    ("Match", watchlist_pb2.MatchRequest(obverse=b"x"), grpc.StatusCode.INVALID_ARGUMENT, "reverse"),
    ("AddSpecimen", watchlist_pb2.AddSpecimenRequest(specimen_id="", obverse=b"x", reverse=b"y"), grpc.StatusCode.INVALID_ARGUMENT,
     ""),
])
def test_bad_requests_get_a_clear_status(channel, call, request_message, code, words):
    stub = watchlist_pb2_grpc.WatchlistStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        getattr(stub, call)(request_message, metadata=AUTH, timeout=10)
    assert caught.value.code() == code
    assert words in caught.value.details()


def test_a_listed_id_cannot_be_added_twice(channel, photos):
    stub = watchlist_pb2_grpc.WatchlistStub(channel)
    specimen_id, (obverse, reverse) = list(photos.items())[2]
    request = watchlist_pb2.AddSpecimenRequest(specimen_id=specimen_id, obverse=obverse, reverse=reverse)
    stub.AddSpecimen(request, metadata=AUTH, timeout=30)
    with pytest.raises(grpc.RpcError) as caught:
        stub.AddSpecimen(request, metadata=AUTH, timeout=30)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
