"""What the fuzzer found, kept as regression tests (tests/fuzz/fuzz_decode.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hostile import png_with_long_chunk, tiff_claiming_tiles

from denarius.engine import decode_budget
from denarius.engine.errors import InputError
from denarius.engine.imageio import decode_image, plan_decode, read_header

MIB = 1024 * 1024


def _peak_growth_mib(run) -> float:
    """How far ``run()`` took this process' peak RSS (VmHWM) above its RSS before."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pytest.skip("cannot reset VmHWM here (/proc/self/clear_refs)")
    before = _status_kib("VmRSS")
    try:
        run()
    except InputError:
        pass
    return (_status_kib("VmHWM") - before) / 1024


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+)", Path("/proc/self/status").read_text(), re.M)
    assert match is not None, field
    return int(match.group(1))


def test_a_small_tiff_claiming_huge_tiles_is_refused_from_its_header():
    # 64 x 64 pixels, 16,000 x 16,000 tiles: OpenCV sized its tile buffer from the claim
    # (976 MiB) and only then failed; the estimate counted the image, not its tiles.
    data = tiff_claiming_tiles(64, 64, 16000)
    plan = plan_decode(read_header(data))
    assert plan.peak_bytes > 976 * MIB
    budget = decode_budget.DecodeBudget(512 * MIB)
    previous = decode_budget.install(budget)
    try:
        with pytest.raises(InputError, match="per-image cap"):
            decode_image(data)
        assert _peak_growth_mib(lambda: decode_image(data)) < 64
    finally:
        decode_budget.uninstall(budget, previous)


def test_ordinary_tiles_cost_what_they_did():
    header = read_header(tiff_claiming_tiles(512, 512, 256))
    assert header.internal_bytes == 512 * 512 * 3  # the whole-image strip estimate still dominates


@pytest.mark.parametrize("kind", [b"IEND", b"tEXt", b"PLTE", b"tRNS", b"fdAT"])
def test_a_png_chunk_claiming_more_than_the_file_is_refused_before_decoding(kind):
    # The fuzzer's input: 45 bytes whose IEND claimed 0xBF000000 bytes; OpenCV allocated it
    # (3 GB) before reading. Each of these chunk types took 1 GB at a 1 GB claim.
    data = png_with_long_chunk(kind, 0x40000000)
    with pytest.raises(InputError, match=rf"corrupt or truncated PNG: its {kind.decode()} chunk at byte 33 claims"):
        read_header(data)
    assert _peak_growth_mib(lambda: decode_image(data)) < 64
