"""The Colorizer: ab predicted from L at the model's working size, merged with the full-size L."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
import torch

from colorize_core.color import lab_to_rgb, luminance, resize_ab
from colorize_core.errors import ModelError
from colorize_core.models import build_model
from colorize_core.refine import refine
from colorize_core.weights import DEFAULT_MODEL, WeightsFile, load_weights, resolve


@dataclass(frozen=True)
class Prediction:
    """The model's ab for one L, at its working size (aspect kept), and its confidence in it."""
    small_ab: np.ndarray
    confidence: float | None

    def ab(self, height: int, width: int) -> np.ndarray:
        """The ab at full size (HxWx2 float32): made when it is used, so that a batch of large
        scans holds its ab at the working size only."""
        return resize_ab(self.small_ab, height, width)


def pick_device(device: str) -> torch.device:
    """"auto": CUDA when available, else CPU; anything else is passed to torch as it is."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# Pixels per model call on the CPU: with the default model, 256x256 inputs ran fastest two at a
# time and 256x160 three or four at a time; eight at a time ran 15-35 % slower than that.
CPU_CALL_PIXELS = 160_000


class Colorizer:
    """A loaded model. ``colorize`` / ``colorize_batch`` take gray (HxW) or RGB (HxWx3) images,
    uint8 or uint16, and return RGB of the same size and dtype whose L is the input's own."""

    def __init__(self, net: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor], weights: WeightsFile, arch: str, options: dict[str, Any],
                 device: torch.device, work_size: int = 256) -> None:
        self.net = net
        self.weights = weights
        self.arch = arch
        self.options = options
        self.device = device
        self.work_size = work_size
        self.half = device.type == "cuda" and isinstance(net, torch.nn.Module)  # external runners: fp32
        # One model call at a time per loaded model: concurrent batches then pipeline (one in
        # the model while another decodes and encodes) instead of oversubscribing the device.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model: str = DEFAULT_MODEL, device: str = "auto", work_size: int = 256) -> Colorizer:
        """Load model ``model`` (registry name or .pt path) on ``device`` ("auto": CUDA, then CPU).

        Raises ModelError for an unknown model, unreadable weights or a checksum mismatch.
        """
        if work_size % 32:
            raise ModelError(f"work_size must be a multiple of 32, got {work_size}")
        weights = resolve(model)
        dev = pick_device(device)
        if weights.runner:  # an external model: onnxruntime or OpenCV DNN
            from colorize_core.models.external import load_runner

            options = {k: v for k, v in weights.card.items() if k not in ("name", "weights_sha256")}
            return cls(load_runner(weights, dev), weights, f"external:{weights.runner}", options, dev, work_size)
        arch, options, state = load_weights(weights.path)
        net, options = build_model(arch, options)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelError(f"weights {weights.path} do not fit architecture {arch!r}: {exc}") from exc
        net.eval().to(dev)
        if dev.type == "cuda":
            net.half()
        else:
            net.to(memory_format=torch.channels_last)
        return cls(net, weights, arch, options, dev, work_size)

    @property
    def name(self) -> str:
        return self.weights.name

    @property
    def sha256(self) -> str:
        return self.weights.sha256

    def describe(self) -> dict[str, Any]:
        """What provenance records about the model."""
        return {"name": self.name, "arch": self.arch, "weights_sha256": self.sha256,
                "options": self.options, "work_size": self.work_size, "device": str(self.device)}

    # Model side ---------------------------------------------------------------------------
    def _to_work(self, lum: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """Fit L into work_size x work_size keeping the aspect, and reflect-pad it to the next
        multiple of the network's ``size_multiple`` (a 16:9 frame: 256x144 padded to 256x160,
        not to a square; the padding never depends on the rest of the batch). An external
        runner, whose input size may be fixed, gets the square."""
        h, w = lum.shape
        s = self.work_size
        scale = s / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        small = cv2.resize(lum, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        mode = cv2.BORDER_REFLECT_101 if min(nh, nw) > 1 else cv2.BORDER_REPLICATE
        m = getattr(self.net, "size_multiple", None)
        ph, pw = (s, s) if m is None else (-(-nh // m) * m, -(-nw // m) * m)
        return cv2.copyMakeBorder(small, 0, ph - nh, 0, pw - nw, mode), (nh, nw)

    def _calls(self, works: Sequence[np.ndarray]) -> list[list[int]]:
        """The inputs of each model call: inputs of one padded shape go together; on the CPU a
        call holds at most CPU_CALL_PIXELS (bigger calls are slower there: the activations
        outgrow the caches), on a GPU the whole group."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, work in enumerate(works):
            groups.setdefault(work.shape, []).append(i)
        calls = []
        for shape, idx in groups.items():
            per = len(idx) if self.device.type != "cpu" else max(1, CPU_CALL_PIXELS // (shape[0] * shape[1]))
            calls += [idx[k:k + per] for k in range(0, len(idx), per)]
        return calls

    @torch.inference_mode()
    def _run(self, lums: Sequence[np.ndarray], confidence: bool) -> tuple[list[tuple[np.ndarray, np.ndarray]],
                                                                          list[float | None]]:
        works, sizes = zip(*(self._to_work(lum) for lum in lums)) if lums else ((), ())
        abs_: list[np.ndarray] = [np.empty(0)] * len(lums)
        conf: list[float | None] = [None] * len(lums)
        for idx in self._calls(works):
            x = torch.from_numpy(np.stack([works[i] for i in idx])[:, None] / np.float32(100.0)).to(self.device)
            x = x.half() if self.half else x.contiguous(memory_format=torch.channels_last)
            with self._lock:
                if confidence and hasattr(self.net, "predict_with_confidence"):
                    out, peak = self.net.predict_with_confidence(x)
                    for i, c in zip(idx, peak.float().cpu()):
                        conf[i] = float(c)
                else:
                    out = self.net(x)
                ab = out.float().permute(0, 2, 3, 1).cpu().numpy()
            for i, a in zip(idx, ab):
                nh, nw = sizes[i]
                abs_[i] = np.ascontiguousarray(a[:nh, :nw])
        return [(works[i][:nh, :nw], abs_[i]) for i, (nh, nw) in enumerate(sizes)], conf

    def predict_ab_small(self, lums: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(L, ab) at the model's working size (aspect kept) for each full-size L, as one batch."""
        return self._run(lums, confidence=False)[0]

    def predict_ab(self, lums: Sequence[np.ndarray]) -> list[np.ndarray]:
        """ab (HxWx2 float32, full size) for each L (HxW float32, 0-100), as one batch."""
        return [resize_ab(ab, *lum.shape) for lum, (_, ab) in zip(lums, self.predict_ab_small(lums))]

    def predict(self, lums: Sequence[np.ndarray]) -> list[Prediction]:
        """The ab for each L (:meth:`Prediction.ab` at full size) with the model's confidence in
        it: for a model that predicts a colour distribution (zhang-classifier), the mean over
        pixels of its peak probability; None for a model that predicts colours directly."""
        small, conf = self._run(lums, confidence=True)
        return [Prediction(ab, c) for (_, ab), c in zip(small, conf)]

    @property
    def low_confidence(self) -> float | None:
        """Confidence below which an output deserves a reviewer's eyes first: the model card's
        10th percentile of its held-out images' confidence (None: the model has none)."""
        value = self.weights.card.get("confidence_low")
        return float(value) if value is not None else None

    # Image side ---------------------------------------------------------------------------
    def colorize_batch(self, images: Sequence[np.ndarray], refine_method: str = "none",
                       refine_params: dict[str, Any] | None = None) -> list[np.ndarray]:
        """Colorize images as one batch; each output has its input's size and dtype."""
        lums = [luminance(img) for img in images]
        abs_ = self.predict_ab(lums)
        return [lab_to_rgb(lum, refine(lum, ab, refine_method, refine_params), img.dtype)
                for img, lum, ab in zip(images, lums, abs_)]

    def colorize(self, image: np.ndarray, refine_method: str = "none",
                 refine_params: dict[str, Any] | None = None) -> np.ndarray:
        """Colorize one image; see :meth:`colorize_batch`."""
        return self.colorize_batch([image], refine_method, refine_params)[0]
