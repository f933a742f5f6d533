"""Flood-fill segmentation refinement (seed 002): one robust ab per luminance region.

Seeded 4-neighbourhood region growing with a floating range of ``threshold`` on L (normalised
per image to 0-100) reaches, from any seed, exactly the connected component of the graph whose
edges join 4-neighbours differing by at most ``threshold``. So instead of growing regions
seed by seed, all regions are found at once: the pixels and their edge flags are interleaved
on a (2H-1)x(2W-1) lattice and labelled by OpenCV's connected components.

Each region then gets a robust common ab (a Huber-reweighted mean, close to the median),
except tiny regions and strongly textured ones (high L or ab spread), which keep the
model's per-pixel ab.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

REFINERS = ("none", "flood")


@dataclass(frozen=True)
class FloodParams:
    threshold: float = 3.0     # max |dL| between 4-neighbours of one region, L normalised to 0-100
    min_region: float = 0.0005  # regions smaller than this fraction of the image are left alone
    max_l_std: float = 12.0    # regions whose L spreads more than this are texture: left alone
    max_ab_spread: float = 14.0  # regions where the model sees several colours: left alone
    strength: float = 1.0      # 1: replace ab by the region's; 0: no change
    stats_step: int = 4        # region statistics on every n-th pixel each way (an eligible region
                               # of 0.05 % of a 1080p image still has ~65 samples)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def l_scale(lum: np.ndarray, step: int = 4) -> tuple[float, float]:
    """(offset, scale) that stretch L's 1st..99th percentiles to 0..100 (on a subsample)."""
    lo, hi = np.percentile(lum[::step, ::step], (1.0, 99.0))
    return float(lo), 100.0 / max(float(hi - lo), 1e-3)


_buffers = threading.local()
KEPT_CELLS = 64_000_000   # a 4K full-aperture frame's lattice (4096x3112) has 51 million; a larger scan's is not kept


def _buffer(name: str, shape: tuple[int, ...], dtype: type, keep: bool) -> np.ndarray:
    """A per-thread scratch array, reused while the frame size stays the same: fresh tens of
    megabytes per call would cost more in page faults than the work itself. A large scan's
    (``keep`` false) is not kept: gigabytes held by the thread after its photo."""
    store = _buffers.__dict__
    buf = store.get(name)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        store.pop(name, None)
        buf = np.empty(shape, dtype)
        if keep:
            store[name] = buf
        if name == "lattice":  # pixel cells 1, corner cells 0; only edge cells change per call
            buf[...] = 0
            buf[::2, ::2] = 1
    return buf


def flood_regions(lum: np.ndarray, threshold: float = 3.0) -> tuple[np.ndarray, int]:
    """Label the regions of L where 4-neighbours differ by at most ``threshold`` (in L's own
    units); returns (int32 labels HxW numbered from 1, count + 1): label 0 is unused."""
    h, w = lum.shape
    lum = np.ascontiguousarray(lum, dtype=np.float32)
    keep = (2 * h - 1) * (2 * w - 1) <= KEPT_CELLS
    lat = _buffer("lattice", (2 * h - 1, 2 * w - 1), np.uint8, keep)
    if w > 1:
        np.less_equal(cv2.absdiff(lum[:, 1:], lum[:, :-1]), threshold, out=lat[::2, 1::2], casting="unsafe")
    if h > 1:
        np.less_equal(cv2.absdiff(lum[1:, :], lum[:-1, :]), threshold, out=lat[1::2, ::2], casting="unsafe")
    full = _buffer("lattice_labels", lat.shape, np.int32, keep)
    count, _ = cv2.connectedComponents(lat, full, connectivity=4, ltype=cv2.CV_32S)
    # Label 0 is the lattice background (the corner cells); pixels are labelled 1..count-1.
    labels = _buffer("labels", (h, w), np.int32, keep)
    np.copyto(labels, full[::2, ::2])
    return labels, count


def refine_flood(lum: np.ndarray, ab: np.ndarray, params: FloodParams = FloodParams()) -> np.ndarray:
    """Return a new ab (HxWx2 float32) with one robust ab per eligible luminance region."""
    offset, scale = l_scale(lum)
    # |dL| * scale <= threshold on normalised L is |dL| <= threshold / scale on L itself.
    labels, count = flood_regions(lum, params.threshold / scale)
    s = params.stats_step
    lab_s = labels[::s, ::s].ravel()
    a_s = ab[::s, ::s, 0].ravel()
    b_s = ab[::s, ::s, 1].ravel()
    l_s = (lum[::s, ::s].ravel() - np.float32(offset)) * np.float32(scale)

    n = np.bincount(lab_s, minlength=count).astype(np.float64)
    safe = np.maximum(n, 1)
    mean_a = np.bincount(lab_s, a_s, count) / safe
    mean_b = np.bincount(lab_s, b_s, count) / safe
    mean_l = np.bincount(lab_s, l_s, count) / safe
    var_l = np.bincount(lab_s, l_s * l_s, count) / safe - mean_l ** 2
    # One Huber reweighting step pulls the mean toward the median: outliers (c > 2) count 2/r.
    resid = np.hypot(a_s - mean_a[lab_s], b_s - mean_b[lab_s])
    wgt = 2.0 / np.maximum(resid, 2.0)
    wsum = np.maximum(np.bincount(lab_s, wgt, count), 1e-9)
    spread = np.bincount(lab_s, resid, count) / safe

    min_pixels = params.min_region * lum.size / (s * s)
    eligible = (n >= max(min_pixels, 4)) & (np.sqrt(np.maximum(var_l, 0)) <= params.max_l_std) \
        & (spread <= params.max_ab_spread)
    out = np.array(ab, dtype=np.float32, order="C")
    if not eligible.any() or params.strength <= 0:
        return out
    # One complex64 gather fills a and b together, in ab's own interleaved layout; regions
    # left alone are NaN in the table and keep the model's per-pixel ab.
    table = np.full(count, complex(np.nan, np.nan), np.complex64)   # NaN in both a and b
    table[eligible] = (np.bincount(lab_s, wgt * a_s, count)[eligible] / wsum[eligible]
                       + 1j * np.bincount(lab_s, wgt * b_s, count)[eligible] / wsum[eligible])
    h, w = labels.shape
    fill = table[labels].view(np.float32).reshape(h, 2 * w)   # a, b interleaved, like ab
    own = out.reshape(h, 2 * w)
    if params.strength < 1:  # fill = own + strength * (fill - own), in place (NaN stays NaN)
        fill -= own
        fill *= np.float32(params.strength)
        fill += own
    # OpenCV's masked copy is several times faster than numpy's copyto(where=); NaN != NaN
    # marks the regions left alone.
    cv2.copyTo(fill, cv2.compare(fill, fill, cv2.CMP_EQ), own)
    return out


def refine(lum: np.ndarray, ab: np.ndarray, method: str, params: dict[str, Any] | None = None) -> np.ndarray:
    """Apply refinement ``method`` (one of REFINERS). Raises ValueError for an unknown one."""
    if method == "none":
        return ab
    if method == "flood":
        return refine_flood(lum, ab, FloodParams(**(params or {})))
    raise ValueError(f"unknown refinement {method!r} (choose from {', '.join(REFINERS)})")
