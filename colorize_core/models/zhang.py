"""Zhang et al.'s classification colorizer (seed 002), sized for this project's budget.

ab space is quantised into Q = 313 bins on a grid of 10; the network predicts a distribution
over the bins at 1/4 resolution, trained with soft-encoded targets (the 5 nearest bins,
Gaussian sigma 5) and class rebalancing (lambda 0.5, see training.py); at inference the
annealed mean (T = 0.38) of the distribution is the colour, upsampled to full size. The peak
probability of the distribution is the model's confidence.

The layers are the paper's kinds only (convolutions with batch norm and ReLU, dilation 2 in
the middle blocks, one 4x4 deconvolution, a 1x1 convolution to Q), so a trained model
exports to the Caffe layout of the published prototxt (models/export.py).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from torch import nn

from colorize_core.models.registry import register

GRID = 10
Q = 313
SIGMA = 5.0
NEIGHBOURS = 5
TEMPERATURE = 0.38
REBALANCE_LAMBDA = 0.5


@functools.cache
def ab_bins(count: int = Q) -> np.ndarray:
    """(count, 2) float32 bin centres: the ab grid points (spacing 10) nearest the sRGB gamut.

    The points whose 10x10 cell meets the gamut's projection onto ab come first (262 of them);
    the published 313 bins reach a little further out, so the rest is the next nearest ring.
    Deterministic: the gamut is sampled on a 65^3 RGB lattice.
    """
    v = np.linspace(0.0, 1.0, 65, dtype=np.float32)
    rgb = np.stack(np.meshgrid(v, v, v, indexing="ij"), -1).reshape(-1, 1, 3)
    gamut = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).reshape(-1, 3)[:, 1:]
    g = np.arange(-110, 111, GRID, dtype=np.float32)
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    distance, _ = cKDTree(gamut).query(grid)
    order = np.lexsort((grid[:, 1], grid[:, 0], np.round(distance, 3)))
    chosen = grid[np.sort(order[:count])]
    return np.ascontiguousarray(chosen, dtype=np.float32)


def soft_encode(ab: torch.Tensor, bins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ab (N, 2, H, W) -> (targets (N, Q, H, W) over the 5 nearest bins with Gaussian weights
    (sigma 5), index of the nearest bin (N, H, W))."""
    n, _, h, w = ab.shape
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    dist2 = torch.cdist(flat, bins).pow(2)
    d, idx = dist2.topk(NEIGHBOURS, dim=1, largest=False)
    weights = torch.softmax(-d / (2 * SIGMA ** 2), dim=1)
    target = torch.zeros(flat.shape[0], bins.shape[0], device=ab.device, dtype=ab.dtype)
    target.scatter_(1, idx, weights)
    return (target.view(n, h, w, -1).permute(0, 3, 1, 2), idx[:, 0].view(n, h, w))


def rebalance_weights(counts: np.ndarray, lam: float = REBALANCE_LAMBDA) -> np.ndarray:
    """Zhang et al.'s class-rebalancing weights from bin counts of the training set: the
    empirical distribution smoothed with a Gaussian (sigma 5) over ab, mixed with the uniform
    distribution by ``lam``, inverted, and normalised so that its expectation is 1."""
    bins = ab_bins(len(counts))
    p = counts / max(counts.sum(), 1)
    d2 = ((bins[:, None, :] - bins[None, :, :]) ** 2).sum(-1)
    kernel = np.exp(-d2 / (2 * SIGMA ** 2))
    smooth = kernel @ p
    smooth /= smooth.sum()
    w = 1.0 / ((1 - lam) * smooth + lam / len(counts))
    return (w / (smooth * w).sum()).astype(np.float32)


def _block(cin: int, cout: int, convs: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        s = stride if i == convs - 1 else 1
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, s, dilation, dilation, bias=False),
                   nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ZhangClassifier(nn.Module):
    """L in [0, 1], (N, 1, H, W), H and W multiples of 8 -> ab (N, 2, H, W) by annealed mean;
    :meth:`logits` gives the (N, Q, H/4, W/4) scores the loss is computed on."""

    def __init__(self, width: int = 32, bins: int = Q, temperature: float = TEMPERATURE) -> None:
        super().__init__()
        self.size_multiple = 8
        w = width
        self.features = nn.Sequential(
            _block(1, w, 2, stride=2),           # 1/2
            _block(w, 2 * w, 2, stride=2),       # 1/4
            _block(2 * w, 4 * w, 3, stride=2),   # 1/8
            _block(4 * w, 8 * w, 2),
            _block(8 * w, 8 * w, 2, dilation=2),
            _block(8 * w, 8 * w, 2, dilation=2),
            _block(8 * w, 8 * w, 2),
            nn.ConvTranspose2d(8 * w, 4 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * w), nn.ReLU(inplace=True),
            _block(4 * w, 4 * w, 2),             # 1/4
        )
        self.classify = nn.Conv2d(4 * w, bins, 1)
        self.temperature = temperature
        self.register_buffer("bins", torch.from_numpy(ab_bins(bins)), persistent=False)

    def logits(self, lum: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(lum * 100.0 - 50.0))

    def decode(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Annealed mean of softmax(logits / T), upsampled to ``size``."""
        p = torch.softmax(logits.float() / self.temperature, dim=1)
        ab = torch.einsum("nqhw,qc->nchw", p, self.bins)
        return F.interpolate(ab, size=size, mode="bilinear", align_corners=False)

    def forward(self, lum: torch.Tensor) -> torch.Tensor:
        return self.decode(self.logits(lum), lum.shape[-2:]).to(lum.dtype)

    def predict_with_confidence(self, lum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ab, confidence): confidence (N,) is the mean over pixels of the distribution's peak."""
        logits = self.logits(lum)
        peak = torch.softmax(logits.float(), dim=1).amax(dim=1).mean(dim=(1, 2))
        return self.decode(logits, lum.shape[-2:]).to(lum.dtype), peak


@register("zhang-classifier", defaults={"width": 32, "bins": Q, "temperature": TEMPERATURE},
          objective="classification",
          description="Zhang et al.'s 313-bin classification with rebalancing, annealed mean (seed 002)")
def build_zhang(width: int, bins: int, temperature: float) -> nn.Module:
    return ZhangClassifier(width, bins, temperature)
