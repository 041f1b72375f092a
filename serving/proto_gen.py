"""Regenerate the checked-in gRPC stubs in ``serving/denarius/v1`` from ``proto/``.

    python -m denarius.serving.proto_gen            # rewrite the stubs in place
    python -m denarius.serving.proto_gen --check    # exit 1 if the checked-in stubs are stale

protoc names generated imports after the proto path (``from denarius.v1 import tensor_pb2``);
the stubs live inside the ``serving`` package, so those imports are rewritten to
``from denarius.serving.denarius.v1 import ...``. The descriptors keep their proto path
(``denarius/v1/coins.proto``), which is what server reflection reports.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

__all__ = ["PROTO_ROOT", "STUB_ROOT", "generate", "main"]

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
STUB_ROOT = REPO_ROOT / "serving"
PACKAGE_DIR = Path("denarius") / "v1"
_IMPORT = re.compile(r"^from denarius\.v1 import ", re.MULTILINE)


def generate(out_root: Path, *, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Run protoc on every ``proto_root/denarius/v1/*.proto``, writing under ``out_root``.

    Returns the written files (``*_pb2.py``, ``*_pb2.pyi``, ``*_pb2_grpc.py``), sorted.
    Raises RuntimeError if protoc fails.
    """
    from grpc_tools import protoc  # build-time dependency only (the `test` extra)

    protos = sorted((proto_root / PACKAGE_DIR).glob("*.proto"))
    if not protos:
        raise RuntimeError(f"no .proto files under {proto_root / PACKAGE_DIR}")
    out_root = Path(out_root)
    (out_root / PACKAGE_DIR).mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{proto_root}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *(str(p.relative_to(proto_root)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))
    written = []
    for path in sorted((out_root / PACKAGE_DIR).glob("*_pb2*.py*")):
        text = path.read_text()
        fixed = _IMPORT.sub("from denarius.serving.denarius.v1 import ", text)
        if fixed != text:
            path.write_text(fixed)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m denarius.serving.proto_gen", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if the stubs are stale")
    args = parser.parse_args(argv)
    if not args.check:
        for path in generate(STUB_ROOT):
            print(path.relative_to(REPO_ROOT))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        stale = [
            p.name
            for p in fresh
            if not (STUB_ROOT / PACKAGE_DIR / p.name).is_file()
            or (STUB_ROOT / PACKAGE_DIR / p.name).read_bytes() != p.read_bytes()
        ]
    if stale:
        print("stale stubs (run python -m denarius.serving.proto_gen): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
