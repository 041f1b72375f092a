"""The baseline Denarius is measured against: a straightforward PyTorch-eager fp32 pipeline.

It does the same work as ``Engine.identify`` - the same ``denarius.engine.preprocess`` pipeline, both
AlexNets, both softmaxes and the hierarchical combination - the way a researcher's script
would: one coin at a time, in PyTorch eager mode, fp32. The weights come straight from the
bundle's fp32 ONNX files (:func:`denarius.training.onnx_weights.model_from_onnx`), so no
training run directory is needed. torch is imported inside, never at module level.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from denarius.engine.bundle import Bundle
from denarius.engine.preprocess import preprocess

__all__ = ["TorchEagerPipeline"]


class TorchEagerPipeline:
    """identify(pairs) one coin at a time with PyTorch eager fp32.

    Args:
        bundle: a loaded bundle; its fp32 ONNX initializers become the PyTorch weights.
        threads: torch intra-op threads; None tries 1 .. physical cores and keeps the fastest,
            so the baseline is never handicapped by OpenMP oversubscription on a busy host
            (the comparison stays conservative).
    """

    def __init__(self, bundle: Bundle, *, threads: int | None = None):
        import torch

        from denarius.training.onnx_weights import model_from_onnx

        self.bundle = bundle
        self.models = {
            name: model_from_onnx(bundle.file(name, "fp32"), num_classes=len(info.classes), input_size=info.input_size)
            for name, info in bundle.models.items()
        }
        self.threads = threads or self._fastest_thread_count()
        torch.set_num_threads(self.threads)

    def _fastest_thread_count(self) -> int:
        import time

        import torch

        from denarius.engine.backends.base import physical_cores

        size = self.bundle.preprocess.crop
        image = torch.zeros(1, 3, size, size)
        model = self.models["ric"]
        timings = {}
        with torch.inference_mode():
            for count in range(1, physical_cores() + 1):
                torch.set_num_threads(count)
                model(image)
                start = time.perf_counter()
                for _ in range(5):
                    model(image)
                timings[count] = time.perf_counter() - start
        return min(timings, key=timings.get)

    def identify(self, pairs: Sequence[tuple[bytes, bytes]], *, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """pairs of (obverse bytes, reverse bytes) -> per coin the top-k (RIC label, joint score)."""
        import torch

        spec, tree = self.bundle.preprocess, self.bundle.hierarchy
        results = []
        with torch.inference_mode():
            for obverse, reverse in pairs:
                p = {}
                for name, data in (("emperor", obverse), ("ric", reverse)):
                    image = torch.from_numpy(preprocess(data, spec))[None]  # (1, 3, S, S)
                    p[name] = torch.softmax(self.models[name](image).double(), dim=1).numpy()
                joint = tree.joint_scores(p["emperor"], p["ric"])[0]  # (R,)
                order = np.argsort(-joint)[:top_k]
                results.append([(tree.rics[i], float(joint[i])) for i in order])
        return results
