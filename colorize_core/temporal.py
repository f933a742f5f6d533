"""Temporal ab smoothing within a shot, scene-cut detection, and the warping-error metric.

Smoothing runs at the model's ab resolution (before upsampling): optical flow on L (OpenCV's
DIS) warps the running ab estimate onto the new frame; a forward-backward consistency check
masks occlusions and disocclusions; where the warped L disagrees with the new L the blend
trusts the new prediction more. Static regions stay steady, moving objects carry their colour
along the flow, and everything resets at a cut.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True)
class TemporalParams:
    strength: float = 0.8        # weight of the warped history where the flow is trustworthy
    consistency: float = 1.0     # max forward-backward flow disagreement (pixels) to trust a pixel
    photometric: float = 6.0     # L difference (0-100) at which the history's weight halves
    preset: int = cv2.DISOPTICAL_FLOW_PRESET_FAST

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> np.ndarray:
    """Pixel coordinates (x, y) of an h x w frame; made once per size (read-only)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    grid = np.dstack([xs, ys])
    grid.flags.writeable = False
    return grid


def _warp(img: np.ndarray, flow: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Sample ``img`` at grid + flow (flow from the target frame into ``img``'s frame)."""
    m = grid + flow
    return cv2.remap(img, m[..., 0], m[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def l_to_u8(lum: np.ndarray) -> np.ndarray:
    """L (0-100) as uint8 (0-255): what optical flow and cut detection work on."""
    return np.clip(lum * 2.55 + 0.5, 0, 255).astype(np.uint8)


class FlowPair:
    """Backward flow (t -> t-1) with an occlusion mask from forward-backward consistency."""

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_FAST) -> None:
        self.dis = cv2.DISOpticalFlow_create(preset)

    def __call__(self, prev_u8: np.ndarray, cur_u8: np.ndarray, max_disagreement: float) -> tuple[np.ndarray, np.ndarray]:
        back = self.dis.calc(cur_u8, prev_u8, None)    # where each pixel of t was in t-1
        fwd = self.dis.calc(prev_u8, cur_u8, None)     # where each pixel of t-1 goes in t
        grid = _grid(*cur_u8.shape)
        fwd_at_back = _warp(fwd, back, grid)           # forward flow read at the back-projected point
        disagreement = np.linalg.norm(back + fwd_at_back, axis=2)
        return back, disagreement <= max_disagreement


class TemporalSmoother:
    """Feed frames of one shot in order; call :meth:`reset` at every cut."""

    def __init__(self, params: TemporalParams = TemporalParams()) -> None:
        self.params = params
        self.flow = FlowPair(params.preset)
        self.reset()

    def reset(self) -> None:
        self._prev_l: np.ndarray | None = None
        self._prev_ab: np.ndarray | None = None

    def __call__(self, lum: np.ndarray, ab: np.ndarray) -> np.ndarray:
        """Smooth ``ab`` (hxwx2) given its L (hxw, 0-100) at the same size; returns the new ab."""
        cur = l_to_u8(lum)
        if self._prev_l is None or self._prev_l.shape != cur.shape:
            out = ab.astype(np.float32, copy=True)
        else:
            back, valid = self.flow(self._prev_l, cur, self.params.consistency)
            grid = _grid(*cur.shape)
            hist_ab = _warp(self._prev_ab, back, grid)
            hist_l = _warp(self._prev_l, back, grid).astype(np.float32) / 2.55
            # The history's weight halves for every `photometric` units of L it gets wrong.
            weight = self.params.strength * np.exp2(-np.abs(hist_l - lum) / self.params.photometric)
            weight = (weight * valid).astype(np.float32)[..., None]
            out = weight * hist_ab + (1 - weight) * ab
        self._prev_l, self._prev_ab = cur, out
        return out


def is_cut(prev_small: np.ndarray, cur_small: np.ndarray, threshold: float = 0.5) -> bool:
    """A cut when the L histograms of consecutive (small, uint8) frames differ by more than
    ``threshold`` in total variation (0: same, 1: disjoint) and the frames differ too."""
    bins = 32
    h1 = np.bincount((prev_small >> 3).ravel(), minlength=bins).astype(np.float64)
    h2 = np.bincount((cur_small >> 3).ravel(), minlength=bins).astype(np.float64)
    tv = 0.5 * np.abs(h1 / h1.sum() - h2 / h2.sum()).sum()
    mad = float(np.abs(prev_small.astype(np.int16) - cur_small.astype(np.int16)).mean())
    return tv > threshold or (tv > threshold / 2 and mad > 40)


class WarpingError:
    """Lai et al. (2018): mean over frame pairs of the occlusion-masked squared difference
    between a frame and the previous one warped onto it, with flow taken on the *original* L.
    Feed (original L uint8, rendered RGB float [0, 1]) pairs; call :meth:`reset` at cuts.
    Meters of several renderings of the same frames can share one flow: pass ``flows``, a
    :class:`SharedFlow` (fed the same L arrays, it computes each flow once)."""

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, flows: SharedFlow | None = None) -> None:
        self.flow = flows or SharedFlow(preset)
        self.total = 0.0
        self.pairs = 0
        self.reset()

    def reset(self) -> None:
        self._prev: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, lum_u8: np.ndarray, rgb: np.ndarray) -> None:
        if self._prev is not None and self._prev[0].shape == lum_u8.shape:
            err = pair_warping_error(self._prev[1], rgb, *self.flow(self._prev[0], lum_u8))
            if err is not None:
                self.total += err
                self.pairs += 1
        self._prev = (lum_u8, rgb)

    @property
    def value(self) -> float:
        return self.total / self.pairs if self.pairs else 0.0


def pair_warping_error(prev_rgb: np.ndarray, rgb: np.ndarray, back: np.ndarray, valid: np.ndarray) -> float | None:
    """One frame pair's term of :class:`WarpingError`: the mean, over the pixels ``valid``
    marks, of the squared difference between ``rgb`` and ``prev_rgb`` warped onto it by
    ``back`` (a :class:`FlowPair`'s flow); None where no pixel is valid."""
    warped = _warp(prev_rgb, back, _grid(*back.shape[:2]))
    err = ((rgb - warped) ** 2).sum(axis=2)
    n = int(valid.sum())
    return float(err[valid].sum()) / n if n else None


_thread = threading.local()


def thread_flow_pair(preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> FlowPair:
    """The calling thread's own :class:`FlowPair` for ``preset``: an OpenCV DIS object is not
    shared between threads, and making one per frame pair would cost more than the flow."""
    pairs = _thread.__dict__.setdefault("flow_pairs", {})
    if preset not in pairs:
        pairs[preset] = FlowPair(preset)
    return pairs[preset]


class SharedFlow:
    """A :class:`FlowPair` (1-pixel consistency) that remembers its last pair of frames, so that
    meters of several renderings of one film compute each flow once."""

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> None:
        self.pair = FlowPair(preset)
        self._frames: tuple[np.ndarray, np.ndarray] | None = None
        self._value: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, prev_u8: np.ndarray, cur_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._frames is None or self._frames[0] is not prev_u8 or self._frames[1] is not cur_u8:
            self._frames, self._value = (prev_u8, cur_u8), self.pair(prev_u8, cur_u8, 1.0)
        return self._value
