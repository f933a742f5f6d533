"""Export this project's models for the external runners (models/external.py): ONNX for any
architecture, and Zhang et al.'s Caffe layout (prototxt + caffemodel + cluster centres, the
files seed 002's OpenCV code loads) for ``zhang-classifier``. Each export writes a descriptor
``NAME.json`` beside its files, so the result loads with ``--model DIR/NAME.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from colorize_core.errors import ModelError
from colorize_core.models import build_model, inference_options
from colorize_core.weights import WeightsFile, file_sha256, load_weights


def _load(weights: WeightsFile) -> tuple[nn.Module, str, dict[str, Any]]:
    if weights.runner:
        raise ModelError(f"{weights.name} is already an external ({weights.runner}) model")
    arch, options, state = load_weights(weights.path)
    net, options = build_model(arch, inference_options(options))
    net.load_state_dict(state)
    return net.eval(), arch, options


def _refuse_existing(out: Path, names: list[str]) -> None:
    """An export never replaces files: raises ModelError if any of ``names`` is in ``out``."""
    taken = [n for n in names if (out / n).exists()]
    if taken:
        raise ModelError(f"{out} already holds {', '.join(taken)}: give another --name or OUT")


def _descriptor(out: Path, name: str, weights: WeightsFile, arch: str, main: Path, **fields: Any) -> Path:
    path = out / f"{name}.json"
    path.write_text(json.dumps({"name": name, **fields, "weights_sha256": file_sha256(main),
                                "exported_from": {"model": weights.name, "arch": arch,
                                                  "weights_sha256": weights.sha256}}, indent=1))
    return path


class _GrayRgbInput(nn.Module):
    """Takes the gray image as RGB in [0, 1] (DDColor's convention) and gives the net L / 100."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        c = rgb.mean(dim=1, keepdim=True)
        y = torch.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)  # sRGB -> linear = Y for gray
        f = torch.where(y > 0.008856, y.clamp_min(1e-12) ** (1 / 3), 7.787 * y + 16 / 116)
        return self.net((116 * f - 16) / 100)


def export_onnx(weights: WeightsFile, out: Path, name: str, convention: str = "l_unit",
                input_size: int | None = None) -> Path:
    """``out/NAME.onnx`` and its descriptor; ``convention`` ``l_unit`` or ``gray_rgb``;
    ``input_size`` fixes the input's side (else any size that is a multiple of 32)."""
    net, arch, _ = _load(weights)
    _refuse_existing(out, [f"{name}.onnx", f"{name}.json"])
    if convention == "gray_rgb":
        net, channels = _GrayRgbInput(net), 3
    elif convention == "l_unit":
        channels = 1
    else:
        raise ModelError(f"export convention {convention!r} (use l_unit or gray_rgb)")
    out.mkdir(parents=True, exist_ok=True)
    side = input_size or 256
    path = out / f"{name}.onnx"
    dynamic = {"input": {0: "n"}, "ab": {0: "n"}}
    if not input_size:
        dynamic = {"input": {0: "n", 2: "h", 3: "w"}, "ab": {0: "n", 2: "h", 3: "w"}}
    try:
        import onnx  # noqa: F401 - torch's exporter needs it
    except ImportError as exc:
        raise ModelError("ONNX export needs onnx: pip install 'colorize-archive[external]'") from exc
    torch.onnx.export(net, torch.rand(1, channels, side, side), str(path), dynamo=False, input_names=["input"],
                      output_names=["ab"], dynamic_axes=dynamic, opset_version=17)
    fields: dict[str, Any] = {"runner": "onnx", "file": path.name, "input": convention, "output_scale": 1.0}
    if input_size:
        fields["input_size"] = input_size
    return _descriptor(out, name, weights, arch, path, **fields)


# Caffe ------------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _blob(array: np.ndarray) -> bytes:
    """caffe.BlobProto: shape (7) = BlobShape{dim (1), packed}, data (5), packed float."""
    shape = _field(1, b"".join(_varint(d) for d in array.shape))
    return _field(7, shape) + _field(5, np.ascontiguousarray(array, "<f4").tobytes())


def _caffemodel(layers: list[tuple[str, str, list[np.ndarray]]]) -> bytes:
    """caffe.NetParameter with one LayerParameter (100) per (name (1), type (2), blobs (7))."""
    body = b"".join(_field(100, _field(1, n.encode()) + _field(2, t.encode()) + b"".join(_field(7, _blob(b)) for b in bs))
                    for n, t, bs in layers)
    return _field(1, b"colorization") + body


