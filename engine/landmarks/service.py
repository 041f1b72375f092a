"""The landmark service: characteristic landmarks of a bundle, on the engine's backends.

One object owns everything a landmark search needs besides the method itself: the models
(classifier + gradient graph per side, opened on first use), the preprocessing of a photo
into the network's centre crop, the region cache (window and pixel regions do not depend
on the image, so one object serves every request with the same geometry), the reference a
removed region becomes, and the masking operations (the CUDA kernels when the backend runs
on a GPU, NumPy otherwise). The server, the CLI, the scanner, the bench and
``landmarks-eval`` call it; none of them assembles side -> model -> crop -> compute itself.

Public API::

    from denarius.engine.landmarks.service import LandmarkService

    service = LandmarkService.from_engine(engine)     # shares engine.backend with Identify
    service = LandmarkService.open(bundle, backend="ort-cpu")   # no Engine: its own fp32 backend
    with service:                                    # close(): the gradient backends (and the
                                                     # classifier backend if the service opened it)
        name = service.model_name("reverse")          # "ric"; InputError listing valid sides
        label = service.check_target(name, "RIC V Probus 10", side="reverse")   # InputError if unknown
        crop = service.crop(photo, side="reverse")    # (S, S, 3) uint8 centre crop (bytes/path/array)
        crop, view = service.crop_and_view(photo, side="reverse")   # + (512, 512, 3) whole coin, for overlays
        maps = service.compute(crops, model=name, config=LandmarkConfig(), targets=None,
                               epsilons=None, should_stop=None, progress=False, checkpoints=())
        maps = service.for_source(photo, side="reverse", config=..., target=None, epsilons=None)
        p = service.probabilities(crops, model=name)  # (N, C) float64 for (N, S, S, 3) uint8 crops
        crops = service.crops_from_inputs(inputs)      # (N, 3, S, S) float32 network inputs -> uint8 crops
        reference = service.reference(crops, "blur")   # what removed regions become, (N, S, S, 3) float32
        model = service.model(name)                    # the GradientModel (LandmarkModel protocol)
        service.ops                                    # NumpyOps or CudaOps
        service.backend, service.gradient_kind         # classifier Backend, "ort-cpu" / "ort-cuda"

Backends: the classifier's forward passes run on the backend given (from an Engine: the
Engine's own object, so with ``--backend ort-cpu`` a served search opens no second session
of the classifier, and the forward passes run at the Engine's precision, the model that
answered Identify). The gradient graphs, fp32 and onnxruntime only, are opened with
``open_backend`` on the same kind of device (ort-cuda and tensorrt -> ort-cuda, so on a GPU
host the gradient graph runs on CUDA; ort-cpu and openvino, both CPU, -> ort-cpu), with the
same threads and device. Thread-safe: the batcher's workers share one service.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from denarius.engine.backends import Backend, open_backend
from denarius.engine.bundle import load_bundle
from denarius.engine.errors import BackendUnavailable, BundleError, DenariusError, InputError
from denarius.engine.landmarks import composition
from denarius.engine.landmarks.api import LandmarkConfig, compute_landmarks, decode_side, make_regions, source_crop
from denarius.engine.landmarks.model import GradientModel, model_for_side, model_spec, unknown_label
from denarius.engine.landmarks.optimizer import NumpyOps
from denarius.engine.landmarks.regions import Regions
from denarius.engine.landmarks.result import OVERLAY_SIZE, coin_view
from denarius.engine.preprocess import denormalize, normalize

__all__ = ["LandmarkService"]

logger = logging.getLogger(__name__)

_CACHED_REGIONS = 16  # distinct (kind, window, stride, size) geometries kept


class LandmarkService:
    """Landmarks of one bundle on a classifier backend (module docstring).

    Args:
        bundle: a loaded :class:`denarius.engine.bundle.Bundle`.
        backend: an open :class:`~denarius.engine.backends.Backend` with the bundle's
            classifier graphs ("emperor", "ric"), e.g. ``engine.backend``.
        owns_backend: close ``backend`` in :meth:`close` (True when the service opened it).
        max_batch: images per gradient-graph call.
    """

    def __init__(self, bundle, backend: Backend, *, owns_backend: bool = False, max_batch: int = 64):
        self.bundle = bundle
        self.backend = backend
        self.max_batch = int(max_batch)
        self.gradient_kind = "ort-cuda" if backend.name in ("ort-cuda", "tensorrt") else "ort-cpu"
        self._owns_backend = owns_backend
        self._models: dict[str, GradientModel] = {}
        self._gradients: dict[str, Backend] = {}
        self._regions: OrderedDict[tuple, Regions] = OrderedDict()
        self._ops = None
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_engine(cls, engine) -> LandmarkService:
        """The service of an open :class:`~denarius.engine.engine.Engine`: its bundle, its backend."""
        if engine.backend.precision != "fp32":
            # The optimiser's iterations read p(c) from the fp32 gradient graph, its probe
            # and final check from these forward passes: a mask on the constraint's edge
            # may fail the check and fall back to x = 1 where the two precisions disagree.
            logger.info("landmarks: forward passes at the engine's %s, gradients fp32; serve with --precision fp32 "
                        "for landmark forward passes in the gradient's precision", engine.backend.precision)
        return cls(engine.bundle, engine.backend, max_batch=max(64, getattr(engine, "max_batch", 64)))

    @classmethod
    def open(
        cls,
        bundle,
        *,
        backend: str = "auto",
        precision: str | None = "fp32",
        models: Sequence[str] | None = None,
        threads: int | None = None,
        max_batch: int = 64,
    ) -> LandmarkService:
        """A service with a classifier backend of its own (CLI, evaluation, bench).

        Args:
            bundle: a Bundle or the bundle's folder.
            backend: "auto", "ort-cpu", "ort-cuda" or "tensorrt" (see ``open_backend``).
            precision: of the classifier graphs; fp32 by default (the gradient graph is fp32).
            models: the classifiers to open (default both); others are refused by :meth:`model`.
        Raises:
            BundleError, BackendUnavailable, ConfigError: from ``load_bundle`` / ``open_backend``.
        """
        if isinstance(bundle, (str, Path)):
            bundle = load_bundle(bundle)
        graphs = tuple(models) if models else tuple(bundle.models)
        opened = open_backend(bundle, backend, precision, graphs=graphs, max_batch=max_batch, threads=threads)
        return cls(bundle, opened, owns_backend=True, max_batch=max_batch)

    # ------------------------------------------------------------------ models and sides

    def model_name(self, side: str) -> str:
        """The bundle model that reads ``side`` ("obverse" -> "emperor", "reverse" -> "ric")."""
        return model_for_side(self.bundle, side)

    def classes(self, model: str) -> tuple[str, ...]:
        """Class names of ``model`` in logit order."""
        return tuple(self.bundle.models[model].classes)

    def input_size(self, model: str) -> int:
        """S of ``model``'s (S, S, 3) crops."""
        return int(self.bundle.models[model].input_size)

    def canonical_size(self, model: str) -> int:
        """Side of ``model``'s canonical square, from which its centre crop is cut."""
        return int(model_spec(self.bundle, model).resize)

    def check_target(self, model: str, target: str | None, *, side: str | None = None) -> str | None:
        """``target`` if ``model`` has that class (None stays None: the predicted class).

        Raises:
            InputError: an unknown label; the message names the side and lists valid labels.
        """
        classes = self.classes(model)
        if target is None or target in classes:
            return target
        raise unknown_label(target, classes, side=side)

    def require_gradient(self, model: str) -> None:
        """Raises BundleError when the bundle has no gradient graph for ``model``."""
        if not self.bundle.has(model, "grad"):
            raise BundleError(
                f"landmarks need the gradient graph of the {model} model, which {self.bundle.path} lacks; "
                "export the bundle with gradient graphs (denarius export)")

    def model(self, name: str) -> GradientModel:
        """The :class:`GradientModel` of bundle model ``name``, opened on first use.

        Its forward passes run on :attr:`backend`; its gradient graph on a backend of
        :attr:`gradient_kind` opened here (None when the bundle has no gradient graph:
        forward-only methods still work, the others raise BundleError).
        """
        with self._lock:
            self._check_open()
            if name not in self._models:
                if name not in self.bundle.models:
                    raise InputError(f"unknown model {name!r}; the bundle has {sorted(self.bundle.models)}")
                self._models[name] = GradientModel.on_backends(
                    self.bundle, name, self.backend, self._gradient_backend(name), max_batch=self.max_batch)
            return self._models[name]

    def _gradient_backend(self, name: str):
        if not self.bundle.has(name, "grad"):
            return None
        try:
            opened = open_backend(
                self.bundle, self.gradient_kind, "fp32", graphs=(f"{name}.grad",), max_batch=self.max_batch,
                threads=getattr(self.backend, "threads", None), device_id=getattr(self.backend, "device_id", 0),
            )
        except BundleError as error:
            # The bundle lists the file and passed verification when it was loaded: a file
            # that cannot be opened now is this host's fault (a server answers INTERNAL and
            # keeps the path in its log), not something the caller can fix.
            raise DenariusError(f"the {name} gradient graph of the loaded bundle cannot be opened: {error}") from error
        self._gradients[name] = opened
        logger.info("landmarks: %s gradient graph on %s, forward passes on %s (%s)",
                    name, opened.name, self.backend.name, self.backend.precision)
        return opened

    @property
    def ops(self):
        """Masking operations: :class:`~denarius.engine.landmarks.cuda.CudaOps` when the
        backend runs on a GPU and pycuda can use it, else NumPy (chosen once)."""
        with self._lock:
            if self._ops is None:
                self._ops = self._choose_ops()
            return self._ops

    def _choose_ops(self):
        if not getattr(self.backend, "on_gpu", False):
            return NumpyOps
        from denarius.engine.landmarks.cuda import CudaOps, cuda_available

        if cuda_available():
            try:
                return CudaOps()
            except BackendUnavailable as error:
                logger.warning("landmarks: the %s backend is on a GPU but the CUDA kernels cannot run (%s); using NumPy",
                               self.backend.name, error)
                return NumpyOps
        logger.warning("landmarks: the %s backend is on a GPU but pycuda cannot use it; masking runs on NumPy",
                       self.backend.name)
        return NumpyOps

    # ------------------------------------------------------------------ preprocessing

    def crop(self, source, *, side: str) -> np.ndarray:
        """(S, S, 3) uint8 centre crop of a photo (bytes, path or (H, W, 3) uint8 RGB array),
        exactly what the side's classifier sees. Raises InputError naming the side."""
        crop, _, _ = source_crop(source, model_spec(self.bundle, self.model_name(side)), side=side)
        return crop

    def crop_and_view(self, source, *, side: str, size: int = OVERLAY_SIZE) -> tuple[np.ndarray, np.ndarray]:
        """The centre crop of a photo (as :meth:`crop`) and its whole-coin view at ``size`` px
        (:func:`denarius.engine.landmarks.result.coin_view`: disc + margin, the legend uncut),
        on which :func:`~denarius.engine.landmarks.result.coin_overlay` draws a crop's heatmap.
        One decode. Returns ((S, S, 3), (size, size, 3)) uint8 RGB."""
        spec = model_spec(self.bundle, self.model_name(side))
        rgb = decode_side(source, spec, side=side)
        crop, matrix, _ = source_crop(rgb, spec, side=side)
        return crop, coin_view(rgb, matrix, resize=spec.resize, crop=spec.crop, size=size)

    def crops_from_inputs(self, inputs: np.ndarray, *, model: str | None = None) -> np.ndarray:
        """(N, 3, S, S) float32 network inputs -> (N, S, S, 3) uint8 crops (``denormalize``
        inverts ``normalize`` exactly on uint8 pixels)."""
        spec = model_spec(self.bundle, model) if model else self.bundle.preprocess
        return denormalize(np.asarray(inputs, np.float32), spec)

    def probabilities(self, crops: np.ndarray, *, model: str) -> np.ndarray:
        """(N, S, S, 3) crops in [0, 255] (uint8, or float such as a reference) -> (N, C)
        float64 p(class | crop) of ``model``."""
        landmark_model = self.model(model)
        return landmark_model.probabilities(normalize(np.asarray(crops), landmark_model.spec))

    @staticmethod
    def reference(crops: np.ndarray, kind: str = "blur") -> np.ndarray | None:
        """What a removed region becomes (:func:`denarius.engine.landmarks.composition.reference_images`)."""
        return composition.reference_images(crops, kind)

    def regions(self, config: LandmarkConfig, crop: np.ndarray) -> Regions:
        """The regions of ``config`` for a crop: cached for windows and pixels (they depend
        only on the crop's size), built per image for superpixels."""
        if config.superpixels is not None:
            return make_regions(config, crop)
        key = ("pixels",) if config.pixels else ("windows", config.window, config.stride)
        key = (*key, *crop.shape[:2])
        with self._lock:
            if key in self._regions:
                self._regions.move_to_end(key)
                return self._regions[key]
        regions = make_regions(config, crop)
        with self._lock:
            self._regions[key] = regions
            while len(self._regions) > _CACHED_REGIONS:
                self._regions.popitem(last=False)
        return regions

    # ------------------------------------------------------------------ landmarks

    def compute(
        self,
        crops: np.ndarray,
        *,
        model: str,
        config: LandmarkConfig = LandmarkConfig(),
        targets=None,
        epsilons: Sequence[float] | None = None,
        should_stop=None,
        progress: bool = False,
        checkpoints: Sequence[int] = (),
    ) -> list:
        """Landmark maps of (B, S, S, 3) or (S, S, 3) uint8 crops of ``model``'s side.

        Arguments and result as :func:`denarius.engine.landmarks.api.compute_landmarks`
        (one LandmarkMap per image, per epsilon for a sweep), with this service's model,
        region cache and masking operations.
        """
        return compute_landmarks(
            self.model(model), crops, config=config, targets=targets, epsilons=epsilons, ops=self.ops,
            should_stop=should_stop, progress=progress, checkpoints=checkpoints, regions_for=self.regions,
        )

    def for_source(
        self,
        source,
        *,
        side: str,
        config: LandmarkConfig = LandmarkConfig(),
        target=None,
        epsilons: Sequence[float] | None = None,
        should_stop=None,
        progress: bool = False,
    ) -> list:
        """Landmarks of one photo of ``side``; each map's ``source_transform`` and
        ``source_size`` are set, so ``LandmarkMap.source_heatmap`` gives the photo-sized map.

        Raises:
            InputError: undecodable photo or unknown side/target.
        """
        name = self.model_name(side)
        crop, matrix, size = source_crop(source, model_spec(self.bundle, name), side=side)
        maps = self.compute(crop, model=name, config=config, targets=target, epsilons=epsilons,
                            should_stop=should_stop, progress=progress)
        for m in maps:
            m.source_transform = matrix
            m.source_size = size
        return maps

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the gradient backends (and the classifier backend if this service opened it).
        The Engine's backend is the Engine's to close. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            gradients = list(self._gradients.values())
            self._gradients.clear()
            self._models.clear()
            self._regions.clear()
        for backend in gradients:
            backend.close()
        if self._owns_backend:
            self.backend.close()

    def _check_open(self) -> None:
        if self._closed:
            raise DenariusError("the landmark service is closed")

    def __enter__(self) -> LandmarkService:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"LandmarkService(bundle={self.bundle.version!r}, backend={self.backend.name}/{self.backend.precision}, "
                f"gradients={self.gradient_kind}, models={sorted(self._models)})")
