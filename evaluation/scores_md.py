"""scores.md: the tables of a ``landmarks-eval`` run (``scores.json`` rendered as Markdown).

Figures with an interval print as ``0.812 [0.750, 0.870]`` (95% bootstrap over images).
"""

from __future__ import annotations

from denarius.evaluation.metrics import NO_PART

__all__ = ["markdown"]


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ci(row: dict | None, name: str, *, sub: str | None = None) -> str:
    """``value [low, high]`` of figure ``name`` (``sub``: a key inside it, e.g. a q)."""
    if row is None:
        return "-"
    value, interval = row.get(name), (row.get("intervals") or {}).get(name)
    if sub is not None:
        value, interval = (value or {}).get(sub), (interval or {}).get(sub)
    if value is None:
        return "-"
    return f"{value:.3f}" + ("" if interval is None else f" [{interval[0]:.3f}, {interval[1]:.3f}]")


def _scopes(scores: dict) -> list[tuple[str, dict, dict, dict]]:
    """(scope, our methods at the headline window, baselines, peers) for "all" and each side."""
    window = str(scores["window"])
    peers = scores.get("peers") or {}
    scopes = [("all", scores["methods"], scores["baselines"]["all"], peers.get("methods") or {})]
    for side, by_window in scores["by_side"].items():
        scopes.append((side, by_window[window], scores["baselines"][side], (peers.get("by_side") or {}).get(side) or {}))
    return scopes if len(scores["by_side"]) > 1 else scopes[1:]