def _fold(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """The convolution's weight and bias with the (eval-mode) batch norm after it folded in."""
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    shape = (-1, 1, 1, 1) if isinstance(conv, nn.Conv2d) else (1, -1, 1, 1)
    weight = conv.weight.detach() * scale.reshape(shape)
    bias = bn.bias.detach() - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias.detach() * scale
    return weight.numpy(), bias.numpy()


def export_caffe(weights: WeightsFile, out: Path, name: str) -> Path:
    """``out/NAME.prototxt``, ``NAME.caffemodel``, ``NAME-pts_in_hull.npy`` and the descriptor,
    in the layout of Zhang et al.'s published deploy prototxt (input ``data_l`` = L - 50 at
    224 px; ``conv8_313`` -> ``conv8_313_rh`` (Scale) -> ``class8_313_rh`` (Softmax) ->
    ``class8_ab`` (1x1 convolution with the bin centres)). Only ``zhang-classifier`` fits it."""
    net, arch, options = _load(weights)
    if arch != "zhang-classifier":
        raise ModelError(f"the Caffe layout is Zhang et al.'s: {weights.name} is {arch!r}, not zhang-classifier")
    _refuse_existing(out, [f"{name}.prototxt", f"{name}.caffemodel", f"{name}-pts_in_hull.npy", f"{name}.json"])
    modules = list(net.features.modules())
    convs = [m for m in modules if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    norms = [m for m in modules if isinstance(m, nn.BatchNorm2d)]
    proto = ['name: "colorization"', 'layer { name: "data_l" type: "Input" top: "data_l"',
             "  input_param { shape { dim: 1 dim: 1 dim: 224 dim: 224 } } }"]
    blobs: list[tuple[str, str, list[np.ndarray]]] = []
    bottom = "data_l"
    for i, (conv, bn) in enumerate(zip(convs, norms, strict=True), start=1):
        kind = "Deconvolution" if isinstance(conv, nn.ConvTranspose2d) else "Convolution"
        top = f"conv{i}"
        w, b = _fold(conv, bn)
        channels = conv.out_channels
        proto.append(f'layer {{ name: "{top}" type: "{kind}" bottom: "{bottom}" top: "{top}"\n'
                     f"  convolution_param {{ num_output: {channels} kernel_size: {conv.kernel_size[0]} "
                     f"stride: {conv.stride[0]} pad: {conv.padding[0]} dilation: {conv.dilation[0]} }} }}")
        proto.append(f'layer {{ name: "relu{i}" type: "ReLU" bottom: "{top}" top: "{top}" }}')
        blobs.append((top, kind, [w, b]))
        bottom = top
    cls = net.classify
    q = cls.out_channels
    proto += [f'layer {{ name: "conv8_313" type: "Convolution" bottom: "{bottom}" top: "conv8_313"\n'
              f"  convolution_param {{ num_output: {q} kernel_size: 1 stride: 1 dilation: 1 }} }}",
              'layer { name: "conv8_313_rh" type: "Scale" bottom: "conv8_313" top: "conv8_313_rh"\n'
              "  scale_param { bias_term: false } }",
              'layer { name: "class8_313_rh" type: "Softmax" bottom: "conv8_313_rh" top: "class8_313_rh" }',
              'layer { name: "class8_ab" type: "Convolution" bottom: "class8_313_rh" top: "class8_ab"\n'
              "  convolution_param { num_output: 2 kernel_size: 1 stride: 1 dilation: 1 bias_term: false } }"]
    blobs.append(("conv8_313", "Convolution", [cls.weight.detach().numpy(), cls.bias.detach().numpy()]))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.prototxt").write_text("\n".join(proto) + "\n")
    model = out / f"{name}.caffemodel"
    model.write_bytes(_caffemodel(blobs))
    np.save(out / f"{name}-pts_in_hull.npy", net.bins.numpy().astype(np.float64))
    return _descriptor(out, name, weights, arch, model, runner="opencv-caffe", prototxt=f"{name}.prototxt",
                       caffemodel=model.name, cluster_centres=f"{name}-pts_in_hull.npy", input_size=224,
                       rh_scale=1.0 / float(options["temperature"]))


