"""Image metrics used in manifests and evaluation."""

from __future__ import annotations

import numpy as np


def psnr(pred: np.ndarray, truth: np.ndarray) -> float:
    """RGB PSNR in dB of 8-bit images (peak 255)."""
    mse = float(np.mean((pred.astype(np.float64) - truth.astype(np.float64)) ** 2))
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk (2003) colourfulness M on the 0-255 scale.

    rg = R - G and yb = (R + G) / 2 - B are taken with their signs: the absolute values some
    copies use fold opposite hues together and bias both the means and the spreads.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        return 0.0
    scale = 255.0 / np.iinfo(rgb.dtype).max if np.issubdtype(rgb.dtype, np.integer) else 255.0
    # Statistics of a regular decimation (not an average: that would shrink the spread) of
    # at most ~100k pixels estimate the whole image's closely at a fraction of the cost.
    step = max(1, int(np.ceil(np.sqrt(rgb.shape[0] * rgb.shape[1] / 100_000))))
    x = rgb[::step, ::step].astype(np.float32) * np.float32(scale)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
