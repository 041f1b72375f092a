"""The ``open_world`` bench section: calibration error and the "not in the catalogue" decision.

On held-out coins of the bundle's catalogue (``--heldout``; images shared with
``--train-manifest`` dropped) and two sets of coins outside it (``--unknown``,
``--unknown2``: the generator with other seeds; rows whose emperor or type the bundle knows
are dropped), with the bundle's fp32 models:

- temperatures are fitted on half the held-out coins, the ECE of each classifier is
  measured on the other half before and after (``denarius.export.open_world``);
- every open-set score's AUROC, known (test half) vs unknown, on both unknown sets;
- the threshold of the best score is chosen on the first unknown set for ``--open-set-far``
  and its false-accept rate is measured on the second, which played no part in the choice.
"""

from __future__ import annotations

from denarius.apps.bench.config import BenchConfig
from denarius.engine.bundle import Bundle

__all__ = ["bench_open_world"]


def bench_open_world(bundle: Bundle, config: BenchConfig) -> dict:
    from denarius.engine.manifest import read_manifest
    from denarius.export.open_world import (
        auroc,
        drop_training_images,
        false_accept_rate,
        fit_open_world,
        outside_catalogue,
        pair_logits,
        reliability_diagram,
        risk_coverage_plot,
        scores_of,
        split_halves,
    )

    missing = [flag for flag, value in (("--heldout", config.heldout), ("--unknown", config.unknown), ("--unknown2", config.unknown2))
               if value is None]
    if missing:
        return {"skipped": f"the open_world section needs {', '.join(missing)} (dataset manifests; see the README)"}
    hierarchy, merged = bundle.hierarchy, bundle.extra.get("merged") or {}
    files = {m: bundle.file(m) for m in ("emperor", "ric")}
    names = {m: (bundle.models[m].input_name, bundle.models[m].output_name) for m in ("emperor", "ric")}

    def logits(records):
        return pair_logits(records, files=files, spec=bundle.preprocess, hierarchy=hierarchy, merged=merged, names=names)

    held = read_manifest(config.heldout)
    shared = 0
    if config.train_manifest is not None:
        held, shared = drop_training_images(held, read_manifest(config.train_manifest))
    if config.quick:
        held = held[:200]
    known = logits(held)
    sets, dropped = {}, {}
    for key, manifest in (("unknown", config.unknown), ("unknown2", config.unknown2)):
        outside, dropped[key] = outside_catalogue(read_manifest(manifest), hierarchy, merged)
        sets[key] = logits(outside[:150] if config.quick else outside)
    fitted = fit_open_world(known, hierarchy, unknown=sets["unknown"], far=config.open_set_far)
    calibration, rule = fitted["calibration"], fitted["open_set"]
    temperatures = {m: calibration[m]["temperature"] for m in ("emperor", "ric")}
    _, test_index = split_halves(len(known))
    known_scores = scores_of(known.subset(test_index), temperatures, hierarchy)
    second = scores_of(sets["unknown2"], temperatures, hierarchy)
    config.out.mkdir(parents=True, exist_ok=True)
    reliability_diagram(fitted["curves"]["reliability"], calibration["report"]["ece"], config.out / "reliability.png",
                        title=f"bundle {bundle.version}: held-out coins, test half")
    risk_coverage_plot(fitted["curves"]["risk_coverage"], fitted["curves"]["aurocs"], config.out / "risk_coverage.png",
                       chosen=rule["score"], title=f"bundle {bundle.version}: test half + first unknown set")
    return {
        "heldout_coins": len(known), "shared_with_training_dropped": shared,
        "unknown_coins": {k: len(v) for k, v in sets.items()}, "unknown_in_catalogue_dropped": dropped,
        "temperatures": temperatures,
        "ece": calibration["report"]["ece"],
        "ece_bins": calibration["report"]["bins"],
        "auroc": {"unknown": rule["report"]["auroc"],
                  "unknown2": {name: round(auroc(known_scores[name], second[name]), 5) for name in known_scores}},
        "chosen_score": rule["score"], "threshold": rule["threshold"], "requested_far": config.open_set_far,
        "far_first_set": rule["report"]["false_accept_rate"],
        "far_second_set": round(false_accept_rate(second[rule["score"]], rule["threshold"]), 5),
        "known_accepted": rule["report"]["known_accepted"],
        "known_accepted_correct": rule["report"]["known_accepted_correct"],
        "figures": [str(config.out / "reliability.png"), str(config.out / "risk_coverage.png")],
    }
