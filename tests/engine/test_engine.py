"""Engine.identify on a real tiny bundle with real onnxruntime sessions.

The reference is computed independently: plain onnxruntime sessions on the bundle's ONNX
files, a float64 softmax and the product p(e|Io)[parent(r)] * p(r|Ir) written out here.
"""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from denarius.engine.bundle import load_bundle
from denarius.engine.engine import CoinPair, Engine, Identification
from denarius.engine.errors import InputError
from denarius.engine.preprocess import preprocess

SCORE_TOL = 1e-5


def coin_jpeg(seed: int, size: int = 160) -> bytes:
    """A distinct synthetic coin photo: a textured disc with relief strokes on a plain ground."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), rng.integers(200, 255, 3), np.uint8)
    centre = (size // 2 + int(rng.integers(-8, 9)), size // 2 + int(rng.integers(-8, 9)))
    cv2.circle(image, centre, int(size * 0.38), tuple(int(v) for v in rng.integers(60, 180, 3)), -1)
    for _ in range(12):
        p1, p2 = rng.integers(size // 4, 3 * size // 4, (2, 2))
        cv2.line(image, tuple(map(int, p1)), tuple(map(int, p2)), tuple(int(v) for v in rng.integers(0, 255, 3)), int(rng.integers(1, 5)))
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def coins() -> list[CoinPair]:
    return [CoinPair(obverse=coin_jpeg(2 * i), reverse=coin_jpeg(2 * i + 1), coin_id=f"c{i}") for i in range(10)]


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


@pytest.fixture(scope="module")
def engine(bundle):
    with Engine(bundle, backend="ort-cpu", precision="fp32") as engine:
        yield engine


def softmax(logits):
    z = logits.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def reference(bundle, pairs, *, top_k):
    """Independent computation: {coin_id: [(ric, joint, p_ric, emperor, p_emperor)]}."""
    import onnxruntime as ort

    def probabilities(model, sources, side):
        session = ort.InferenceSession(str(bundle.file(model, "fp32")), providers=["CPUExecutionProvider"])
        batch = np.stack([preprocess(s, bundle.preprocess, side=side) for s in sources])
        return softmax(session.run(["logits"], {"image": batch})[0])

    p_emp = probabilities("emperor", [p.obverse for p in pairs], "obverse")
    p_ric = probabilities("ric", [p.reverse for p in pairs], "reverse")
    h = bundle.hierarchy
    parent = {r: h.emperors.index(h.emperor_of(r)) for r in h.rics}
    out = {}
    for i, pair in enumerate(pairs):
        rows = [(r, p_emp[i, parent[r]] * p_ric[i, k], p_ric[i, k], h.emperors[parent[r]], p_emp[i, parent[r]])
                for k, r in enumerate(h.rics)]
        rows.sort(key=lambda row: -row[1])
        out[pair.coin_id] = rows[:top_k]
    return out


def assert_same(a: Identification, b: Identification):
    assert a.mode == b.mode and a.coin_id == b.coin_id
    assert [c.label for c in a.candidates] == [c.label for c in b.candidates]
    np.testing.assert_allclose([c.score for c in a.candidates], [c.score for c in b.candidates], rtol=0, atol=SCORE_TOL)


# ------------------------------------------------------------------ correctness


def test_matches_independent_onnxruntime_computation(engine, bundle, coins):
    results = engine.identify(coins, top_k=4)
    expected = reference(bundle, coins, top_k=4)
    assert len(results) == len(coins)
    for result in results:
        assert result.ok and result.mode == "joint" and result.model_version == "tiny-test"
        want = expected[result.coin_id]
        assert [c.ric for c in result.candidates] == [row[0] for row in want]
        for candidate, (ric, joint, p_ric, emperor, p_emperor) in zip(result.candidates, want, strict=True):
            assert candidate.emperor == emperor
            assert candidate.score == pytest.approx(joint, abs=SCORE_TOL)
            assert candidate.p_ric == pytest.approx(p_ric, abs=SCORE_TOL)
            assert candidate.p_emperor == pytest.approx(p_emperor, abs=SCORE_TOL)
            assert candidate.reverse_description == bundle.descriptions[ric]["reverse"]


@pytest.mark.parametrize("max_batch", [1, 3, 7])
def test_batch_size_does_not_change_results(bundle, engine, coins, max_batch):
    baseline = engine.identify(coins)
    with Engine(bundle, backend="ort-cpu", precision="fp32", max_batch=max_batch, preprocess_workers=1) as other:
        for a, b in zip(baseline, other.identify(coins), strict=True):
            assert_same(a, b)


def test_order_of_coins_does_not_change_results(engine, coins):
    baseline = {r.coin_id: r for r in engine.identify(coins)}
    order = np.random.default_rng(3).permutation(len(coins))
    shuffled = engine.identify([coins[i] for i in order])
    assert [r.coin_id for r in shuffled] == [coins[i].coin_id for i in order]
    for result in shuffled:
        assert_same(result, baseline[result.coin_id])


def test_all_source_kinds_give_the_same_answer(engine, bundle, coins, tmp_path):
    pair = coins[0]
    path = tmp_path / "reverse.jpg"
    path.write_bytes(pair.reverse)
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(pair.obverse, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    variants = [
        CoinPair(obverse=decoded, reverse=str(path), coin_id="c0"),
        CoinPair(obverse=preprocess(pair.obverse, bundle.preprocess), reverse=path, coin_id="c0"),
        CoinPair(obverse=bytearray(pair.obverse), reverse=preprocess(pair.reverse, bundle.preprocess), coin_id="c0"),
    ]
    [baseline] = engine.identify([pair])
    for result in engine.identify(variants):
        assert_same(result, baseline)


def test_one_sided_requests_rank_their_own_model(engine, bundle, coins):
    h = bundle.hierarchy
    obverse_only = [CoinPair(obverse=c.obverse, coin_id=c.coin_id) for c in coins[:4]]
    reverse_only = [CoinPair(reverse=c.reverse, coin_id=c.coin_id) for c in coins[:4]]
    results = engine.identify(obverse_only + reverse_only + coins[:2], top_k=10)  # mixed in one batch
    import onnxruntime as ort

    for model, pairs, got in (("emperor", obverse_only, results[:4]), ("ric", reverse_only, results[4:8])):
        side = "obverse" if model == "emperor" else "reverse"
        session = ort.InferenceSession(str(bundle.file(model)), providers=["CPUExecutionProvider"])
        probs = softmax(session.run(None, {"image": np.stack([preprocess(getattr(p, side), bundle.preprocess) for p in pairs])})[0])
        classes = h.emperors if model == "emperor" else h.rics
        for row, result in zip(probs, got, strict=True):
            assert result.mode == model
            assert len(result.candidates) == len(classes)  # top_k larger than the class count
            assert [c.label for c in result.candidates] == [classes[k] for k in np.argsort(-row, kind="stable")]
            np.testing.assert_allclose([c.score for c in result.candidates], np.sort(row)[::-1], atol=SCORE_TOL)
            if model == "emperor":
                assert all(c.ric is None and c.p_ric is None for c in result.candidates)
            else:
                assert all(c.p_emperor is None and c.emperor == h.emperor_of(c.ric) for c in result.candidates)
    assert [r.mode for r in results[8:]] == ["joint", "joint"]


def test_corrupt_image_fails_only_its_own_coin(engine, coins):
    bad = CoinPair(obverse=coins[2].obverse, reverse=coins[2].reverse[:200], coin_id="truncated")
    batch = [*coins[:2], bad, CoinPair(coin_id="empty"), "not a pair", *coins[2:5]]
    results = engine.identify(batch)
    assert [r.ok for r in results] == [True, True, False, False, False, True, True, True]
    assert results[2].coin_id == "truncated" and results[2].error.side == "reverse" and not results[2].candidates
    assert "neither side" in str(results[3].error) and "CoinPair" in str(results[4].error)
    with pytest.raises(InputError, match="reverse"):
        _ = results[2].top
    clean = engine.identify(coins[:5])
    for got, want in zip(results[:2] + results[5:], clean, strict=True):
        assert_same(got, want)
    with pytest.raises(InputError, match="coin 2"):
        engine.identify(batch, errors="raise")


def test_bad_arguments_are_input_errors(engine, coins, bundle):
    with pytest.raises(InputError, match="top_k"):
        engine.identify(coins[:1], top_k=0)
    wrong = np.zeros((3, 10, 10), np.float32)
    [result] = engine.identify([CoinPair(obverse=wrong)])
    assert "shape (3, 64, 64)" in str(result.error)
    assert engine.identify([]) == []


def test_many_batches_pipeline_and_reuse_buffers(bundle, coins):
    pairs = [CoinPair(obverse=c.obverse, reverse=c.reverse, coin_id=f"{c.coin_id}-{k}") for k in range(3) for c in coins]
    with Engine(bundle, backend="ort-cpu", precision="fp32", max_batch=4) as small:
        first = small.identify(pairs)
        second = small.identify(pairs)  # reused buffers must not leak the previous call's rows
    for a, b in zip(first, second, strict=True):
        assert_same(a, b)
    for a, b in zip(first[:10], first[10:20], strict=True):
        assert [c.label for c in a.candidates] == [c.label for c in b.candidates]


def test_closed_engine_refuses_work(bundle, coins):
    engine = Engine(bundle, backend="ort-cpu")
    engine.close()
    engine.close()  # idempotent
    with pytest.raises(Exception, match="closed"):
        engine.identify(coins[:1])


# ------------------------------------------------------------------ precision


@pytest.fixture(scope="module")
def int8_bundle(tiny_bundle, tmp_path_factory, coins):
    """The tiny bundle with INT8 variants (made by denarius.export.quantize when the fixture has none)."""
    source = load_bundle(tiny_bundle)
    if all(source.has(m, "int8") for m in ("emperor", "ric")):
        return tiny_bundle
    quantize = pytest.importorskip("denarius.export.quantize")
    root = tmp_path_factory.mktemp("int8_bundle")
    for item in tiny_bundle.iterdir():
        shutil.copy(item, root / item.name)
    manifest = json.loads((root / "manifest.json").read_text())
    sides = {"emperor": "obverse", "ric": "reverse"}
    calibration = [coin_jpeg(100 + i) for i in range(16)]
    from denarius.engine.bundle import sha256_file

    for model in sides:
        out = root / f"{model}.int8.onnx"
        quantize.quantize_int8(root / f"{model}.onnx", out, calibration_sources=calibration, spec=source.preprocess,
                               config=quantize.QuantizeConfig(calibration_size=16, evaluation_size=1, batch_size=8))
        manifest["models"][model]["files"]["int8"] = out.name
        manifest["models"][model]["agreement"] = {"int8": {"top1_agreement": 0.99}}
        manifest["files"][out.name] = sha256_file(out)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_int8_loads_by_default_and_agrees_with_fp32(int8_bundle, coins):
    bundle = load_bundle(int8_bundle)
    pairs = coins + [CoinPair(obverse=coin_jpeg(200 + i), reverse=coin_jpeg(300 + i), coin_id=f"x{i}") for i in range(10)]
    with Engine(bundle, backend="ort-cpu") as int8, Engine(bundle, backend="ort-cpu", precision="fp32") as fp32:
        assert int8.precision == "int8" and fp32.precision == "fp32"
        a, b = int8.identify(pairs), fp32.identify(pairs)
    emperor_agree = np.mean([x.candidates[0].emperor == y.candidates[0].emperor for x, y in zip(a, b, strict=True)])
    p_diff = max(abs(x.candidates[0].p_emperor - y.candidates[0].p_emperor) for x, y in zip(a, b, strict=True))
    ric_agree = np.mean([x.candidates[0].ric == y.candidates[0].ric for x, y in zip(a, b, strict=True)])
    assert emperor_agree >= 0.8, f"int8 agrees with fp32 on only {emperor_agree:.0%} of top emperors"
    assert ric_agree >= 0.8, f"int8 agrees with fp32 on only {ric_agree:.0%} of top RIC leaves"
    assert p_diff < 0.02


def test_int8_not_default_when_agreement_is_low(int8_bundle, tmp_path):
    for item in int8_bundle.iterdir():
        shutil.copy(item, tmp_path / item.name)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["models"]["ric"]["agreement"] = {"int8": {"top1_agreement": 0.95}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with Engine(tmp_path, backend="ort-cpu") as engine:
        assert engine.precision == "fp32"
    with Engine(tmp_path, backend="ort-cpu", precision="int8") as engine:
        assert engine.precision == "int8"


def test_lookahead_starts_depth_groups_ahead_and_keeps_order():
    from denarius.engine.lookahead import lookahead

    started = []
    seen = []
    for group, handle in lookahead(range(5), start=lambda g: started.append(g) or g * 10, depth=2):
        assert started == list(range(min(group + 3, 5)))  # the consumed group plus two ahead
        seen.append((group, handle))
    assert seen == [(g, g * 10) for g in range(5)]
    assert [g for g, _ in lookahead([], start=lambda g: g, depth=2)] == []
    with pytest.raises(ValueError, match="depth"):
        list(lookahead(range(2), start=lambda g: g, depth=-1))
