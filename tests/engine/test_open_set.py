"""Temperature scaling and the open-set decision in the engine (tiny bundle, real onnxruntime)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from denarius.engine.bundle import load_bundle, write_bundle_manifest
from denarius.engine.engine import CoinPair, Engine
from denarius.engine.errors import BundleError
from denarius.engine.open_set import OPEN_SET_SCORES, open_set_score


def rewritten(tiny_bundle, folder, **sections):
    """A copy of the tiny bundle whose manifest carries ``calibration`` / ``open_set``."""
    shutil.copytree(tiny_bundle, folder)
    bundle = load_bundle(folder)
    write_bundle_manifest(folder, version=bundle.version, preprocess=bundle.preprocess, hierarchy=bundle.hierarchy,
                          models=bundle.models, descriptions=bundle.descriptions, **sections)
    return folder


def photos(symbol_coin, n=3):
    return [CoinPair(obverse=symbol_coin(i)[0], reverse=symbol_coin(i + 1)[0], coin_id=f"c{i}") for i in range(n)]


def identify(folder, coins, top_k=6):
    with Engine(folder, backend="ort-cpu") as engine:
        return engine.identify(coins, top_k=top_k)


def test_an_old_bundle_without_calibration_loads_uncalibrated_and_never_unknown(tiny_bundle, symbol_coin):
    assert "calibration" not in json.loads((tiny_bundle / "manifest.json").read_text())
    bundle = load_bundle(tiny_bundle)
    assert bundle.calibration.temperature("emperor") == 1.0 and bundle.calibration.temperature("ric") == 1.0
    assert not bundle.calibration.calibrated and bundle.open_set is None
    for result in identify(tiny_bundle, photos(symbol_coin)):
        assert result.unknown is False and result.open_set_score is None


def test_temperature_changes_the_scores_but_not_the_ranking(tiny_bundle, symbol_coin, tmp_path):
    hot = rewritten(tiny_bundle, tmp_path / "hot", calibration={"emperor": {"temperature": 0.2}, "ric": {"temperature": 0.25}})
    assert load_bundle(hot).calibration.calibrated
    coins = photos(symbol_coin)
    for plain, scaled in zip(identify(tiny_bundle, coins), identify(hot, coins), strict=True):
        assert [c.ric for c in plain.candidates] == [c.ric for c in scaled.candidates]  # argmax and order kept
        assert scaled.top.score != pytest.approx(plain.top.score, rel=1e-3)
        assert scaled.top.p_ric > plain.top.p_ric  # T < 1 sharpens
        assert scaled.top.score == pytest.approx(scaled.top.p_ric * scaled.top.p_emperor, rel=1e-9)
    with Engine(hot, backend="ort-cpu") as engine:
        emperors = engine.identify([CoinPair(obverse=symbol_coin(0)[0])], top_k=3)[0]
        assert sum(c.score for c in emperors.candidates) == pytest.approx(1.0, abs=1e-9)
        info = engine.info()
        assert info["calibrated"] and info["temperatures"] == {"emperor": 0.2, "ric": 0.25}


@pytest.mark.parametrize("score", sorted(OPEN_SET_SCORES))
def test_unknown_is_set_below_the_threshold_and_the_candidates_stay(tiny_bundle, symbol_coin, tmp_path, score):
    coins = photos(symbol_coin)
    strict = rewritten(tiny_bundle, tmp_path / "strict", open_set={"score": score, "threshold": 1e9, "far": 0.05, "auroc": 0.9})
    lenient = rewritten(tiny_bundle, tmp_path / "lenient", open_set={"score": score, "threshold": -1e9, "far": 0.05, "auroc": 0.9})
    for result in identify(strict, coins, top_k=3):
        assert result.unknown is True and result.mode == "joint"
        assert len(result.candidates) == 3 and result.open_set_score is not None
    values = []
    for result in identify(lenient, coins, top_k=3):
        assert result.unknown is False and result.open_set_score is not None
        values.append(result.open_set_score)
    # a threshold between the coins' own scores splits them
    middle = float(np.median(values))
    split = rewritten(tiny_bundle, tmp_path / "split", open_set={"score": score, "threshold": middle, "far": 0.05})
    for result, value in zip(identify(split, coins), values, strict=True):
        assert result.unknown is (value < middle)


def test_one_sided_coins_and_errors_get_no_open_set_decision(tiny_bundle, symbol_coin, tmp_path):
    strict = rewritten(tiny_bundle, tmp_path / "strict", open_set={"score": "max_joint", "threshold": 1e9, "far": 0.05})
    coins = [CoinPair(obverse=symbol_coin(0)[0]), CoinPair(reverse=symbol_coin(1)[0]), CoinPair(obverse=b"not an image", reverse=b"x")]
    obverse_only, reverse_only, broken = identify(strict, coins)
    assert obverse_only.mode == "emperor" and not obverse_only.unknown and obverse_only.open_set_score is None
    assert reverse_only.mode == "ric" and not reverse_only.unknown and reverse_only.open_set_score is None
    assert broken.error is not None and not broken.unknown and broken.candidates == ()


@pytest.mark.parametrize("sections, message", [
    ({"calibration": {"emperor": {"temperature": -1.0}}}, "temperature"),
    ({"calibration": {"ric": {"temperature": "hot"}}}, "temperature"),
    ({"calibration": ["not", "an", "object"]}, "calibration"),
    ({"open_set": {"score": "bogus", "threshold": 0.5}}, "open_set.score"),
    ({"open_set": {"score": "energy", "threshold": None}}, "threshold"),
])
def test_a_malformed_calibration_or_open_set_is_refused_by_name(tiny_bundle, tmp_path, sections, message):
    folder = tmp_path / "bad"
    shutil.copytree(tiny_bundle, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(sections)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        load_bundle(folder)


def test_open_set_scores_rank_a_confident_agreeing_pair_above_a_confused_one():
    from denarius.engine.hierarchy import Hierarchy

    hierarchy = Hierarchy.from_mapping({"A 1": "A", "A 2": "A", "B 1": "B"})
    confident = (np.array([[8.0, 0.0]]), np.array([[9.0, 0.0, 0.0]]))
    confused = (np.array([[0.1, 0.0]]), np.array([[0.0, 0.0, 0.2]]))
    for name in OPEN_SET_SCORES:
        high = open_set_score(name, *confident, hierarchy)
        low = open_set_score(name, *confused, hierarchy)
        assert high[0] > low[0], name
    with pytest.raises(ValueError, match="unknown open-set score"):
        open_set_score("bogus", *confident, hierarchy)