def _fair_tables(scores: dict) -> list[str]:
    window = scores["window"]
    lines = [
        "",
        f"Pointing game by TorchRay's rule (first maximum within {scores['tolerance_px_at_224']:g} px at 224 px, scaled to the "
        "input; mean over classes of per-class hit rates), its tie-robust variant (the share of the maximal pixels that hit), "
        "and on the difficult subset (images where the centre point misses), beside the centre point and a uniform random "
        f"point on the coin; sufficiency AUC (p(c) with the top 5-40% of the map kept, higher is better) beside the deletion AUC "
        f"(lower is better). Our methods at window {window}; 95% bootstrap intervals over images "
        f"({scores['bootstrap']['resamples']} resamples, seed {scores['bootstrap']['seed']}).",
        "",
        "| scope | method | TorchRay | tie-robust | difficult (images) | sufficiency AUC | deletion AUC | energy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    q_keys = None
    for scope, ours, base, peers in _scopes(scores):
        for name, row in base.items():
            lines.append(f"| {scope} | {name} point (baseline) | {_ci(row, 'pointing_game_torchray')} | "
                         f"{_ci(row, 'pointing_game_tie_robust')} | "
                         f"{_ci(row, 'pointing_game_difficult')} ({row['difficult_images']}) | - | - | - |")
        for name, row in [*ours.items(), *peers.items()]:
            if row is None:
                continue
            q_keys = q_keys or list(row["sufficiency"])
            lines.append(
                f"| {scope} | {name} | {_ci(row, 'pointing_game_torchray')} | {_ci(row, 'pointing_game_tie_robust')} | "
                f"{_ci(row, 'pointing_game_difficult')} ({row['difficult_images']}) | {_ci(row, 'sufficiency_auc')} | "
                f"{_ci(row, 'deletion_auc')} | {_ci(row, 'energy')} |"
            )
    if q_keys:
        lines += [
            "",
            "Sufficiency: p(c) with only the top q of each map kept (the rest the reference), window "
            f"{window}, 95% intervals.",
            "",
            "| scope | method | " + " | ".join(f"q = {q}" for q in q_keys) + " |",
            "|---|---|" + "---|" * len(q_keys),
        ]
        for scope, ours, _, peers in _scopes(scores):
            for name, row in [*ours.items(), *peers.items()]:
                if row is not None:
                    lines.append(f"| {scope} | {name} | " + " | ".join(_ci(row, "sufficiency", sub=q) for q in q_keys) + " |")
    return lines


def _held_out_line(held_out: dict | None) -> list[str]:
    if not held_out or not held_out["checked_against"]:
        return []
    return [f"Held out: {held_out['images_shared_dropped']} images byte-identical (sha256) to images of "
            f"{', '.join(held_out['checked_against'])} were not scored."]


def markdown(scores: dict) -> str:
    """The tables of ``scores`` (the dict written to scores.json)."""
    lines = [
        f"Landmark scores on {scores['synth_dir']} ({scores['images']} images, sides {', '.join(scores['sides'])}), "
        f"bundle {scores['bundle_version']}, stride {scores['stride']}, epsilon {scores['epsilon']}, reference {scores['reference']}, "
        f"{scores['backend']}, {scores['hardware']}.",
        *_held_out_line(scores.get("held_out")),
        "",
        "| side | window | method | pointing game | energy | deletion AUC (lower is better) | s / image "
        "| forward equivalents / image | vacuous |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    tables = [("all", scores["by_window"])] + (list(scores["by_side"].items()) if len(scores["by_side"]) > 1 else [])
    for side, by_window in tables:
        for window, methods in by_window.items():
            for method, s in methods.items():
                if s is None:
                    continue
                lines.append(
                    f"| {side} | {window} | {method} | {_fmt(s['pointing_game'])} | {_fmt(s['energy'])} | {_fmt(s['deletion_auc'])} | "
                    f"{_fmt(s['seconds_per_image'], 3)} | {s['forward_equivalents']:.0f} | {_fmt(s['vacuous_rate'], 2)} |"
                )
    for method, s in (scores.get("peers") or {}).get("methods", {}).items():
        if s is not None:
            lines.append(
                f"| all | {scores['peers']['window']} | {method} | {_fmt(s['pointing_game'])} | {_fmt(s['energy'])} | "
                f"{_fmt(s['deletion_auc'])} | "
                f"{_fmt(s['seconds_per_image'], 3)} | {s['forward_equivalents']:.0f} | - |"
            )
    lines += ["", "vacuous: share of images whose reference image (every region removed) already satisfies the constraint, "
              "so the empty mask is optimal; the optimised heatmap still ranks the regions."]
    lines += _fair_tables(scores)
    for side, parts in scores.get("parts", {}).items():
        methods = list(scores["methods"])
        total = max((v.get("images", 0) for v in parts.values()), default=0)
        lines += [
            "",
            f"Ground-truth parts, {side}: what the model needs (p(c) with the part replaced by the reference) and where "
            f"each method's heatmap maximum lies (window {scores['window']}), 95% intervals. Parts on at least 5% of the images.",
            "",
            "| part | images | area | p(c) whole | p(c) part removed | " + " | ".join(f"max in part: {m}" for m in methods) + " |",
            "|---|---|---|---|---|" + "---|" * len(methods),
        ]
        for part, v in parts.items():
            if part != NO_PART and v["images"] < 0.05 * total:
                continue
            cells = [str(v.get("images", "-")), _fmt(v.get("area")), _ci(v, "p_full"), _ci(v, "p_removed")]
            lines.append(f"| {part} | " + " | ".join(cells) + " | " + " | ".join(_ci(v, "maximum_inside", sub=m) for m in methods) + " |")
    if scores.get("path"):
        checkpoints = next(iter(scores["path"].values()))["iterations"]
        lines += [
            "",
            f"Pointing game along the optimiser's path (window {scores['window']}): the optimised heatmap had the optimiser "
            "stopped after t iterations (rows that stopped sooner keep their final heatmap). See path.png.",
            "",
            "| side | images | " + " | ".join(f"t = {t}" for t in checkpoints) + " |",
            "|---|---|" + "---|" * len(checkpoints),
        ]
        for side, curve in scores["path"].items():
            cells = [_ci({"x": v, "intervals": {"x": ci}}, "x") for v, ci in zip(curve["pointing_game"], curve["intervals"], strict=True)]
            lines.append(f"| {side} | {curve['images']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
