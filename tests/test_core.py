"""Colour handling, flood-fill refinement, metrics and the Colorizer API."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from colorize_core import Colorizer, ModelError
from colorize_core.colorizer import CPU_CALL_PIXELS
from colorize_core.color import chroma_spread, lab_to_rgb, luminance, rgb_to_lab, to_float_rgb
from colorize_core.metrics import colourfulness
from colorize_core.refine import FloodParams, flood_regions, refine, refine_flood
from tests.conftest import gray_photo


@pytest.fixture(scope="module")
def colorizer() -> Colorizer:
    return Colorizer.load("default", device="cpu")


def test_gray_luminance_lookup_matches_opencv_conversion():
    g = np.arange(256, dtype=np.uint8).reshape(16, 16)
    expected = rgb_to_lab(to_float_rgb(np.dstack([g] * 3)))[..., 0]
    np.testing.assert_allclose(luminance(g), expected, atol=1e-3)
    g16 = (np.arange(0, 65536, 64, dtype=np.uint16)).reshape(32, 32)
    np.testing.assert_allclose(luminance(g16), rgb_to_lab(to_float_rgb(np.dstack([g16] * 3)))[..., 0], atol=1e-3)


def test_merging_zero_ab_with_l_gives_back_the_gray_image():
    g = gray_photo(size=64)
    rgb = lab_to_rgb(luminance(g), np.zeros(g.shape + (2,), np.float32), np.uint8)
    assert np.abs(rgb.astype(int) - g[..., None]).max() <= 1


def test_toned_prints_have_small_chroma_spread_and_colour_photos_large():
    g = gray_photo("chelsea").astype(np.float32) / 255
    sepia = (np.stack([g, g * 0.86, g * 0.66], -1) * 255).astype(np.uint8)
    assert chroma_spread(gray_photo()) == 0.0
    assert chroma_spread(sepia) < 6.0
    assert chroma_spread(skimage.data.astronaut()) > 6.0


def test_colourfulness_uses_signed_opponent_channels():
    # Equal amounts of red and green: |R-G| copies report a colourful image; signed rg does too,
    # but a flat gray image is 0 and a saturated red-only image scores higher than pale red.
    gray = np.full((32, 32, 3), 128, np.uint8)
    assert colourfulness(gray) == pytest.approx(0.0, abs=1e-6)
    half = np.zeros((32, 32, 3), np.uint8)
    half[:, :16] = (200, 30, 30)
    half[:, 16:] = (30, 200, 30)
    # Signed: mean rg is 0 (red and green cancel), spread 170; yb = 115 - 30 = 85 on both halves.
    # |R-G| would give mean 170 and spread 0 instead: M = 51 + ..., far from 195.5.
    assert colourfulness(half) == pytest.approx(170 + 0.3 * 85, rel=1e-3)


def test_flood_regions_equal_seeded_flood_fill_from_every_pixel():
    rng = np.random.default_rng(1)
    lum = cv2.GaussianBlur(rng.uniform(0, 100, (40, 50)).astype(np.float32), (0, 0), 1.5) * 3
    labels, count = flood_regions(lum, 3.0)
    reference = np.zeros(lum.shape, np.int32)
    n = 0
    for y in range(lum.shape[0]):
        for x in range(lum.shape[1]):
            if reference[y, x] == 0:
                n += 1
                mask = np.zeros((lum.shape[0] + 2, lum.shape[1] + 2), np.uint8)
                cv2.floodFill(lum.copy(), mask, (x, y), 0, 3.0, 3.0, 4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
                reference[mask[1:-1, 1:-1] > 0] = n
    assert count - 1 == n and labels.min() == 1  # label 0 is not used
    assert len(set(zip(labels.ravel().tolist(), reference.ravel().tolist()))) == n


def test_flood_refinement_gives_each_flat_region_one_robust_ab():
    lum = np.full((120, 160), 30.0, np.float32)
    lum[:, 80:] = 70.0  # two flat regions split by a luminance edge
    rng = np.random.default_rng(0)
    ab = rng.normal(0, 3, (120, 160, 2)).astype(np.float32)
    ab[:, :80] += (20, 10)
    ab[:, 80:] += (-15, 25)
    ab[5, 5] = (90, -90)  # an outlier the robust mean must resist
    out = refine_flood(lum, ab)
    left, right = out[:, :80].reshape(-1, 2), out[:, 80:].reshape(-1, 2)
    assert np.ptp(left, axis=0).max() < 1e-4 and np.ptp(right, axis=0).max() < 1e-4
    np.testing.assert_allclose(left[0], (20, 10), atol=0.6)
    np.testing.assert_allclose(right[0], (-15, 25), atol=0.6)


def test_flood_refinement_leaves_texture_and_tiny_regions_alone():
    rng = np.random.default_rng(0)
    lum = rng.uniform(0, 100, (80, 80)).astype(np.float32)  # pure texture: every region tiny
    ab = rng.normal(0, 10, (80, 80, 2)).astype(np.float32)
    np.testing.assert_array_equal(refine_flood(lum, ab), ab)
    ramp = np.tile(np.linspace(0, 100, 400, dtype=np.float32), (50, 1))  # one region spanning all of L
    ab2 = rng.normal(0, 10, (50, 400, 2)).astype(np.float32)
    np.testing.assert_array_equal(refine_flood(ramp, ab2, FloodParams(max_l_std=12.0)), ab2)


def test_regions_left_alone_keep_both_a_and_b_beside_refined_ones():
    """A flat region is refined while a textured one beside it keeps the model's a *and* b
    (a table of NaN+0j once zeroed b there: orange fur turned pink)."""
    rng = np.random.default_rng(1)
    lum = np.full((100, 100), 40.0, np.float32)
    lum[:, 50:] = rng.uniform(0, 100, (100, 50))          # texture on the right
    ab = rng.normal(0, 2, (100, 100, 2)).astype(np.float32) + np.float32(30)
    out = refine_flood(lum, ab)
    assert np.ptp(out[:, :50].reshape(-1, 2), axis=0).max() < 1e-4      # refined: one ab
    np.testing.assert_array_equal(out[:, 51:], ab[:, 51:])              # left alone: both channels
    assert abs(out[..., 1].mean() - ab[..., 1].mean()) < 0.5


def test_partial_strength_blends_toward_the_region_ab():
    lum = np.full((60, 80), 50.0, np.float32)
    ab = np.zeros((60, 80, 2), np.float32)
    ab[:30] = 10.0  # one flat region, ab 10 on the top half, 0 below: common ab is 5 (robust mean)
    full = refine_flood(lum, ab, FloodParams(max_ab_spread=50))
    half = refine_flood(lum, ab, FloodParams(max_ab_spread=50, strength=0.5))
    np.testing.assert_allclose(half, (ab + full) / 2, atol=1e-4)


def test_a_large_scans_scratch_is_not_kept_by_its_thread(monkeypatch):
    """Film frames of one size reuse their per-thread scratch; a scan larger than KEPT_CELLS
    lattice cells does not leave gigabytes held by the thread after it (same result either way)."""
    from colorize_core import refine as refine_module

    rng = np.random.default_rng(2)
    lum = np.repeat(np.linspace(0, 100, 10, dtype=np.float32), 12)[None, :].repeat(90, 0)
    ab = rng.normal(0, 2, (90, 120, 2)).astype(np.float32)
    kept = refine_flood(lum, ab)
    store = refine_module._buffers.__dict__
    assert store["lattice_labels"].shape == (179, 239)
    monkeypatch.setattr(refine_module, "KEPT_CELLS", 179 * 239 - 1)
    np.testing.assert_array_equal(refine_flood(lum, ab), kept)   # reused while the size stays the same
    store.clear()   # a thread that has not seen this size
    np.testing.assert_array_equal(refine_flood(lum, ab), kept)
    assert not {"lattice", "lattice_labels", "labels"} & set(store)
    np.testing.assert_array_equal(refine_flood(lum[:50], ab[:50]), refine_flood(lum[:50].copy(), ab[:50].copy()))
    assert store["lattice"].shape == (99, 239)   # a smaller frame's are kept again


def test_refine_none_is_identity_and_unknown_method_is_refused():
    ab = np.ones((4, 4, 2), np.float32)
    assert refine(np.zeros((4, 4), np.float32), ab, "none") is ab
    with pytest.raises(ValueError, match="unknown refinement"):
        refine(np.zeros((4, 4), np.float32), ab, "magic")


@pytest.mark.parametrize("shape,dtype", [((97, 131), np.uint8), ((64, 48, 3), np.uint8),
                                         ((50, 70), np.uint16), ((33, 45, 3), np.uint16), ((1, 1), np.uint8),
                                         ((3, 700), np.uint8)])
def test_colorize_keeps_size_dtype_and_the_original_l(colorizer, shape, dtype):
    rng = np.random.default_rng(0)
    top = np.iinfo(dtype).max
    img = cv2.GaussianBlur(rng.integers(0, top, shape).astype(np.float32), (0, 0), 2).astype(dtype) \
        if min(shape[:2]) > 4 else rng.integers(0, top, shape).astype(dtype)
    out = colorizer.colorize(img)
    assert out.shape == shape[:2] + (3,) and out.dtype == dtype
    # L of the output equals the input's L, up to quantisation, gamut clipping and OpenCV's
    # float Lab conversion (spline-interpolated gamma: ~0.09 L median round-trip error).
    err = np.abs(luminance(out) - luminance(img))
    assert np.median(err) < (0.5 if dtype == np.uint8 else 0.15) and np.percentile(err, 99) < 3.0


def test_colorize_batch_equals_one_by_one(colorizer):
    imgs = [gray_photo("camera", 128), gray_photo("astronaut", 96), gray_photo("coffee", 160)]
    batch = colorizer.colorize_batch(imgs)
    for img, out in zip(imgs, batch):
        assert np.abs(out.astype(int) - colorizer.colorize(img).astype(int)).max() <= 2


class _ShapeSpy:
    """A stand-in network that records its input shapes and answers ab = (L, -L) in Lab units."""

    def __init__(self, size_multiple: int | None) -> None:
        if size_multiple is not None:
            self.size_multiple = size_multiple
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return torch.cat([x, -x], dim=1) * 100.0


def test_model_calls_pad_to_the_network_multiple_group_by_shape_and_cap_cpu_calls(colorizer):
    spy = _ShapeSpy(32)
    c = Colorizer(spy, colorizer.weights, "spy", {}, torch.device("cpu"), work_size=256)
    rng = np.random.default_rng(1)
    wide = [rng.uniform(0, 100, (360, 640)).astype(np.float32) for _ in range(7)]
    tall = rng.uniform(0, 100, (500, 300)).astype(np.float32)
    lums = wide[:3] + [tall] + wide[3:]
    small = c.predict_ab_small(lums)
    # A 16:9 frame works at 256x144, padded to 256x160 (not to a square); a portrait at
    # 256x154 padded to 256x160; each shape in calls of at most CPU_CALL_PIXELS on the CPU.
    per_call = CPU_CALL_PIXELS // (160 * 256)
    assert sorted(spy.shapes) == sorted([(per_call, 1, 160, 256), (per_call, 1, 160, 256),
                                         (7 - 2 * per_call, 1, 160, 256), (1, 1, 256, 160)])
    for lum, (l_small, ab) in zip(lums, small):  # in input order, the padding cut off again
        assert l_small.shape == ab.shape[:2] == ((144, 256) if lum.shape == (360, 640) else (256, 154))
        assert np.allclose(ab[..., 0], l_small, atol=1e-3) and np.allclose(ab[..., 1], -l_small, atol=1e-3)
    # On a GPU a shape goes in one call; a runner that declares no multiple gets the square.
    assert Colorizer(spy, colorizer.weights, "spy", {}, torch.device("cuda"), work_size=256)._calls(
        [c._to_work(lum)[0] for lum in lums]) == [[0, 1, 2, 4, 5, 6, 7], [3]]
    square = Colorizer(_ShapeSpy(None), colorizer.weights, "spy", {}, torch.device("cpu"), work_size=256)
    assert square._to_work(wide[0])[0].shape == (256, 256)


def test_default_model_gives_plausible_colour_not_noise(colorizer):
    # Held-out photos (never in training): colourful, and coherent (smooth ab, no speckle).
    for name in ("astronaut", "chelsea", "coffee"):
        truth = getattr(skimage.data, name)()
        out = colorizer.colorize(gray_photo(name), refine_method="flood")
        assert colourfulness(out) > 8.0, name
        ab = rgb_to_lab(to_float_rgb(out))[..., 1:]
        speckle = np.abs(ab - cv2.blur(ab, (3, 3))).mean()
        assert speckle < 2.0, name
        # Hue on the cat: warm (a, b > 0), as fur is; the truth agrees.
        if name == "chelsea":
            mean_ab = ab[100:250, 100:350].reshape(-1, 2).mean(0)
            truth_ab = rgb_to_lab(to_float_rgb(truth))[100:250, 100:350, 1:].reshape(-1, 2).mean(0)
            assert mean_ab[1] > 5 and truth_ab[1] > 5


def test_unknown_model_and_tampered_weights_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="unknown model"):
        Colorizer.load("no-such-model")
    from colorize_core.weights import PACKAGED_DIR

    bad = tmp_path / "default.pt"
    bad.write_bytes((PACKAGED_DIR / "default.pt").read_bytes()[:-10] + b"0123456789")
    (tmp_path / "default.json").write_text((PACKAGED_DIR / "default.json").read_text())
    monkeypatch.setenv("COLORIZE_MODEL_DIRS", str(tmp_path))
    with pytest.raises(ModelError, match="sha256"):
        Colorizer.load("default")


def test_colorizer_describes_itself_for_provenance(colorizer):
    d = colorizer.describe()
    assert d["name"] == "default" and len(d["weights_sha256"]) == 64 and d["arch"] == "unet-pretrained"


def test_the_error_several_failures_have_in_common():
    """How a film whose units failed is recorded: as its units failed, or what their errors share."""
    from colorize_core.errors import ColorizeError, MediaError, StorageError, UnsupportedMediaError, common_error

    assert common_error(["StorageError", "StorageError"]) is StorageError
    assert common_error(["NotFoundError", "StorageError"]) is StorageError
    assert common_error(["UnsupportedMediaError"]) is UnsupportedMediaError
    assert common_error(["CorruptMediaError", "UnsupportedMediaError"]) is MediaError
    assert common_error(["CorruptMediaError", "StorageError"]) is ColorizeError
    assert common_error(["OSError"]) is common_error([None]) is common_error([]) is ColorizeError
