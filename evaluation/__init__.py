"""Evaluation of the landmark methods: ground-truth scores, figures and the kernel check.

Installed as ``denarius.evaluation``. It may import ``denarius.engine`` and
``denarius.training``; the runtime (``denarius.engine``) and the gRPC layer
(``denarius.serving``) never import it. The CLI commands in ``serving/cli/`` are apps and
import it inside their ``run`` (tests/evaluation/test_layering.py checks both rules).

Modules::

    eval.py          landmarks-eval driver: every method scored on a synthetic set
    metrics.py       pointing game, energy, deletion curve, per-part reliance
    path_scores.py   the pointing game along the optimiser's path (path.png)
    figures.py       captioned grids (paper Fig. 6 strip, Fig. 7 grid, guidebook pages)
    guidebook.py     mean landmark map of one class over a representative coin
    kernel_check.py  CUDA kernels vs NumPy, errors and timings (denarius kernel-check)
"""
