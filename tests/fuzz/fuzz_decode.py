"""Coverage-guided fuzzing (atheris, libFuzzer) of what a client controls: image bytes and
request bytes.

Every input goes down both paths the server takes:

1. as an encoded image: header parsers, decode plan and budget, OpenCV's decoder, the RGB
   conversion, coin finding and the canonical crop (``engine.preprocess.preprocess``);
2. as the wire bytes of a ``denarius.v1.IdentifyRequest``: parsing
   (``serving.messages.parse_request``, what the server's RequestParsingInterceptor runs),
   the request -> ``CoinPair`` conversion (``serving.runtime.Runtime.pair_from_request``),
   then each side present through path 1.

The only exception allowed is the project's ``InputError`` (a bad input, said so); anything
else, a network input that is not (3, S, S) finite float32, a crash, a timeout or an
out-of-memory is a finding: libFuzzer stops, writes the input to ``-artifact_prefix`` and
exits non-zero. Decodes run under a 512 MiB decode budget (640 MiB is the server's default
per-image cap), so a bomb is refused from its header as in the server; and the budget's
estimate is checked too: an input that takes the process' peak RSS (VmHWM, reset before
each input) more than ``PEAK_SLACK`` above the budget's per-image cap is a finding (a
decoder that allocates more than the header said).

Usage (libFuzzer flags pass through; with no corpus folder the seed corpus of
``tests/fuzz/hostile.py`` is written to a temporary one)::

    python tests/fuzz/fuzz_decode.py -max_total_time=60 [-timeout=30] [CORPUS_DIR ...]
    python tests/fuzz/fuzz_decode.py --write-seeds DIR      # the seed corpus only, then exit
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["denarius"]):
    import numpy as np

    from denarius.engine import decode_budget
    from denarius.engine.errors import InputError
    from denarius.engine.preprocess import PreprocessSpec, preprocess
    from denarius.serving.denarius.v1 import coins_pb2
    from denarius.serving.messages import parse_request
    from denarius.serving.runtime import Runtime

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostile import seed_files

MIB = 1024 * 1024
SPEC = PreprocessSpec.for_input_size(64)  # the tiny test bundle's contract; decoding does not depend on it
IMAGE_CAP = 512 * MIB
PEAK_SLACK = 128 * MIB
DEFAULT_FLAGS = ("-timeout=30", "-rss_limit_mb=3072", "-print_final_stats=1")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def _reset_peak() -> int | None:
    """Reset VmHWM to the current RSS; returns the RSS in bytes (None: no /proc to use)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return 1024 * _status_kib("VmRSS")
    except (OSError, LookupError):
        return None


def _check_side(source: object, side: str | None) -> None:
    tensor = preprocess(source, SPEC, side=side)  # type: ignore[arg-type]
    if tensor.shape != (3, SPEC.crop, SPEC.crop) or tensor.dtype != np.float32 or not np.isfinite(tensor).all():
        raise AssertionError(f"bad network input {tensor.shape} {tensor.dtype}")


def one_input(data: bytes) -> None:
    """Both paths for one input; returns quietly or raises InputError when it is refused."""
    try:
        _check_side(data, side=None)
    except InputError:
        pass
    request = parse_request(coins_pb2.IdentifyRequest, data)
    pair = Runtime.pair_from_request(None, request)  # type: ignore[arg-type]  # uses no state
    for side in ("obverse", "reverse"):
        source = getattr(pair, side)
        if source is not None:
            try:
                _check_side(source, side=side)
            except InputError as error:
                if error.side != side:
                    raise AssertionError(f"{side} error names side {error.side!r}: {error}") from None


def test_one_input(data: bytes) -> None:
    before = _reset_peak()
    try:
        one_input(data)
    except InputError:
        pass
    if before is not None:
        grown = 1024 * _status_kib("VmHWM") - before
        if grown > IMAGE_CAP + PEAK_SLACK:
            raise AssertionError(f"this input took the peak RSS {grown / MIB:,.0f} MiB above the RSS before it; "
                                 f"the decode budget admits at most {IMAGE_CAP / MIB:,.0f} MiB an image")


def seed_corpus() -> dict[str, bytes]:
    """The hostile files, and IdentifyRequests carrying them (valid and broken on the wire)."""
    files = seed_files()
    seeds = {f"image_{name}": data for name, data in files.items()}
    good, bad = files["coin.jpg"], files["truncated.png"]
    requests = {
        "pair": coins_pb2.IdentifyRequest(request_id="seed-1", obverse=good, reverse=files["coin_rgba16.png"], top_k=3),
        "obverse_only": coins_pb2.IdentifyRequest(obverse=files["coin.webp"]),
        "bad_reverse": coins_pb2.IdentifyRequest(obverse=good, reverse=bad),
        "bomb": coins_pb2.IdentifyRequest(reverse=files["bomb_16bit_rgba.png"]),
        "empty_side": coins_pb2.IdentifyRequest(obverse=b""),
        "no_side": coins_pb2.IdentifyRequest(request_id="x"),
    }
    for name, request in requests.items():
        seeds[f"request_{name}"] = request.SerializeToString()
    wire = seeds["request_pair"]
    seeds["request_truncated"] = wire[: len(wire) // 2]
    seeds["request_bad_utf8"] = b"\x0a\x03\xff\xfe\xfd"
    return seeds


def write_seed_corpus(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    seeds = seed_corpus()
    for name, data in seeds.items():
        (folder / name).write_bytes(data)
    return len(seeds)


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "--write-seeds":
        print(f"fuzz: {write_seed_corpus(Path(argv[2]))} seed inputs in {argv[2]}")
        return
    decode_budget.install(decode_budget.DecodeBudget(IMAGE_CAP, image_bytes=IMAGE_CAP, wait_s=0.0))
    args = list(argv)
    flags = [a for a in args[1:] if a.startswith("-")]
    for flag in DEFAULT_FLAGS:
        if not any(a.startswith(flag.split("=")[0] + "=") for a in flags):
            args.append(flag)
    if not any(a.startswith("-artifact_prefix=") for a in flags):
        findings = Path(tempfile.mkdtemp(prefix="denarius-fuzz-findings-"))
        args.append(f"-artifact_prefix={findings}{os.sep}")
        print(f"fuzz: findings (if any) go to {findings}", file=sys.stderr)
    if not any(not a.startswith("-") for a in args[1:]):
        corpus = Path(tempfile.mkdtemp(prefix="denarius-fuzz-corpus-"))
        print(f"fuzz: {write_seed_corpus(corpus)} seed inputs in {corpus}", file=sys.stderr)
        args.append(str(corpus))
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
