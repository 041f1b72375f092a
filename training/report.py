"""Write a cross-validation report: report.json, a Markdown table and the paper's figures.

Files in the report folder:

- ``report.json``: the dict of ``denarius.training.evaluate.cross_validate`` (structure documented there).
- ``table.md``: mean per-class accuracy +- std (and top-1/top-5) per task and method.
- ``confusion_{method}_reverse.png``, ``confusion_{method}_hierarchy.png``: row-normalised
  confusion matrices summed over the folds, like the paper's Figure 4.
- ``accuracy_vs_iterations.png``: CNN test accuracy of every fold against training
  iterations, for both models, like the paper's Figure 3.

matplotlib is imported inside the plotting functions (Agg backend), never at import time.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

__all__ = ["write_report", "format_table", "plot_confusion", "plot_history"]

logger = logging.getLogger(__name__)

TASK_TITLES = {
    "reverse": "Reverse (RIC from reverse)",
    "obverse": "Obverse (emperor from obverse)",
    "hierarchy": "Hierarchy (RIC from both)",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def format_table(report: dict) -> str:
    """Markdown table: one row per task, one column per method, mean +- std in percent."""
    methods = [m for m in ("svm", "cnn") if m in report]
    head = "| task | " + " | ".join(f"{m.upper()} mean per-class acc. | {m.upper()} top-1 / top-5" for m in methods) + " |"
    rule = "|---|" + "---|---|" * len(methods)
    lines = [head, rule]
    for task, title in TASK_TITLES.items():
        cells = []
        for m in methods:
            r = report[m]
            cells.append(f"{100 * r['mean'][task]:.2f} +- {100 * r['std'][task]:.2f}%")
            cells.append(f"{100 * r['top1']['mean'][task]:.1f}% / {100 * r['top5']['mean'][task]:.1f}%")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_confusion(matrix, path: str | Path, *, title: str) -> Path:
    """Save a row-normalised confusion matrix (rows = true class) as a PNG heat map."""
    plt = _pyplot()
    counts = np.asarray(matrix, np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    diagonal = np.diag(normalised)[rows[:, 0] > 0]
    size = min(10.0, 3.0 + 0.04 * len(counts))
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(normalised, cmap="jet", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(f"{title}\nmean per-class accuracy {100 * diagonal.mean():.1f}%", fontsize=10)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_history(history: dict, path: str | Path) -> Path:
    """Save test accuracy vs training iterations per fold for both CNN models.

    Args:
        history: ``report["cnn"]["history"]``: {"emperor"|"ric": [[epoch dict, ...] per fold]}.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    names = {"ric": "RIC model (reverse)", "emperor": "emperor model (obverse)"}
    for ax, task in zip(axes, ("ric", "emperor"), strict=True):
        for fold, entries in enumerate(history.get(task, [])):
            its = [e["iteration"] for e in entries]
            key = "val_mean_class_accuracy" if entries and "val_mean_class_accuracy" in entries[0] else "val_accuracy"
            if entries and key in entries[0]:
                ax.plot(its, [e[key] for e in entries], label=f"fold {fold + 1} test", lw=1.2)
            ax.plot(its, [e["train_accuracy"] for e in entries], ls=":", lw=0.8, color="grey", label="train" if fold == 0 else None)
        ax.set_title(names[task])
        ax.set_xlabel("training iterations")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (test: mean per class)")
    axes[0].set_ylim(0, 1)
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def write_report(report: dict, out_dir: str | Path, *, figures: bool = True) -> dict[str, Path]:
    """Write report.json, table.md and (with ``figures``) the PNGs; returns {name: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"report": out_dir / "report.json", "table": out_dir / "table.md"}
    written["report"].write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    written["table"].write_text(format_table(report), encoding="utf-8")
    if figures:
        for method in ("cnn", "svm"):
            if method not in report:
                continue
            for task in ("reverse", "hierarchy"):
                name = f"confusion_{method}_{task}"
                written[name] = plot_confusion(
                    report[method]["confusion"][task], out_dir / f"{name}.png",
                    title=f"{method.upper()} {TASK_TITLES[task]}",
                )
        if "cnn" in report and report["cnn"].get("history"):
            written["history"] = plot_history(report["cnn"]["history"], out_dir / "accuracy_vs_iterations.png")
    logger.info("wrote %s", ", ".join(str(p) for p in written.values()))
    return written
