"""denarius.engine.landmarks: regions, composition/adjoint, optimiser, baselines, LandmarkMap."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from denarius.engine.errors import ConfigError, InputError
from denarius.engine.landmarks import (
    SWEEP_EPSILONS,
    LabelRegions,
    LandmarkConfig,
    OptimizerConfig,
    baselines,
    composition,
    compute_landmarks,
    pixel_regions,
    superpixel_regions,
    window_regions,
)
from denarius.engine.landmarks.geometry import apply_transform, crop_transform
from denarius.engine.landmarks.optimizer import optimize_masks
from denarius.engine.landmarks.result import coin_overlay, overlay
from denarius.engine.preprocess import PreprocessSpec, canonical_image, coin_mask, crop_image, normalize

# ------------------------------------------------------------------ regions & composition


def _naive_windows(regions, x):
    """Per-window loop: (B, H, W) sum of x over covering windows, and the coverage count."""
    total = np.zeros((x.shape[0], regions.height, regions.width))
    count = np.zeros((regions.height, regions.width))
    nx = len(regions.xs)
    for k in range(regions.count):
        y, xx = regions.ys[k // nx], regions.xs[k % nx]
        total[:, y : y + regions.size, xx : xx + regions.size] += x[:, k, None, None]
        count[y : y + regions.size, xx : xx + regions.size] += 1
    return total, count


def test_window_geometry_covers_image_including_last_partial_stride():
    regions = window_regions(224, 224, size=11, stride=3)
    assert regions.count == 5184  # the paper's 72 x 72 occluder positions
    r = window_regions(19, 23, size=5, stride=3)
    assert r.ys.tolist() == [0, 3, 6, 9, 12, 14]  # 14 = 19 - 5, the partial last stride
    assert r.xs[-1] == 23 - 5
    assert (r.coverage > 0).all()
    boxes = r.boxes()
    assert boxes[:, 2].max() == 23 and boxes[:, 3].max() == 19


@pytest.mark.parametrize("shape,size,stride", [((19, 23), 5, 3), ((12, 12), 12, 1), ((16, 20), 4, 4), ((9, 14), 1, 2)])
def test_window_composition_matches_naive_loop(rng, shape, size, stride):
    regions = window_regions(*shape, size=size, stride=stride)
    x = rng.random((3, regions.count)).astype(np.float32)
    image = rng.uniform(0, 255, (*shape, 3)).astype(np.float32)
    total, count = _naive_windows(regions, x)
    covered = count > 0  # stride > window leaves gaps: C = 0 there
    expected_c = np.where(covered, 1.0 / np.maximum(count, 1), 0.0)
    np.testing.assert_allclose(regions.coverage, expected_c, rtol=1e-7)
    expected = image[None] * (total * expected_c)[..., None]
    np.testing.assert_allclose(composition.compose(regions, image, x), expected, rtol=1e-5, atol=1e-3)
    # x = 1 gives the image back on every covered pixel, black elsewhere
    full = composition.compose(regions, image, np.ones((1, regions.count)))
    np.testing.assert_allclose(full, image[None] * covered[None, ..., None], rtol=1e-6, atol=1e-4)


def test_label_composition_matches_naive_loop(rng):
    labels = rng.integers(0, 5, (7, 9)).astype(np.int32)
    regions = LabelRegions(labels, 6)  # region 5 is empty
    x = rng.random((2, 6)).astype(np.float32)
    image = rng.uniform(0, 255, (7, 9, 3)).astype(np.float32)
    expected = np.zeros((2, 7, 9, 3))
    for b in range(2):
        for p in range(7):
            for q in range(9):
                expected[b, p, q] = image[p, q] * x[b, labels[p, q]]
    np.testing.assert_allclose(composition.compose(regions, image, x), expected, rtol=1e-6)


@pytest.mark.parametrize("kind", ["windows", "windows-per-mask-images", "superpixels", "pixels"])
def test_adjoint_identity(rng, kind):
    image = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    if kind.startswith("windows"):
        regions = window_regions(40, 36, size=11, stride=3)
    elif kind == "superpixels":
        smooth = cv2.GaussianBlur(image, (0, 0), 4)
        regions = superpixel_regions(smooth, segments=12)
        assert regions.count > 1
    else:
        regions = pixel_regions(40, 36)
    images = rng.uniform(0, 255, (3, 40, 36, 3)) if kind == "windows-per-mask-images" else image
    x = rng.random((3, regions.count))
    g = rng.standard_normal((3, 40, 36, 3))
    lhs = np.sum(composition.compose(regions, images, x).astype(np.float64) * g)
    rhs = np.sum(x * composition.adjoint(regions, images, g).astype(np.float64))
    assert lhs == pytest.approx(rhs, rel=1e-5)


def test_adjoint_matches_naive_window_sums(rng):
    regions = window_regions(19, 23, size=5, stride=3)
    image = rng.uniform(0, 255, (19, 23, 3))
    g = rng.standard_normal((2, 19, 23, 3))
    got = composition.adjoint(regions, image, g)
    per_pixel = (image[None] * g).sum(-1) * regions.coverage
    nx = len(regions.xs)
    for k in range(regions.count):
        y, x = regions.ys[k // nx], regions.xs[k % nx]
        np.testing.assert_allclose(got[:, k], per_pixel[:, y : y + 5, x : x + 5].sum(axis=(1, 2)), rtol=1e-5, atol=1e-4)


def test_pixel_gradient_is_the_chain_rule_of_normalize(rng):
    spec = PreprocessSpec.for_input_size(64)
    f = rng.uniform(0, 255, (1, 4, 5, 3))
    direction = rng.standard_normal((1, 4, 5, 3))
    g_norm = rng.standard_normal((1, 3, 4, 5)).astype(np.float32)
    step = 1e-2
    numeric = (np.sum(normalize(f + step * direction, spec) * g_norm) - np.sum(normalize(f, spec) * g_norm)) / step
    analytic = np.sum(composition.pixel_gradient(g_norm, spec) * direction)
    assert numeric == pytest.approx(analytic, rel=1e-3)


def test_window_larger_than_image_is_refused():
    with pytest.raises(ConfigError, match="larger than the image"):
        window_regions(64, 64, size=65, stride=3)


# ------------------------------------------------------------------ on the tiny bundle


def _coin(seed: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    crop = np.zeros((size, size, 3), np.uint8)
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.45 * size) ** 2
    crop[disc] = rng.integers(30, 230, (disc.sum(), 3))
    cv2.rectangle(crop, (20, 20), (30, 34), (250, 240, 90), -1)
    return crop


def test_optimised_masks_satisfy_constraint_fresh_forward(model):
    crop = _coin(0)
    regions = window_regions(64, 64, size=11, stride=3)
    classes = len(model.classes)
    images = np.repeat(crop[None], classes, axis=0)
    eps = 0.003  # small enough that the constraint binds for some classes of the random model
    paper = OptimizerConfig(constraint="absolute")  # the paper's rule: p > p_full - eps
    result = optimize_masks(model, images, regions, epsilons=eps, targets=np.arange(classes), config=paper)
    assert result.masks.shape == (classes, regions.count)
    assert (result.masks >= 0).all() and (result.masks <= 1).all()
    assert (result.iterations <= 100).all() and result.converged.all()
    # our own fresh forward passes, not the optimiser's numbers
    p_full = model.probabilities(normalize(crop[None], model.spec))[0]
    masked = composition.compose(regions, crop, result.masks)
    p_masked = model.probabilities(normalize(masked, model.spec))[np.arange(classes), np.arange(classes)]
    assert (p_masked > p_full - eps).all()
    np.testing.assert_allclose(result.p_full, p_full, rtol=1e-5)
    np.testing.assert_allclose(result.p_masked, p_masked, rtol=1e-5)
    assert not np.allclose(result.masks, 1.0)  # it did optimise something


def test_batched_equals_unbatched(model):
    crops = np.stack([_coin(1), _coin(2)])
    config = LandmarkConfig(epsilon=0.01)
    together = compute_landmarks(model, crops, config=config, epsilons=(0.005, 0.02), targets=[1, 4])
    alone = [
        compute_landmarks(model, crops[i], config=config, epsilons=(eps,), targets=[t])[0]
        for i, t in zip(range(2), (1, 4), strict=True)
        for eps in (0.005, 0.02)
    ]
    assert len(together) == 4
    for a, b in zip(together, alone, strict=True):
        assert (a.epsilon, a.target) == (b.epsilon, b.target)
        np.testing.assert_allclose(a.mask, b.mask, atol=1e-4)
        assert a.p_masked == pytest.approx(b.p_masked, abs=1e-5)
        assert a.iterations == b.iterations


def test_sweep_is_one_batched_call(model):
    before = model.forward_equivalents
    maps = compute_landmarks(model, _coin(3), epsilons=SWEEP_EPSILONS)
    assert [m.epsilon for m in maps] == list(SWEEP_EPSILONS)
    assert model.forward_equivalents - before == pytest.approx(sum(m.forward_equivalents for m in maps))
    for m in maps:
        assert m.p_masked > m.p_full - m.epsilon


def test_occlusion_equals_reference_loop(model):
    crop = _coin(4)
    regions = window_regions(64, 64, size=21, stride=7)
    result = baselines.occlusion(model, crop[None], regions, batch_size=5)
    p_full = model.probabilities(normalize(crop[None], model.spec))[0]
    target = int(p_full.argmax())
    assert result.targets[0] == target
    nx = len(regions.xs)
    for k in range(regions.count):
        occluded = crop.copy()
        y, x = regions.ys[k // nx], regions.xs[k % nx]
        occluded[y : y + 21, x : x + 21] = 0
        p = model.probabilities(normalize(occluded[None], model.spec))[0, target]
        assert result.scores[0, k] == pytest.approx(p_full[target] - p, abs=1e-6)
    assert result.forward_equivalents[0] == regions.count + 1


def test_saliency_and_occlusion_maps(model, tmp_path):
    crop = _coin(5)
    for method in ("saliency", "occlusion"):
        (m,) = compute_landmarks(model, crop, config=LandmarkConfig(method=method, window=11, stride=3))
        assert m.heatmap.shape == (64, 64) and m.heatmap.dtype == np.float32
        assert np.isfinite(m.heatmap).all() and m.heatmap.min() == 0.0 and m.heatmap.max() == pytest.approx(1.0)
        assert m.p_masked is None and m.top_regions
    assert m.forward_equivalents == window_regions(64, 64, size=11, stride=3).count + 1


def test_superpixel_and_pixel_regions_run(model):
    crop = cv2.GaussianBlur(_coin(6), (0, 0), 2)
    (m,) = compute_landmarks(model, crop, config=LandmarkConfig(superpixels=20, epsilon=0.01))
    assert m.regions["kind"] == "superpixels" and len(m.mask) == m.regions["count"]
    assert m.p_masked > m.p_full - 0.01
    (m,) = compute_landmarks(model, crop, config=LandmarkConfig(pixels=True, method="saliency"))
    assert len(m.mask) == 64 * 64


@pytest.mark.parametrize("crop", [np.zeros((64, 64, 3), np.uint8), "line"], ids=["blank", "one-pixel-coin"])
def test_degenerate_images_give_finite_maps(model, crop):
    if isinstance(crop, str):
        crop = np.zeros((64, 64, 3), np.uint8)
        crop[:, 32] = 200  # a coin one pixel wide
    for method in ("optimized", "occlusion", "saliency"):
        (m,) = compute_landmarks(model, crop, config=LandmarkConfig(method=method))
        assert np.isfinite(m.heatmap).all() and np.isfinite(m.mask).all()
        assert 0.0 <= m.heatmap.min() and m.heatmap.max() <= 1.0
        json.dumps(m.to_dict())


def test_bad_inputs(model):
    crop = _coin(7)
    for eps in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match=r"epsilon must be in \(0, 1\]"):
            LandmarkConfig(epsilon=eps)
    with pytest.raises(ConfigError, match=r"epsilon must be in \(0, 1\]"):
        compute_landmarks(model, crop, epsilons=(0.5, 2.0))
    with pytest.raises(ConfigError, match="larger than the image"):
        compute_landmarks(model, crop, config=LandmarkConfig(window=65))
    with pytest.raises(ConfigError, match="max_iterations"):
        OptimizerConfig(max_iterations=0)
    with pytest.raises(InputError, match="valid labels: RIC"):
        compute_landmarks(model, crop, targets="RIC X Nobody 1")
    with pytest.raises(ConfigError, match="valid methods: optimized, occlusion, saliency"):
        LandmarkConfig(method="gradcam")
    with pytest.raises(InputError, match=r"crops must be \(B, 64, 64, 3\)"):
        compute_landmarks(model, np.zeros((32, 32, 3), np.uint8))


def test_landmark_map_outputs(model, tmp_path):
    (m,) = compute_landmarks(model, _coin(8), targets=model.classes[2], config=LandmarkConfig(epsilon=0.01))
    assert m.label == model.classes[2] and m.target == 2
    path = m.save_png(tmp_path / "o.png", scale=2)
    png = cv2.imread(str(path))
    assert png.shape == (128, 128, 3)
    data = json.loads(json.dumps(m.to_dict()))
    assert data["method"] == "optimized" and len(data["mask"]) == len(m.mask)
    assert all(len(r["box"]) == 4 for r in data["top_regions"])


# ------------------------------------------------------------------ geometry


def test_crop_transform_reproduces_preprocess():
    spec = PreprocessSpec.for_input_size(64)
    photo = np.full((150, 190, 3), 235, np.uint8)
    cv2.circle(photo, (110, 70), 55, (120, 90, 60), -1)
    cv2.putText(photo, "IMP", (80, 80), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (30, 30, 30), 2)
    matrix = crop_transform(photo, spec)
    disc = coin_mask(photo)
    assert disc is not None
    expected = crop_image(canonical_image(photo, spec), spec)
    interpolation = cv2.INTER_AREA if matrix[0, 0] < 1 else cv2.INTER_LINEAR
    warped = cv2.warpAffine(photo, matrix, (spec.crop, spec.crop), flags=interpolation)
    kept = expected.any(axis=2)  # preprocessing blanks the background; compare the coin
    assert kept.mean() > 0.5
    assert np.abs(warped.astype(int) - expected.astype(int))[kept].max() <= 1
    centre = apply_transform(matrix, [[disc.cx, disc.cy]])[0]
    assert centre == pytest.approx([spec.resize / 2 - (spec.resize - spec.crop) // 2] * 2, abs=1e-6)


def test_landmarks_for_source_maps_back_to_the_photo(model):
    from denarius.engine.landmarks import landmarks_for_source

    photo = np.full((150, 190, 3), 235, np.uint8)
    cv2.circle(photo, (110, 70), 55, (120, 90, 60), -1)
    (m,) = landmarks_for_source(model, photo, side="reverse", config=LandmarkConfig(method="saliency"))
    heat = m.source_heatmap()
    assert heat.shape == (150, 190) and np.isfinite(heat).all()
    assert heat[:, :40].max() == 0.0  # left of the coin's square is outside the crop
    with pytest.raises(InputError, match="reverse"):
        landmarks_for_source(model, b"not an image", side="reverse")


def test_vacuous_constraint_is_flagged(model):
    crop = _coin(9)
    p_black = model.probabilities(normalize(np.zeros((1, 64, 64, 3), np.uint8), model.spec))[0]
    target = int(p_black.argmax())
    black = LandmarkConfig(epsilon=1.0, reference="black")
    (loose,) = compute_landmarks(model, crop, targets=target, config=black)
    assert loose.vacuous and not loose.mask.any()  # the empty mask is optimal
    assert loose.heatmap.max() > 0 and np.isfinite(loose.heatmap).all()  # persistence still ranks the regions
    p_full = model.probabilities(normalize(crop[None], model.spec))[0, target]
    if p_black[target] < p_full - 1e-4:
        tight_config = LandmarkConfig(epsilon=(p_full - p_black[target]) / 2, reference="black")
        (tight,) = compute_landmarks(model, crop, targets=target, config=tight_config)
        assert not tight.vacuous


def _blurred(crop: np.ndarray) -> np.ndarray:
    """The blur reference written out independently: sigma 5% of the crop, reflected border."""
    return cv2.GaussianBlur(crop.astype(np.float32), (0, 0), 0.05 * crop.shape[1], borderType=cv2.BORDER_REFLECT)


def test_reference_images(rng):
    crops = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    assert composition.reference_images(crops, "black") is None
    blurred = composition.reference_images(crops, "blur")
    assert blurred.shape == crops.shape and blurred.dtype == np.float32
    np.testing.assert_allclose(blurred[1], _blurred(crops[1]), atol=1e-4)
    assert blurred.std() < crops.std()  # the detail is gone
    with pytest.raises(InputError, match="valid references: blur, black"):
        composition.reference_images(crops, "grey")
    with pytest.raises(ConfigError, match="reference"):
        LandmarkConfig(reference="grey")


def test_optimiser_with_blur_reference_satisfies_constraint_and_reports_persistence(model):
    crop = _coin(10)
    regions = window_regions(64, 64, size=11, stride=3)
    classes = len(model.classes)
    images = np.repeat(crop[None], classes, axis=0)
    blurred = _blurred(crop)
    reference = np.repeat(blurred[None], classes, axis=0)
    eps = 0.003
    paper = OptimizerConfig(constraint="absolute")
    result = optimize_masks(model, images, regions, epsilons=eps, targets=np.arange(classes), reference=reference, config=paper)
    # our own composition f = R + m * (I - R) and fresh forward passes
    masked = blurred[None] + composition.mask_weights(regions, result.masks)[..., None] * (crop.astype(np.float32) - blurred)[None]
    p_masked = model.probabilities(normalize(masked, model.spec))[np.arange(classes), np.arange(classes)]
    p_full = model.probabilities(normalize(crop[None], model.spec))[0]
    p_reference = model.probabilities(normalize(blurred[None], model.spec))[0]
    assert (p_masked > p_full - eps).all()
    np.testing.assert_allclose(result.p_masked, p_masked, rtol=1e-5)
    np.testing.assert_allclose(result.masked_images, masked, atol=1e-3)  # the images that verifying pass saw
    np.testing.assert_allclose(result.p_reference, p_reference, rtol=1e-5)
    np.testing.assert_array_equal(result.vacuous, p_reference > p_full - eps)
    assert not np.allclose(result.masks, 1.0)
    # persistence: the mean of the iterates, so in [0, 1], 1 only while nothing moved, and
    # never below the final mask's share of the path
    assert result.persistence.shape == result.masks.shape
    assert (result.persistence >= 0).all() and (result.persistence <= 1).all()
    assert (result.persistence < 1).any()
    one_step = optimize_masks(model, images[:2], regions, epsilons=eps, targets=[0, 1], reference=reference[:2],
                              config=OptimizerConfig(max_iterations=1))
    np.testing.assert_array_equal(one_step.persistence, 1.0)  # only x = 1 was visited


def test_persistence_checkpoints_follow_the_path(model):
    crop = _coin(10)
    regions = window_regions(64, 64, size=11, stride=3)
    images = np.repeat(crop[None], 2, axis=0)
    reference = np.repeat(_blurred(crop)[None], 2, axis=0)
    kwargs = dict(epsilons=[0.003, 0.5], targets=[0, 1], reference=reference)
    full = optimize_masks(model, images, regions, checkpoints=(1, 3, 1000), **kwargs)
    three = optimize_masks(model, images, regions, config=OptimizerConfig(max_iterations=3), **kwargs)
    assert full.persistence_at.shape == (2, 3, regions.count)
    np.testing.assert_array_equal(full.persistence_at[:, 0], 1.0)  # only x = 1 visited after one iteration
    np.testing.assert_allclose(full.persistence_at[:, 1], three.persistence, atol=1e-6)  # as if it had stopped at 3
    np.testing.assert_array_equal(full.persistence_at[:, 2], full.persistence)  # stopped sooner: its final persistence
    assert (full.iterations > 3).all() and optimize_masks(model, images, regions, **kwargs).persistence_at is None
    # through compute_landmarks: one dict per map
    (m,) = compute_landmarks(model, crop, config=LandmarkConfig(epsilon=0.5), checkpoints=(2, 5))
    assert set(m.persistence_by_iteration) == {2, 5} and m.persistence_by_iteration[5].shape == (regions.count,)
    with pytest.raises(ConfigError, match="checkpoints"):
        optimize_masks(model, images, regions, checkpoints=(0,), **kwargs)
    with pytest.raises(ConfigError, match="optimized"):
        compute_landmarks(model, crop, config=LandmarkConfig(method="occlusion"), checkpoints=(2,))


def test_optimised_heatmap_is_the_persistence_map_on_the_coin(model):
    from denarius.engine.landmarks.support import coin_support

    crop = _coin(11)
    (m,) = compute_landmarks(model, crop, config=LandmarkConfig(epsilon=0.01))
    regions = window_regions(64, 64, size=11, stride=3)
    expected = composition.centre_weights(regions, m.persistence)[0]  # the default spread
    coin = coin_support(crop)
    expected = np.where(coin, expected, expected[coin].min())  # off the coin: the coin's minimum
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(m.heatmap, expected, atol=1e-5)
    assert m.reference == "blur" and m.to_dict()["reference"] == "blur" and len(m.to_dict()["persistence"]) == regions.count
    assert m.top_regions[0]["score"] == pytest.approx(float(m.persistence.max()))


def test_occlusion_with_blur_reference_equals_reference_loop(model):
    crop = _coin(12)
    blurred = _blurred(crop)
    regions = window_regions(64, 64, size=21, stride=7)
    result = baselines.occlusion(model, crop[None], regions, batch_size=4, reference=blurred[None])
    target = int(result.targets[0])
    p_full = model.probabilities(normalize(crop[None], model.spec))[0, target]
    nx = len(regions.xs)
    for k in range(regions.count):
        occluded = crop.astype(np.float32)
        y, x = regions.ys[k // nx], regions.xs[k % nx]
        occluded[y : y + 21, x : x + 21] = blurred[y : y + 21, x : x + 21]
        p = model.probabilities(normalize(occluded[None], model.spec))[0, target]
        assert result.scores[0, k] == pytest.approx(p_full - p, abs=1e-6)


def test_deletion_curve_ends_at_the_reference(model):
    from denarius.evaluation.metrics import deletion_curve

    crop = _coin(13)
    blurred = _blurred(crop)
    heat = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    target = 2
    curve = deletion_curve(model, crop, heat, target, steps=4, reference=blurred)
    ends = model.probabilities(normalize(np.stack([crop.astype(np.float32), blurred]), model.spec))[:, target]
    assert curve.shape == (5,)
    assert curve[0] == pytest.approx(ends[0], abs=1e-6) and curve[-1] == pytest.approx(ends[1], abs=1e-6)
    black = deletion_curve(model, crop, heat, target, steps=4)
    p_black = model.probabilities(normalize(np.zeros((1, 64, 64, 3), np.float32), model.spec))[0, target]
    assert black[-1] == pytest.approx(p_black, abs=1e-6)


@pytest.mark.parametrize("method", ["optimized", "occlusion"])
def test_should_stop_cancels_between_forward_calls(model, method):
    from denarius.engine.errors import Cancelled

    polls = []

    def should_stop() -> bool:
        polls.append(model.forward_equivalents)
        return len(polls) > 2

    before = model.forward_equivalents
    config = LandmarkConfig(method=method, epsilon=0.01, window=11, stride=3, batch_size=16)
    with pytest.raises(Cancelled, match="the caller gave up"):
        compute_landmarks(model, _coin(14), config=config, should_stop=should_stop)
    assert len(polls) == 3
    full = 3 * 100 + 2 if method == "optimized" else window_regions(64, 64, size=11, stride=3).count + 1
    assert model.forward_equivalents - before < full / 4  # stopped early, not after the work


# ------------------------------------------------------------------ ladder, coin support, relative constraint


def test_survival_is_the_largest_epsilon_a_nested_mask_keeps():
    from denarius.engine.landmarks.ladder import ladder_rungs, survival

    rungs = (0.1, 0.3, 0.5, 0.9)
    # region k is kept (1) up to rung k and removed (0) above it; region 4 never kept
    masks = np.array([[[1.0 if r <= k else 0.0 for k in range(5)] for r in range(4)]])  # (1, R=4, K=5)
    masks[0, :, 4] = 0.0
    np.testing.assert_allclose(survival(masks, rungs)[0], [0.1, 0.3, 0.5, 0.9, 0.0], atol=1e-6)
    assert ladder_rungs((0.5, 0.1), 0.3) == (0.1, 0.3, 0.5)  # sorted, the map's epsilon added
    with pytest.raises(ConfigError, match="rungs"):
        ladder_rungs((0.0, 0.5), 0.5)
    with pytest.raises(ConfigError, match="rungs"):
        survival(masks, (0.1, 0.3))


def test_coin_support_and_restrict_keep_the_maximum_on_the_coin():
    from denarius.engine.landmarks.support import coin_support, restrict

    crop = _coin(20)
    crop[30, 30] = 0  # a black pixel inside the coin is still coin
    support = coin_support(crop)
    yy, xx = np.mgrid[:64, :64]
    assert support[30, 30] and support[32, 32] and not support[0, 0] and not support[63, 63]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < (0.45 * 64) ** 2
    assert (support ^ disc).mean() < 0.03  # the convex hull of the disc's pixels
    heat = np.zeros((64, 64), np.float32)
    heat[0, 0], heat[32, 40], heat[32, 20] = 5.0, 2.0, 1.0  # the raw maximum is off the coin
    restricted = restrict(heat, support)
    assert np.unravel_index(np.argmax(restricted), heat.shape) == (32, 40)
    assert restricted[support].tolist() == heat[support].tolist()  # the coin's values unchanged
    assert coin_support(np.full((8, 8, 3), 7, np.uint8)).all()  # no background: nothing to restrict
    with pytest.raises(InputError, match="support"):
        restrict(heat, support[:10])


def test_relative_constraint_is_a_share_of_the_detail_and_never_vacuous(model):
    crop = _coin(21)
    regions = window_regions(64, 64, size=11, stride=3)
    blurred = _blurred(crop)
    p_full = model.probabilities(normalize(crop[None], model.spec))[0]
    p_ref = model.probabilities(normalize(blurred[None], model.spec))[0]
    target = int(np.argmax(p_full - p_ref))  # the class the detail supports most
    eps = 0.5
    relative = OptimizerConfig(constraint="relative")
    result = optimize_masks(model, crop[None], regions, epsilons=eps, targets=[target], reference=blurred[None], config=relative)
    threshold = p_full[target] - eps * (p_full[target] - p_ref[target])
    masked = blurred[None] + composition.mask_weights(regions, result.masks)[..., None] * (crop.astype(np.float32) - blurred)[None]
    p_masked = model.probabilities(normalize(masked, model.spec))[0, target]
    assert p_masked > threshold and not result.vacuous[0]
    assert not np.allclose(result.masks, 1.0)
    # the paper's absolute rule with an epsilon larger than p(c): vacuous
    absolute = optimize_masks(model, crop[None], regions, epsilons=1.0, targets=[target], reference=blurred[None],
                              config=OptimizerConfig(constraint="absolute"))
    assert absolute.vacuous[0]
    with pytest.raises(ConfigError, match="valid constraints: absolute, relative"):
        OptimizerConfig(constraint="share")


def test_ladder_heatmap_is_one_batched_run_of_the_rungs(model):
    from denarius.engine.landmarks.ladder import survival
    from denarius.engine.landmarks.support import coin_support

    crops = np.stack([_coin(22), _coin(23)])
    rungs = (0.1, 0.5, 0.9)
    config = LandmarkConfig(epsilon=0.5, heatmap="ladder", ladder=rungs)
    before = model.forward_equivalents
    maps = compute_landmarks(model, crops, config=config, targets=[1, 2])
    cost = model.forward_equivalents - before
    sweep = compute_landmarks(model, crops, config=replace_heatmap(config, "mask"), targets=[1, 2], epsilons=rungs)
    assert len(maps) == 2 and cost == pytest.approx(sum(m.forward_equivalents for m in sweep))  # the sweep's rows, one run
    regions = window_regions(64, 64, size=11, stride=3)
    for i, m in enumerate(maps):
        rows = sweep[3 * i : 3 * i + 3]
        expected = survival(np.stack([r.mask for r in rows])[None], rungs)[0]
        np.testing.assert_allclose(m.survival, expected, atol=1e-6)
        assert m.ladder == rungs and m.epsilon == 0.5
        np.testing.assert_allclose(m.mask, rows[1].mask, atol=1e-6)  # the map's own mask: the rung at its epsilon
        assert m.p_masked == pytest.approx(rows[1].p_masked, abs=1e-6)
        if m.survival.max() > m.survival.min():
            weights = composition.centre_weights(regions, m.survival)[0]
            coin = coin_support(crops[i])
            assert np.unravel_index(np.argmax(m.heatmap), m.heatmap.shape) == np.unravel_index(
                np.argmax(np.where(coin, weights, -1.0)), weights.shape)
        assert len(m.to_dict()["survival"]) == regions.count and m.to_dict()["ladder"] == list(rungs)
    with pytest.raises(ConfigError, match="valid heatmaps: ladder, persistence, mask"):
        LandmarkConfig(heatmap="survival")
    with pytest.raises(ConfigError, match="valid supports: coin, crop"):
        LandmarkConfig(support="disc")


def replace_heatmap(config, heatmap):
    from dataclasses import replace

    return replace(config, heatmap=heatmap)


def test_mask_heatmap_is_the_papers_single_epsilon_mask(model):
    crop = _coin(24)
    config = LandmarkConfig(epsilon=0.01, heatmap="mask", support="crop", spread="coverage")
    (m,) = compute_landmarks(model, crop, config=config, targets=3)
    regions = window_regions(64, 64, size=11, stride=3)
    weights = composition.mask_weights(regions, m.mask)[0]
    if weights.max() > weights.min():
        np.testing.assert_allclose(m.heatmap, (weights - weights.min()) / (weights.max() - weights.min()), atol=1e-5)
    assert m.survival is None and m.ladder is None


def test_coin_blur_reference_blurs_within_the_coin_and_keeps_the_background_black():
    from denarius.engine.landmarks.support import coin_support

    crop = _coin(25)
    (reference,) = composition.reference_images(crop[None], "coin-blur")
    coin = coin_support(crop)
    assert (reference[~coin] == 0).all()
    weight = coin.astype(np.float32)
    inside = _blurred(crop.astype(np.float32) * weight[..., None]) / _blurred(np.repeat(weight[..., None], 3, axis=2))
    np.testing.assert_allclose(reference[coin], inside[coin], rtol=1e-4, atol=1e-3)
    # the plain blur darkens the rim (it averages in the black background); within the coin it does not
    rim = coin & ~cv2.erode(coin.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert reference[rim].mean() > _blurred(crop)[rim].mean() + 10


def test_centre_weights_give_each_pixel_its_nearest_window_centre(rng):
    regions = window_regions(40, 40, size=11, stride=3)
    x = rng.random((2, regions.count)).astype(np.float32)
    weights = composition.centre_weights(regions, x)
    assert weights.shape == (2, 40, 40)
    _, nx = regions.grid
    centres_y, centres_x = regions.ys + 5.5, regions.xs + 5.5
    for p, q in [(0, 0), (0, 39), (20, 7), (39, 39), (13, 26)]:
        j = int(np.argmin(np.abs(centres_y - (p + 0.5))))
        i = int(np.argmin(np.abs(centres_x - (q + 0.5))))
        np.testing.assert_array_equal(weights[:, p, q], x[:, j * nx + i])
    # a corner pixel is the corner window's value, not an average over fewer windows
    assert weights[0, 0, 0] == x[0, 0]
    labels = LabelRegions(np.arange(16, dtype=np.int32).reshape(4, 4) // 2, 8)
    y = rng.random((1, 8)).astype(np.float32)
    np.testing.assert_array_equal(composition.centre_weights(labels, y), composition.mask_weights(labels, y))
    with pytest.raises(ConfigError, match="valid spreads: centres, coverage"):
        LandmarkConfig(spread="nearest")


# ------------------------------------------------------------------ overlays


def test_overlay_colours_only_where_the_map_is_high():
    image = np.full((40, 40, 3), (180, 140, 60), np.uint8)
    heat = np.zeros((40, 40), np.float32)
    heat[10:20, 10:20] = 1.0
    heat[30:, 30:] = 0.2  # below the floor: not drawn
    out = overlay(image, heat)
    assert np.array_equal(out[:5, :5], image[:5, :5]) and np.array_equal(out[32:, 32:], image[32:, 32:])
    assert np.abs(out[12:18, 12:18].astype(int) - image[12:18, 12:18]).max() > 60  # jet red where hot


def test_coin_overlay_shows_the_whole_coin_and_puts_the_map_where_the_crop_was():
    from denarius.engine.landmarks.result import coin_view

    spec = PreprocessSpec(resize=72, crop=64)
    photo = np.zeros((300, 400, 3), np.uint8)
    cv2.circle(photo, (200, 150), 120, (200, 160, 90), -1)
    cv2.circle(photo, (200, 150), 118, (30, 30, 200), 3)  # a rim the centre crop cuts away
    matrix = crop_transform(photo, spec)
    view = coin_view(photo, matrix, resize=spec.resize, crop=spec.crop, size=512)
    assert view.shape == (512, 512, 3)
    rim = apply_transform(matrix, [(200, 150 - 118)])[0]  # the rim's top in crop pixels: above the crop
    assert rim[1] < 0
    assert (view[:, :, 2] > 150).any()  # yet the view shows the blue rim
    heat = np.zeros((64, 64), np.float32)
    heat[28:36, 28:36] = 1.0  # the crop's centre = the coin's centre
    out = coin_overlay(view, heat, resize=spec.resize)
    changed = np.argwhere(np.abs(out.astype(int) - view).sum(axis=2) > 30)
    assert np.allclose(changed.mean(axis=0), 256, atol=12)
