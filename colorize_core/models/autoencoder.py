"""The plain encoder-decoder baseline (seeds 003/004): strided convolutions down to 1/16,
upsampling convolutions back, no skip connections, trained from scratch by regression."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from colorize_core.models.registry import register

AB_SCALE = 110.0


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class AutoEncoder(nn.Module):
    """L in [0, 1], (N, 1, H, W) with H, W multiples of 2**len(channels) -> ab, (N, 2, H, W)."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        self.size_multiple = 2 ** len(channels)
        down, cin = [], 1
        for c in channels:
            down.append(nn.Sequential(_conv(cin, c, 2), _conv(c, c)))
            cin = c
        self.down = nn.Sequential(*down)
        up = []
        for c in reversed((16, *channels[:-1])):
            up.append(nn.Sequential(_conv(cin, c), _conv(c, c)))
            cin = c
        self.up = nn.ModuleList(up)
        self.head = nn.Conv2d(cin, 2, 3, padding=1)

    def forward(self, lum: torch.Tensor) -> torch.Tensor:
        y = self.down(lum * 2.0 - 1.0)
        for block in self.up:
            y = block(F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False))
        return torch.tanh(self.head(y)) * AB_SCALE


@register("autoencoder", defaults={"channels": [32, 64, 128, 256]}, objective="regression",
          description="plain encoder-decoder without skips, trained from scratch (seeds 003/004)")
def build_autoencoder(channels: list[int]) -> nn.Module:
    return AutoEncoder(tuple(channels))
