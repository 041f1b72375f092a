"""Evaluation of the landmark methods: ground-truth scores, figures and the kernel check.

Installed as ``denarius.evaluation``. It may import ``denarius.engine`` and
``denarius.training``; the runtime (``denarius.engine``) and the gRPC layer
(``denarius.serving``) never import it. The CLI commands in ``apps/cli/`` are apps and
import it inside their ``run`` (tests/evaluation/test_layering.py checks both rules).

Modules::

    eval.py          landmarks-eval driver: every method scored on a synthetic set
    methods.py       the methods scored, by name (register a variant here)
    peers.py         Captum's Occlusion, Saliency, IntegratedGradients, LayerGradCam on the same model
    ground_truth.py  a synthetic set's landmark polygons, mapped into the crop
    scoring.py       one map -> every per-image value (pointing games, energy, deletion, sufficiency)
    metrics.py       pointing game, energy, deletion curve, per-part reliance
    pointing.py      the pointing game by TorchRay's rule, tie-robust variant, centre/random baselines
    sufficiency.py   p(c) with only the top q of a map kept, and its AUC
    bootstrap.py     95% bootstrap intervals over images
    summary.py       per-image scores of a side and the figures made of them
    heatmaps.py      the scored maps saved per side (heatmaps_<side>.npz)
    scores_md.py     scores.md tables
    path_scores.py   the pointing game along the optimiser's path (path.png)
    figures.py       captioned grids (paper Fig. 6 strip, Fig. 7 grid, guidebook pages)
    guidebook.py     mean landmark map of one class over a representative coin
    kernel_check.py  CUDA kernels vs NumPy, errors and timings (denarius kernel-check)
"""
