"""`denarius bench`: a quick run on the tiny bundle writes the JSON a reader relies on."""

from __future__ import annotations

import json
import sqlite3

from denarius.apps.cli import main


def test_quick_landmark_bench_writes_json_with_ratios(tiny_bundle, tmp_path):
    out = tmp_path / "bench"
    code = main(["bench", str(tiny_bundle), "--quick", "--sections", "landmarks", "--out", str(out)])
    assert code in (0, 1)  # 1: a ratio target missed, which a random-init tiny model may do
    results = json.loads((out / "bench.json").read_text())
    methods = results["landmarks"]["methods"]
    assert set(methods) == {"optimized", "optimized_binding", "optimized_at_cap", "occlusion", "saliency"}
    windows = ((64 - 11) // 3 + 1 + 1) ** 2  # 19 x 19 windows of 11 px, stride 3, at 64 px
    assert methods["occlusion"]["forward_equivalents_per_image"] == windows + 1
    for name in ("optimized", "optimized_binding", "optimized_at_cap"):
        # a forward pass of the image and of its reference, 3 per iteration, one verifying pass
        (iterations,) = methods[name]["iterations"]
        assert 1 <= iterations <= 100
        assert methods[name]["forward_equivalents_per_image"] == 3 * iterations + 3
    assert 0 < methods["optimized_at_cap"]["epsilon"] <= 1
    # the quick run times the worst case with one image per run only: the same run again
    by_images = results["landmarks"]["at_cap_by_images_per_run"]
    assert list(by_images) == ["1"] and by_images["1"]["iterations"] == methods["optimized_at_cap"]["iterations"]
    ratios = results["ratios"]
    assert ratios["landmarks_occlusion_vs_optimized_at_cap_forward_passes"] == round(
        methods["occlusion"]["forward_equivalents_per_image"] / methods["optimized_at_cap"]["forward_equivalents_per_image"], 3)
    assert ratios["landmarks_occlusion_vs_optimized_at_cap_1_per_run"] == round(
        methods["occlusion"]["seconds_per_image"] / by_images["1"]["seconds_per_image"], 3)
    assert results["targets"]["landmarks_occlusion_vs_optimized_at_cap_8_per_run"]["met"] is None  # not run
    markdown = (out / "bench.md").read_text()
    assert markdown.count("landmarks optimized") == 3
    assert "landmarks optimised at the cap, 1 image(s) per run" in markdown


def test_grpc_landmark_bench_times_searches_alone_and_shared(tiny_bundle, photo_bytes, tmp_path):
    from denarius.apps.bench.config import BenchConfig
    from denarius.apps.bench.landmarks import bench_grpc_landmarks
    from denarius.engine.bundle import load_bundle

    config = BenchConfig.quick_config(tiny_bundle, tmp_path)
    pairs = [(photo_bytes["obverse"], photo_bytes["reverse"])]
    result = bench_grpc_landmarks(load_bundle(tiny_bundle), config, pairs, callers=3)
    assert (result["callers"], result["searches"]) == (3, 3)
    for label, batch in (("alone", 1), ("shared", 8)):
        run = result[label]
        assert run["landmark_batch"] == batch and run["searches_per_s"] > 0
        assert len(run["iterations"]) == 3 and all(1 <= i <= 100 for i in run["iterations"])
    # the same photo and settings: shared runs answer exactly as lone ones do
    assert result["shared"]["iterations"] == result["alone"]["iterations"]


def test_quick_bench_of_preprocessing_openvino_and_grpc_writes_the_issue_17_keys(tiny_bundle, tmp_path):
    out = tmp_path / "bench"
    code = main(["bench", str(tiny_bundle), "--quick", "--sections", "model_only", "engine", "openvino", "preprocess", "grpc",
                 "--out", str(out)])
    assert code in (0, 1)  # 1: a target missed, which a quick run on a busy host may do
    results = json.loads((out / "bench.json").read_text())
    stages = results["preprocess"]["ms_per_image"]
    assert set(stages) == {"decode", "locate_coin", "warp_and_blank", "normalize", "total"}
    assert all(v > 0 for v in stages.values())
    assert results["preprocess"]["jpeg_500px"]["decoded_side_px_median"] < 500  # a reduced DCT decode
    assert set(results["preprocess"]["throughput"]) == {"1", "2"}
    ratios = results["ratios"]
    assert ratios["preprocess_ms_per_image_500px"] == stages["total"]
    grpc = results["grpc"]
    assert ratios["grpc_p50_minus_inprocess_ms"] == round(grpc["unary"]["1"]["p50"] - min(
        grpc["inprocess_single_coin_ms"]["p50"], grpc["inprocess_batcher_single_coin_ms"]["p50"]), 3)
    assert ratios["engine_vs_ort_model_only"] is not None
    openvino = results["openvino"]
    if "skipped" in openvino:
        assert "openvino" in openvino["skipped"]
        assert ratios["engine_vs_openvino"] is None
    else:
        fp32 = openvino["precisions"]["fp32"]
        assert fp32["openvino_top1_agreement_with_ort_same_precision"] >= 0.9  # the same graph, fp32 both
        assert ratios["engine_vs_openvino"] == openvino["precisions"][results["engine"]["default"]["precision"]]["by_batch"][
            str(openvino["batch"])]["engine_vs_openvino"]
    markdown = (out / "bench.md").read_text()
    assert "preprocessing CPU ms per image, jpeg_500px" in markdown


def test_the_watchlist_bench_matches_generated_specimens_and_reuses_its_list(tmp_path):
    from denarius.apps.bench.watchlist import TARGETS, bench_watchlist

    out = tmp_path / "watchlist"
    # 40 listed (of 80 types, one die each: few die-mates), 10 re-photographs, 10 unlisted;
    # the 60-specimen index for latency pads the list with bit-flipped copies
    first = bench_watchlist(out, listed=40, queries=10, unlisted=10, index_size=60, dies_per_type=1, workers=1)
    assert first["workload"]["listed"] == 40 and first["workload"]["rephotographed_queries"] == 10
    assert first["workload"]["unlisted_die_mate_queries"] == 10
    assert first["listed_reused_from_an_earlier_run"] is False and first["features_s_listed"] > 0
    assert 0 < first["recall_at_1"] <= first["rephotos_retrieved_among_verified"] <= 1
    assert first["false_match_rate_all_queries"] <= 0.1
    assert first["match_ms_p50_at_index_size"] > 0 and first["index_file_mib_index_size"] > 0
    assert set(first["targets"]) == set(TARGETS)
    assert json.loads((out / "watchlist.json").read_text())["recall_at_1"] == first["recall_at_1"]
    # a second run keeps the listed features (only the index is rebuilt) and answers the same
    again = bench_watchlist(out, listed=40, queries=10, unlisted=10, index_size=60, dies_per_type=1, workers=1)
    assert again["listed_reused_from_an_earlier_run"] is True and again["features_s_listed"] is None
    assert again["recall_at_1"] == first["recall_at_1"]
    assert again["false_match_rate_all_queries"] == first["false_match_rate_all_queries"]
    # features of an earlier version are not reused: they are computed again
    with sqlite3.connect(out / "watchlist" / "watchlist.sqlite") as db:
        db.execute("UPDATE specimens SET features_version = 3 WHERE id = 1")
    stale = bench_watchlist(out, listed=40, queries=10, unlisted=10, index_size=60, dies_per_type=1, workers=1)
    assert stale["listed_reused_from_an_earlier_run"] is False and stale["recall_at_1"] == first["recall_at_1"]
