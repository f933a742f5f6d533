"""pix2pix (seeds 000/001): a U-Net generator L -> ab and a 70x70 PatchGAN discriminator on
(L, ab) pairs. The registry entry builds the generator, which is all a weights file holds;
the discriminator exists only during training (see training.py: L1 pre-training, then the
conditional GAN loss plus lambda * L1).

Unlike the reference implementation, dropout is off at inference: an archive wants the same
output from the same input and weights.
"""

from __future__ import annotations

import torch
from torch import nn

from colorize_core.models.registry import register

AB_SCALE = 110.0


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int, norm: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)]
        if norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int, dropout: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.body(x), skip], dim=1)


class UNetGenerator(nn.Module):
    """pix2pix's U-Net: ``depth`` stride-2 4x4 convolutions (C64-C128-C256-C512-...) and
    mirrored transposed convolutions with skips; H, W must be multiples of 2**depth."""

    def __init__(self, ngf: int = 32, depth: int = 5) -> None:
        super().__init__()
        self.size_multiple = 2 ** depth
        chans = [min(ngf * 2 ** i, ngf * 8) for i in range(depth)]
        self.downs = nn.ModuleList([_Down(1, chans[0], norm=False)]
                                   + [_Down(chans[i - 1], chans[i]) for i in range(1, depth)])
        # The innermost up has no skip input of its own; the three deepest carry dropout.
        ups, cin = [], chans[-1]
        for i in range(depth - 2, -1, -1):
            ups.append(_Up(cin, chans[i], dropout=(depth - 2 - i) < 3 and i > 0))
            cin = chans[i] * 2
        self.ups = nn.ModuleList(ups)
        self.out = nn.ConvTranspose2d(cin, 2, 4, 2, 1)

    def forward(self, lum: torch.Tensor) -> torch.Tensor:
        x = lum * 2.0 - 1.0
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        for up, skip in zip(self.ups, reversed(skips[:-1])):
            x = up(x, skip)
        return torch.tanh(self.out(x)) * AB_SCALE


class PatchDiscriminator(nn.Module):
    """The 70x70 PatchGAN: C64-C128-C256-C512 (4x4; strides 2, 2, 2, 1) and a 1-channel 4x4
    convolution; each output logit judges one 70x70 patch of the (L, ab) pair."""

    def __init__(self, ndf: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 1, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 1),
        )

    def forward(self, lum: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([lum * 2.0 - 1.0, ab / AB_SCALE], dim=1))


@register("pix2pix", defaults={"ngf": 32, "depth": 5, "ndf": 64}, objective="pix2pix",
          description="pix2pix U-Net generator trained with a 70x70 PatchGAN (seeds 000/001)")
def build_pix2pix(ngf: int, depth: int, ndf: int) -> nn.Module:  # noqa: ARG001 - ndf is the discriminator's
    return UNetGenerator(ngf, depth)
