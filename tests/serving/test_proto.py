"""The checked-in stubs are exactly what protoc generates from proto/, and they import."""

import sys
import tempfile
from pathlib import Path

from denarius.serving import proto_gen


def test_regenerating_stubs_gives_identical_files():
    with tempfile.TemporaryDirectory() as tmp:
        fresh = proto_gen.generate(Path(tmp))
        assert {p.name for p in fresh} >= {"coins_pb2.py", "coins_pb2.pyi", "coins_pb2_grpc.py"}
        checked_in = sorted(p.name for p in (proto_gen.STUB_ROOT / "denarius" / "v1").glob("*_pb2*.py*"))
        assert sorted(p.name for p in fresh) == checked_in
        for path in fresh:
            committed = proto_gen.STUB_ROOT / "denarius" / "v1" / path.name
            assert committed.read_bytes() == path.read_bytes(), (
                f"{committed} is stale: run python -m denarius.serving.proto_gen"
            )


def test_stubs_import_inside_the_serving_package():
    from denarius.serving.denarius.v1 import coins_pb2, coins_pb2_grpc

    assert "denarius.v1" not in sys.modules, "generated imports must be rewritten to denarius.serving.denarius.v1"
    assert "from denarius.v1 import" not in Path(coins_pb2_grpc.__file__).read_text()
    service = coins_pb2.DESCRIPTOR.services_by_name["CoinService"]
    assert [m.name for m in service.methods] == ["Identify", "IdentifyStream", "Landmarks", "GetModelInfo"]
    assert service.methods_by_name["IdentifyStream"].client_streaming
    assert service.methods_by_name["IdentifyStream"].server_streaming
    assert coins_pb2.DESCRIPTOR.package == "denarius.v1"
    assert hasattr(coins_pb2_grpc, "CoinServiceStub")


def test_image_presence_is_distinguishable_from_empty_bytes():
    from denarius.serving.denarius.v1 import coins_pb2

    assert not coins_pb2.IdentifyRequest().HasField("obverse")
    assert coins_pb2.IdentifyRequest(obverse=b"").HasField("obverse")


def test_check_mode_reports_stale_stubs(tmp_path, monkeypatch):
    assert proto_gen.main(["--check"]) == 0
    fake_root = tmp_path / "serving"
    (fake_root / "denarius" / "v1").mkdir(parents=True)
    monkeypatch.setattr(proto_gen, "STUB_ROOT", fake_root)
    assert proto_gen.main(["--check"]) == 1
