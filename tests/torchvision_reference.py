"""Reference figures from torchvision's own ResNet18 and VGG16, for tests/test_encoders.py.

torchvision is not a dependency: its PyPI wheels are built against CUDA torch and do not import
beside torch's CPU build. So its state-dict layouts, and the features its models compute for
seeded weights and a seeded input, are recorded once in tests/data/torchvision_reference.json
by this script, run against the real wheel:

    pip download torchvision==0.28.0 --no-deps -d /tmp/tv
    unzip -q /tmp/tv/torchvision-0.28.0-*.whl -d /tmp/tv/site
    PYTHONPATH=/tmp/tv/site .venv/bin/python -m tests.torchvision_reference

The wheel's compiled operators (nms and friends) cannot load beside the CPU build; only its
pure-Python model definitions are used, so the registration of those operators is skipped.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import torch

REFERENCE = Path(__file__).parent / "data" / "torchvision_reference.json"
# Where torchvision's features are taken: the stride-2 ReLU and the four stages of ResNet18;
# the last ReLU before each of VGG16's pools (strides 1..16) and the fifth pool (stride 32).
TAPS = {"resnet18": ["relu", "layer1", "layer2", "layer3", "layer4"],
        "vgg16": ["features.3", "features.8", "features.15", "features.22", "features.29", "features.30"]}
SAMPLES = 16


def seeded_state(layout: list[tuple[str, list[int], str]]) -> dict[str, torch.Tensor]:
    """Weights of a given layout, each tensor seeded by its key (so any subset of keys gets the
    same values), scaled so that activations stay finite through a deep network."""
    state = {}
    for key, shape, dtype in layout:
        g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        if dtype == "int64":
            state[key] = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("running_mean") or (key.endswith("bias")):
            state[key] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:  # a batch norm's scale
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[key] = torch.randn(shape, generator=g) * math.sqrt(2.0 / math.prod(shape[1:]))
    return state


def seeded_input() -> torch.Tensor:
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def summarize(t: torch.Tensor) -> dict:
    flat = t.detach().flatten().double()
    idx = torch.linspace(0, flat.numel() - 1, SAMPLES).long()
    return {"shape": list(t.shape), "mean": float(flat.mean()), "std": float(flat.std()),
            "samples": [float(v) for v in flat[idx]]}


def _import_torchvision():  # noqa: ANN202
    import torch.library

    real_impl = torch.library.Library.impl

    def impl(self, *args, **kwargs):  # noqa: ANN001, ANN202
        try:
            return real_impl(self, *args, **kwargs)
        except RuntimeError:  # an operator of the compiled library that could not load
            return None

    torch.library.register_fake = lambda *a, **k: (lambda f: f)
    torch.library.Library.impl = impl
    import torchvision

    return torchvision


def main() -> None:
    torchvision = _import_torchvision()
    out: dict = {"torchvision": torchvision.__version__, "torch": torch.__version__, "models": {}}
    for name in TAPS:
        model = getattr(torchvision.models, name)().eval()
        layout = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]
        model.load_state_dict(seeded_state(layout))
        modules = dict(model.named_modules())
        taps: dict[str, torch.Tensor] = {}
        for tap in TAPS[name]:
            modules[tap].register_forward_hook(lambda m, i, o, tap=tap: taps.setdefault(tap, o.clone()))
        with torch.no_grad():
            model(seeded_input())
        out["models"][name] = {"layout": layout, "taps": [summarize(taps[t]) for t in TAPS[name]]}
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps(out, indent=1))
    print(f"wrote {REFERENCE} from torchvision {torchvision.__version__}")


if __name__ == "__main__":
    main()
