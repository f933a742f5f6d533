"""Runners for colorizers this project did not train, described by a ``NAME.json`` descriptor
(see weights.py) with the model's files and its L-in/ab-out convention:

- ``"runner": "onnx"`` (onnxruntime): ``file`` (.onnx); ``input``: ``l`` (L, 0-100), ``l_unit``
  (L / 100), ``l_centered`` (L - 50) or ``gray_rgb`` (the gray image as RGB in [0, 1], 3
  channels, as DDColor's export takes it); ``output_scale`` (what the output is multiplied by
  to give ab in Lab units, default 1); ``input_size`` (a fixed square side, e.g. 512 for
  DDColor; omitted: the colorizer's working size).
- ``"runner": "opencv-caffe"`` (OpenCV DNN): Zhang et al.'s published layout, ``prototxt``,
  ``caffemodel`` and ``cluster_centres`` (the .npy of the Q ab bin centres); the input is
  L - 50 at ``input_size`` (224), the annealing scale ``rh_scale`` (2.606 as published) is set
  on layer ``conv8_313_rh`` and the bin centres on ``class8_ab``, as seed 002's code does.

Each runner is called like an architecture: (N, 1, S, S) L / 100 -> (N, 2, S, S) ab.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

from colorize_core.errors import ModelError
from colorize_core.weights import WeightsFile

CONVENTIONS = ("l", "l_unit", "l_centered", "gray_rgb")


def _resize_all(planes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, C, H, W) float32 -> (N, C, size) bilinearly (area when shrinking)."""
    n, c, h, w = planes.shape
    if (h, w) == size:
        return planes
    interp = cv2.INTER_AREA if size[0] < h else cv2.INTER_LINEAR
    out = np.empty((n, c, *size), np.float32)
    for i in range(n):
        for j in range(c):
            out[i, j] = cv2.resize(planes[i, j], (size[1], size[0]), interpolation=interp)
    return out


def convert_input(l_unit: np.ndarray, convention: str) -> np.ndarray:
    """(N, 1, H, W) L / 100 -> the model's input under ``convention`` (see CONVENTIONS)."""
    if convention == "l_unit":
        return l_unit
    if convention == "l":
        return l_unit * np.float32(100)
    if convention == "l_centered":
        return l_unit * np.float32(100) - np.float32(50)
    if convention == "gray_rgb":
        lab = np.zeros((*l_unit.shape[-2:], 3), np.float32)
        out = np.empty((len(l_unit), 3, *l_unit.shape[-2:]), np.float32)
        for i, plane in enumerate(l_unit[:, 0]):
            lab[..., 0] = plane * 100
            out[i] = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB).transpose(2, 0, 1)
        return out
    raise ModelError(f"input convention {convention!r} (use {', '.join(CONVENTIONS)})")


class OnnxRunner:
    def __init__(self, weights: WeightsFile, device: torch.device) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError("ONNX models need onnxruntime: pip install 'colorize-archive[external]'") from exc
        card = weights.card
        self.convention = card.get("input", "l_unit")
        if self.convention not in CONVENTIONS:
            raise ModelError(f"{weights.path}: input convention {self.convention!r} (use {', '.join(CONVENTIONS)})")
        self.output_scale = float(card.get("output_scale", 1.0))
        self.input_size = card.get("input_size")
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(weights.path.parent / card["file"]), providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelError(f"cannot load ONNX model {weights.path.parent / card['file']}: {exc}") from exc
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.single = first.shape[0] == 1  # a model exported with batch size 1 runs image by image

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        l_unit = x.float().cpu().numpy()
        size = l_unit.shape[-2:]
        if self.input_size:
            l_unit = _resize_all(l_unit, (int(self.input_size), int(self.input_size)))
        batch = convert_input(l_unit, self.convention)
        parts = [batch[i:i + 1] for i in range(len(batch))] if self.single else [batch]
        ab = np.concatenate([self.session.run(None, {self.input_name: p})[0] for p in parts]).astype(np.float32)
        return torch.from_numpy(_resize_all(ab * np.float32(self.output_scale), tuple(size)))


class CaffeRunner:
    def __init__(self, weights: WeightsFile, device: torch.device) -> None:  # noqa: ARG002 - OpenCV's CPU target
        card, folder = weights.card, weights.path.parent
        if not hasattr(cv2.dnn, "readNetFromCaffe"):
            raise ModelError(f"OpenCV {cv2.__version__} has no Caffe importer (it was removed in 5.0)")
        try:
            self.net = cv2.dnn.readNetFromCaffe(str(folder / card["prototxt"]), str(folder / card["caffemodel"]))
            pts = np.load(folder / card["cluster_centres"]).astype(np.float32)
        except (cv2.error, KeyError, OSError, ValueError) as exc:
            raise ModelError(f"cannot load the Caffe model of {weights.path}: {exc}") from exc
        if pts.ndim != 2 or 2 not in pts.shape:
            raise ModelError(f"{card['cluster_centres']}: cluster centres of shape {pts.shape} (expected Qx2)")
        pts = pts if pts.shape[1] == 2 else pts.T
        self.net.getLayer(self.net.getLayerId("class8_ab")).blobs = [pts.T.reshape(2, -1, 1, 1).copy()]
        self.net.getLayer(self.net.getLayerId("conv8_313_rh")).blobs = [
            np.full((1, len(pts)), float(card.get("rh_scale", 2.606)), np.float32)]
        self.input_size = int(card.get("input_size", 224))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        l_unit = x.float().cpu().numpy()
        size = l_unit.shape[-2:]
        inp = convert_input(_resize_all(l_unit, (self.input_size, self.input_size)), "l_centered")
        self.net.setInput(np.ascontiguousarray(inp))
        ab = self.net.forward("class8_ab").astype(np.float32)
        return torch.from_numpy(_resize_all(ab, tuple(size)))


RUNNERS: dict[str, Any] = {"onnx": OnnxRunner, "opencv-caffe": CaffeRunner}


def load_runner(weights: WeightsFile, device: torch.device) -> OnnxRunner | CaffeRunner:
    """The runner a descriptor names. Raises ModelError for an unknown runner or bad files."""
    try:
        runner = RUNNERS[weights.runner or ""]
    except KeyError:
        raise ModelError(f"{weights.path}: unknown runner {weights.runner!r} (use {', '.join(RUNNERS)})") from None
    return runner(weights, device)
